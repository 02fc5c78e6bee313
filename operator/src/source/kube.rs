//! The Kubernetes source: reflectors over ModelRoutes, Secrets and sidecar pods.
//!
//! Three watches, each feeding an in-memory store:
//! - ModelRoutes in every namespace, read through [`DeserializeGuard`] so one object the
//!   operator cannot read is logged and skipped instead of stopping the watch;
//! - Secrets of `type: Opaque` in every namespace (provider keys must live in Opaque
//!   Secrets; service-account tokens, TLS and registry Secrets are never read);
//! - pods labelled [`INJECTED_LABEL`]`=true` (set by the injection webhook), metadata only.
//!
//! Bursts of changes are coalesced (the stream must be quiet for [`QUIET`], at most
//! [`MAX_DELAY`] after the first change), then the index is given the full state of all
//! three stores. Nothing reaches the index before all three have listed once, so sidecars
//! are never served a partial world; `synced` turns true with that first update.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{BoxStream, SelectAll};
use futures_util::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};
use modelroute_crds::ModelRoute;
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::index::{Index, ObjectKey, SecretMissing, SecretStore, SidecarPod, Unreadable};

/// The label the injection webhook puts on every pod it gives a sidecar.
pub const INJECTED_LABEL: &str = "modelroute.dev/injected";

/// The only Secret type read for provider keys.
pub const SECRET_TYPE: &str = "Opaque";

/// A burst of changes ends when the watches were quiet this long...
pub const QUIET: Duration = Duration::from_millis(10);
/// ...or this long after its first change, whichever comes first.
pub const MAX_DELAY: Duration = Duration::from_millis(50);

/// Who was seen to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Watched {
    Routes = 0,
    Secrets = 1,
    Pods = 2,
}

/// One watch event, reduced to what the loop needs.
#[derive(Debug)]
enum Seen {
    /// The store changed (an object applied or deleted, or a relist completed).
    Changed(Watched),
    /// A (re)list completed: the store now holds everything.
    Listed(Watched),
    /// A list or watch page arrived; the store swaps at `Listed`.
    Nothing,
    /// The watch failed; it retries with backoff.
    Failed(Watched, watcher::Error),
}

/// The Secret store as the index's [`SecretStore`]: `data` only (`stringData` is
/// write-only; the API server folds it into `data`).
#[derive(Debug, Clone, Copy)]
pub struct ReflectedSecrets<'a>(pub &'a Store<Secret>);

// === impl ReflectedSecrets ===

impl SecretStore for ReflectedSecrets<'_> {
    fn get(&self, namespace: &str, name: &str, key: &str) -> Result<Bytes, SecretMissing> {
        let secret = self
            .0
            .get(&ObjectRef::new(name).within(namespace))
            .ok_or(SecretMissing::Secret)?;
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .ok_or(SecretMissing::Key)?;
        Ok(Bytes::copy_from_slice(&value.0))
    }
}

// === impl Seen ===

impl Seen {
    fn of<K>(watched: Watched, event: Result<watcher::Event<K>, watcher::Error>) -> Self {
        match event {
            Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => Self::Changed(watched),
            Ok(watcher::Event::InitDone) => Self::Listed(watched),
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => Self::Nothing,
            Err(e) => Self::Failed(watched, e),
        }
    }
}

/// Keeps `index` in step with the API; sets `synced` once every reflector has listed.
pub async fn run(
    client: kube::Client,
    index: Arc<Index>,
    synced: watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let (routes, routes_writer) = reflector::store::<DeserializeGuard<ModelRoute>>();
    let (secrets, secrets_writer) = reflector::store::<Secret>();
    let (pods, pods_writer) = reflector::store::<PartialObjectMeta<Pod>>();

    let route_events = reflector::reflector(
        routes_writer,
        watcher(
            Api::<DeserializeGuard<ModelRoute>>::all(client.clone()),
            watcher::Config::default(),
        )
        .default_backoff(),
    )
    .map(|event| {
        warn_unreadable(&event);
        Seen::of(Watched::Routes, event)
    });
    let secret_events = reflector::reflector(
        secrets_writer,
        watcher(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default().fields(&format!("type={SECRET_TYPE}")),
        )
        .modify(slim_secret)
        .default_backoff(),
    )
    .map(|event| Seen::of(Watched::Secrets, event));
    let pod_events = reflector::reflector(
        pods_writer,
        // `PartialObjectMeta`: metadata-only lists and watches.
        watcher(
            Api::<PartialObjectMeta<Pod>>::all(client),
            watcher::Config::default().labels(&format!("{INJECTED_LABEL}=true")),
        )
        .modify(slim_pod)
        .default_backoff(),
    )
    .map(|event| Seen::of(Watched::Pods, event));

    let mut events: SelectAll<BoxStream<'static, Seen>> = SelectAll::new();
    events.push(route_events.boxed());
    events.push(secret_events.boxed());
    events.push(pod_events.boxed());

    let stores = Stores {
        routes,
        secrets,
        pods,
    };
    follow(events, &stores, &index, &synced, &shutdown).await;
}

/// The three reflector stores.
struct Stores {
    routes: Store<DeserializeGuard<ModelRoute>>,
    secrets: Store<Secret>,
    pods: Store<PartialObjectMeta<Pod>>,
}

