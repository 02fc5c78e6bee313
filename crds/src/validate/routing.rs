//! Checks of a route's strategy, match rules, hedging, cache and prompt affinity.

use std::collections::HashSet;

use super::{Problems, check_targets, is_header_name};
use crate::v1alpha1::{RouteSpec, RuleMatch, Strategy, StrategyKind, StringMatch};

pub(super) fn check(route: &RouteSpec, providers: &HashSet<&str>, path: &str, p: &mut Problems) {
    if let Some(s) = &route.strategy {
        check_strategy(s, &format!("{path}.strategy"), p);
    }
    let mut names = HashSet::new();
    for (i, rule) in route.rules.iter().enumerate() {
        let at = format!("{path}.rules[{i}]");
        if let Some(name) = &rule.name
            && !names.insert(name.as_str())
        {
            p.add(
                format!("{at}.name"),
                format!("rule name {name:?} is used twice in this route"),
            );
        }
        check_match(&rule.matches, &format!("{at}.match"), p);
        check_targets(&rule.targets, &rule.fallbacks, providers, &at, p);
        if let Some(s) = &rule.strategy {
            check_strategy(s, &format!("{at}.strategy"), p);
        }
    }
    if let Some(h) = &route.hedge {
        let at = format!("{path}.hedge");
        if h.delay.is_none() && h.percentile.is_none() {
            p.add(
                at.clone(),
                "set delay (e.g. 2s), percentile (e.g. 95) or both".into(),
            );
        }
        p.positive(format!("{at}.delay"), h.delay);
        if h.percentile.is_some_and(|q| !(50..=99).contains(&q)) {
            p.add(format!("{at}.percentile"), "use 50 to 99".into());
        }
        if h.max_percent.is_some_and(|m| !(1..=100).contains(&m)) {
            p.add(format!("{at}.maxPercent"), "use 1 to 100".into());
        }
        let tries = route.targets.len() + route.fallbacks.len();
        if tries < 2
            && route
                .rules
                .iter()
                .all(|r| r.targets.len() + r.fallbacks.len() < 2)
        {
            p.add(
                at,
                "hedging needs a second target or fallback to start".into(),
            );
        }
    }
    if let Some(c) = &route.cache {
        p.positive(format!("{path}.cache.ttl"), c.ttl);
    }
    if let Some(a) = &route.prompt_affinity
        && a.min_tokens == Some(0)
    {
        p.add(
            format!("{path}.promptAffinity.minTokens"),
            "must be at least 1".into(),
        );
    }
}

fn check_strategy(s: &Strategy, path: &str, p: &mut Problems) {
    if let Some(sticky) = &s.sticky {
        let at = format!("{path}.sticky");
        if s.kind != StrategyKind::Weighted {
            p.add(at.clone(), "only the weighted strategy is sticky".into());
        }
        match (&sticky.header, sticky.user) {
            (Some(h), None | Some(false)) if is_header_name(h) => {}
            (Some(h), None | Some(false)) => p.add(
                format!("{at}.header"),
                format!("{h:?} is not a valid HTTP header name"),
            ),
            (None, Some(true)) => {}
            _ => p.add(at, "set exactly one of header or user: true".into()),
        }
    }
    if s.max_latency.is_some() && s.kind != StrategyKind::Cost {
        p.add(
            format!("{path}.maxLatency"),
            "only the cost strategy takes maxLatency".into(),
        );
    }
    p.positive(format!("{path}.maxLatency"), s.max_latency);
}

fn check_match(m: &RuleMatch, path: &str, p: &mut Problems) {
    let conditions = m.headers.len()
        + usize::from(m.user.is_some())
        + usize::from(m.prompt_tokens.is_some())
        + usize::from(m.tools.is_some())
        + usize::from(m.images.is_some())
        + usize::from(m.stream.is_some());
    if conditions == 0 {
        p.add(
            path.to_string(),
            "a rule needs at least one condition; to send everything to these targets, \
             make them the route's targets"
                .into(),
        );
    }
    for (name, test) in &m.headers {
        if !is_header_name(name) {
            p.add(
                format!("{path}.headers"),
                format!("{name:?} is not a valid HTTP header name"),
            );
        }
        check_string_match(test, &format!("{path}.headers.{name}"), p);
    }
    if let Some(test) = &m.user {
        check_string_match(test, &format!("{path}.user"), p);
    }
    if let Some(range) = &m.prompt_tokens {
        match (range.at_least, range.below) {
            (None, None) => p.add(
                format!("{path}.promptTokens"),
                "set atLeast, below or both".into(),
            ),
            (Some(low), Some(high)) if low >= high => p.add(
                format!("{path}.promptTokens"),
                format!("atLeast {low} is not below {high}: no prompt would match"),
            ),
            _ => {}
        }
    }
}

fn check_string_match(m: &StringMatch, path: &str, p: &mut Problems) {
    let set = [
        m.exact.is_some(),
        m.prefix.is_some(),
        m.regex.is_some(),
        m.one_of.is_some(),
    ]
    .into_iter()
    .filter(|s| *s)
    .count();
    if set != 1 {
        p.add(
            path.to_string(),
            format!("set exactly one of exact, prefix, regex or oneOf (found {set})"),
        );
    }
    if let Some(re) = &m.regex
        && let Err(e) = regex::Regex::new(&format!("^(?:{re})$"))
    {
        p.add(format!("{path}.regex"), format!("not a valid regex: {e}"));
    }
    if m.one_of.as_ref().is_some_and(Vec::is_empty) {
        p.add(format!("{path}.oneOf"), "list at least one value".into());
    }
}
