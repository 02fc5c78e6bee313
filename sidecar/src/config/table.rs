//! The compiled route table: what the request path reads, with every default resolved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cost::Price;
use crate::dispatch::breaker::Breaker;
use crate::error::ProxyError;
use crate::limits::RouteLimits;
use crate::limits::admission::Ceiling;
use crate::provider::Provider;

/// Every route by alias. Immutable; a config change builds a new table.
#[derive(Debug)]
pub struct RouteTable {
    /// Counts applied configs, starting at 1.
    pub version: u64,
    /// SHA-256 of the ModelRoutes and resolved keys this table was built from.
    pub hash: String,
    /// Where the config came from (`file:/etc/modelroute`), for `/config`.
    pub source: String,
    /// The operator snapshot this table was built from; `None` for files.
    pub snapshot: Option<SnapshotId>,
    pub(crate) routes: HashMap<Arc<str>, Arc<Route>>,
    /// Sorted aliases for `/v1/models`.
    pub(crate) aliases: Vec<Arc<str>>,
    pub(crate) providers: Vec<Arc<Provider>>,
    /// The config as `/config` shows it, secrets redacted.
    pub(crate) redacted: serde_json::Value,
}

/// Which operator snapshot a table serves: its version and content hash, as the operator
/// sent them (the hash goes back in the next Hello as `active_hash`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotId {
    pub version: u64,
    pub hash: String,
}

/// One model alias with its targets and policies.
#[derive(Debug)]
pub struct Route {
    pub alias: Arc<str>,
    /// The ModelRoute that defines it (`namespace/name`), for traces.
    pub model_route: Arc<str>,
    pub targets: Vec<Arc<Target>>,
    pub fallbacks: Vec<Arc<Target>>,
    pub retry: RetryPolicy,
    pub timeouts: Timeouts,
    pub breaker: BreakerPolicy,
    /// Budgets and rate limits covering this alias (usually none).
    pub limits: RouteLimits,
    /// The dearest rates among the targets: what a budget reservation assumes.
    pub ceiling: Ceiling,
}

/// A provider plus the model name it knows.
#[derive(Debug)]
pub struct Target {
    /// `provider/model`, the metric label and the name in error messages.
    pub label: Arc<str>,
    pub provider: Arc<Provider>,
    pub model: Arc<str>,
    pub weight: u32,
    /// Shared by every route that uses the same endpoint and model.
    pub breaker: Arc<Breaker>,
    /// What it costs (the ModelRoute's `pricing`, else the built-in table); `None`: unknown.
    pub price: Option<Arc<Price>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub max_retry_after: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub first_byte: Duration,
    pub idle: Duration,
    pub total: Duration,
    pub keep_alive: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerPolicy {
    /// 0 disables the breaker.
    pub consecutive_failures: u32,
    pub cooldown: Duration,
}

// === impl RouteTable ===

impl RouteTable {
    pub fn route(&self, alias: &str) -> Result<&Arc<Route>, ProxyError> {
        self.routes
            .get(alias)
            .ok_or_else(|| ProxyError::UnknownModel {
                model: alias.to_string(),
                known: self.aliases.join(", "),
            })
    }

    pub fn aliases(&self) -> impl Iterator<Item = &str> {
        self.aliases.iter().map(|a| &**a)
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// Every target of every route, once each.
    pub fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.routes
            .values()
            .flat_map(|r| r.targets.iter().chain(&r.fallbacks))
    }
}

// === impl Route ===

impl Route {
    /// This route with one target, `target`, and no fallbacks: where a spent budget with
    /// `onExhausted: downgrade` sends its requests. Its limits were applied already.
    pub fn downgraded(&self, target: Arc<Target>) -> Route {
        Route {
            alias: self.alias.clone(),
            model_route: self.model_route.clone(),
            targets: vec![target],
            fallbacks: Vec::new(),
            retry: self.retry,
            timeouts: self.timeouts,
            breaker: self.breaker,
            limits: RouteLimits::default(),
            ceiling: self.ceiling,
        }
    }

    /// The order to try targets in for one request: the targets in a weighted random
    /// order (so the first is the weighted choice, and a failing target's traffic
    /// spreads over the others by weight), then the fallbacks in their written order.
    pub fn plan(&self) -> Vec<Arc<Target>> {
        let mut plan = Vec::with_capacity(self.targets.len() + self.fallbacks.len());
        crate::route::weighted::order(&self.targets, |t| t.weight, &mut plan);
        plan.extend(self.fallbacks.iter().cloned());
        plan
    }
}

// === impl RetryPolicy ===

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 1,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            first_byte: Duration::from_secs(120),
            idle: Duration::from_secs(60),
            total: Duration::from_secs(600),
            keep_alive: Duration::from_secs(10),
        }
    }
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            cooldown: Duration::from_secs(30),
        }
    }
}
