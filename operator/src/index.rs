//! The index: every ModelRoute the operator knows, judged once, as one immutable [`World`].
//!
//! Sources (the Kubernetes API or `--routes-dir`) hand the index their full current state;
//! the index validates each ModelRoute, resolves the Secret keys it names, and publishes
//! a new `World` on a watch channel only when something a sidecar or the status could
//! see has changed. Discovery sessions cut per-pod snapshots from it; the controller
//! reads the verdicts for status.
//!
//! A ModelRoute that turns invalid (or loses its Secret) keeps its last good version in
//! the world: sidecars go on serving it while the status says what is wrong.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use tokio::time::Instant;

use bytes::Bytes;
use kube::core::{Selector, SelectorExt};
use modelroute_crds::{ModelRoute, ModelRouteSpec, validate};
use modelroute_proto::{Resource, SecretValue};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

/// The namespace of a ModelRoute read from a file that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Labels of a pod.
pub type Labels = BTreeMap<String, String>;

/// `namespace/name` of a ModelRoute or a pod.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

/// Everything the operator currently serves, at one version.
#[derive(Debug)]
pub struct World {
    /// Increases with every change; snapshots carry it.
    pub version: u64,
    /// When this version was published (the start of push latency).
    pub changed_at: Instant,
    /// The ModelRoutes being pushed: the current version of each valid one, the last good
    /// version of each that turned invalid.
    pub routes: BTreeMap<ObjectKey, Arc<Published>>,
    /// What the operator thinks of every ModelRoute it knows.
    pub verdicts: BTreeMap<ObjectKey, Verdict>,
    /// Pods running a sidecar, from the Kubernetes API (empty for the file source, whose
    /// sidecars are trusted to say who they are).
    pub pods: BTreeMap<ObjectKey, SidecarPod>,
}

/// A ModelRoute as sidecars receive it.
#[derive(Debug)]
pub struct Published {
    pub key: ObjectKey,
    pub generation: i64,
    /// `None` selects every sidecar in the namespace.
    pub selector: Option<Selector>,
    /// The message sent in snapshots (spec JSON and resolved keys).
    pub resource: Resource,
    /// SHA-256 over everything in `resource`: equal digests, equal content.
    pub digest: [u8; 32],
    /// The spec, parsed (the ledger reads budgets and rate limits from it).
    pub spec: ModelRouteSpec,
    /// `metadata.uid`, when the source has one (Events refer to the object by it).
    pub uid: Option<String>,
}

/// The judgement of one ModelRoute at one generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub generation: i64,
    /// `None` when the ModelRoute is valid and its keys resolved.
    pub problem: Option<Problem>,
    /// The generation sidecars receive (the last good one when `problem` is set).
    pub serving: Option<i64>,
    /// How many routes (model aliases) the current generation defines.
    pub routes: usize,
}

/// Why a ModelRoute is not pushed as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: Reason,
    /// Every problem, one per line, each naming the field.
    pub message: String,
}

/// A ModelRoute the source has but cannot decode (e.g. written for a newer CRD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub key: ObjectKey,
    pub generation: i64,
    pub message: String,
}

/// A machine-readable reason (a condition's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The object does not decode as this operator's ModelRoute.
    Unreadable,
    InvalidSpec,
    InvalidSelector,
    SecretNotFound,
}

/// A pod that runs a sidecar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SidecarPod {
    pub uid: String,
    pub labels: Labels,
}

/// Where a source finds the Secrets that `apiKey.secretRef` names.
pub trait SecretStore {
    /// The value of `key` in Secret `name` of `namespace`.
    fn get(&self, namespace: &str, name: &str, key: &str) -> Result<Bytes, SecretMissing>;
}

/// A Secret, or a key in it, that does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretMissing {
    Secret,
    Key,
}

/// Judges ModelRoutes and publishes [`World`]s.
#[derive(Debug)]
pub struct Index {
    tx: watch::Sender<Arc<World>>,
}

