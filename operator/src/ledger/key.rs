//! Which account a report is about: a budget of a ModelRoute, a scope value, a window.

use std::fmt;

use modelroute_crds::WindowId;

use crate::index::ObjectKey;

/// The longest scope value (a pod name, header value or `user`) the ledger keeps; longer
/// ones are refused, so a client cannot make status or memory grow with huge values.
pub const MAX_SCOPE_VALUE_BYTES: usize = 256;

/// A budget of a ModelRoute: `namespace/modelroute` and the budget's name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BudgetRef {
    pub route: ObjectKey,
    pub budget: String,
}

/// One account: a budget, for one scope value, in one window. Ordered by budget, window,
/// scope value, so the scope values of one budget and window are neighbours.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountKey {
    pub budget: BudgetRef,
    pub window: WindowId,
    /// `""` for scope `route` (and for requests without the header or `user`).
    pub scope: String,
}

/// Why a reported key is not booked. A bounded metric label each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key has no account key")]
    Missing,
    #[error("the ModelRoute is in another namespace than the sidecar")]
    OtherNamespace,
    #[error("no such ModelRoute or budget is served")]
    UnknownBudget,
    #[error("the window id does not parse")]
    BadWindow,
    #[error("the window is not the budget's current, previous or next one")]
    StaleWindow,
    #[error("the scope value is longer than {MAX_SCOPE_VALUE_BYTES} bytes")]
    LongScopeValue,
    #[error("a scope-pod key names another pod")]
    OtherPod,
    #[error("a scope-route key carries a scope value")]
    ScopedRoute,
    #[error("the budget has no room for another scope value in this window")]
    TooManyScopeValues,
}

// === impl BudgetRef ===

impl BudgetRef {
    pub fn new(route: ObjectKey, budget: impl Into<String>) -> Self {
        Self {
            route,
            budget: budget.into(),
        }
    }
}

impl fmt::Display for BudgetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.route, self.budget)
    }
}

// === impl AccountKey ===

impl AccountKey {
    pub fn new(budget: BudgetRef, scope: impl Into<String>, window: WindowId) -> Self {
        Self {
            budget,
            scope: scope.into(),
            window,
        }
    }

    /// The ModelRoute the account belongs to.
    pub fn route(&self) -> &ObjectKey {
        &self.budget.route
    }

    /// The key as it travels (proto).
    pub fn to_proto(&self) -> modelroute_proto::AccountKey {
        modelroute_proto::AccountKey {
            namespace: self.budget.route.namespace.clone(),
            model_route: self.budget.route.name.clone(),
            budget: self.budget.budget.clone(),
            scope_value: self.scope.clone(),
            window: self.window.to_string(),
        }
    }
}

// === impl KeyError ===

impl KeyError {
    pub fn label(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::OtherNamespace => "other_namespace",
            Self::UnknownBudget => "unknown_budget",
            Self::BadWindow => "bad_window",
            Self::StaleWindow => "stale_window",
            Self::LongScopeValue => "long_scope_value",
            Self::OtherPod => "other_pod",
            Self::ScopedRoute => "scoped_route",
            Self::TooManyScopeValues => "too_many_scope_values",
        }
    }
}
