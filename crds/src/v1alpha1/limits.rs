//! Spend budgets, rate limits, and what to do about them when the operator is away.
//!
//! These types only describe the limits; the sidecar enforces them from allowances the
//! operator grants (issue 6). Fields that only make sense together (`scope: header` and
//! `header`, `onExhausted: downgrade` and `downgrade`) are a discriminator plus a member
//! named after its value, the Kubernetes way (as in Gateway API filters), so the schema stays
//! structural; [`BudgetSpec::scope`] and [`BudgetSpec::exhausted`] give the typed view.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::ModelRouteSpec;
use crate::{Usd, Window};

/// A spend limit in USD per window, counted per scope.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.scope) && self.scope == 'header') == has(self.header)", "message": "set header (e.g. x-tenant) exactly when scope is header"},
    {"rule": "(has(self.onExhausted) && self.onExhausted == 'downgrade') == has(self.downgrade)", "message": "set downgrade ({provider, model}) exactly when onExhausted is downgrade"},
    {"rule": "self.window != 'total' || !has(self.scope) || self.scope == 'route'", "message": "a total budget never resets: per pod, header value or user it would keep spend for every value ever seen; use a window such as monthly"}
]))]
pub struct BudgetSpec {
    /// Unique among the budgets of the ModelRoute; names the budget in status, events and
    /// metrics.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The most that may be spent per window and scope value, in USD: a whole number (`500`)
    /// or a decimal string with at most 6 decimals (`"12.50"`), more than 0.
    pub amount_usd: Usd,
    /// When spend starts again from zero, on the UTC calendar.
    pub window: Window,
    /// What spend is counted per. Default `route`.
    #[serde(default)]
    pub scope: ScopeKind,
    /// With `scope: header`: the request header whose value is counted separately, e.g.
    /// `x-tenant` (case-insensitive; kept lowercase).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lowercase"
    )]
    #[schemars(length(min = 1, max = 256))]
    pub header: Option<String>,
    /// The model aliases of this ModelRoute whose spend counts. Default: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub routes: Vec<String>,
    /// Percentages of the amount (ascending, 1-100) that raise an event and a metric when
    /// spend crosses them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(range(min = 1, max = 100)))]
    pub thresholds: Vec<u32>,
    /// What happens to requests once the budget is spent. Default `reject`.
    #[serde(default)]
    pub on_exhausted: OnExhausted,
    /// With `onExhausted: downgrade`: where the requests go instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downgrade: Option<DowngradeTarget>,
}

/// A limit on requests and tokens per minute, counted per scope.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.requestsPerMinute) || has(self.tokensPerMinute)", "message": "set requestsPerMinute, tokensPerMinute or both"},
    {"rule": "(has(self.scope) && self.scope == 'header') == has(self.header)", "message": "set header (e.g. x-tenant) exactly when scope is header"}
]))]
pub struct RateLimitSpec {
    /// Unique among the rate limits of the ModelRoute.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// Requests per minute, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u32>,
    /// Tokens (prompt and completion) per minute, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u32>,
    /// What is counted per. Default `route`.
    #[serde(default)]
    pub scope: ScopeKind,
    /// With `scope: header`: the request header whose value is counted separately.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lowercase"
    )]
    #[schemars(length(min = 1, max = 256))]
    pub header: Option<String>,
    /// The model aliases of this ModelRoute it applies to. Default: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub routes: Vec<String>,
}

/// What a budget or rate limit counts separately.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScopeKind {
    /// One count for the ModelRoute: every pod it selects, together.
    #[default]
    Route,
    /// One count per pod.
    Pod,
    /// One count per value of the request header named by `header` (requests without it
    /// share one count).
    Header,
    /// One count per OpenAI `user` field of the request (requests without it share one
    /// count).
    User,
}

/// A scope with its header: the typed view of `scope` + `header`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope<'a> {
    Route,
    Pod,
    /// The lowercase header name.
    Header(&'a str),
    User,
}

/// What happens once a budget is spent.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnExhausted {
    /// Refuse with 429, an OpenAI-shaped error of type `budget_exceeded` saying when the
    /// window resets.
    #[default]
    Reject,
    /// Send the requests to the `downgrade` target instead.
    Downgrade,
}

/// The typed view of `onExhausted` + `downgrade`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted<'a> {
    Reject,
    Downgrade(&'a DowngradeTarget),
}