// === impl ObjectKey ===

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of(route: &ModelRoute) -> Self {
        Self::new(
            route
                .metadata
                .namespace
                .as_deref()
                .unwrap_or(DEFAULT_NAMESPACE),
            route.metadata.name.as_deref().unwrap_or_default(),
        )
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

// === impl World ===

impl World {
    fn empty() -> Self {
        Self {
            version: 0,
            changed_at: Instant::now(),
            routes: BTreeMap::new(),
            verdicts: BTreeMap::new(),
            pods: BTreeMap::new(),
        }
    }

    /// The ModelRoutes a sidecar in `namespace` with `labels` receives, in key order.
    pub fn select<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a Labels,
    ) -> impl Iterator<Item = &'a Arc<Published>> + 'a {
        self.routes
            .values()
            .filter(move |p| p.key.namespace == namespace && p.selects(labels))
    }

    /// Sidecar pods (known from the API) that `route` selects.
    pub fn pods_selected_by<'a>(
        &'a self,
        route: &'a Published,
    ) -> impl Iterator<Item = &'a ObjectKey> + 'a {
        self.pods
            .iter()
            .filter(move |(k, pod)| {
                k.namespace == route.key.namespace && route.selects(&pod.labels)
            })
            .map(|(k, _)| k)
    }
}

// === impl Published ===

impl Published {
    pub fn selects(&self, labels: &Labels) -> bool {
        self.selector.as_ref().is_none_or(|s| s.matches(labels))
    }
}

// === impl Reason ===

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "Unreadable",
            Self::InvalidSpec => "InvalidSpec",
            Self::InvalidSelector => "InvalidSelector",
            Self::SecretNotFound => "SecretNotFound",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Index ===

impl Index {
    pub fn new() -> (Self, watch::Receiver<Arc<World>>) {
        let (tx, rx) = watch::channel(Arc::new(World::empty()));
        (Self { tx }, rx)
    }

    /// Another receiver of the published worlds.
    pub fn subscribe(&self) -> watch::Receiver<Arc<World>> {
        self.tx.subscribe()
    }

    /// The world now.
    pub fn current(&self) -> Arc<World> {
        self.tx.borrow().clone()
    }

    /// Replaces the whole state with `routes` (every ModelRoute the source has), `secrets`
    /// and `pods`, and publishes a new world if anything changed. Returns its version.
    pub fn update<'a>(
        &self,
        routes: impl IntoIterator<Item = &'a ModelRoute>,
        secrets: &dyn SecretStore,
        pods: BTreeMap<ObjectKey, SidecarPod>,
    ) -> u64 {
        self.update_with_unreadable(routes, &[], secrets, pods)
    }

    /// [`Index::update`], plus ModelRoutes that exist but do not decode: each keeps its last
    /// good version serving (a CRD upgraded before the operator must not empty sidecars).
    pub fn update_with_unreadable<'a>(
        &self,
        routes: impl IntoIterator<Item = &'a ModelRoute>,
        unreadable: &[Unreadable],
        secrets: &dyn SecretStore,
        pods: BTreeMap<ObjectKey, SidecarPod>,
    ) -> u64 {
        let old = self.current();
        let mut next = BTreeMap::new();
        let mut verdicts = BTreeMap::new();
        for route in routes {
            let key = ObjectKey::of(route);
            let generation = route.metadata.generation.unwrap_or(0);
            let count = route.spec.routes.len();
            let uid = route.metadata.uid.clone();
            let (published, problem) = match publish(&key, generation, uid, &route.spec, secrets) {
                Ok(p) => (Some(reuse(old.routes.get(&key), p)), None),
                // The last good version, if any, keeps serving.
                Err(problem) => (old.routes.get(&key).cloned(), Some(problem)),
            };
            let serving = published.as_ref().map(|p| p.generation);
            if let Some(p) = published {
                next.insert(key.clone(), p);
            }
            verdicts.insert(
                key,
                Verdict {
                    generation,
                    problem,
                    serving,
                    routes: count,
                },
            );
        }
        for u in unreadable {
            let kept = old.routes.get(&u.key).cloned();
            let serving = kept.as_ref().map(|p| p.generation);
            if let Some(p) = kept {
                next.insert(u.key.clone(), p);
            }
            let routes = old.verdicts.get(&u.key).map_or(0, |v| v.routes);
            verdicts.insert(
                u.key.clone(),
                Verdict {
                    generation: u.generation,
                    problem: Some(Problem {
                        reason: Reason::Unreadable,
                        message: u.message.clone(),
                    }),
                    serving,
                    routes,
                },
            );
        }
        let unchanged = verdicts == old.verdicts
            && pods == old.pods
            && next.len() == old.routes.len()
            && next
                .iter()
                .zip(&old.routes)
                .all(|((k, a), (j, b))| k == j && Arc::ptr_eq(a, b));
        if unchanged {
            return old.version;
        }
        let version = old.version + 1;
        self.tx.send_replace(Arc::new(World {
            version,
            changed_at: Instant::now(),
            routes: next,
            verdicts,
            pods,
        }));
        version
    }
}

