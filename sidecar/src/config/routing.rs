//! A route's routing settings, compiled: strategy, rules, hedging, cache, affinity.

use std::sync::Arc;
use std::time::Duration;

use modelroute_crds::v1alpha1::{CacheMode, RouteSpec};

use super::table::{CachePolicy, HedgePolicy, Rule, Target};
use crate::dispatch::hedge::Hedge;
use crate::route::rules::Matcher;
use crate::route::strategy::Strategy;

/// Default `cache.ttl`.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default `hedge.maxPercent`.
pub const DEFAULT_HEDGE_PERCENT: u32 = 10;
/// Default `promptAffinity.minTokens`: the smallest prompt OpenAI and Anthropic cache.
pub const DEFAULT_AFFINITY_TOKENS: u64 = 1024;

pub struct Routing {
    pub strategy: Strategy,
    pub rules: Vec<Rule>,
    pub hedge: Option<Hedge>,
    pub cache: Option<CachePolicy>,
    pub affinity: Option<u64>,
}

/// Compiles the routing fields of a validated route. `Ok(None)`: a rule names a provider
/// that failed to build (reported already). Errors start with the field path.
pub fn compile(
    spec: &RouteSpec,
    target: &mut impl FnMut(&str, &str, u32, Option<u64>) -> Option<Arc<Target>>,
) -> Result<Option<Routing>, String> {
    let strategy =
        Strategy::compile(spec.strategy.as_ref()).map_err(|e| format!("strategy: {e}"))?;
    let mut rules = Vec::with_capacity(spec.rules.len());
    for (i, r) in spec.rules.iter().enumerate() {
        let matcher = Matcher::compile(&r.matches).map_err(|e| format!("rules[{i}].match: {e}"))?;
        let rule_strategy = match &r.strategy {
            Some(s) => {
                Strategy::compile(Some(s)).map_err(|e| format!("rules[{i}].strategy: {e}"))?
            }
            None => strategy.clone(),
        };
        let Some((targets, fallbacks)) =
            super::compile::target_set(&r.targets, &r.fallbacks, target)
        else {
            return Ok(None);
        };
        rules.push(Rule {
            name: r
                .name
                .clone()
                .unwrap_or_else(|| format!("rules[{i}]"))
                .into(),
            matcher,
            targets,
            fallbacks,
            strategy: rule_strategy,
        });
    }
    let hedge = spec.hedge.as_ref().map(|h| {
        Hedge::new(HedgePolicy {
            delay: h.delay.map(Into::into),
            quantile: h.percentile.map(|p| f64::from(p) / 100.0),
            ratio: f64::from(h.max_percent.unwrap_or(DEFAULT_HEDGE_PERCENT)) / 100.0,
        })
    });
    let cache = spec.cache.as_ref().map(|c| CachePolicy {
        ttl: c.ttl.map_or(DEFAULT_CACHE_TTL, Into::into),
        always: c.mode == CacheMode::Always,
    });
    let affinity = spec
        .prompt_affinity
        .as_ref()
        .map(|a| a.min_tokens.unwrap_or(DEFAULT_AFFINITY_TOKENS));
    Ok(Some(Routing {
        strategy,
        rules,
        hedge,
        cache,
        affinity,
    }))
}
