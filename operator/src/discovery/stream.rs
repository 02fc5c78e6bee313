//! One sidecar's session: hello, then snapshots out and ACK/NACKs in, usage reports in and
//! grants out, until either side goes away.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::Instant;

use futures_util::Stream;
use modelroute_proto::discovery_server::Discovery as DiscoveryRpc;
use modelroute_proto::{Hello, OperatorMessage, SidecarMessage, operator_message, sidecar_message};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::Discovery;
use super::auth::Identity;
use super::budget::Budgeting;
use super::registry::Contents;
use super::snapshot::{self, Cut};
use crate::index::{Labels, World};

/// A sidecar that connects must say hello within this time.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// NACK reasons are kept (and shown in status) up to this length.
const MAX_REASON_CHARS: usize = 2048;

type Outbound = Pin<Box<dyn Stream<Item = Result<OperatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl DiscoveryRpc for Discovery {
    type SessionStream = Outbound;

    async fn session(
        &self,
        request: Request<Streaming<SidecarMessage>>,
    ) -> Result<Response<Outbound>, Status> {
        if !*self.serving.borrow() {
            return Err(Status::unavailable(
                "this operator replica does not serve sidecars now (not the leader, or still reading its ledger); reconnect",
            ));
        }
        let mut inbound = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => return Err(self.protocol_error("no_hello", "no hello within 10s")),
            Ok(Err(status)) => {
                self.metrics.session_error("decode");
                return Err(status);
            }
            Ok(Ok(Some(SidecarMessage {
                message: Some(sidecar_message::Message::Hello(hello)),
            }))) => hello,
            Ok(Ok(_)) => {
                return Err(self.protocol_error("no_hello", "the first message must be a hello"));
            }
        };
        let world = self.world.borrow().clone();
        let identity = match self.auth.authenticate(&hello, &world).await {
            Ok(identity) => identity,
            Err(refusal) => {
                self.metrics.refused(refusal.label());
                warn!(reason = %refusal, "sidecar refused");
                return Err(refusal.status());
            }
        };
        info!(
            pod = %identity.pod,
            version = %hello.sidecar_version,
            "sidecar connected"
        );
        let (tx, rx) = mpsc::channel(2);
        let session = Session {
            discovery: self.clone(),
            identity,
            tx,
        };
        self.tasks.spawn(session.run(inbound, hello));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

impl Discovery {
    fn protocol_error(&self, reason: &'static str, message: &str) -> Status {
        self.metrics.session_error(reason);
        Status::invalid_argument(message)
    }
}

fn shutting_down() -> Status {
    Status::unavailable("the operator is shutting down; reconnect")
}

struct Session {
    discovery: Discovery,
    identity: Identity,
    tx: mpsc::Sender<Result<OperatorMessage, Status>>,
}

/// The last snapshot sent and when the change it carries was seen.
struct Sent {
    cut: Cut,
    changed_at: Option<Instant>,
}

// === impl Session ===

impl Session {
    async fn run(self, mut inbound: Streaming<SidecarMessage>, hello: Hello) {
        let d = &self.discovery;
        let id = d.registry.connect(self.identity.pod.clone());
        d.metrics.session_opened();
        let started = Instant::now();
        let mut world_rx = d.world.clone();
        let mut serving = d.serving.clone();
        let mut ledger_rx = d.ledger.subscribe();
        let mut membership = d.registry.subscribe_membership();
        let mut budgeting = Budgeting::new(self.identity.pod.clone());
        let mut receives = Contents::default();
        let mut labels = Labels::new();
        // The sidecar already runs this: no need to send it again.
        let mut active_hash = hello.active_hash;
        let mut sent: Option<Sent> = None;
        let end: Result<(), Status> = loop {
            let world = world_rx.borrow_and_update().clone();
            let cut = self.cut(&world, &mut labels);
            if cut.routes != receives {
                receives = cut.routes.clone();
                d.registry.receives(id, receives.clone());
            }
            if cut.snapshot.hash == active_hash {
                if sent.is_none() {
                    // A reconnect with nothing new: it is in sync as it stands.
                    d.registry
                        .acked(id, active_hash.clone(), cut.routes.clone());
                    sent = Some(Sent {
                        cut,
                        changed_at: None,
                    });
                }
            } else if sent
                .as_ref()
                .is_none_or(|s| s.cut.snapshot.hash != cut.snapshot.hash)
            {
                // The sidecar's apply continues this span's trace (the snapshot carries it).
                let span = tracing::info_span!(
                    target: modelroute_otel::TARGET,
                    "push snapshot",
                    otel.kind = "producer",
                    modelroute.sidecar = %self.identity.pod,
                    modelroute.snapshot.version = cut.snapshot.version,
                );
                let mut snapshot = cut.snapshot.clone();
                snapshot.traceparent = modelroute_otel::traceparent(&span);
                let message = OperatorMessage {
                    message: Some(operator_message::Message::Snapshot(snapshot)),
                };
                if self.tx.send(Ok(message)).await.is_err() {
                    break Ok(());
                }
                d.metrics.snapshot_sent();
                // Only changes seen during the session measure push latency; the first
                // snapshot of a (re)connect measures the connect.
                let changed_at = Some(world.changed_at).filter(|t| *t >= started);
                active_hash = String::new();
                sent = Some(Sent { cut, changed_at });
            }
            // After the snapshot that holds the limits.
            membership.borrow_and_update();
            if let Some(shares) = budgeting.shares(&world, &receives, &d.registry)
                && self.tx.send(Ok(shares)).await.is_err()
            {
                break Ok(());
            }
            tokio::select! {
                () = d.shutdown.cancelled() => break Err(shutting_down()),
                changed = serving.changed() => {
                    if d.shutdown.is_cancelled() {
                        break Err(shutting_down());
                    }
                    if changed.is_err() || !*serving.borrow() {
                        break Err(Status::unavailable("this operator replica stepped down; reconnect"));
                    }
                }
                changed = world_rx.changed() => {
                    if changed.is_err() {
                        break Ok(());
                    }
                }
                // The number of sidecars sharing a rate limit changed.
                changed = membership.changed(), if budgeting.has_shares() => {
                    if changed.is_err() {
                        break Ok(());
                    }
                }
                changed = ledger_rx.changed() => {
                    if changed.is_err() {
                        break Ok(());
                    }
                    if let Some(push) = budgeting.pushes(&d.ledger)
                        && self.tx.send(Ok(push)).await.is_err()
                    {
                        break Ok(());
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(SidecarMessage { message: Some(sidecar_message::Message::Usage(usage)) })) => {
                        let answer = budgeting.on_usage(&d.ledger, &usage);
                        if self.tx.send(Ok(answer)).await.is_err() {
                            break Ok(());
                        }
                    }
                    Ok(Some(m)) => if let Err(status) = self.on_message(id, m, sent.as_ref()) {
                        break Err(status);
                    },
                    Ok(None) => break Ok(()),
                    Err(status) => {
                        d.metrics.session_error("decode");
                        debug!(pod = %self.identity.pod, %status, "session stream failed");
                        break Ok(());
                    }
                },
            }
        };
        if let Err(status) = end {
            let _ = self.tx.send(Err(status)).await;
        }
        d.registry.disconnect(id);
        d.metrics.session_closed();
        info!(pod = %self.identity.pod, "sidecar disconnected");
    }

    /// The pod's snapshot in `world`. Labels come from the API when it knows the pod; a
    /// pod it forgot keeps the labels it last had.
    fn cut(&self, world: &World, labels: &mut Labels) -> Cut {
        let pod = &self.identity.pod;
        if let Some(claimed) = &self.identity.claimed_labels {
            *labels = claimed.clone();
        } else if let Some(known) = world.pods.get(pod) {
            labels.clone_from(&known.labels);
        }
        snapshot::cut(world, &pod.namespace, labels)
    }

    fn on_message(
        &self,
        id: u64,
        message: SidecarMessage,
        sent: Option<&Sent>,
    ) -> Result<(), Status> {
        let d = &self.discovery;
        let pod = &self.identity.pod;
        match message.message {
            Some(sidecar_message::Message::Ack(ack)) => match sent {
                Some(s) if s.cut.snapshot.hash == ack.hash => {
                    d.registry.acked(id, ack.hash, s.cut.routes.clone());
                    d.metrics.ack(s.changed_at.map(|t| t.elapsed()));
                    debug!(%pod, version = ack.version, "snapshot acknowledged");
                }
                // An ACK that crossed a newer snapshot on the wire.
                _ => debug!(%pod, version = ack.version, "ACK of an older snapshot"),
            },
            Some(sidecar_message::Message::Nack(nack)) => {
                let reason: String = nack.reason.chars().take(MAX_REASON_CHARS).collect();
                d.metrics.nack();
                warn!(%pod, version = nack.version, %reason, "sidecar refused a snapshot");
                if let Some(s) = sent.filter(|s| s.cut.snapshot.hash == nack.hash) {
                    d.registry.nacked(id, s.cut.routes.clone(), reason);
                }
            }
            // Handled by the session loop, which answers it.
            Some(sidecar_message::Message::Usage(_)) => {}
            Some(sidecar_message::Message::Hello(_)) => {
                return Err(d.protocol_error("hello_again", "hello sent twice on one stream"));
            }
            None => {
                return Err(d.protocol_error("empty", "a message with no content"));
            }
        }
        Ok(())
    }
}
