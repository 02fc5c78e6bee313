//! The budgets and rate limits of a route, compiled from its ModelRoute: what the request
//! path checks, with every default resolved and the downgrade target built.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName};
use modelroute_crds::Window;

use crate::config::Target;

/// Names a budget or rate limit across the fleet: its ModelRoute and its own name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LimitId {
    pub namespace: String,
    pub model_route: String,
    pub name: String,
}

/// One budget of a ModelRoute.
#[derive(Debug)]
pub struct BudgetRule {
    pub id: Arc<LimitId>,
    /// The amount per window and scope value, nano-USD.
    pub amount: u64,
    pub window: Window,
    pub scope: ScopeRule,
    /// Ascending percentages that raise a warning when spend crosses them.
    pub thresholds: Vec<u32>,
    pub exhausted: Exhausted,
    /// What this sidecar may spend beyond its allowance while the operator is unreachable
    /// (per budget and window; 0 fails closed), nano-USD.
    pub loss_cap: u64,
}

/// What happens to a request once its budget is spent.
#[derive(Debug)]
pub enum Exhausted {
    Reject,
    Downgrade(Arc<Target>),
}

/// One rate limit of a ModelRoute.
#[derive(Debug)]
pub struct RateRule {
    pub id: Arc<LimitId>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
    pub scope: ScopeRule,
}

/// What a budget or rate limit counts per.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScopeRule {
    Route,
    Pod,
    Header(HeaderName),
    User,
}

/// The budgets and rate limits that cover one route. Empty for most routes: the request
/// path then does nothing.
#[derive(Debug, Default)]
pub struct RouteLimits {
    pub budgets: Vec<Arc<BudgetRule>>,
    pub rates: Vec<Arc<RateRule>>,
}

/// What a request says about the scopes: its headers and the OpenAI `user` field.
#[derive(Clone, Copy, Debug)]
pub struct ScopeInput<'a> {
    pub headers: &'a HeaderMap,
    pub user: Option<&'a str>,
    pub pod: &'a str,
}

/// The longest scope value kept: a header is the client's to fill, and keys, status and
/// reports must stay small.
const MAX_SCOPE_VALUE: usize = 256;

// === impl RouteLimits ===

impl RouteLimits {
    pub fn is_empty(&self) -> bool {
        self.budgets.is_empty() && self.rates.is_empty()
    }
}

// === impl ScopeRule ===

impl ScopeRule {
    /// The value this request is counted under: "" for the route, the pod's name, or the
    /// header's or `user` field's value ("" when the request has none, so such requests
    /// share one count).
    pub fn value(&self, input: &ScopeInput<'_>) -> String {
        let value = match self {
            ScopeRule::Route => "",
            ScopeRule::Pod => input.pod,
            ScopeRule::Header(name) => input
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
            ScopeRule::User => input.user.unwrap_or(""),
        };
        let mut end = value.len().min(MAX_SCOPE_VALUE);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        value[..end].to_string()
    }
}

impl fmt::Display for LimitId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.model_route, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_values_come_from_the_request() {
        let mut headers = HeaderMap::new();
        headers.insert("x-tenant", "acme".parse().unwrap());
        let input = ScopeInput {
            headers: &headers,
            user: Some("u-7"),
            pod: "web-1",
        };
        assert_eq!(ScopeRule::Route.value(&input), "");
        assert_eq!(ScopeRule::Pod.value(&input), "web-1");
        assert_eq!(
            ScopeRule::Header(HeaderName::from_static("x-tenant")).value(&input),
            "acme"
        );
        assert_eq!(
            ScopeRule::Header(HeaderName::from_static("x-team")).value(&input),
            "",
            "absent: the shared count"
        );
        assert_eq!(ScopeRule::User.value(&input), "u-7");
    }

    #[test]
    fn long_scope_values_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200);
        let headers = HeaderMap::new();
        let input = ScopeInput {
            headers: &headers,
            user: Some(&long),
            pod: "",
        };
        let value = ScopeRule::User.value(&input);
        assert_eq!(value.len(), 256);
        assert!(value.chars().all(|c| c == 'é'));
    }
}
