//! ModelRoutes -> [`RouteTable`]: validate, resolve keys, build providers and routes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use modelroute_crds::v1alpha1::{
    ApiKeySource, FallbackTarget, ProviderKind, ProviderSpec, RouteSpec, WeightedTarget,
};
use modelroute_crds::{ModelRoute, validate};
use sha2::{Digest, Sha256};

use super::keys::SecretKeys;
use super::limits;
use super::routing;
use super::table::{BreakerPolicy, RetryPolicy, Route, RouteTable, Target, Timeouts};
use crate::dispatch::breaker::Breaker;
use crate::limits::provider::{DEFAULT_MAX_QUEUE, ProviderLimiter};
use crate::provider::{Backend, HttpProvider, MockProvider, Provider, Wire, client};
use crate::route::latency::LatencyStats;
use crate::secret::Secret;
use crate::telemetry::Metrics;

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The Secrets one ModelRoute may name: those of its own namespace.
#[derive(Clone, Copy)]
struct NamespacedKeys<'a> {
    namespace: &'a str,
    keys: &'a SecretKeys,
}

/// Why a config was refused: every problem found, each naming its document and field.
#[derive(Debug, PartialEq, Eq)]
pub struct CompileError {
    pub problems: Vec<String>,
}

/// Builds a table from `docs`. `keys` resolves `apiKey.secretRef` (within each ModelRoute's
/// own namespace). `previous` lends its connection pools and circuit breakers to unchanged
/// endpoints, so a reload neither drops warm connections nor forgets that a target is
/// failing.
pub fn compile(
    docs: &[ModelRoute],
    source: &str,
    keys: &SecretKeys,
    previous: Option<&RouteTable>,
    metrics: &Metrics,
) -> Result<RouteTable, CompileError> {
    let mut problems = Vec::new();
    let mut hasher = Sha256::new();
    let mut providers_out = Vec::new();
    let mut routes = HashMap::new();
    let mut route_owner: HashMap<String, String> = HashMap::new();
    let old_breakers: HashMap<String, Arc<Breaker>> = previous
        .map(|t| {
            t.targets()
                .map(|t| (breaker_key(&t.provider, &t.model), t.breaker.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut breakers: HashMap<String, Arc<Breaker>> = HashMap::new();
    let old_latency: HashMap<String, Arc<LatencyStats>> = previous
        .map(|t| {
            t.targets()
                .map(|t| (breaker_key(&t.provider, &t.model), t.latency.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut latencies: HashMap<String, Arc<LatencyStats>> = HashMap::new();

    for doc in docs {
        let doc_name = doc_name(doc);
        hasher.update(
            serde_json::to_vec(&(&doc.metadata.name, &doc.metadata.namespace, &doc.spec))
                .unwrap_or_default(),
        );
        let invalid = validate(&doc.spec);
        if !invalid.is_empty() {
            problems.extend(invalid.iter().map(|p| format!("{doc_name}: {p}")));
            continue;
        }
        // A ModelRoute may only name Secrets of its own namespace.
        let own_keys = NamespacedKeys {
            namespace: doc.metadata.namespace.as_deref().unwrap_or("default"),
            keys,
        };
        let mut by_name: HashMap<&str, Arc<Provider>> = HashMap::new();
        for (i, spec) in doc.spec.providers.iter().enumerate() {
            let path = format!("{doc_name}: spec.providers[{i}]");
            match build_provider(spec, own_keys, previous, &mut hasher, metrics) {
                Ok(p) => {
                    let p = Arc::new(p);
                    by_name.insert(&spec.name, p.clone());
                    providers_out.push(p);
                }
                Err(e) => problems.push(format!("{path}.{e}")),
            }
        }
        let namespace = doc.metadata.namespace.as_deref().unwrap_or("default");
        let mr_name = doc.metadata.name.as_deref().unwrap_or_default();
        let mut target = |provider: &str, model: &str, weight: u32, context_window| {
            let provider = by_name.get(provider)?.clone();
            let key = breaker_key(&provider, model);
            let label: Arc<str> = format!("{}/{model}", provider.name).into();
            let breaker = breakers
                .entry(key.clone())
                .or_insert_with(|| {
                    old_breakers
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| Arc::new(Breaker::new(metrics.circuit_gauge(&label))))
                })
                .clone();
            let latency = latencies
                .entry(key.clone())
                .or_insert_with(|| old_latency.get(&key).cloned().unwrap_or_default())
                .clone();
            let price = price_of(&doc.spec, &provider, model);
            Some(Arc::new(Target {
                label,
                provider,
                model: model.into(),
                weight,
                breaker,
                price,
                latency,
                context_window,
            }))
        };
        let limits = match limits::compile(&doc.spec, namespace, mr_name, &mut target) {
            Ok(l) => l,
            Err(e) => {
                problems.extend(e.into_iter().map(|p| format!("{doc_name}: {p}")));
                continue;
            }
        };
        let model_route: Arc<str> = {
            let name = doc.metadata.name.as_deref().unwrap_or_default();
            match &doc.metadata.namespace {
                Some(ns) => format!("{ns}/{name}").into(),
                None => name.into(),
            }
        };
        for (i, spec) in doc.spec.routes.iter().enumerate() {
            if let Some(owner) = route_owner.get(&spec.model) {
                problems.push(format!(
                    "{doc_name}: spec.routes[{i}].model: alias {:?} is already routed by {owner}",
                    spec.model
                ));
                continue;
            }
            route_owner.insert(spec.model.clone(), doc_name.clone());
            // A provider that failed to build was reported above.
            let Some((targets, fallbacks)) =
                target_set(&spec.targets, &spec.fallbacks, &mut target)
            else {
                continue;
            };
            let routing = match routing::compile(spec, &mut target) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    problems.push(format!("{doc_name}: spec.routes[{i}].{e}"));
                    continue;
                }
            };
            let every: Vec<Arc<Target>> = targets
                .iter()
                .chain(&fallbacks)
                .chain(
                    routing
                        .rules
                        .iter()
                        .flat_map(|r| r.targets.iter().chain(&r.fallbacks)),
                )
                .cloned()
                .collect();
            let route_limits = limits.for_route(&spec.model);
            if let Err(e) = limits::priced(&route_limits, &every, &[]) {
                problems.push(format!("{doc_name}: spec.routes[{i}]: {e}"));
                continue;
            }
            let alias: Arc<str> = spec.model.as_str().into();
            let ceiling = limits::ceiling(every.iter());
            let route = Route {
                alias: alias.clone(),
                model_route: model_route.clone(),
                targets,
                fallbacks,
                retry: retry_policy(spec),
                timeouts: timeouts(spec),
                breaker: breaker_policy(spec),
                limits: route_limits,
                ceiling,
                strategy: routing.strategy,
                rules: routing.rules,
                hedge: routing.hedge,
                cache: routing.cache,
                affinity: routing.affinity,
            };
            routes.insert(alias, Arc::new(route));
        }
    }
    if !problems.is_empty() {
        return Err(CompileError { problems });
    }
    let mut aliases: Vec<Arc<str>> = routes.keys().cloned().collect();
    aliases.sort_unstable();
    let hash = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(RouteTable {
        version: previous.map_or(1, |p| p.version + 1),
        hash,
        source: source.to_string(),
        snapshot: None,
        routes,
        aliases,
        providers: providers_out,
        redacted: super::redact::redact(docs),
    })
}

/// A route's (or rule's) targets and fallbacks.
pub(super) type TargetLists = (Vec<Arc<Target>>, Vec<Arc<Target>>);

/// Builds a target list and its fallbacks; `None` when a provider failed to build (reported
/// already).
pub(super) fn target_set(
    targets: &[WeightedTarget],
    fallbacks: &[FallbackTarget],
    target: &mut impl FnMut(&str, &str, u32, Option<u64>) -> Option<Arc<Target>>,
) -> Option<TargetLists> {
    let targets = targets
        .iter()
        .map(|t| {
            target(
                &t.provider,
                &t.model,
                t.weight.unwrap_or(1),
                t.context_window,
            )
        })
        .collect::<Option<Vec<_>>>()?;
    let fallbacks = fallbacks
        .iter()
        .map(|t| target(&t.provider, &t.model, 1, t.context_window))
        .collect::<Option<Vec<_>>>()?;
    Some((targets, fallbacks))
}

/// What `model` of `provider` costs: the ModelRoute's `pricing` entry, else the built-in
/// price table's; `None` when neither knows it.
fn price_of(
    spec: &modelroute_crds::ModelRouteSpec,
    provider: &Provider,
    model: &str,
) -> Option<Arc<crate::cost::Price>> {
    use crate::cost::{Price, PriceTable, Rate, Rates, Vendor};
    if let Some(o) = spec.price_override(&provider.name, model) {
        let rate =
            |p: modelroute_crds::TokenPrice| Rate::from_pico_usd_per_token(p.picos_per_token());
        let input = rate(o.input);
        return Some(Arc::new(Price::flat(Rates {
            input,
            cached_input: rate(o.cached_input()),
            cache_write: input,
            cache_write_1h: input,
            output: rate(o.output),
        })));
    }
    let base_url = spec
        .providers
        .iter()
        .find(|p| *p.name == *provider.name)
        .and_then(|p| p.base_url.as_deref());
    let vendor = Vendor::of(provider.kind, base_url)?;
    let table = PriceTable::builtin().ok()?;
    table.lookup(vendor, model).cloned().map(Arc::new)
}

fn build_provider(
    spec: &ProviderSpec,
    keys: NamespacedKeys<'_>,
    previous: Option<&RouteTable>,
    hasher: &mut Sha256,
    metrics: &Metrics,
) -> Result<Provider, String> {
    let connect_timeout = spec
        .connect_timeout
        .map_or(DEFAULT_CONNECT_TIMEOUT, Into::into);
    let wire = match spec.kind {
        ProviderKind::Mock => {
            let mock = MockProvider::new(spec.mock.clone().unwrap_or_default());
            let endpoint = format!("mock|{}", spec.name);
            return Ok(Provider {
                name: spec.name.as_str().into(),
                kind: spec.kind,
                limiter: limiter(spec, previous, &endpoint),
                endpoint,
                backend: Backend::Mock(mock),
            });
        }
        ProviderKind::OpenAi => Wire::OpenAi,
        ProviderKind::AzureOpenAi => Wire::Azure,
        ProviderKind::Anthropic => Wire::Anthropic,
        ProviderKind::Gemini => Wire::Gemini,
    };
    let base = spec
        .base_url
        .as_deref()
        .or(spec.kind.default_base_url())
        .ok_or("baseUrl: required for this kind")?
        .trim_end_matches('/')
        .to_string();
    let key = match &spec.api_key {
        Some(source) => Some(resolve_key(source, keys)?),
        None => None,
    };
    if let Some(k) = &key {
        hasher.update(Sha256::digest(k.expose().as_bytes()));
    }
    let auth = match &key {
        Some(k) => {
            let (name, value) = wire.auth_header(k.expose());
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                let field = spec.api_key.as_ref().map_or("apiKey", key_field);
                format!("{field}: the key contains characters not allowed in a header")
            })?;
            value.set_sensitive(true);
            Some(Secret::new((name, value)))
        }
        None => None,
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &spec.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("headers.{name}: the value is not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    let endpoint = format!("{:?}|{base}|{}ms", spec.kind, connect_timeout.as_millis());
    let client = previous
        .and_then(|t| t.providers().iter().find(|p| p.endpoint == endpoint))
        .and_then(|p| match &p.backend {
            Backend::Http(h) => Some(h.client.clone()),
            Backend::Mock(_) => None,
        })
        .unwrap_or_else(|| {
            // Counted per upstream host: a label from the config, never from a request.
            let host = base
                .parse::<http::Uri>()
                .ok()
                .and_then(|u| u.host().map(str::to_string));
            let counts = metrics.connection_counts(host.as_deref().unwrap_or_default());
            client::build(connect_timeout, counts)
        });
    let backend = Backend::Http(HttpProvider {
        wire,
        base,
        api_version: spec.api_version.clone(),
        auth,
        key,
        headers,
        stream_usage: spec.stream_usage.unwrap_or(true),
        client,
    });
    Ok(Provider {
        name: spec.name.as_str().into(),
        kind: spec.kind,
        limiter: limiter(spec, previous, &endpoint),
        endpoint,
        backend,
    })
}

/// The provider's account limits, kept across a reload that changes neither them nor the
/// endpoint (so what was used this minute still counts).
fn limiter(
    spec: &ProviderSpec,
    previous: Option<&RouteTable>,
    endpoint: &str,
) -> Option<Arc<ProviderLimiter>> {
    let limit = spec.rate_limit.as_ref()?;
    let rpm = limit.requests_per_minute.map_or(0, u64::from);
    let tpm = limit.tokens_per_minute.map_or(0, u64::from);
    let queue = limit.max_queue.map_or(DEFAULT_MAX_QUEUE, Into::into);
    let kept = previous
        .and_then(|t| t.providers().iter().find(|p| p.endpoint == endpoint))
        .and_then(|p| p.limiter.clone())
        .filter(|l| l.same(rpm, tpm, queue));
    Some(kept.unwrap_or_else(|| Arc::new(ProviderLimiter::new(rpm, tpm, queue))))
}

/// Reads a key from its source. Messages name the source, never the key.
fn resolve_key(source: &ApiKeySource, keys: NamespacedKeys<'_>) -> Result<Secret<String>, String> {
    let key = if let Some(var) = &source.env {
        std::env::var(var)
            .map_err(|_| format!("apiKey.env: environment variable {var} is not set"))?
    } else if let Some(path) = &source.file {
        std::fs::read_to_string(path)
            .map_err(|e| format!("apiKey.file: cannot read {path}: {e}"))?
    } else if let Some(value) = &source.value {
        value.clone()
    } else if let Some(r) = &source.secret_ref {
        let key = keys
            .keys
            .resolve(keys.namespace, &r.name, &r.key)
            .map_err(|e| format!("apiKey.secretRef: {e}"))?;
        key.expose().clone()
    } else {
        return Err("apiKey: no key source (env, file, value or secretRef)".into());
    };
    let key = key.trim().to_string();
    if key.is_empty() {
        let field = key_field(source);
        return Err(format!("{field}: the key is empty"));
    }
    Ok(Secret::new(key))
}

/// The field a key came from, for messages.
fn key_field(source: &ApiKeySource) -> &'static str {
    if source.env.is_some() {
        "apiKey.env"
    } else if source.file.is_some() {
        "apiKey.file"
    } else if source.value.is_some() {
        "apiKey.value"
    } else {
        "apiKey.secretRef"
    }
}

fn breaker_key(provider: &Provider, model: &str) -> String {
    format!("{}|{}|{model}", provider.endpoint, provider.name)
}

fn doc_name(doc: &ModelRoute) -> String {
    let name = doc.metadata.name.as_deref().unwrap_or("<unnamed>");
    match &doc.metadata.namespace {
        Some(ns) => format!("ModelRoute {ns}/{name}"),
        None => format!("ModelRoute {name}"),
    }
}

fn retry_policy(spec: &RouteSpec) -> RetryPolicy {
    let d = RetryPolicy::default();
    let Some(r) = &spec.retry else { return d };
    RetryPolicy {
        attempts: r.attempts.unwrap_or(d.attempts),
        backoff_base: r.backoff_base.map_or(d.backoff_base, Into::into),
        backoff_max: r.backoff_max.map_or(d.backoff_max, Into::into),
        max_retry_after: r.max_retry_after.map_or(d.max_retry_after, Into::into),
    }
}

fn timeouts(spec: &RouteSpec) -> Timeouts {
    let d = Timeouts::default();
    let Some(t) = &spec.timeouts else { return d };
    let total = t.total.map_or(d.total, Into::into);
    Timeouts {
        first_byte: t.first_byte.map_or(d.first_byte.min(total), Into::into),
        idle: t.idle.map_or(d.idle, Into::into),
        total,
        keep_alive: t.keep_alive.map_or(d.keep_alive, Into::into),
    }
}

fn breaker_policy(spec: &RouteSpec) -> BreakerPolicy {
    let d = BreakerPolicy::default();
    let Some(b) = &spec.circuit_breaker else {
        return d;
    };
    BreakerPolicy {
        consecutive_failures: b.consecutive_failures.unwrap_or(d.consecutive_failures),
        cooldown: b.cooldown.map_or(d.cooldown, Into::into),
    }
}

// === impl CompileError ===

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.problems.join("; "))
    }
}

impl std::error::Error for CompileError {}

#[cfg(test)]
mod tests;