// === impl Stores ===

impl Stores {
    /// Hands the index the full state; returns the world version.
    fn publish(&self, index: &Index) -> u64 {
        let routes = self.routes.state();
        let valid = routes.iter().filter_map(|r| r.0.as_ref().ok());
        let unreadable: Vec<Unreadable> = routes
            .iter()
            .filter_map(|r| r.0.as_ref().err())
            .map(|invalid| Unreadable {
                key: ObjectKey::new(
                    invalid.metadata.namespace.as_deref().unwrap_or_default(),
                    invalid.metadata.name.as_deref().unwrap_or_default(),
                ),
                generation: invalid.metadata.generation.unwrap_or(0),
                message: format!("this operator cannot read it: {}", invalid.error),
            })
            .collect();
        index.update_with_unreadable(
            valid,
            &unreadable,
            &ReflectedSecrets(&self.secrets),
            sidecar_pods(&self.pods.state()),
        )
    }
}

/// The loop: coalesce bursts, publish once every store has listed.
async fn follow(
    mut events: impl Stream<Item = Seen> + Unpin,
    stores: &Stores,
    index: &Index,
    synced: &watch::Sender<bool>,
    shutdown: &CancellationToken,
) {
    let mut listed = Flags::default();
    let mut failing = Flags::default();
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            e = events.next() => e,
        };
        let Some(first) = first else { return };
        let mut dirty = note(first, &mut listed, &mut failing);
        let deadline = Instant::now() + MAX_DELAY;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep(QUIET) => break,
                () = sleep_until(deadline) => break,
                e = events.next() => match e {
                    Some(e) => dirty |= note(e, &mut listed, &mut failing),
                    None => return,
                },
            }
        }
        if !dirty || !listed.all() {
            continue;
        }
        let version = stores.publish(index);
        if !*synced.borrow() {
            info!(
                modelroutes = stores.routes.len(),
                secrets = stores.secrets.len(),
                sidecar_pods = stores.pods.len(),
                version,
                "kubernetes source synced"
            );
            synced.send_replace(true);
        } else {
            debug!(version, "kubernetes source published");
        }
    }
}

/// One flag per watch.
#[derive(Debug, Default)]
struct Flags([bool; 3]);

// === impl Flags ===

impl Flags {
    fn all(&self) -> bool {
        self.0.iter().all(|f| *f)
    }

    /// Sets the flag of `w`; returns its old value.
    fn set(&mut self, w: Watched, value: bool) -> bool {
        std::mem::replace(&mut self.0[w as usize], value)
    }
}

/// Books one event; true when a store changed. `listed`: stores that completed a list;
/// `failing`: watches whose last event was an error (logged at warn once, then at debug
/// until the watch recovers).
fn note(seen: Seen, listed: &mut Flags, failing: &mut Flags) -> bool {
    match seen {
        Seen::Nothing => false,
        Seen::Changed(w) => {
            failing.set(w, false);
            true
        }
        Seen::Listed(w) => {
            failing.set(w, false);
            listed.set(w, true);
            true
        }
        Seen::Failed(w, e) => {
            if failing.set(w, true) {
                debug!(watch = ?w, error = %e, "watch still failing; retrying with backoff");
            } else {
                warn!(watch = ?w, error = %e, "watch failed; retrying with backoff");
            }
            false
        }
    }
}

/// Logs a ModelRoute the operator cannot read (its last good version keeps serving).
fn warn_unreadable(event: &Result<watcher::Event<DeserializeGuard<ModelRoute>>, watcher::Error>) {
    if let Ok(watcher::Event::Apply(guard) | watcher::Event::InitApply(guard)) = event
        && let Err(invalid) = &guard.0
    {
        warn!(
            namespace = invalid.metadata.namespace.as_deref().unwrap_or_default(),
            name = invalid.metadata.name.as_deref().unwrap_or_default(),
            error = %invalid.error,
            "ModelRoute cannot be read by this operator; its last good version keeps serving"
        );
    }
}

/// Keeps a Secret's `data` and identity only. `kubectl apply` stores the whole object,
/// values included, in an annotation; managed fields are large. Neither is needed.
fn slim_secret(secret: &mut Secret) {
    secret.metadata.managed_fields = None;
    secret.metadata.annotations = None;
    secret.string_data = None;
}

/// A sidecar pod needs its uid and labels.
fn slim_pod(pod: &mut PartialObjectMeta<Pod>) {
    pod.metadata.managed_fields = None;
    pod.metadata.annotations = None;
    pod.metadata.owner_references = None;
}

/// `namespace/name -> {uid, labels}` of every pod in the store.
pub fn sidecar_pods<K: Resource>(pods: &[Arc<K>]) -> BTreeMap<ObjectKey, SidecarPod> {
    pods.iter()
        .filter_map(|pod| {
            let namespace = pod.namespace()?;
            let key = ObjectKey::new(namespace, pod.name_any());
            let sidecar = SidecarPod {
                uid: pod.meta().uid.clone().unwrap_or_default(),
                labels: pod.labels().clone(),
            };
            Some((key, sidecar))
        })
        .collect()
}

#[cfg(test)]
mod tests;
