//! The status controller: writes each ModelRoute's conditions, counts and last NACK.
//! (Filled in by the controller work.)

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::discovery::Registry;
use crate::index::World;
use crate::metrics::Metrics;

/// What reconciles read.
#[derive(Clone, Debug)]
pub struct Context {
    pub world: watch::Receiver<Arc<World>>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
}

/// Reconciles status while `leader` is true, until shutdown.
pub async fn run(
    _client: kube::Client,
    _ctx: Context,
    _leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    shutdown.cancelled().await;
}
