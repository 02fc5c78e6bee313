//! `spec.budgets` and `spec.rateLimits` -> the [`RouteLimits`] of each route.

use std::sync::Arc;

use http::HeaderName;
use modelroute_crds::ModelRouteSpec;
use modelroute_crds::v1alpha1::{Exhausted as SpecExhausted, Scope};

use super::table::Target;
use crate::limits::admission::Ceiling;
use crate::limits::{BudgetRule, Exhausted, LimitId, RateRule, RouteLimits, ScopeRule};

/// A ModelRoute's budgets and rate limits, compiled once and shared by its routes.
#[derive(Debug, Default)]
pub struct DocLimits {
    budgets: Vec<(Arc<BudgetRule>, Vec<String>)>,
    rates: Vec<(Arc<RateRule>, Vec<String>)>,
}

/// Builds the budgets and rate limits of `spec` (already validated). `target` builds a
/// downgrade target like the routes' own.
pub fn compile(
    spec: &ModelRouteSpec,
    namespace: &str,
    model_route: &str,
    target: &mut impl FnMut(&str, &str, u32, Option<u64>) -> Option<Arc<Target>>,
) -> Result<DocLimits, Vec<String>> {
    let mut problems = Vec::new();
    let id = |name: &str| {
        Arc::new(LimitId {
            namespace: namespace.to_string(),
            model_route: model_route.to_string(),
            name: name.to_string(),
        })
    };
    let mut out = DocLimits::default();
    for (i, budget) in spec.budgets.iter().enumerate() {
        let path = format!("spec.budgets[{i}]");
        let (Some(scope), Some(exhausted)) = (budget.scope(), budget.exhausted()) else {
            problems.push(format!("{path}: scope or onExhausted is incomplete"));
            continue;
        };
        let exhausted = match exhausted {
            SpecExhausted::Reject => Exhausted::Reject,
            SpecExhausted::Downgrade(d) => match target(&d.provider, &d.model, 1, None) {
                Some(t) if t.price.is_some() => Exhausted::Downgrade(t),
                Some(t) => {
                    problems.push(format!(
                        "{path}.downgrade: {} has no price: add it to spec.pricing",
                        t.label
                    ));
                    continue;
                }
                None => continue, // its provider failed to build, reported already
            },
        };
        let Some(scope) = scope_rule(scope) else {
            problems.push(format!("{path}.header: not a valid header name"));
            continue;
        };
        let rule = BudgetRule {
            id: id(&budget.name),
            amount: budget.amount_usd.micros().saturating_mul(1000),
            window: budget.window,
            scope,
            thresholds: budget.thresholds.clone(),
            exhausted,
            loss_cap: spec
                .control_plane_loss_cap(budget)
                .micros()
                .saturating_mul(1000),
        };
        out.budgets.push((Arc::new(rule), budget.routes.clone()));
    }
    for (i, limit) in spec.rate_limits.iter().enumerate() {
        let Some(scope) = limit.scope().and_then(scope_rule) else {
            problems.push(format!(
                "spec.rateLimits[{i}].header: not a valid header name"
            ));
            continue;
        };
        let rule = RateRule {
            id: id(&limit.name),
            requests_per_minute: limit.requests_per_minute,
            tokens_per_minute: limit.tokens_per_minute,
            scope,
        };
        out.rates.push((Arc::new(rule), limit.routes.clone()));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Every target of a budgeted route must have a price, or its spend would count as zero
/// and the budget would never run out.
pub fn priced(
    limits: &RouteLimits,
    targets: &[Arc<Target>],
    fallbacks: &[Arc<Target>],
) -> Result<(), String> {
    let Some(budget) = limits.budgets.first() else {
        return Ok(());
    };
    let unpriced: Vec<&str> = targets
        .iter()
        .chain(fallbacks)
        .filter(|t| t.price.is_none())
        .map(|t| &*t.label)
        .collect();
    if unpriced.is_empty() {
        return Ok(());
    }
    Err(format!(
        "budget {:?} covers this route, but {} {} no price in the built-in table: add \
         spec.pricing for {}",
        budget.id.name,
        unpriced.join(", "),
        if unpriced.len() == 1 { "has" } else { "have" },
        if unpriced.len() == 1 { "it" } else { "them" },
    ))
}

/// The dearest input and output rates of `targets`, over every price band.
pub fn ceiling<'a>(targets: impl Iterator<Item = &'a Arc<Target>>) -> Ceiling {
    let mut ceiling = Ceiling::default();
    for price in targets.filter_map(|t| t.price.as_deref()) {
        for rates in std::iter::once(&price.base).chain(price.tiers.iter().map(|t| &t.rates)) {
            let input = [rates.input, rates.cache_write, rates.cache_write_1h]
                .into_iter()
                .map(|r| r.pico_usd_per_token())
                .max()
                .unwrap_or(0);
            ceiling.input = ceiling.input.max(input);
            ceiling.output = ceiling.output.max(rates.output.pico_usd_per_token());
        }
    }
    ceiling
}

// === impl DocLimits ===

impl DocLimits {
    /// The budgets and rate limits covering model alias `alias`.
    pub fn for_route(&self, alias: &str) -> RouteLimits {
        let covers = |routes: &[String]| routes.is_empty() || routes.iter().any(|r| r == alias);
        RouteLimits {
            budgets: self
                .budgets
                .iter()
                .filter(|(_, routes)| covers(routes))
                .map(|(b, _)| b.clone())
                .collect(),
            rates: self
                .rates
                .iter()
                .filter(|(_, routes)| covers(routes))
                .map(|(r, _)| r.clone())
                .collect(),
        }
    }
}

fn scope_rule(scope: Scope<'_>) -> Option<ScopeRule> {
    Some(match scope {
        Scope::Route => ScopeRule::Route,
        Scope::Pod => ScopeRule::Pod,
        Scope::Header(name) => ScopeRule::Header(HeaderName::try_from(name).ok()?),
        Scope::User => ScopeRule::User,
    })
}
