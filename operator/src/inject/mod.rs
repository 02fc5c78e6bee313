//! Sidecar injection: what the admission webhook adds to a Pod. Pure: a Pod and the
//! settings in; a JSON Patch, a reason to leave the pod alone, or a refusal out.
//!
//! The patch is written op by op against the pod as the API server sent it (never a
//! diff of a re-serialized copy): fields this operator's Kubernetes types do not know
//! (a newer API server) can then never be dropped or moved.

pub mod config;
pub mod overrides;
pub mod sidecar;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde::Serialize;
use serde_json::{Value, json};

pub use config::InjectConfig;
use overrides::{BadAnnotation, INJECT, STATUS};

/// The label the operator's pod watch selects on (only injected pods matter to it).
pub const INJECTED_LABEL: &str = "modelroute.dev/injected";
/// `kubectl logs/exec` pick this container when none is named.
const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";

/// Which webhook entry called: the pod opts in by annotation, or its namespace is
/// labelled for injection (then the pod may opt out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Annotated,
    Namespace,
}

/// Everything injection needs besides the pod.
#[derive(Clone, Debug)]
pub struct Injector {
    pub config: InjectConfig,
    /// Native sidecar or regular container (decided once from the server version).
    pub native: bool,
    /// Never injected: the operator's own namespace.
    pub operator_namespace: String,
}

/// Why a pod is left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    NotRequested,
    OptedOut,
    AlreadyInjected,
    ExcludedNamespace,
    /// A host-network pod shares the node's loopback: every such pod's sidecar would
    /// fight over one port, and other pods' apps could reach it.
    HostNetwork,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotRequested => "not_requested",
            Self::OptedOut => "opted_out",
            Self::AlreadyInjected => "already_injected",
            Self::ExcludedNamespace => "excluded_namespace",
            Self::HostNetwork => "host_network",
        }
    }
}

/// What to do with a pod.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Skip(Skip),
    Inject {
        patch: json_patch::Patch,
        /// Shown by kubectl to whoever created the pod.
        warnings: Vec<String>,
    },
}

