//! Config from the operator: snapshots applied and acknowledged, bad ones refused while the
//! old table serves, keys from Secrets injected and rotated, reconnects with a fresh Hello,
//! refusals, TLS, and a bootstrap config until the first snapshot.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure should stop the test"
)]

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use modelroute_proto::v1::{Hello, Resource};
use modelroute_sidecar::config::operator::{CaBundle, OperatorOptions, ReconnectBackoff};
use support::fake_operator::{resource, snapshot};
use support::harness::route_yaml;
use support::*;
use tonic::Code;

/// Every log line of this test binary, at every level.
fn logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_ansi(false)
            .with_writer(move || LogSink(sink.clone()))
            .try_init();
        logs
    })
    .clone()
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logged(text: &str) -> bool {
    let logs = logs();
    let logs = logs.lock().unwrap();
    String::from_utf8_lossy(&logs).contains(text)
}

/// Polls `check` until it holds (up to 20 s).
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..1000 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting until {what}");
}

/// A ModelRoute named `name` serving `aliases` from the mock provider.
fn mock_route(name: &str, aliases: &[&str]) -> String {
    let routes: Vec<String> = aliases
        .iter()
        .map(|a| {
            format!("    - model: {a}\n      targets: [{{provider: mock, model: {a}-upstream}}]")
        })
        .collect();
    route_yaml("    - {name: mock, kind: mock}", &routes.join("\n"))
        .replace("name: test", &format!("name: {name}"))
}

fn mock_resource(aliases: &[&str]) -> Resource {
    resource("shop", &mock_route("mocks", aliases), &[])
}

/// Sidecar options for `operator`, with a token file (`tok-1`) and a labels file in `dir`.
fn options(dir: &tempfile::TempDir, url: String) -> OperatorOptions {
    logs();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-1\n").unwrap();
    let labels = dir.path().join("labels");
    std::fs::write(&labels, "app=\"web\"\ntier=\"gold\"\n").unwrap();
    let mut o = OperatorOptions::new(url);
    o.token_file = token;
    o.pod_labels_file = Some(labels);
    o.pod_namespace = "shop".into();
    o.pod_name = "web-1".into();
    // Fast reconnects keep the tests short; the policy's bounds have their own unit test.
    o.backoff = ReconnectBackoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(300),
    };
    o
}

async fn start(op: &FakeOperator) -> Sidecar {
    let dir = tempfile::tempdir().unwrap();
    let o = options(&dir, op.url());
    Sidecar::start_operator(dir, o).await
}

async fn content(sc: &Sidecar, model: &str) -> (u16, String) {
    let (status, _, body) = post_json(&sc.chat_url(), &chat(model, "hi")).await;
    let text = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (status.as_u16(), text)
}

async fn config(sc: &Sidecar) -> serde_json::Value {
    get_json(&format!("{}/config", sc.admin)).await.2
}