/// A cheaper provider and model for the requests of a spent budget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DowngradeTarget {
    /// Name of a provider of this ModelRoute.
    pub provider: String,
    /// The model name sent upstream.
    pub model: String,
}

/// What a sidecar does about budgets while it cannot reach the operator, once the allowance
/// it was granted is spent.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
// No CEL rule here (`validate` checks capUsd against the mode): a 1.20-1.22 API server's
// server-side apply refuses `x-kubernetes-validations` anywhere but under array `items`,
// which its typed schema leaves open (see crds/tests/crd_sync.rs).
pub struct ControlPlaneLoss {
    /// Default `failOpen`.
    #[serde(default)]
    pub mode: ControlPlaneLossMode,
    /// With `failOpen`: the most each sidecar may spend per budget and window (all scope
    /// values together) beyond its allowance while the operator is unreachable, in USD (a
    /// whole number or a decimal string). Default: 1% of the budget's `amountUsd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap_usd: Option<Usd>,
}

/// See [`ControlPlaneLoss`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ControlPlaneLossMode {
    /// Keep serving, up to the cap, so an operator outage does not become an application
    /// outage.
    #[default]
    FailOpen,
    /// Refuse what the budgets cover until the operator is back.
    FailClosed,
}

/// The default `capUsd` of `failOpen`, in percent of each budget's amount.
pub const DEFAULT_LOSS_CAP_PERCENT: u32 = 1;

// === impl BudgetSpec ===

impl BudgetSpec {
    /// The scope with its header; `None` only for `scope: header` without a header, which
    /// [`crate::validate`] refuses.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope(self.scope, self.header.as_deref())
    }

    /// What happens once spent; `None` only for `onExhausted: downgrade` without a target,
    /// which [`crate::validate`] refuses.
    pub fn exhausted(&self) -> Option<Exhausted<'_>> {
        match (self.on_exhausted, &self.downgrade) {
            (OnExhausted::Reject, _) => Some(Exhausted::Reject),
            (OnExhausted::Downgrade, Some(target)) => Some(Exhausted::Downgrade(target)),
            (OnExhausted::Downgrade, None) => None,
        }
    }

    /// Whether spend on model alias `route` counts against this budget.
    pub fn covers(&self, route: &str) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| r == route)
    }
}

// === impl RateLimitSpec ===

impl RateLimitSpec {
    /// The scope with its header; `None` only for `scope: header` without a header, which
    /// [`crate::validate`] refuses.
    pub fn scope(&self) -> Option<Scope<'_>> {
        scope(self.scope, self.header.as_deref())
    }

    /// Whether requests for model alias `route` count against this limit.
    pub fn covers(&self, route: &str) -> bool {
        self.routes.is_empty() || self.routes.iter().any(|r| r == route)
    }
}

// === impl ControlPlaneLoss ===

impl ControlPlaneLoss {
    /// What each sidecar may spend on a budget of `amount` per window beyond its allowance
    /// while the operator is unreachable: `capUsd`, 1% of `amount` by default, nothing when
    /// failing closed.
    pub fn cap(&self, amount: Usd) -> Usd {
        match self.mode {
            ControlPlaneLossMode::FailClosed => Usd::ZERO,
            ControlPlaneLossMode::FailOpen => self
                .cap_usd
                .unwrap_or_else(|| amount.percent(DEFAULT_LOSS_CAP_PERCENT)),
        }
    }
}

// === impl ModelRouteSpec ===

impl ModelRouteSpec {
    /// [`ControlPlaneLoss::cap`] of `budget` under this spec's `onControlPlaneLoss` (or its
    /// default).
    pub fn control_plane_loss_cap(&self, budget: &BudgetSpec) -> Usd {
        match &self.on_control_plane_loss {
            Some(loss) => loss.cap(budget.amount_usd),
            None => ControlPlaneLoss::default().cap(budget.amount_usd),
        }
    }
}

fn scope(kind: ScopeKind, header: Option<&str>) -> Option<Scope<'_>> {
    Some(match kind {
        ScopeKind::Route => Scope::Route,
        ScopeKind::Pod => Scope::Pod,
        ScopeKind::Header => Scope::Header(header?),
        ScopeKind::User => Scope::User,
    })
}

/// Header names are case-insensitive: keep them lowercase, as HTTP/2 sends them.
fn lowercase<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let name = Option::<String>::deserialize(d)?;
    Ok(name.map(|n| n.to_ascii_lowercase()))
}
