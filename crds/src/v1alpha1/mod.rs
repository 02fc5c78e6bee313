//! `modelroute.dev/v1alpha1`: the first served version of ModelRoute.
//!
//! A ModelRoute names the upstream providers a workload may use and the routes that map the
//! model aliases the application asks for onto those providers, with what they may spend
//! and how fast they may call.

mod limits;
mod policy;
mod pricing;
mod provider;
mod route;
mod routing;
mod spend;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use limits::{
    BudgetSpec, ControlPlaneLoss, ControlPlaneLossMode, DEFAULT_LOSS_CAP_PERCENT, DowngradeTarget,
    Exhausted, OnExhausted, RateLimitSpec, Scope, ScopeKind,
};
pub use policy::{CircuitBreakerPolicy, RetryPolicy, Timeouts};
pub use pricing::{ANY_MODEL, PriceOverride};
pub use provider::{
    ApiKeySource, MockFailure, MockFailureMode, MockSpec, ProviderKind, ProviderRateLimit,
    ProviderSpec, SecretKeyRef,
};
pub use route::{FallbackTarget, RouteSpec, WeightedTarget};
pub use routing::{
    CacheMode, Hedge, PromptAffinity, ResponseCache, RouteRule, RuleMatch, Sticky, Strategy,
    StrategyKind, StringMatch, TokenRange,
};
pub use spend::{BudgetStatus, STATUS_SCOPE_VALUES, STATUS_SCOPE_VALUES_PREVIOUS};

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
    /// Prices (USD per 1M tokens) that replace the built-in price table for models of this
    /// ModelRoute's providers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub pricing: Vec<PriceOverride>,
    /// Spend limits in USD per window (hourly to monthly on the UTC calendar, or total) and
    /// scope (the route, each pod, each value of a header, each `user`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub budgets: Vec<BudgetSpec>,
    /// Requests and tokens per minute, per scope like budgets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub rate_limits: Vec<RateLimitSpec>,
    /// What sidecars do about budgets while the operator is unreachable, once their
    /// allowance is spent. Default: fail open, up to 1% of each budget per sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_control_plane_loss: Option<ControlPlaneLoss>,
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
    /// Spend per budget, window and scope value: what the operator's ledger recorded and
    /// granted (written by the leader about once a second while spend changes; the ledger
    /// reads it back when a new leader starts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetStatus>,
}

/// Sidecars selected by a ModelRoute.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SidecarCounts {
    pub selected: i32,
    pub in_sync: i32,
}
