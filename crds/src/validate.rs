//! Semantic checks beyond what the OpenAPI schema can say.
//!
//! Every consumer (the sidecar's file loader, the operator's controller, the admission
//! path) calls [`validate`], so a ModelRoute is accepted or refused for the same reasons
//! everywhere. Each problem names the field path and says what to do about it.

use std::collections::HashSet;
use std::fmt;

use crate::Duration;
use crate::v1alpha1::{
    ApiKeySource, FallbackTarget, MockFailure, ModelRouteSpec, ProviderKind, ProviderSpec,
    RouteSpec, WeightedTarget,
};

mod limits;
mod routing;

pub use limits::{CREDENTIAL_HEADERS, LIMITS_ENFORCED};

/// One problem with a ModelRoute.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// Field path, e.g. `spec.routes[0].targets[1].weight`.
    pub path: String,
    pub message: String,
}

/// Every problem found in `spec`; empty when it is valid.
pub fn validate(spec: &ModelRouteSpec) -> Vec<Invalid> {
    let mut problems = Problems::default();
    let mut names = HashSet::new();
    for (i, provider) in spec.providers.iter().enumerate() {
        let path = format!("spec.providers[{i}]");
        if !names.insert(provider.name.as_str()) {
            problems.add(
                format!("{path}.name"),
                format!(
                    "provider name {:?} is used twice; names must be unique",
                    provider.name
                ),
            );
        }
        check_provider(provider, &path, &mut problems);
    }
    let mut aliases = HashSet::new();
    for (i, route) in spec.routes.iter().enumerate() {
        let path = format!("spec.routes[{i}]");
        if !aliases.insert(route.model.as_str()) {
            problems.add(
                format!("{path}.model"),
                format!(
                    "model alias {:?} has two routes; merge them into one",
                    route.model
                ),
            );
        }
        check_route(route, &names, &path, &mut problems);
        routing::check(route, &names, &path, &mut problems);
    }
    let known = limits::Known {
        providers: &names,
        aliases: &aliases,
    };
    limits::check(spec, &known, &mut problems);
    problems.0
}

#[derive(Default)]
struct Problems(Vec<Invalid>);

// === impl Invalid ===

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for Invalid {}

// === impl Problems ===

impl Problems {
    fn add(&mut self, path: String, message: String) {
        self.0.push(Invalid { path, message });
    }

    fn positive(&mut self, path: String, d: Option<Duration>) {
        if d.is_some_and(|d| d.is_zero()) {
            self.add(path, "must be longer than 0s".into());
        }
    }
}

fn check_provider(p: &ProviderSpec, path: &str, problems: &mut Problems) {
    if !is_dns_label(&p.name) {
        problems.add(
            format!("{path}.name"),
            format!(
                "{:?} is not a valid name: use 1-63 lowercase letters, digits and '-', \
                 starting and ending with a letter or digit",
                p.name
            ),
        );
    }
    if let Some(url) = &p.base_url
        && let Err(why) = check_base_url(url)
    {
        problems.add(format!("{path}.baseUrl"), why);
    }
    match p.kind {
        ProviderKind::Mock => {
            if p.base_url.is_some() || p.api_key.is_some() {
                problems.add(
                    path.to_string(),
                    "a mock provider takes no baseUrl or apiKey; it answers in-process".into(),
                );
            }
        }
        ProviderKind::OpenAi
        | ProviderKind::AzureOpenAi
        | ProviderKind::Anthropic
        | ProviderKind::Gemini => {
            if p.mock.is_some() {
                problems.add(
                    format!("{path}.mock"),
                    "only providers of kind mock take mock settings".into(),
                );
            }
        }
    }
    if p.kind == ProviderKind::AzureOpenAi && p.base_url.is_none() {
        problems.add(
            format!("{path}.baseUrl"),
            "azure-openai needs baseUrl, e.g. https://my-resource.openai.azure.com".into(),
        );
    }
    if p.api_version.is_some()
        && !matches!(p.kind, ProviderKind::AzureOpenAi | ProviderKind::Anthropic)
    {
        problems.add(
            format!("{path}.apiVersion"),
            "only azure-openai and anthropic providers take an apiVersion".into(),
        );
    }
    if let Some(key) = &p.api_key {
        check_api_key(key, &format!("{path}.apiKey"), problems);
    }
    for name in p.headers.keys() {
        if !is_header_name(name) {
            problems.add(
                format!("{path}.headers"),
                format!("{name:?} is not a valid HTTP header name"),
            );
        }
    }
    problems.positive(format!("{path}.connectTimeout"), p.connect_timeout);
    if let Some(limit) = &p.rate_limit
        && limit.requests_per_minute.is_none()
        && limit.tokens_per_minute.is_none()
    {
        problems.add(
            format!("{path}.rateLimit"),
            "set requestsPerMinute, tokensPerMinute or both".into(),
        );
    }
    if let Some(mock) = &p.mock {
        if mock.words_per_chunk == Some(0) {
            problems.add(
                format!("{path}.mock.wordsPerChunk"),
                "must be at least 1".into(),
            );
        }
        if let Some(failure) = &mock.failure {
            check_mock_failure(failure, &format!("{path}.mock.failure"), problems);
        }
    }
}

