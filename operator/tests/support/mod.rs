//! An in-process discovery server on loopback (TLS with a fresh CA), a fake API server
//! that answers TokenReviews, and a sidecar-side client that speaks the protocol.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use modelroute_operator::discovery::{Authenticator, Discovery, Registry};
use modelroute_operator::index::{Index, ObjectKey, SecretMap, SidecarPod};
use modelroute_operator::ledger::Ledger;
use modelroute_operator::metrics::Metrics;
use modelroute_operator::tls;
use modelroute_proto::discovery_client::DiscoveryClient;
use modelroute_proto::{
    Ack, Grants, Hello, Nack, OperatorMessage, SidecarMessage, Snapshot, operator_message,
    sidecar_message,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Status, Streaming};

pub struct TestOperator {
    pub addr: std::net::SocketAddr,
    pub ca_pem: String,
    pub index: Index,
    pub registry: Arc<Registry>,
    /// A persistent ledger nothing persists: a test says when a write "happened" with
    /// [`TestOperator::flush`].
    pub ledger: Arc<Ledger>,
    pub metrics: Arc<Metrics>,
    pub serving: watch::Sender<bool>,
    shutdown: CancellationToken,
}

impl TestOperator {
    pub async fn start(auth: Authenticator) -> Self {
        let generated = tls::generate(&["localhost".to_string()]).unwrap();
        let (index, world) = Index::new();
        let registry = Arc::new(Registry::default());
        let metrics = Arc::new(Metrics::new());
        let ledger = Arc::new(Ledger::new(true, metrics.clone()));
        let shutdown = CancellationToken::new();
        let (serving, serving_rx) = watch::channel(true);
        let discovery = Discovery {
            world,
            auth,
            registry: registry.clone(),
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            serving: serving_rx,
            shutdown: shutdown.clone(),
            tasks: TaskTracker::new(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let certs = tls::CertStore::new(generated.serving.clone()).unwrap();
        let acceptor = certs.acceptor(&[b"h2"]).unwrap();
        tokio::spawn(async move {
            discovery.serve(listener, acceptor).await.unwrap();
        });
        Self {
            addr,
            ca_pem: generated.authority.cert_pem,
            index,
            registry,
            ledger,
            metrics,
            serving,
            shutdown,
        }
    }

    /// Everything the ledger applied so far becomes durable, as if written; sessions then
    /// acknowledge it. Returns what a store would have written.
    pub fn flush(&self) -> Option<modelroute_operator::ledger::book::Flush> {
        let flush = self
            .ledger
            .with(|b| b.begin_flush(false, std::time::SystemTime::now()));
        if let Some(f) = &flush {
            self.ledger.with(|b| b.flushed(f.epoch, Ok(())));
            self.ledger.changed();
        }
        flush
    }

    pub async fn channel(&self) -> Channel {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name("localhost");
        Channel::from_shared(format!("https://localhost:{}", self.addr.port()))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// Opens a session with `hello`; `Err` is the status the operator refused it with.
    pub async fn connect(&self, hello: Hello) -> Result<Session, Status> {
        let (tx, rx) = mpsc::channel(8);
        tx.send(SidecarMessage {
            message: Some(sidecar_message::Message::Hello(hello)),
        })
        .await
        .unwrap();
        let mut client = DiscoveryClient::new(self.channel().await);
        let inbound = client.session(ReceiverStream::new(rx)).await?.into_inner();
        Ok(Session { tx, inbound })
    }

    pub fn update(
        &self,
        yaml: &str,
        secrets: &SecretMap,
        pods: BTreeMap<ObjectKey, SidecarPod>,
    ) -> u64 {
        let routes = modelroute_crds::from_yaml_documents(yaml).unwrap();
        let version = self.index.update(&routes, secrets, pods);
        // What the ledger task does on each world change.
        let world = self.index.current();
        self.ledger.with(|b| {
            let served = world
                .routes
                .values()
                .map(|p| (&p.key, p.uid.as_deref(), &p.spec));
            b.sync(served, std::time::SystemTime::now());
        });
        version
    }
}

impl Drop for TestOperator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

#[derive(Debug)]
pub struct Session {
    pub tx: mpsc::Sender<SidecarMessage>,
    pub inbound: Streaming<OperatorMessage>,
}

impl Session {
    /// The next snapshot, or the status the stream ended with.
    pub async fn next(&mut self) -> Result<Option<Snapshot>, Status> {
        let message = tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
            .await
            .expect("no message within 10s")?;
        Ok(message.map(|m| match m.message {
            Some(operator_message::Message::Snapshot(s)) => s,
            Some(operator_message::Message::Grants(g)) => panic!("expected a snapshot, got {g:?}"),
            None => panic!("empty operator message"),
        }))
    }

    /// The next message of any kind.
    pub async fn message(&mut self) -> OperatorMessage {
        tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
            .await
            .expect("no message within 10s")
            .expect("stream failed")
            .expect("stream ended")
    }

    /// The next message, which must be a Grants.
    pub async fn grants(&mut self) -> Grants {
        match self.message().await.message {
            Some(operator_message::Message::Grants(g)) => g,
            other => panic!("expected grants, got {other:?}"),
        }
    }

    /// Whether a message arrives within `within`.
    pub async fn quiet(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, self.inbound.message())
            .await
            .is_err()
    }

    pub async fn snapshot(&mut self) -> Snapshot {
        self.next()
            .await
            .expect("stream failed")
            .expect("stream ended")
    }

    pub async fn ack(&self, s: &Snapshot) {
        self.send(sidecar_message::Message::Ack(Ack {
            version: s.version,
            hash: s.hash.clone(),
        }))
        .await;
    }

    pub async fn nack(&self, s: &Snapshot, reason: &str) {
        self.send(sidecar_message::Message::Nack(Nack {
            version: s.version,
            hash: s.hash.clone(),
            reason: reason.to_string(),
        }))
        .await;
    }

    pub async fn send(&self, m: sidecar_message::Message) {
        self.tx
            .send(SidecarMessage { message: Some(m) })
            .await
            .unwrap();
    }
}

pub fn hello(token: &str, namespace: &str, pod: &str) -> Hello {
    Hello {
        token: token.to_string(),
        sidecar_version: "test".to_string(),
        capabilities: vec!["snapshot.v1".to_string()],
        pod_namespace: namespace.to_string(),
        pod_name: pod.to_string(),
        pod_labels: HashMap::new(),
        active_hash: String::new(),
    }
}

/// What the fake API server says about a token.
#[derive(Clone, Debug)]
pub enum Review {
    /// Authenticated, audience `modelroute`, bound to this pod.
    Pod {
        namespace: &'static str,
        name: &'static str,
        uid: &'static str,
    },
    /// Authenticated for another audience only.
    OtherAudience,
    /// Authenticated, but not a pod-bound token.
    NoPod,
}

/// A kube client whose API server answers TokenReviews from `tokens` (anything else:
/// not authenticated) and counts them.
pub fn token_review_client(tokens: HashMap<&'static str, Review>) -> kube::Client {
    let tokens = Arc::new(tokens);
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let tokens = tokens.clone();
        async move {
            assert_eq!(req.method(), http::Method::POST);
            assert_eq!(
                req.uri().path(),
                "/apis/authentication.k8s.io/v1/tokenreviews"
            );
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let review: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(review["spec"]["audiences"], json!(["modelroute"]));
            let token = review["spec"]["token"].as_str().unwrap_or_default();
            let status = match tokens.get(token) {
                Some(Review::Pod {
                    namespace,
                    name,
                    uid,
                }) => json!({
                    "authenticated": true,
                    "audiences": ["modelroute"],
                    "user": {
                        "username": format!("system:serviceaccount:{namespace}:default"),
                        "extra": {
                            "authentication.kubernetes.io/pod-name": [name],
                            "authentication.kubernetes.io/pod-uid": [uid],
                        },
                    },
                }),
                Some(Review::OtherAudience) => json!({
                    "authenticated": true,
                    "audiences": ["https://kubernetes.default.svc"],
                    "user": {"username": "system:serviceaccount:shop:default"},
                }),
                Some(Review::NoPod) => json!({
                    "authenticated": true,
                    "audiences": ["modelroute"],
                    "user": {"username": "system:serviceaccount:shop:default"},
                }),
                None => json!({"authenticated": false, "error": "invalid bearer token"}),
            };
            let answer = json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "metadata": {"creationTimestamp": null},
                "spec": review["spec"],
                "status": status,
            });
            let body = kube::client::Body::from(serde_json::to_vec(&answer).unwrap());
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(201)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    kube::Client::new(service, "default")
}

pub fn secrets(entries: &[(&str, &str, &str, &str)]) -> SecretMap {
    let mut map = SecretMap::default();
    for (ns, name, key, value) in entries {
        map.0
            .entry(ObjectKey::new(*ns, *name))
            .or_default()
            .insert(key.to_string(), Bytes::from(value.to_string()));
    }
    map
}

pub fn pod(uid: &str, labels: &[(&str, &str)]) -> SidecarPod {
    SidecarPod {
        uid: uid.to_string(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// `(namespace/name, secret values)` of each resource in a snapshot.
pub fn contents(s: &Snapshot) -> Vec<(String, Vec<String>)> {
    s.resources
        .iter()
        .map(|r| {
            (
                format!("{}/{}", r.namespace, r.name),
                r.secrets
                    .iter()
                    .map(|v| String::from_utf8_lossy(&v.value).into_owned())
                    .collect(),
            )
        })
        .collect()
}
