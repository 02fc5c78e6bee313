//! `status.budgets`: what the operator's ledger recorded per budget, window and scope value.
//!
//! The leader writes it (server-side apply, its own field manager) about once a second while
//! spend changes, and reads it back when it starts leading, so it is both the user's view
//! and the ledger's durable state in a cluster (docs/budgets.md).
//!
//! Per-scope budgets (one count per pod, header value or `user`) can have many values, and a
//! status must stay far below the API server's object size limit: per budget, the current
//! window lists its [`STATUS_SCOPE_VALUES`] most-spent values and the previous window
//! [`STATUS_SCOPE_VALUES_PREVIOUS`]; the rest of each window is summed in one entry that
//! has `others` (how many values it sums) and no `scopeValue`.
//!
//! Amounts are decimal strings exact to the nano-USD. No field is ever an empty string or a
//! zero integer: Kubernetes 1.20's server-side apply stores `""` as null (which the schema
//! refuses), so an empty scope value is left out rather than written.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{NanoUsd, WindowId};

/// Scope values listed per budget for the current window; the rest are summed.
pub const STATUS_SCOPE_VALUES: usize = 100;
/// Scope values listed per budget for the previous window; the rest are summed.
pub const STATUS_SCOPE_VALUES_PREVIOUS: usize = 10;

/// Spend of one budget in one window, for one scope value (or summed over `others`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// The budget (`spec.budgets[].name`).
    pub name: String,
    /// The window, e.g. `2026-12` (monthly) or `2026-12-07` (daily).
    pub window: WindowId,
    /// The pod, header value or `user` this entry counts. Absent for scope `route`, for
    /// requests without the header or `user`, and for the `others` entry.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    #[schemars(length(max = 256))]
    pub scope_value: String,
    /// Set on the one entry that sums the scope values not listed: how many it sums. Its
    /// `spentUsd`, `heldUsd` and `remainingUsd` are sums; `limitUsd` is per value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub others: Option<u32>,
    /// On the `others` entry: the most any one of its scope values has spent. A restarted
    /// operator starts each scope value it finds no entry for from this amount, so spend is
    /// never under-counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub most_spent_usd: Option<NanoUsd>,
    /// The budget's amount for the window (per scope value).
    pub limit_usd: NanoUsd,
    /// Spend the sidecars reported in the window.
    pub spent_usd: NanoUsd,
    /// `limitUsd − spentUsd` (0 when overspent).
    pub remaining_usd: NanoUsd,
    /// Allowance granted to sidecars and not yet reported spent: part of the remaining
    /// amount the sidecars may spend without asking again.
    pub held_usd: NanoUsd,
}
