//! One reconcile: compute the ModelRoute's status from the world and the registry, and
//! write it with server-side apply when it differs from what the object has.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Api, Resource};
use modelroute_crds::{ModelRoute, ModelRouteStatus};
use tracing::{Instrument as _, debug, info, warn};

use super::Context;
use super::conditions::{self, Observed, READY};
use crate::index::ObjectKey;

/// The one field manager of every status write.
pub const FIELD_MANAGER: &str = "modelroute-operator";

/// How soon to look again when the index has not judged this generation yet.
pub const CATCH_UP: Duration = Duration::from_secs(1);

/// A periodic look even without triggers (changes trigger reconciles; this is a safety net).
pub const RESYNC: Duration = Duration::from_secs(300);

/// Retry delays after failed writes: doubling from the first, capped at the second.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("writing the status of {key}: {source}")]
    WriteStatus {
        key: ObjectKey,
        #[source]
        source: kube::Error,
    },
}

/// Brings one ModelRoute's status up to date.
pub async fn reconcile(
    route: Arc<DeserializeGuard<ModelRoute>>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let key = key_of(route.meta());
    let span = tracing::info_span!(
        target: modelroute_otel::TARGET,
        "reconcile ModelRoute",
        k8s.namespace.name = %key.namespace,
        modelroute.name = %key.name,
        otel.status_code = tracing::field::Empty,
    );
    let result = write_status(&key, &route, &ctx)
        .instrument(span.clone())
        .await;
    if result.is_err() {
        span.record("otel.status_code", "ERROR");
    }
    ctx.metrics.reconciled(result.is_ok());
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// Logs the failure and retries with a per-object exponential backoff.
pub fn error_policy(
    route: Arc<DeserializeGuard<ModelRoute>>,
    error: &ReconcileError,
    ctx: Arc<Context>,
) -> Action {
    let key = key_of(route.meta());
    let failures = ctx.failed(&key);
    let delay = retry_delay(failures);
    warn!(modelroute = %key, error = %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// `RETRY_FIRST * 2^(failures-1)`, at most `RETRY_MAX`.
pub fn retry_delay(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1));
    RETRY_FIRST.saturating_mul(factor).min(RETRY_MAX)
}

async fn write_status(
    key: &ObjectKey,
    route: &DeserializeGuard<ModelRoute>,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let route = match &route.0 {
        Ok(route) => route,
        Err(invalid) => {
            // The source logged it at warn; its status cannot be read to compare with, so
            // it is left alone until the object changes.
            debug!(modelroute = %key, error = %invalid.error, "unreadable ModelRoute; no status");
            return Ok(Action::await_change());
        }
    };
    let generation = route.metadata.generation.unwrap_or(0);
    let world = ctx.world.borrow().clone();
    let Some(verdict) = world
        .verdicts
        .get(key)
        .filter(|v| v.generation == generation)
    else {
        debug!(modelroute = %key, generation, "index has not judged this generation yet");
        return Ok(Action::requeue(CATCH_UP));
    };
    let selected = world
        .routes
        .get(key)
        .map_or(0, |published| world.pods_selected_by(published).count());
    let sync = ctx.registry.sync_of(key, generation);
    let current = route.status.as_ref();
    let desired = conditions::desired(
        &Observed {
            generation,
            verdict,
            selected,
            sync: &sync,
        },
        current,
        Timestamp::now(),
    );
    // `budgets` belongs to the ledger's field manager: left out of this comparison and of
    // this apply (which therefore leaves it alone).
    let unchanged = current.is_some_and(|c| {
        let mut c = c.clone();
        c.budgets.clear();
        c == desired
    });
    if unchanged {
        return Ok(Action::requeue(RESYNC));
    }

    let api: Api<DeserializeGuard<ModelRoute>> =
        Api::namespaced(ctx.client.clone(), &key.namespace);
    let patch = serde_json::json!({
        "apiVersion": ModelRoute::api_version(&()),
        "kind": ModelRoute::kind(&()),
        "status": desired,
    });
    api.patch_status(
        &key.name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| ReconcileError::WriteStatus {
        key: key.clone(),
        source,
    })?;
    log_write(key, current, &desired);
    Ok(Action::requeue(RESYNC))
}

/// Info when `Ready` changed, debug for other updates.
fn log_write(key: &ObjectKey, old: Option<&ModelRouteStatus>, new: &ModelRouteStatus) {
    let ready = |s: &ModelRouteStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    let now = ready(new);
    let (status, reason) = now.clone().unwrap_or_default();
    if old.and_then(ready) != now {
        info!(modelroute = %key, ready = %status, %reason, generation = new.observed_generation, "status written");
    } else {
        debug!(modelroute = %key, ready = %status, %reason, "status updated");
    }
}

/// `namespace/name` from an object's metadata.
pub(crate) fn key_of(meta: &kube::core::ObjectMeta) -> ObjectKey {
    ObjectKey::new(
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}
