//! The Kubernetes source: reflectors over ModelRoutes, Secrets and sidecar pods.
//! (Filled in by the controller work.)

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::index::Index;

/// Keeps `index` in step with the API; sets `synced` once every reflector has listed.
pub async fn run(
    _client: kube::Client,
    _index: Arc<Index>,
    _synced: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    shutdown.cancelled().await;
}