/// The old `Arc` when nothing changed, so unchanged routes compare by pointer.
fn reuse(old: Option<&Arc<Published>>, new: Published) -> Arc<Published> {
    match old {
        Some(old)
            if old.digest == new.digest
                && old.generation == new.generation
                && old.uid == new.uid =>
        {
            old.clone()
        }
        _ => Arc::new(new),
    }
}

/// Validates one ModelRoute and resolves its keys.
fn publish(
    key: &ObjectKey,
    generation: i64,
    uid: Option<String>,
    spec: &ModelRouteSpec,
    secrets: &dyn SecretStore,
) -> Result<Published, Problem> {
    let invalid = validate(spec);
    if !invalid.is_empty() {
        let message = invalid
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        return Err(Problem {
            reason: Reason::InvalidSpec,
            message,
        });
    }
    let selector = match &spec.pod_selector {
        None => None,
        Some(s) => Some(Selector::try_from(s.clone()).map_err(|e| Problem {
            reason: Reason::InvalidSelector,
            message: format!("spec.podSelector: {e}"),
        })?),
    };
    let mut values = Vec::new();
    let mut missing = Vec::new();
    for (i, provider) in spec.providers.iter().enumerate() {
        let Some(r) = provider
            .api_key
            .as_ref()
            .and_then(|k| k.secret_ref.as_ref())
        else {
            continue;
        };
        if values
            .iter()
            .any(|v: &SecretValue| v.name == r.name && v.key == r.key)
        {
            continue;
        }
        match secrets.get(&key.namespace, &r.name, &r.key) {
            Ok(value) => values.push(SecretValue {
                name: r.name.clone(),
                key: r.key.clone(),
                value,
            }),
            Err(SecretMissing::Secret) => missing.push(format!(
                "spec.providers[{i}].apiKey.secretRef: Secret {:?} not found in namespace {:?}",
                r.name, key.namespace
            )),
            Err(SecretMissing::Key) => missing.push(format!(
                "spec.providers[{i}].apiKey.secretRef: Secret {:?} has no key {:?}",
                r.name, r.key
            )),
        }
    }
    if !missing.is_empty() {
        return Err(Problem {
            reason: Reason::SecretNotFound,
            message: missing.join("\n"),
        });
    }
    let spec_json = serde_json::to_vec(spec).map_err(|e| Problem {
        reason: Reason::InvalidSpec,
        message: format!("spec: cannot encode: {e}"),
    })?;
    let resource = Resource {
        namespace: key.namespace.clone(),
        name: key.name.clone(),
        generation,
        api_version: "modelroute.dev/v1alpha1".to_string(),
        spec_json: spec_json.into(),
        secrets: values,
    };
    let digest = digest(&resource);
    Ok(Published {
        key: key.clone(),
        generation,
        selector,
        resource,
        digest,
        spec: spec.clone(),
        uid,
    })
}

/// Length-prefixed fields, so no two different resources hash alike.
fn digest(r: &Resource) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(r.namespace.as_bytes());
    field(r.name.as_bytes());
    field(&r.generation.to_le_bytes());
    field(r.api_version.as_bytes());
    field(&r.spec_json);
    for s in &r.secrets {
        field(s.name.as_bytes());
        field(s.key.as_bytes());
        field(&s.value);
    }
    h.finalize().into()
}

/// Secrets as plain maps: tests and the file source.
#[derive(Debug, Default)]
pub struct SecretMap(pub HashMap<ObjectKey, BTreeMap<String, Bytes>>);

// === impl SecretMap ===

impl SecretStore for SecretMap {
    fn get(&self, namespace: &str, name: &str, key: &str) -> Result<Bytes, SecretMissing> {
        let secret = self
            .0
            .get(&ObjectKey::new(namespace, name))
            .ok_or(SecretMissing::Secret)?;
        secret.get(key).cloned().ok_or(SecretMissing::Key)
    }
}

#[cfg(test)]
mod tests;
