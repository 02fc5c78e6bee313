//! Strategies: the order in which a request tries a set of targets. The first is the
//! strategy's choice; the rest are the failover order.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use http::HeaderName;
use modelroute_crds::v1alpha1::{self as spec, StrategyKind};

use super::ask::Ask;
use super::{latency, weighted};
use crate::config::Target;
use crate::cost::TokenUsage;

/// What the cost strategy assumes a request generates when it sets no `max_tokens`.
pub const DEFAULT_OUTPUT_TOKENS: u64 = 500;

/// The quantile of time to first token that `cost` with `maxLatency` compares.
const LATENCY_BOUND_QUANTILE: f64 = 0.9;

#[derive(Clone, Debug, PartialEq)]
pub enum Strategy {
    Weighted { sticky: Option<StickyBy> },
    Priority,
    Latency,
    Cost { max_latency: Option<Duration> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StickyBy {
    Header(HeaderName),
    User,
}

// === impl Strategy ===

impl Strategy {
    /// Compiles a validated `strategy`; absent means weighted.
    pub fn compile(spec: Option<&spec::Strategy>) -> Result<Self, String> {
        let Some(spec) = spec else {
            return Ok(Self::Weighted { sticky: None });
        };
        Ok(match spec.kind {
            StrategyKind::Weighted => Self::Weighted {
                sticky: match &spec.sticky {
                    None => None,
                    Some(s) if s.user == Some(true) => Some(StickyBy::User),
                    Some(s) => {
                        let name = s.header.as_deref().unwrap_or_default();
                        let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                            .map_err(|_| format!("{name:?} is not a valid HTTP header name"))?;
                        Some(StickyBy::Header(name))
                    }
                },
            },
            StrategyKind::Priority => Self::Priority,
            StrategyKind::Latency => Self::Latency,
            StrategyKind::Cost => Self::Cost {
                max_latency: spec.max_latency.map(Into::into),
            },
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Weighted { .. } => "weighted",
            Self::Priority => "priority",
            Self::Latency => "latency",
            Self::Cost { .. } => "cost",
        }
    }

    /// Appends `targets` to `out` in the order `ask` should try them.
    pub fn order(
        &self,
        targets: &[Arc<Target>],
        ask: &Ask<'_>,
        now: Instant,
        out: &mut Vec<Arc<Target>>,
    ) {
        match self {
            Self::Weighted { sticky } => {
                let mut rng = match sticky.as_ref().and_then(|s| sticky_seed(s, ask)) {
                    // The same value draws the same order every time, in every sidecar.
                    Some(seed) => fastrand::Rng::with_seed(seed),
                    None => fastrand::Rng::new(),
                };
                weighted::order(targets, |t| t.weight, &mut rng, out);
            }
            Self::Priority => out.extend(targets.iter().cloned()),
            Self::Latency => {
                let stats: Vec<&latency::LatencyStats> =
                    targets.iter().map(|t| &*t.latency).collect();
                let mut picks = Vec::with_capacity(targets.len());
                latency::p2c_order(&stats, now, &mut picks);
                out.extend(picks.into_iter().filter_map(|i| targets.get(i).cloned()));
            }
            Self::Cost { max_latency } => cost_order(targets, ask, *max_latency, now, out),
        }
    }
}

fn sticky_seed(sticky: &StickyBy, ask: &Ask<'_>) -> Option<u64> {
    let value = match sticky {
        StickyBy::Header(name) => ask.headers.get(name)?.as_bytes(),
        StickyBy::User => ask.user()?.as_bytes(),
    };
    let mut h = foldhash::fast::FixedState::with_seed(0x7374_6963_6b79).build_hasher();
    h.write(value);
    Some(h.finish())
}

/// Cheapest first for this request's estimated tokens; targets without a price last.
/// With a latency bound, targets whose recent p90 time to first token is over it come
/// after those within it (still there to fail over to).
fn cost_order(
    targets: &[Arc<Target>],
    ask: &Ask<'_>,
    max_latency: Option<Duration>,
    now: Instant,
    out: &mut Vec<Arc<Target>>,
) {
    let usage = TokenUsage::estimated(
        ask.prompt_tokens(),
        ask.request.max_tokens().unwrap_or(DEFAULT_OUTPUT_TOKENS),
    );
    let mut ranked: Vec<(bool, u64, u64, &Arc<Target>)> = targets
        .iter()
        .map(|t| {
            let too_slow = max_latency.is_some_and(|bound| {
                t.latency
                    .quantile(LATENCY_BOUND_QUANTILE, now)
                    .is_some_and(|p90| p90 > bound)
            });
            let cost = t
                .price
                .as_deref()
                .map_or(u64::MAX, |p| crate::cost::cost(&usage, p).nano_usd);
            // Equal prices share the traffic instead of piling onto the first listed.
            (too_slow, cost, fastrand::u64(..), t)
        })
        .collect();
    ranked.sort_unstable_by_key(|(slow, cost, tie, _)| (*slow, *cost, *tie));
    out.extend(ranked.into_iter().map(|(.., t)| t.clone()));
}