fn check_api_key(key: &ApiKeySource, path: &str, problems: &mut Problems) {
    let set = [
        key.env.is_some(),
        key.file.is_some(),
        key.value.is_some(),
        key.secret_ref.is_some(),
    ]
    .into_iter()
    .filter(|s| *s)
    .count();
    if set != 1 {
        problems.add(
            path.to_string(),
            format!("set exactly one of env, file, value or secretRef (found {set})"),
        );
    }
    if key.env.as_deref() == Some("") || key.file.as_deref() == Some("") {
        problems.add(path.to_string(), "env and file must not be empty".into());
    }
    if let Some(r) = &key.secret_ref {
        if !is_dns_subdomain(&r.name) {
            problems.add(
                format!("{path}.secretRef.name"),
                format!("{:?} is not a valid Secret name", r.name),
            );
        }
        if !is_secret_key(&r.key) {
            problems.add(
                format!("{path}.secretRef.key"),
                format!(
                    "{:?} is not a valid Secret key: use letters, digits, '-', '_' and '.'",
                    r.key
                ),
            );
        }
    }
}

fn check_mock_failure(f: &MockFailure, path: &str, problems: &mut Problems) {
    if let Some(status) = f.status
        && !(400..=599).contains(&status)
    {
        problems.add(
            format!("{path}.status"),
            format!("{status} is not an error status; use 400-599"),
        );
    }
    if f.every == Some(0) {
        problems.add(
            format!("{path}.every"),
            "must be at least 1 (1 = every request)".into(),
        );
    }
}

fn check_route(route: &RouteSpec, providers: &HashSet<&str>, path: &str, problems: &mut Problems) {
    if route.model.trim().is_empty() {
        problems.add(
            format!("{path}.model"),
            "the model alias must not be empty".into(),
        );
    }
    check_targets(&route.targets, &route.fallbacks, providers, path, problems);
    if let Some(retry) = &route.retry {
        let at = format!("{path}.retry");
        problems.positive(format!("{at}.backoffBase"), retry.backoff_base);
        problems.positive(format!("{at}.backoffMax"), retry.backoff_max);
        if let (Some(base), Some(max)) = (retry.backoff_base, retry.backoff_max)
            && base > max
        {
            problems.add(
                format!("{at}.backoffBase"),
                format!("backoffBase {base} is longer than backoffMax {max}"),
            );
        }
        if retry.attempts.is_some_and(|a| a > 10) {
            problems.add(
                format!("{at}.attempts"),
                "at most 10 retries per target".into(),
            );
        }
    }
    if let Some(t) = &route.timeouts {
        let at = format!("{path}.timeouts");
        problems.positive(format!("{at}.firstByte"), t.first_byte);
        problems.positive(format!("{at}.idle"), t.idle);
        problems.positive(format!("{at}.total"), t.total);
        problems.positive(format!("{at}.keepAlive"), t.keep_alive);
        if let (Some(first), Some(total)) = (t.first_byte, t.total)
            && first > total
        {
            problems.add(
                format!("{at}.firstByte"),
                format!("firstByte {first} is longer than total {total}"),
            );
        }
    }
    if let Some(b) = &route.circuit_breaker {
        problems.positive(format!("{path}.circuitBreaker.cooldown"), b.cooldown);
    }
}

/// The target set of a route or a rule: known providers, models named, no duplicates,
/// positive weights and context windows.
fn check_targets(
    targets: &[WeightedTarget],
    fallbacks: &[FallbackTarget],
    providers: &HashSet<&str>,
    path: &str,
    problems: &mut Problems,
) {
    if targets.is_empty() {
        problems.add(
            format!("{path}.targets"),
            "a route needs at least one target".into(),
        );
    }
    let all = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            (
                format!("{path}.targets[{i}]"),
                &t.provider,
                &t.model,
                t.context_window,
            )
        })
        .chain(fallbacks.iter().enumerate().map(|(i, t)| {
            let at = format!("{path}.fallbacks[{i}]");
            (at, &t.provider, &t.model, t.context_window)
        }));
    let mut seen = HashSet::new();
    for (at, provider, model, window) in all {
        if !providers.contains(provider.as_str()) {
            problems.add(
                format!("{at}.provider"),
                format!("no provider named {provider:?} in this ModelRoute"),
            );
        }
        if model.trim().is_empty() {
            problems.add(
                format!("{at}.model"),
                "the upstream model must not be empty".into(),
            );
        }
        if window == Some(0) {
            problems.add(
                format!("{at}.contextWindow"),
                "a context window is at least 1 token".into(),
            );
        }
        if !seen.insert((provider, model)) {
            problems.add(
                at,
                format!("{provider}/{model} appears twice in this route; list it once"),
            );
        }
    }
    for (i, t) in targets.iter().enumerate() {
        if t.weight == Some(0) {
            problems.add(
                format!("{path}.targets[{i}].weight"),
                "weight must be at least 1; remove the target to send it nothing".into(),
            );
        }
    }
}

fn check_base_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Err(format!(
            "{url:?} must be a plain base URL without query, fragment or spaces"
        ));
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// What Kubernetes allows as a key of a Secret's data.
fn is_secret_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
}

#[cfg(test)]
mod tests;
