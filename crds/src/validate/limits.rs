//! Checks of `spec.pricing`, `spec.budgets`, `spec.rateLimits` and `spec.onControlPlaneLoss`.

use std::collections::HashSet;

use super::{Problems, is_dns_label, is_header_name};
use crate::v1alpha1::{
    ANY_MODEL, BudgetSpec, ControlPlaneLossMode, ModelRouteSpec, OnExhausted, RateLimitSpec,
    ScopeKind,
};
use crate::{Usd, Window};

/// Whether this version enforces `spec.budgets` and `spec.rateLimits`. While it does not,
/// [`crate::validate`] refuses a ModelRoute that sets either, rather than run it without the
/// limits it asks for. The only switch: set it to `true` when enforcement is wired in.
pub const LIMITS_ENFORCED: bool = true;

/// Headers whose values are credentials: counting by them would keep secrets in status and
/// metrics, and the sidecar never forwards them upstream (it sends the provider's key).
pub const CREDENTIAL_HEADERS: [&str; 6] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "api-key",
    "x-api-key",
    "x-goog-api-key",
];

/// The names the checks below need from the rest of the spec.
pub(super) struct Known<'a> {
    pub(super) providers: &'a HashSet<&'a str>,
    pub(super) aliases: &'a HashSet<&'a str>,
}

pub(super) fn check(spec: &ModelRouteSpec, known: &Known<'_>, problems: &mut Problems) {
    check_pricing(spec, known, problems);
    let mut names = HashSet::new();
    for (i, budget) in spec.budgets.iter().enumerate() {
        let path = format!("spec.budgets[{i}]");
        check_name(&budget.name, &mut names, "budget", &path, problems);
        check_budget(budget, known, &path, problems);
    }
    let mut names = HashSet::new();
    for (i, limit) in spec.rate_limits.iter().enumerate() {
        let path = format!("spec.rateLimits[{i}]");
        check_name(&limit.name, &mut names, "rate limit", &path, problems);
        check_rate_limit(limit, known, &path, problems);
    }
    if let Some(loss) = &spec.on_control_plane_loss
        && loss.mode == ControlPlaneLossMode::FailClosed
        && loss.cap_usd.is_some()
    {
        problems.add(
            "spec.onControlPlaneLoss.capUsd".into(),
            "only mode failOpen takes a cap; failClosed spends nothing beyond the allowance".into(),
        );
    }
    if !LIMITS_ENFORCED {
        for (field, set, what) in [
            ("budgets", !spec.budgets.is_empty(), "budgets"),
            ("rateLimits", !spec.rate_limits.is_empty(), "rate limits"),
        ] {
            if set {
                problems.add(
                    format!("spec.{field}"),
                    format!(
                        "{what} are not enforced yet (issue 6 in progress); remove them \
                         rather than run without the limit"
                    ),
                );
            }
        }
    }
}

fn check_pricing(spec: &ModelRouteSpec, known: &Known<'_>, problems: &mut Problems) {
    let mut seen = HashSet::new();
    for (i, price) in spec.pricing.iter().enumerate() {
        let path = format!("spec.pricing[{i}]");
        if !known.providers.contains(price.provider.as_str()) {
            problems.add(
                format!("{path}.provider"),
                format!("no provider named {:?} in this ModelRoute", price.provider),
            );
        }
        if price.model.trim().is_empty() {
            problems.add(
                format!("{path}.model"),
                "the model must not be empty; \"*\" prices every model of the provider".into(),
            );
        } else if price.model.contains('*') && price.model != ANY_MODEL {
            problems.add(
                format!("{path}.model"),
                format!(
                    "{:?}: only \"*\" on its own is a wildcard (every model of the provider)",
                    price.model
                ),
            );
        }
        if !seen.insert((&price.provider, &price.model)) {
            problems.add(
                path,
                format!(
                    "{}/{} is priced twice; keep one entry",
                    price.provider, price.model
                ),
            );
        }
    }
}

