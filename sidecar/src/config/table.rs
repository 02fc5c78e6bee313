//! The compiled route table: what the request path reads, with every default resolved.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cost::Price;
use crate::dispatch::breaker::Breaker;
use crate::dispatch::hedge::Hedge;
use crate::error::ProxyError;
use crate::limits::RouteLimits;
use crate::limits::admission::Ceiling;
use crate::provider::Provider;
use crate::route::ask::Ask;
use crate::route::latency::LatencyStats;
use crate::route::rules::Matcher;
use crate::route::strategy::Strategy;

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
    /// How `targets` are ordered for a request.
    pub strategy: Strategy,
    /// Tried in order; the first that matches replaces `targets`, `fallbacks` and
    /// `strategy`.
    pub rules: Vec<Rule>,
    pub hedge: Option<Hedge>,
    pub cache: Option<CachePolicy>,
    /// Prompt-cache affinity: the smallest prefix (estimated tokens) it applies to.
    pub affinity: Option<u64>,
}

/// A match rule and the targets it sends to.
#[derive(Debug)]
pub struct Rule {
    pub name: Arc<str>,
    pub matcher: Matcher,
    pub targets: Vec<Arc<Target>>,
    pub fallbacks: Vec<Arc<Target>>,
    pub strategy: Strategy,
}

/// Where one request goes: targets in the order to try them, and the rule that chose
/// them.
#[derive(Debug)]
pub struct Plan {
    pub targets: Vec<Arc<Target>>,
    pub rule: Option<Arc<str>>,
    /// What ordered the targets: a strategy's name, or `affinity`.
    pub ordered_by: &'static str,
}

/// When a hedged try starts and how many there may be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HedgePolicy {
    /// Fixed delay, or the fallback delay while the percentile has too little data.
    pub delay: Option<Duration>,
    /// Quantile (0.5-0.99) of the first target's time to first token.
    pub quantile: Option<f64>,
    /// Hedged tries allowed per request (0.01-1.0).
    pub ratio: f64,
}

/// The response cache's settings for a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CachePolicy {
    pub ttl: Duration,
    /// Cache requests that are not deterministic (no `temperature: 0` or `seed`) too.
    pub always: bool,
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
    /// Shared like `breaker`: recent time to first token, for the latency strategy and
    /// hedging.
    pub latency: Arc<LatencyStats>,
    /// The model's context window in tokens, when the ModelRoute declares it.
    pub context_window: Option<u64>,
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
        self.routes.values().flat_map(|r| r.all_targets())
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
            strategy: Strategy::Priority,
            rules: Vec::new(),
            hedge: None,
            cache: None,
            affinity: None,
        }
    }

    /// The order to try targets in for one request: the first matching rule's targets (or
    /// the route's), ordered by prompt-cache affinity when the request has a long enough
    /// prefix, else by the strategy; then the fallbacks in their written order. Targets
    /// whose declared context window the request does not fit are left out, unless that
    /// would leave none (the estimate is an upper bound; the provider has the last word).
    pub fn plan(&self, ask: &Ask<'_>) -> Plan {
        let (targets, fallbacks, strategy, rule) =
            match self.rules.iter().find(|r| r.matcher.matches(ask)) {
                Some(r) => (&r.targets, &r.fallbacks, &r.strategy, Some(r.name.clone())),
                None => (&self.targets, &self.fallbacks, &self.strategy, None),
            };
        let mut plan = Vec::with_capacity(targets.len() + fallbacks.len());
        let prefix = self
            .affinity
            .and_then(|min| ask.prefix().filter(|p| p.tokens >= min));
        match prefix {
            Some(prefix) => crate::route::affinity::order(targets, prefix.hash, &mut plan),
            None => strategy.order(targets, ask, tokio::time::Instant::now(), &mut plan),
        }
        plan.extend(fallbacks.iter().cloned());
        if plan.iter().any(|t| t.context_window.is_some()) {
            let need = ask.context_tokens();
            let fits = |t: &Arc<Target>| t.context_window.is_none_or(|w| need <= w);
            if plan.iter().any(fits) {
                plan.retain(fits);
            }
        }
        Plan {
            targets: plan,
            rule,
            ordered_by: if prefix.is_some() {
                "affinity"
            } else {
                strategy.name()
            },
        }
    }

    /// Every target and fallback, the rules' included.
    pub fn all_targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.targets.iter().chain(&self.fallbacks).chain(
            self.rules
                .iter()
                .flat_map(|r| r.targets.iter().chain(&r.fallbacks)),
        )
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
