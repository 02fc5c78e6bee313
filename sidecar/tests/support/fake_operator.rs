//! A scripted operator: a real tonic `Discovery` server on 127.0.0.1:0 (plain or TLS). It
//! records every Hello, Ack and Nack, pushes snapshots to open sessions (and the current one
//! to each new session whose Hello does not already name it, as the real operator does),
//! refuses sessions with a status on demand, and can go away and come back on its port.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use modelroute_proto::v1::discovery_server::{Discovery, DiscoveryServer};
use modelroute_proto::v1::{
    Ack, Hello, Nack, OperatorMessage, Resource, SecretValue, SidecarMessage, Snapshot,
    operator_message, sidecar_message,
};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status, Streaming};

type Outbound = mpsc::Sender<Result<OperatorMessage, Status>>;

/// What the sidecar answered to a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    Ack(Ack),
    Nack(Nack),
}

#[derive(Default)]
struct State {
    hellos: Mutex<Vec<Hello>>,
    answers: Mutex<Vec<Answer>>,
    current: Mutex<Option<Snapshot>>,
    refuse: Mutex<Option<(Code, String)>>,
    sessions: Mutex<Vec<Outbound>>,
}

/// The fake operator; stopped when dropped with the test's runtime.
pub struct FakeOperator {
    pub addr: SocketAddr,
    state: Arc<State>,
    identity: Option<(String, String)>,
    server: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

#[derive(Clone)]
struct Service {
    state: Arc<State>,
}

impl FakeOperator {
    /// Plain HTTP/2 (the sidecar's `http://` mode).
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// TLS with this PEM certificate chain and key.
    pub async fn start_tls(cert_pem: String, key_pem: String) -> Self {
        Self::start_with(Some((cert_pem, key_pem))).await
    }

    async fn start_with(identity: Option<(String, String)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let op = Self {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(State::default()),
            identity,
            server: Mutex::new(None),
        };
        op.serve(listener);
        op
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn serve(&self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let mut builder = Server::builder();
        if let Some((cert, key)) = &self.identity {
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(cert, key)))
                .unwrap();
        }
        let service = DiscoveryServer::new(Service {
            state: self.state.clone(),
        });
        let signal = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let _ = builder
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
                .await;
        });
        *self.server.lock().unwrap() = Some((stop, task));
    }

    /// Goes away: ends every session, stops listening, and returns once the port is closed.
    pub async fn stop(&self) {
        let server = self.server.lock().unwrap().take();
        self.state.sessions.lock().unwrap().clear();
        if let Some((stop, task)) = server {
            stop.cancel();
            if tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .is_err()
            {
                panic!("the fake operator did not stop");
            }
        }
    }

    /// Comes back on the same port, with the same recordings and current snapshot.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Makes `snapshot` current and sends it to every open session.
    pub fn push(&self, snapshot: Snapshot) {
        *self.state.current.lock().unwrap() = Some(snapshot.clone());
        let message = OperatorMessage {
            message: Some(operator_message::Message::Snapshot(snapshot)),
        };
        self.state
            .sessions
            .lock()
            .unwrap()
            .retain(|s| s.try_send(Ok(message.clone())).is_ok());
    }

    /// New sessions are answered with this status (after their Hello is recorded).
    pub fn refuse(&self, refusal: Option<(Code, &str)>) {
        *self.state.refuse.lock().unwrap() = refusal.map(|(c, m)| (c, m.to_string()));
    }

    pub fn hellos(&self) -> Vec<Hello> {
        self.state.hellos.lock().unwrap().clone()
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.state.answers.lock().unwrap().clone()
    }

    /// Waits (up to 20 s) for the answer to snapshot `version`.
    pub async fn answer_to(&self, version: u64) -> Answer {
        let found = || {
            self.answers().into_iter().find(|a| match a {
                Answer::Ack(a) => a.version == version,
                Answer::Nack(n) => n.version == version,
            })
        };
        for _ in 0..1000 {
            if let Some(a) = found() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no answer to snapshot {version}; answers: {:?}",
            self.answers()
        );
    }
}

#[tonic::async_trait]
impl Discovery for Service {
    type SessionStream = ReceiverStream<Result<OperatorMessage, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<SidecarMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        // Like the real operator: read the Hello, then accept or refuse.
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("no Hello"))?;
        let Some(sidecar_message::Message::Hello(hello)) = first.message else {
            return Err(Status::invalid_argument(
                "the first message must be a Hello",
            ));
        };
        self.state.hellos.lock().unwrap().push(hello.clone());
        if let Some((code, message)) = self.state.refuse.lock().unwrap().clone() {
            return Err(Status::new(code, message));
        }
        let (tx, rx) = mpsc::channel(16);
        let current = self.state.current.lock().unwrap().clone();
        if let Some(s) = current.filter(|s| s.hash != hello.active_hash) {
            let message = OperatorMessage {
                message: Some(operator_message::Message::Snapshot(s)),
            };
            tx.try_send(Ok(message)).unwrap();
        }
        self.state.sessions.lock().unwrap().push(tx);
        let state = self.state.clone();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                let answer = match m.message {
                    Some(sidecar_message::Message::Ack(a)) => Answer::Ack(a),
                    Some(sidecar_message::Message::Nack(n)) => Answer::Nack(n),
                    other => panic!("unexpected message after the Hello: {other:?}"),
                };
                state.answers.lock().unwrap().push(answer);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// One ModelRoute (a YAML document) of `namespace` as the operator sends it, with the Secret
/// values its providers name.
pub fn resource(namespace: &str, yaml: &str, secrets: &[(&str, &str, &str)]) -> Resource {
    let doc = modelroute_crds::from_yaml_documents(yaml)
        .unwrap()
        .pop()
        .unwrap();
    Resource {
        namespace: namespace.to_string(),
        name: doc.metadata.name.clone().unwrap(),
        generation: 1,
        api_version: "modelroute.dev/v1alpha1".into(),
        spec_json: serde_json::to_vec(&doc.spec).unwrap().into(),
        secrets: secrets
            .iter()
            .map(|(name, key, value)| SecretValue {
                name: name.to_string(),
                key: key.to_string(),
                value: value.as_bytes().to_vec().into(),
            })
            .collect(),
    }
}

/// A snapshot with its content hash (hex SHA-256 over every field, lengths included).
pub fn snapshot(version: u64, resources: Vec<Resource>) -> Snapshot {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    for r in &resources {
        field(r.namespace.as_bytes());
        field(r.name.as_bytes());
        field(&r.generation.to_be_bytes());
        field(r.api_version.as_bytes());
        field(&r.spec_json);
        for s in &r.secrets {
            field(s.name.as_bytes());
            field(s.key.as_bytes());
            field(&s.value);
        }
    }
    let hash = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Snapshot {
        version,
        hash,
        resources,
        traceparent: String::new(),
    }
}
