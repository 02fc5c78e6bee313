//! The discovery server: one gRPC stream per sidecar, over TLS.
//!
//! A session authenticates the sidecar's hello ([`auth`]), then sends the pod its
//! snapshot ([`snapshot`]) and a new one whenever the world changes in a way that pod can
//! see, and books every ACK and NACK in the [`registry`]. Usage reports go to the budget
//! ledger and are answered with grants on the same stream, as are the pod's rate-limit
//! shares.

pub mod auth;
mod budget;
pub mod registry;
pub mod snapshot;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use modelroute_proto::discovery_server::DiscoveryServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::Server;

use crate::index::World;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
pub use auth::{AUDIENCE, Authenticator, Refusal};
pub use registry::Registry;

/// The largest message a sidecar may send. Hellos, ACKs, NACKs and usage reports are small;
/// this bounds what a hostile client can make the operator buffer.
const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// What every session shares.
#[derive(Clone, Debug)]
pub struct Discovery {
    pub world: watch::Receiver<Arc<World>>,
    pub auth: Authenticator,
    pub registry: Arc<Registry>,
    /// The budget ledger: sessions apply usage reports and answer them with grants.
    pub ledger: Arc<Ledger>,
    pub metrics: Arc<Metrics>,
    /// False while this replica may not serve sidecars (a follower, or a leader whose
    /// ledger is not restored yet): sessions are refused and open ones end, so sidecars
    /// reconnect to the leader.
    pub serving: watch::Receiver<bool>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("gRPC server: {0}")]
    Transport(#[source] tonic::transport::Error),
}

// === impl Discovery ===

impl Discovery {
    /// Serves sessions on `listener` through `tls` until shutdown. The acceptor reads
    /// the current certificate at each handshake, so renewals need no restart.
    pub async fn serve(self, listener: TcpListener, tls: TlsAcceptor) -> Result<(), ServeError> {
        let local: Option<SocketAddr> = listener.local_addr().ok();
        let shutdown = self.shutdown.clone();
        let tasks = self.tasks.clone();
        let service = DiscoveryServer::new(self).max_decoding_message_size(MAX_MESSAGE_BYTES);
        tracing::info!(addr = ?local, "discovery server listening (TLS)");
        let result = Server::builder()
            // Notice sidecars that vanished without closing (node loss, partitions).
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(service)
            .serve_with_incoming_shutdown(
                crate::tls::store::incoming(listener, tls),
                shutdown.cancelled_owned(),
            )
            .await
            .map_err(ServeError::Transport);
        tasks.close();
        tasks.wait().await;
        result
    }
}
