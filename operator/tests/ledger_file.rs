//! The whole operator with the file source and `--ledger-file`, in process: spend written
//! about once a second, acknowledged once written, read back by the next run, and spend
//! that was never acknowledged sent again and counted once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;
use std::time::{Duration, SystemTime};

use modelroute_crds::Window;
use modelroute_operator::{Options, Running, SourceOptions, TlsSource, tls};
use modelroute_proto::discovery_client::DiscoveryClient;
use modelroute_proto::{AccountKey, AccountUsage, SidecarMessage, Usage, sidecar_message};
use serde_json::Value;
use support::{Session, hello};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

const TOKEN: &str = "static-token-0123456789";

const ROUTE: &str = r#"
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat}
spec:
  providers: [{name: m, kind: mock}]
  routes: [{model: chat, targets: [{provider: m, model: m}]}]
  budgets:
    - {name: team, amountUsd: 1, window: monthly, thresholds: [50]}
"#;

async fn start(dir: &Path, issued: &tls::Issued) -> Running {
    modelroute_operator::start(Options {
        source: SourceOptions::Files {
            routes_dir: dir.join("routes"),
            secrets_dir: None,
            static_token: TOKEN.into(),
            ledger_file: Some(dir.join("ledger.json")),
        },
        grpc_listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        tls: TlsSource::Fixed(issued.serving.clone()),
        drain_timeout: Duration::from_secs(2),
        spans_dropped: Default::default(),
    })
    .await
    .expect("the operator starts")
}

async fn connect(op: &Running, ca: &str, pod: &str) -> Session {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{}", op.grpc_addr.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(8);
    tx.send(SidecarMessage {
        message: Some(sidecar_message::Message::Hello(hello(
            TOKEN, "default", pod,
        ))),
    })
    .await
    .unwrap();
    // `start` returns once the ledger is read back and sessions are served.
    let mut client = DiscoveryClient::new(channel);
    let inbound = client
        .session(ReceiverStream::new(rx))
        .await
        .expect("a session")
        .into_inner();
    let mut session = Session { tx, inbound };
    let snapshot = session.snapshot().await;
    session.ack(&snapshot).await;
    session
}

fn report(seq: u64, spent: u64) -> sidecar_message::Message {
    sidecar_message::Message::Usage(Usage {
        seq,
        incarnation: "inc".into(),
        accounts: vec![AccountUsage {
            key: Some(AccountKey {
                namespace: "default".into(),
                model_route: "chat".into(),
                budget: "team".into(),
                scope_value: String::new(),
                window: Window::Monthly.id(SystemTime::now()).to_string(),
            }),
            spent_nano_usd: spent,
            held_nano_usd: 0,
            want_nano_usd: 0,
            need_nano_usd: 0,
        }],
        answers_applied: 0,
    })
}

/// `GET /status` of the admin port.
async fn status(op: &Running) -> Value {
    let response = admin_get(op.admin_addr, "/status").await;
    let (_, body) = response.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(body).unwrap()
}

fn team_spent(status: &Value) -> String {
    status["modelRoutes"][0]["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "team")
        .map(|b| b["spentUsd"].as_str().unwrap().to_string())
        .unwrap()
}

/// Waits for the push acknowledging `seq`.
async fn acknowledged(session: &mut Session, seq: u64) {
    loop {
        let g = session.grants().await;
        if g.applied_seq >= seq {
            assert_eq!(g.answers_seq, 0, "a push");
            return;
        }
    }
}

#[tokio::test]
async fn spend_survives_a_restart_and_unacknowledged_spend_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("routes")).unwrap();
    std::fs::write(dir.path().join("routes/chat.yaml"), ROUTE).unwrap();
    let issued = tls::generate(&["localhost".to_string()]).unwrap();
    let ca = issued.authority.cert_pem.clone();

    let first = start(dir.path(), &issued).await;
    let mut a = connect(&first, &ca, "a").await;
    a.send(report(1, 600_000_000)).await;
    let answer = a.grants().await;
    assert_eq!((answer.answers_seq, answer.applied_seq), (1, 0));
    assert_eq!(answer.grants[0].spent_nano_usd, 600_000_000);
    acknowledged(&mut a, 1).await;
    let file: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("ledger.json")).unwrap()).unwrap();
    assert_eq!(file["accounts"][0]["spentNanoUsd"], 600_000_000, "{file}");
    assert_eq!(team_spent(&status(&first).await), "0.6");
    let metrics = admin_get(first.admin_addr, "/metrics").await;
    assert!(
        metrics.contains("modelroute_operator_budget_threshold_crossings_total{namespace=\"default\",modelroute=\"chat\",budget=\"team\",percent=\"50\"} 1"),
        "{metrics}"
    );

    // Reported, answered, but the operator stops before writing it: never acknowledged.
    a.send(report(2, 50_000_000)).await;
    let answer = a.grants().await;
    assert_eq!((answer.answers_seq, answer.applied_seq), (2, 1));
    first.stop().await;
    drop(a);

    let second = start(dir.path(), &issued).await;
    let mut a = connect(&second, &ca, "a").await;
    assert_eq!(
        team_spent(&status(&second).await),
        "0.6",
        "what was written"
    );
    // The sidecar sends what was not acknowledged again, then goes on.
    a.send(report(2, 50_000_000)).await;
    let answer = a.grants().await;
    assert_eq!(answer.grants[0].spent_nano_usd, 650_000_000);
    a.send(report(3, 1)).await;
    assert_eq!(a.grants().await.grants[0].spent_nano_usd, 650_000_001);
    acknowledged(&mut a, 3).await;
    // The threshold was crossed in the first run: not announced again.
    let metrics = admin_get(second.admin_addr, "/metrics").await;
    assert!(
        !metrics.contains("budget_threshold_crossings_total{"),
        "{metrics}"
    );
    second.stop().await;
}

/// An admin path, over plain HTTP/1.0.
async fn admin_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: operator\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}