#[tokio::test]
async fn a_snapshot_is_served_and_acknowledged() {
    let op = FakeOperator::start().await;
    let mut sc = start(&op).await;
    until("the sidecar says Hello", async || op.hellos().len() == 1).await;
    let hello = op.hellos().remove(0);
    assert_eq!(
        hello,
        Hello {
            token: "tok-1".into(),
            sidecar_version: env!("CARGO_PKG_VERSION").into(),
            capabilities: vec!["snapshot.v1".into()],
            pod_namespace: "shop".into(),
            pod_name: "web-1".into(),
            pod_labels: [("app", "web"), ("tier", "gold")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            active_hash: String::new(),
        }
    );
    // Connected, but no snapshot yet and no bootstrap: not ready.
    let (status, _, _) = get_json(&format!("{}/readyz", sc.admin)).await;
    assert_eq!(status, 503);
    until("connected", async || {
        sc.metric("modelroute_operator_connected", &[]).await == 1.0
    })
    .await;

    let snap = snapshot(7, vec![mock_resource(&["alpha"])]);
    op.push(snap.clone());
    let Answer::Ack(ack) = op.answer_to(7).await else {
        panic!("refused: {:?}", op.answers())
    };
    assert_eq!((ack.version, ack.hash.as_str()), (7, snap.hash.as_str()));
    let (status, _, _) = get_json(&format!("{}/readyz", sc.admin)).await;
    assert_eq!(status, 200);
    let (status, text) = content(&sc, "alpha").await;
    assert_eq!(status, 200);
    assert!(text.contains("alpha-upstream"), "{text}");

    let c = config(&sc).await;
    assert_eq!(c["source"], format!("operator {}", op.url()));
    assert_eq!(c["snapshot"]["version"], 7);
    assert_eq!(c["snapshot"]["hash"], snap.hash);
    assert_eq!(c["modelRoutes"][0]["metadata"]["namespace"], "shop");
    assert_eq!(sc.metric("modelroute_config_version", &[]).await, 1.0);
    assert_eq!(
        sc.metric("modelroute_operator_snapshots_total", &[("result", "ack")])
            .await,
        1.0
    );
    assert_eq!(
        sc.metric("modelroute_operator_connects_total", &[("result", "ok")])
            .await,
        1.0
    );
    sc.stop().await;
}

#[tokio::test]
async fn an_invalid_snapshot_is_refused_and_the_old_one_keeps_serving() {
    let op = FakeOperator::start().await;
    op.push(snapshot(1, vec![mock_resource(&["alpha"])]));
    let sc = start(&op).await;
    assert!(matches!(op.answer_to(1).await, Answer::Ack(_)));

    let broken = route_yaml(
        "    - {name: mock, kind: mock}",
        "    - model: alpha\n      targets: [{provider: nobody, model: x}]\n    - model: beta\n      targets: [{provider: mock, model: x, weight: 0}]",
    )
    .replace("name: test", "name: broken");
    let mut unknown_schema = mock_resource(&["gamma"]);
    unknown_schema.name = "future".into();
    unknown_schema.api_version = "modelroute.dev/v2".into();
    op.push(snapshot(2, vec![resource("shop", &broken, &[])]));
    let Answer::Nack(nack) = op.answer_to(2).await else {
        panic!("accepted a broken snapshot")
    };
    let problems: Vec<&str> = nack.reason.lines().collect();
    assert_eq!(problems.len(), 2, "{}", nack.reason);
    assert!(
        problems[0].starts_with("ModelRoute shop/broken: spec.routes[0].targets[0].provider"),
        "{}",
        nack.reason
    );
    assert!(
        problems[1].starts_with("ModelRoute shop/broken: spec.routes[1].targets[0].weight"),
        "{}",
        nack.reason
    );
    op.push(snapshot(3, vec![unknown_schema]));
    let Answer::Nack(nack) = op.answer_to(3).await else {
        panic!("accepted an unknown schema")
    };
    assert!(nack.reason.contains("modelroute.dev/v2"), "{}", nack.reason);

    let (status, text) = content(&sc, "alpha").await;
    assert_eq!(status, 200, "the old table keeps serving");
    assert!(text.contains("alpha-upstream"), "{text}");
    assert_eq!(config(&sc).await["snapshot"]["version"], 1);
    assert_eq!(
        sc.metric("modelroute_operator_snapshots_total", &[("result", "nack")])
            .await,
        2.0
    );
    assert_eq!(
        sc.metric("modelroute_config_reloads_total", &[("result", "rejected")])
            .await,
        2.0
    );
    assert!(logged("snapshot refused; the active config keeps serving"));

    // A good snapshot after the bad ones applies.
    op.push(snapshot(4, vec![mock_resource(&["alpha", "beta"])]));
    assert!(matches!(op.answer_to(4).await, Answer::Ack(_)));
    assert_eq!(content(&sc, "beta").await.0, 200);
}

#[tokio::test]
async fn an_identical_snapshot_is_acknowledged_without_a_reload() {
    let op = FakeOperator::start().await;
    let first = snapshot(1, vec![mock_resource(&["alpha"])]);
    op.push(first.clone());
    let sc = start(&op).await;
    assert!(matches!(op.answer_to(1).await, Answer::Ack(_)));
    // The operator restarted and counts from elsewhere; the content is the same.
    let again = modelroute_proto::v1::Snapshot {
        version: 9,
        ..first.clone()
    };
    op.push(again);
    assert_eq!(
        op.answer_to(9).await,
        Answer::Ack(modelroute_proto::v1::Ack {
            version: 9,
            hash: first.hash.clone()
        })
    );
    assert_eq!(sc.metric("modelroute_config_version", &[]).await, 1.0);
    assert_eq!(
        sc.metric("modelroute_config_reloads_total", &[("result", "applied")])
            .await,
        1.0
    );
}

#[tokio::test]
async fn keys_from_secrets_reach_the_upstream_and_rotate() {
    let upstream = FakeUpstream::start(Reply::Text("from upstream".into())).await;
    let route = |secret_key: &str| {
        route_yaml(
            &format!(
                "    - {{name: up, kind: openai, baseUrl: \"{}\", apiKey: {{secretRef: {{name: llm, key: {secret_key}}}}}}}",
                upstream.base_url()
            ),
            "    - model: chat\n      targets: [{provider: up, model: gpt-x}]",
        )
    };
    let op = FakeOperator::start().await;
    let with_key = |version, key: &str| {
        snapshot(
            version,
            vec![resource(
                "team",
                &route("openai"),
                &[("llm", "openai", key), ("unused", "k", "sk-test-unused")],
            )],
        )
    };
    op.push(with_key(1, "sk-test-rotate-one\n"));
    let mut sc = start(&op).await;
    assert!(matches!(op.answer_to(1).await, Answer::Ack(_)));
    assert_eq!(content(&sc, "chat").await.0, 200);

    op.push(with_key(2, "sk-test-rotate-two"));
    assert!(matches!(op.answer_to(2).await, Answer::Ack(_)));
    assert_eq!(content(&sc, "chat").await.0, 200);
    let auth: Vec<String> = upstream
        .seen()
        .iter()
        .map(|s| s.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(
        auth,
        ["Bearer sk-test-rotate-one", "Bearer sk-test-rotate-two"]
    );

    // A key the snapshot does not carry: refused, naming the Secret and key.
    op.push(snapshot(
        3,
        vec![resource(
            "team",
            &route("missing"),
            &[("llm", "openai", "sk-test-rotate-three")],
        )],
    ));
    let Answer::Nack(nack) = op.answer_to(3).await else {
        panic!("accepted a missing key")
    };
    assert_eq!(
        nack.reason,
        "ModelRoute team/test: spec.providers[0].apiKey.secretRef: Secret llm has no key missing in the snapshot"
    );

    let shown = config(&sc).await.to_string();
    assert!(shown.contains("secretRef"), "{shown}");
    sc.stop().await;
    for key in [
        "sk-test-rotate-one",
        "sk-test-rotate-two",
        "sk-test-rotate-three",
        "sk-test-unused",
    ] {
        assert!(!shown.contains(key), "{key} in /config: {shown}");
        assert!(!logged(key), "{key} was logged");
        assert!(!nack.reason.contains(key));
    }
    assert!(!logged("tok-1"), "the token was logged");
}

#[tokio::test]
async fn the_sidecar_rides_out_an_operator_restart() {
    let op = FakeOperator::start().await;
    let first = snapshot(1, vec![mock_resource(&["alpha"])]);
    op.push(first.clone());
    let mut sc = start(&op).await;
    assert!(matches!(op.answer_to(1).await, Answer::Ack(_)));

    op.stop().await;
    until("the sidecar sees the operator gone", async || {
        sc.metric("modelroute_operator_connected", &[]).await == 0.0
    })
    .await;
    until("a reconnect fails", async || {
        sc.metric("modelroute_operator_connects_total", &[("result", "error")])
            .await
            >= 1.0
    })
    .await;
    assert_eq!(content(&sc, "alpha").await.0, 200, "static stability");

    // The projected token rotated while the operator was away.
    std::fs::write(sc.dir.path().join("token"), "tok-2").unwrap();
    op.restart().await;
    until("the sidecar says Hello again", async || {
        op.hellos().len() == 2
    })
    .await;
    let hellos = op.hellos();
    assert_eq!(
        (hellos[0].token.as_str(), hellos[0].active_hash.as_str()),
        ("tok-1", "")
    );
    assert_eq!(
        (hellos[1].token.as_str(), hellos[1].active_hash.as_str()),
        ("tok-2", first.hash.as_str())
    );
    until("connected again", async || {
        sc.metric("modelroute_operator_connected", &[]).await == 1.0
    })
    .await;
    // The operator did not resend what the sidecar has; the next change arrives.
    assert_eq!(op.answers().len(), 1);
    op.push(snapshot(2, vec![mock_resource(&["alpha", "beta"])]));
    assert!(matches!(op.answer_to(2).await, Answer::Ack(_)));
    assert_eq!(content(&sc, "beta").await.0, 200);
    sc.stop().await;
}

#[tokio::test]
async fn a_refused_sidecar_retries_and_serves_its_bootstrap() {
    let op = FakeOperator::start().await;
    op.refuse(Some((
        Code::Unauthenticated,
        "token audience is not modelroute",
    )));
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.yaml");
    std::fs::write(&bootstrap, mock_route("boot", &["boot"])).unwrap();
    let mut o = options(&dir, op.url());
    o.bootstrap = Some(bootstrap.clone());
    let mut sc = Sidecar::start_operator(dir, o).await;

    // Ready at once, on the bootstrap config.
    let (status, _, _) = get_json(&format!("{}/readyz", sc.admin)).await;
    assert_eq!(status, 200);
    until("three refusals", async || {
        sc.metric(
            "modelroute_operator_connects_total",
            &[("result", "refused")],
        )
        .await
            >= 3.0
    })
    .await;
    assert!(op.hellos().len() >= 3);
    assert_eq!(content(&sc, "boot").await.0, 200);
    let c = config(&sc).await;
    assert_eq!(
        c["source"],
        format!("bootstrap file:{}", bootstrap.display())
    );
    assert_eq!(c["snapshot"], serde_json::Value::Null);
    assert_eq!(sc.metric("modelroute_operator_connected", &[]).await, 0.0);
    assert!(logged("token audience is not modelroute"));

    // Let in: the first snapshot replaces the bootstrap.
    op.push(snapshot(1, vec![mock_resource(&["alpha"])]));
    op.refuse(None);
    assert!(matches!(op.answer_to(1).await, Answer::Ack(_)));
    assert_eq!(content(&sc, "alpha").await.0, 200);
    assert_eq!(content(&sc, "boot").await.0, 404);
    sc.stop().await;
}

/// A CA and a serving certificate for `localhost` it signed: (CA PEM, cert PEM, key PEM).
fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (ca_cert.pem(), leaf.pem(), leaf_key.serialize_pem())
}

#[tokio::test]
async fn tls_trusts_only_the_given_ca() {
    let (ca, cert, key) = tls_material();
    let (other_ca, _, _) = tls_material();
    let op = FakeOperator::start_tls(cert, key).await;
    op.push(snapshot(1, vec![mock_resource(&["alpha"])]));
    let port = op.addr.port();
    let sidecar = async |pod: &str, url: String, ca_pem: &str, server_name: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(&dir, url);
        o.pod_name = pod.into();
        // As injected: the CA in the environment, no file.
        o.ca = Some(CaBundle::Pem(ca_pem.to_string()));
        o.server_name = server_name.map(str::to_string);
        Sidecar::start_operator(dir, o).await
    };

    // Trusting another CA: no session, so no Hello ever reaches the operator.
    let mut stranger = sidecar(
        "stranger",
        format!("https://localhost:{port}"),
        &other_ca,
        None,
    )
    .await;
    until("two failed handshakes", async || {
        stranger
            .metric("modelroute_operator_connects_total", &[("result", "error")])
            .await
            >= 2.0
    })
    .await;
    assert!(op.hellos().iter().all(|h| h.pod_name != "stranger"));
    assert_eq!(
        stranger.metric("modelroute_operator_connected", &[]).await,
        0.0
    );
    stranger.stop().await;

    // The URL's host names the certificate, or --operator-server-name does.
    let mut by_host = sidecar("by-host", format!("https://localhost:{port}"), &ca, None).await;
    let mut by_name = sidecar(
        "by-name",
        format!("https://127.0.0.1:{port}"),
        &ca,
        Some("localhost"),
    )
    .await;
    for sc in [&by_host, &by_name] {
        until("the snapshot applies over TLS", async || {
            config(sc).await["snapshot"]["version"] == 1
        })
        .await;
        assert_eq!(content(sc, "alpha").await.0, 200);
    }
    let pods: Vec<String> = op.hellos().into_iter().map(|h| h.pod_name).collect();
    assert!(pods.contains(&"by-host".to_string()) && pods.contains(&"by-name".to_string()));
    by_host.stop().await;
    by_name.stop().await;
}