/// Why a pod that asked for injection is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("modelroute cannot inject this pod: {0}")]
    BadAnnotation(#[from] BadAnnotation),
    #[error("modelroute cannot inject this pod: it already has a {kind} named {name:?}")]
    NameTaken { kind: &'static str, name: String },
    #[error("modelroute cannot inject this pod: the operator has no CA to give the sidecar yet")]
    NoCa,
}

impl Injector {
    /// Decides about `pod`, created in `namespace`, and builds the patch.
    pub fn inject(
        &self,
        pod: &Pod,
        namespace: &str,
        scope: Scope,
        ca_pem: Option<&str>,
    ) -> Result<Outcome, Refusal> {
        let empty = BTreeMap::new();
        let annotations = pod.metadata.annotations.as_ref().unwrap_or(&empty);
        let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
        let asked = annotations
            .get(INJECT)
            .map(|v| v.trim().to_ascii_lowercase());
        match (scope, asked.as_deref()) {
            (_, Some("false")) => return Ok(Outcome::Skip(Skip::OptedOut)),
            (Scope::Annotated, Some("true")) | (Scope::Namespace, _) => {}
            (Scope::Annotated, _) => return Ok(Outcome::Skip(Skip::NotRequested)),
        }
        if namespace == self.operator_namespace
            || self
                .config
                .exclude_namespaces
                .iter()
                .any(|n| n == namespace)
        {
            return Ok(Outcome::Skip(Skip::ExcludedNamespace));
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let ours = |c: &Container| c.name == sidecar::CONTAINER;
        if annotations.contains_key(STATUS)
            || labels.contains_key(INJECTED_LABEL)
            || spec.containers.iter().any(ours)
            || spec.init_containers.iter().flatten().any(ours)
        {
            return Ok(Outcome::Skip(Skip::AlreadyInjected));
        }
        if spec.host_network == Some(true) {
            return Ok(Outcome::Skip(Skip::HostNetwork));
        }
        let ca_pem = ca_pem.ok_or(Refusal::NoCa)?;
        let effective = overrides::effective(annotations, &self.config)?;
        let volumes = sidecar::volumes(&self.config);
        for volume in &volumes {
            if spec.volumes.iter().flatten().any(|v| v.name == volume.name) {
                return Err(Refusal::NameTaken {
                    kind: "volume",
                    name: volume.name.clone(),
                });
            }
        }

        let mut ops = Ops::default();
        // Metadata first: the operator finds injected pods by this label.
        ops.put(
            "/metadata/labels",
            pod.metadata.labels.is_some(),
            INJECTED_LABEL,
            "true",
        );
        ops.put(
            "/metadata/annotations",
            pod.metadata.annotations.is_some(),
            STATUS,
            "injected",
        );
        if !self.native
            && !annotations.contains_key(DEFAULT_CONTAINER)
            && let Some(first) = spec.containers.first()
        {
            // The sidecar goes first (started first); keep `kubectl logs` on the app.
            ops.put(
                "/metadata/annotations",
                true,
                DEFAULT_CONTAINER,
                &first.name,
            );
        }
        let mut exists = spec.volumes.is_some();
        for volume in &volumes {
            ops.append("/spec/volumes", exists, volume);
            exists = true;
        }
        // Env before the sidecar is inserted: these paths use the pod's own indices.
        let wanted = effective.set_env.variables(effective.port);
        for (i, app) in spec.containers.iter().enumerate() {
            let has = |name: &str| app.env.iter().flatten().any(|e| e.name == name);
            let path = format!("/spec/containers/{i}/env");
            let mut exists = app.env.is_some();
            for (name, value) in &wanted {
                if !has(name) {
                    ops.append(&path, exists, &sidecar::value_env(name, value));
                    exists = true;
                }
            }
        }
        let container = sidecar::container(&self.config, &effective, Some(ca_pem), self.native);
        if self.native {
            // First init container: the app's own init containers can use it too.
            ops.insert_first(
                "/spec/initContainers",
                spec.init_containers.is_some(),
                &container,
            );
        } else {
            ops.insert_first("/spec/containers", true, &container);
        }
        let warnings = effective
            .unknown
            .iter()
            .map(|a| format!("modelroute: unknown annotation {a} ignored"))
            .collect();
        Ok(Outcome::Inject {
            patch: ops.into_patch(),
            warnings,
        })
    }
}

/// JSON Patch operations under construction.
#[derive(Default)]
struct Ops(Vec<Value>);

impl Ops {
    /// Sets `key` in the map at `map` (creating the map when it does not exist).
    fn put(&mut self, map: &str, exists: bool, key: &str, value: &str) {
        if exists {
            self.add(format!("{map}/{}", escape(key)), json!(value));
        } else {
            self.add(map.to_string(), json!({ key: value }));
        }
    }

    /// Appends `item` to the list at `list`.
    fn append(&mut self, list: &str, exists: bool, item: &impl Serialize) {
        let item = to_value(item);
        if exists {
            self.add(format!("{list}/-"), item);
        } else {
            self.add(list.to_string(), Value::Array(vec![item]));
        }
    }

    /// Puts `item` at the front of the list at `list`.
    fn insert_first(&mut self, list: &str, exists: bool, item: &impl Serialize) {
        let item = to_value(item);
        if exists {
            self.add(format!("{list}/0"), item);
        } else {
            self.add(list.to_string(), Value::Array(vec![item]));
        }
    }

    fn add(&mut self, path: String, value: Value) {
        self.0
            .push(json!({"op": "add", "path": path, "value": value}));
    }

    fn into_patch(self) -> json_patch::Patch {
        // Every op is an `add` with a string path: always a valid patch.
        serde_json::from_value(Value::Array(self.0)).unwrap_or(json_patch::Patch(Vec::new()))
    }
}

fn to_value(item: &impl Serialize) -> Value {
    // Kubernetes types serialize infallibly (no maps with non-string keys).
    serde_json::to_value(item).unwrap_or(Value::Null)
}

/// RFC 6901: `~` and `/` in a key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}