fn check_budget(b: &BudgetSpec, known: &Known<'_>, path: &str, problems: &mut Problems) {
    if b.amount_usd == Usd::ZERO {
        problems.add(
            format!("{path}.amountUsd"),
            "must be more than 0 (a budget of 0 would refuse every request)".into(),
        );
    }
    check_scope(b.scope, b.header.as_deref(), path, problems);
    if b.window == Window::Total && b.scope != ScopeKind::Route {
        problems.add(
            format!("{path}.window"),
            "a total budget never resets: counted per pod, header value or user it would \
             keep spend for every value ever seen; use a window such as monthly, or scope \
             route"
                .into(),
        );
    }
    check_routes(&b.routes, known, path, problems);
    let mut previous = 0;
    for (j, &t) in b.thresholds.iter().enumerate() {
        let at = format!("{path}.thresholds[{j}]");
        if !(1..=100).contains(&t) {
            problems.add(
                at,
                format!("{t} is not a percentage of amountUsd from 1 to 100"),
            );
        } else if t <= previous {
            problems.add(
                at,
                format!("thresholds must be ascending without repeats: {previous} then {t}"),
            );
        }
        if (1..=100).contains(&t) {
            previous = previous.max(t);
        }
    }
    match (b.on_exhausted, &b.downgrade) {
        (OnExhausted::Reject, None) => {}
        (OnExhausted::Reject, Some(_)) => problems.add(
            format!("{path}.downgrade"),
            "a downgrade target needs onExhausted: downgrade".into(),
        ),
        (OnExhausted::Downgrade, None) => problems.add(
            format!("{path}.downgrade"),
            "onExhausted: downgrade needs the target, e.g. \
             downgrade: {provider: openai, model: gpt-4o-mini}"
                .into(),
        ),
        (OnExhausted::Downgrade, Some(target)) => {
            if !known.providers.contains(target.provider.as_str()) {
                problems.add(
                    format!("{path}.downgrade.provider"),
                    format!("no provider named {:?} in this ModelRoute", target.provider),
                );
            }
            if target.model.trim().is_empty() {
                problems.add(
                    format!("{path}.downgrade.model"),
                    "the upstream model must not be empty".into(),
                );
            }
        }
    }
}

fn check_rate_limit(l: &RateLimitSpec, known: &Known<'_>, path: &str, problems: &mut Problems) {
    if l.requests_per_minute.is_none() && l.tokens_per_minute.is_none() {
        problems.add(
            path.to_string(),
            "set requestsPerMinute, tokensPerMinute or both".into(),
        );
    }
    for (field, value) in [
        ("requestsPerMinute", l.requests_per_minute),
        ("tokensPerMinute", l.tokens_per_minute),
    ] {
        if value == Some(0) {
            problems.add(
                format!("{path}.{field}"),
                "must be at least 1 (0 would refuse every request)".into(),
            );
        }
    }
    check_scope(l.scope, l.header.as_deref(), path, problems);
    check_routes(&l.routes, known, path, problems);
}

fn check_name<'a>(
    name: &'a str,
    seen: &mut HashSet<&'a str>,
    what: &str,
    path: &str,
    problems: &mut Problems,
) {
    if !is_dns_label(name) {
        problems.add(
            format!("{path}.name"),
            format!(
                "{name:?} is not a valid name: use 1-63 lowercase letters, digits and '-', \
                 starting and ending with a letter or digit"
            ),
        );
    }
    if !seen.insert(name) {
        problems.add(
            format!("{path}.name"),
            format!("{what} name {name:?} is used twice; names must be unique"),
        );
    }
}

fn check_scope(scope: ScopeKind, header: Option<&str>, path: &str, problems: &mut Problems) {
    let at = format!("{path}.header");
    match (scope, header) {
        (ScopeKind::Header, None) => problems.add(
            at,
            "scope header needs the header to count by, e.g. header: x-tenant".into(),
        ),
        (ScopeKind::Header, Some(name)) => {
            if !is_header_name(name) {
                problems.add(at, format!("{name:?} is not a valid HTTP header name"));
            } else if CREDENTIAL_HEADERS.contains(&name) {
                problems.add(
                    at,
                    format!(
                        "{name} carries credentials, and the values counted by are kept in \
                         status and metrics; use a header naming the tenant, e.g. x-tenant"
                    ),
                );
            }
        }
        (_, Some(_)) => problems.add(at, "only scope header takes a header".into()),
        (_, None) => {}
    }
}

fn check_routes(routes: &[String], known: &Known<'_>, path: &str, problems: &mut Problems) {
    let mut seen = HashSet::new();
    for (j, alias) in routes.iter().enumerate() {
        let at = format!("{path}.routes[{j}]");
        if !known.aliases.contains(alias.as_str()) {
            let mut aliases: Vec<_> = known.aliases.iter().copied().collect();
            aliases.sort_unstable();
            problems.add(
                at,
                format!(
                    "no route with model alias {alias:?} in this ModelRoute (known: {})",
                    aliases.join(", ")
                ),
            );
        } else if !seen.insert(alias) {
            problems.add(at, format!("{alias:?} is listed twice"));
        }
    }
}

#[cfg(test)]
mod tests;
