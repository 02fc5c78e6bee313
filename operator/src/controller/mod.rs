//! The status controller: writes each ModelRoute's conditions, counts and last NACK.
//!
//! A kube-runtime [`Controller`] over ModelRoutes, reconciled when a ModelRoute changes and
//! whenever the world (the index's verdicts, the sidecar pods) or the registry (ACKs,
//! NACKs, sessions) changes — those triggers are coalesced to at most one pass every
//! [`MIN_TRIGGER_INTERVAL`]. Only the leader writes status: the controller starts when
//! this replica gains the Lease and stops when it loses it or shuts down.

pub mod conditions;
pub mod reconcile;

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use kube::core::DeserializeGuard;
use kube::runtime::{Controller, controller, watcher};
use kube::{Api, Client};
use modelroute_crds::ModelRoute;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::discovery::Registry;
use crate::index::{ObjectKey, World};
use crate::metrics::Metrics;
pub use reconcile::{FIELD_MANAGER, ReconcileError, error_policy, reconcile};

/// World and registry changes trigger a pass over every ModelRoute at most this often.
pub const MIN_TRIGGER_INTERVAL: Duration = Duration::from_millis(250);

/// How long a stopping controller may finish its running reconciles.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// What reconciles read.
pub struct Context {
    pub client: Client,
    pub world: watch::Receiver<Arc<World>>,
    pub registry: Arc<Registry>,
    pub metrics: Arc<Metrics>,
    /// Consecutive failed reconciles per ModelRoute, for the retry backoff.
    failures: Mutex<HashMap<ObjectKey, u32>>,
}

// === impl Context ===

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("world", &self.world.borrow().version)
            .field("sessions", &self.registry.len())
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: Client,
        world: watch::Receiver<Arc<World>>,
        registry: Arc<Registry>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            world,
            registry,
            metrics,
            failures: Mutex::default(),
        }
    }

    /// Books a failure of `key`; returns how many in a row.
    fn failed(&self, key: &ObjectKey) -> u32 {
        let Ok(mut failures) = self.failures.lock() else {
            return 1;
        };
        let n = failures.entry(key.clone()).or_default();
        *n = n.saturating_add(1);
        *n
    }

    fn succeeded(&self, key: &ObjectKey) {
        if let Ok(mut failures) = self.failures.lock() {
            failures.remove(key);
        }
    }
}

/// Reconciles status while `leader` is true, until shutdown.
pub async fn run(ctx: Context, mut leader: watch::Receiver<bool>, shutdown: CancellationToken) {
    let ctx = Arc::new(ctx);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            gone = async { leader.wait_for(|l| *l).await.is_err() } => if gone { return },
        }
        info!("leading: status controller started");
        let stop = shutdown.child_token();
        let mut running = pin!(control(ctx.clone(), stop.clone()));
        // (`is_err` drops the borrow of the watch before anything else is awaited.)
        let ended = tokio::select! {
            () = &mut running => Ended::ByItself,
            () = shutdown.cancelled() => Ended::Shutdown,
            gone = async { leader.wait_for(|l| !*l).await.is_err() } => {
                if gone { Ended::Shutdown } else { Ended::LostLead }
            }
        };
        if ended != Ended::ByItself {
            // Running reconciles may finish; no new ones start. A controller still waiting
            // for its first list (the API unreachable, say) would wait forever: after
            // STOP_GRACE it is dropped, which cancels whatever it still runs.
            stop.cancel();
            if tokio::time::timeout(STOP_GRACE, &mut running)
                .await
                .is_err()
            {
                debug!("status controller did not stop within {STOP_GRACE:?}; dropped");
            }
        }
        info!("status controller stopped");
        if ended == Ended::Shutdown || shutdown.is_cancelled() {
            return;
        }
        if ended == Ended::ByItself {
            // Not expected (its watch retries forever); do not spin if it keeps ending.
            warn!("status controller ended on its own; restarting");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// Why a controller run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ended {
    ByItself,
    LostLead,
    Shutdown,
}

/// One controller run, until `stop`.
async fn control(ctx: Arc<Context>, stop: CancellationToken) {
    // Backoff counts of an earlier term (and of objects deleted since) start over.
    if let Ok(mut failures) = ctx.failures.lock() {
        failures.clear();
    }
    let api: Api<DeserializeGuard<ModelRoute>> = Api::all(ctx.client.clone());
    let triggers = changes(ctx.world.clone(), ctx.registry.subscribe());
    Controller::new(api, watcher::Config::default())
        .reconcile_all_on(triggers)
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok(_) => {}
                // Logged by error_policy.
                Err(controller::Error::ReconcilerFailed(..)) => {}
                Err(controller::Error::QueueError(e)) => {
                    warn!(error = %e, "ModelRoute watch failed; retrying with backoff");
                }
                Err(e) => debug!(error = %e, "controller"),
            }
        })
        .await;
}

/// One item per burst of world or registry changes, at most one per
/// [`MIN_TRIGGER_INTERVAL`]; ends when either sender is gone.
pub fn changes(
    world: watch::Receiver<Arc<World>>,
    registry: watch::Receiver<u64>,
) -> impl Stream<Item = ()> + Send + 'static {
    futures_util::stream::unfold(
        (world, registry, None::<Instant>),
        |(mut world, mut registry, last)| async move {
            let changed = tokio::select! {
                w = world.changed() => w.is_ok(),
                r = registry.changed() => r.is_ok(),
            };
            if !changed {
                return None;
            }
            if let Some(last) = last {
                sleep_until(last + MIN_TRIGGER_INTERVAL).await;
            }
            // Whatever changed while waiting is covered by this pass.
            world.borrow_and_update();
            registry.borrow_and_update();
            Some(((), (world, registry, Some(Instant::now()))))
        },
    )
}

#[cfg(test)]
mod tests;
