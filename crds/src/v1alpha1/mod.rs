//! `modelroute.dev/v1alpha1`: the first served version of ModelRoute.
//!
//! A ModelRoute names the upstream providers a workload may use and the routes that map the
//! model aliases the application asks for onto those providers.

mod policy;
mod provider;
pub(crate) mod reserved;
mod route;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use policy::{CircuitBreakerPolicy, RetryPolicy, Timeouts};
pub use provider::{
    ApiKeySource, MockFailure, MockFailureMode, MockSpec, ProviderKind, ProviderSpec, SecretKeyRef,
};
pub use route::{FallbackTarget, RouteSpec, WeightedTarget};

/// Providers and the routes over them that the selected workloads may use.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "modelroute.dev",
    version = "v1alpha1",
    kind = "ModelRoute",
    namespaced,
    shortname = "mr",
    status = "ModelRouteStatus",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Routes","type":"integer","jsonPath":".status.routes"}"#,
    printcolumn = r#"{"name":"Synced","type":"integer","description":"Sidecars running the current version","jsonPath":".status.sidecars.inSync"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelRouteSpec {
    /// The pods that get these routes, by label. Absent: every pod with the sidecar in the
    /// ModelRoute's namespace. (Ignored by a sidecar started with `--config`.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<LabelSelector>,
    /// Upstream endpoints, each with a unique name the routes refer to.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub providers: Vec<ProviderSpec>,
    /// Model aliases the application may ask for, each mapped onto provider targets.
    #[serde(default)]
    #[schemars(length(max = 256))]
    pub routes: Vec<RouteSpec>,
    /// Reserved for spend budgets (USD per window and scope). Not yet implemented: a
    /// ModelRoute that sets it is refused rather than silently unenforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "reserved::list")]
    pub budgets: Option<serde_json::Value>,
    /// Reserved for request and token rate limits. Not yet implemented (refused if set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "reserved::list")]
    pub rate_limits: Option<serde_json::Value>,
    /// Reserved for the response cache. Not yet implemented (refused if set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "reserved::object")]
    pub cache: Option<serde_json::Value>,
}

/// What the operator last observed about a ModelRoute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelRouteStatus {
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Invalid` and `Degraded`, with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many routes (model aliases) the ModelRoute defines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<i32>,
    /// The sidecars it selects, and how many of them run its current version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<SidecarCounts>,
    /// Why a sidecar last refused this ModelRoute's snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_nack: Option<String>,
}

/// Sidecars selected by a ModelRoute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarCounts {
    pub selected: i32,
    pub in_sync: i32,
}
