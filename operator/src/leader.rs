//! Leader election through a coordination Lease. (Filled in by the controller work.)

use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::LeaseOptions;
use crate::metrics::Metrics;

/// Holds `leader` true while this replica holds the Lease; releases it on shutdown.
pub async fn run(
    _client: kube::Client,
    _lease: LeaseOptions,
    _leader: watch::Sender<bool>,
    _metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    shutdown.cancelled().await;
}
