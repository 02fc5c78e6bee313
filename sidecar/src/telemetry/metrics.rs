//! Prometheus metrics, served as text on the admin port's `/metrics`.
//!
//! One registry, built at startup and passed down; no global recorder. Labels are bounded:
//! route aliases and targets come from the config, never from a request, and statuses and
//! outcomes are small fixed sets.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::Usage;

/// A label value shared with the config (cloning is a reference count, not a copy).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Label(pub Arc<str>);

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct Status(pub u16);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Label,
    target: Label,
    status: Status,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    route: Label,
    target: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    route: Label,
    target: Label,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    route: Label,
    target: Label,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    route: Label,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CircuitLabels {
    target: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CostLabels {
    route: Label,
    target: Label,
    estimated: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    route: Label,
    budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThresholdLabels {
    route: Label,
    budget: String,
    percent: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RateLimitLabels {
    route: Label,
    limit: String,
    kind: &'static str,
}

/// A budget across its scope values, in its current window (`ns/modelroute/name`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LedgerLabels {
    budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The GenAI conventions' attributes, as Prometheus labels (dots become underscores).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenAiLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: Label,
    gen_ai_response_model: Label,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenAiTokenLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: Label,
    gen_ai_response_model: Label,
    gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GenAiStreamLabels {
    gen_ai_operation_name: &'static str,
    gen_ai_provider_name: &'static str,
    gen_ai_request_model: Label,
    gen_ai_response_model: Label,
}

/// A finished model call, for the GenAI metrics.
#[derive(Debug)]
pub struct GenAiCall<'a> {
    /// `gen_ai.operation.name`.
    pub operation: &'static str,
    /// `gen_ai.provider.name` of the target that answered ("" when none did).
    pub provider: &'static str,
    /// The route alias (never a name from a request that matched no route).
    pub request_model: &'a Arc<str>,
    /// The target's model, when one answered.
    pub response_model: Option<&'a Arc<str>>,
    /// The error's kind, as in `modelroute_errors_total`.
    pub error: Option<&'static str>,
    pub secs: f64,
    pub usage: Option<crate::cost::TokenUsage>,
    /// Streams: seconds to the first event the client got.
    pub ttft: Option<f64>,
}

/// The metrics the OpenTelemetry GenAI conventions define, under their Prometheus names.
#[derive(Debug)]
struct GenAiMetrics {
    duration: HistogramFamily<GenAiLabels>,
    tokens: HistogramFamily<GenAiTokenLabels>,
    ttft: HistogramFamily<GenAiStreamLabels>,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric family of the sidecar.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily<RouteLabels>,
    ttft: HistogramFamily<TargetLabels>,
    attempts: Family<AttemptLabels, Counter>,
    retries: Family<TargetLabels, Counter>,
    fallbacks: Family<RouteLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    circuit: Family<CircuitLabels, Gauge>,
    streams_active: Gauge,
    stream_bytes: Family<TargetLabels, Counter>,
    connections_opened: Family<HostLabels, Counter>,
    connections_open: Family<HostLabels, Gauge>,
    audit_dropped: Counter,
    config_version: Gauge,
    config_reloads: Family<ResultLabels, Counter>,
    operator_connected: Gauge,
    operator_connects: Family<ResultLabels, Counter>,
    operator_snapshots: Family<ResultLabels, Counter>,
    cost: Family<CostLabels, Counter<f64, AtomicU64>>,
    budget_rejections: Family<BudgetLabels, Counter>,
    budget_downgrades: Family<BudgetLabels, Counter>,
    budget_thresholds: Family<ThresholdLabels, Counter>,
    rate_limited: Family<RateLimitLabels, Counter>,
    budget_spent: Family<LedgerLabels, Gauge<f64, AtomicU64>>,
    budget_remaining: Family<LedgerLabels, Gauge<f64, AtomicU64>>,
    gen_ai: GenAiMetrics,
    pub routing: super::routing_metrics::RoutingMetrics,
}

// === impl Metrics ===

impl Metrics {
    pub fn new() -> Self {
        Self::with_spans_dropped(Counter::default())
    }

    /// Metrics whose `modelroute_spans_dropped_total` is `spans_dropped`, the counter the
    /// span exporter (started before the sidecar) already holds.
    pub fn with_spans_dropped(spans_dropped: Counter) -> Self {
        let mut registry = Registry::default();
        let requests = Family::default();
        let duration: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency);
        let ttft: HistogramFamily<TargetLabels> = Family::new_with_constructor(latency);
        let attempts = Family::default();
        let retries = Family::default();
        let fallbacks = Family::default();
        let errors = Family::default();
        let tokens = Family::default();
        let circuit = Family::default();
        let streams_active = Gauge::default();
        let stream_bytes = Family::default();
        let connections_opened = Family::default();
        let connections_open = Family::default();
        let audit_dropped = Counter::default();
        let config_version = Gauge::default();
        let config_reloads = Family::default();
        let operator_connected = Gauge::default();
        let operator_connects = Family::default();
        let operator_snapshots = Family::default();
        let cost = Family::default();
        let budget_rejections = Family::default();
        let budget_downgrades = Family::default();
        let budget_thresholds = Family::default();
        let rate_limited = Family::default();
        let budget_spent = Family::default();
        let budget_remaining = Family::default();
        let gen_ai = GenAiMetrics::new();
        let routing = super::routing_metrics::RoutingMetrics::default();
        let r = &mut registry;
        gen_ai.register(r);
        routing.register(r);
        r.register(
            "modelroute_cost_usd",
            "Spend in USD from upstream usage and prices (estimated=true: usage estimated)",
            cost.clone(),
        );
        r.register(
            "modelroute_budget_rejections",
            "Requests refused because a budget was spent",
            budget_rejections.clone(),
        );
        r.register(
            "modelroute_budget_downgrades",
            "Requests sent to a budget's downgrade target because it was spent",
            budget_downgrades.clone(),
        );
        r.register(
            "modelroute_budget_threshold_crossings",
            "Budget thresholds crossed (once per budget, scope value, window and threshold)",
            budget_thresholds.clone(),
        );
        r.register(
            "modelroute_rate_limited",
            "Requests refused by a rate limit, by kind (requests, tokens)",
            rate_limited.clone(),
        );
        r.register(
            "modelroute_budget_spent_usd",
            "Spend known to this sidecar in each budget's current window, all scope values",
            budget_spent.clone(),
        );
        r.register(
            "modelroute_budget_remaining_usd",
            "What this sidecar may still spend in each budget's current window (standalone: \
             the rest of the budget; under the operator: its allowance), all scope values",
            budget_remaining.clone(),
        );
        r.register(
            "modelroute_requests",
            "Client requests answered, by route, serving target and HTTP status",
            requests.clone(),
        );
        r.register(
            "modelroute_request_duration_seconds",
            "Time from request to the end of the response",
            duration.clone(),
        );
        r.register(
            "modelroute_time_to_first_token_seconds",
            "Streams: time from request to the first event sent to the client",
            ttft.clone(),
        );
        r.register(
            "modelroute_upstream_attempts",
            "Upstream tries by outcome (ok, status_4xx, status_429, status_5xx, timeout, \
             connect_error, stream_error, circuit_open)",
            attempts.clone(),
        );
        r.register(
            "modelroute_retries",
            "Retries of the same target",
            retries.clone(),
        );
        r.register(
            "modelroute_fallbacks",
            "Requests moved on to another target after a failure",
            fallbacks.clone(),
        );
        r.register(
            "modelroute_errors",
            "Requests that ended in an error, by kind",
            errors.clone(),
        );
        r.register(
            "modelroute_tokens",
            "Tokens from upstream usage",
            tokens.clone(),
        );
        r.register(
            "modelroute_circuit_state",
            "Circuit breaker per target: 0 closed, 1 half-open, 2 open",
            circuit.clone(),
        );
        r.register(
            "modelroute_streams_active",
            "Streams being relayed now",
            streams_active.clone(),
        );
        r.register(
            "modelroute_stream_bytes",
            "Streams: bytes of events sent to clients",
            stream_bytes.clone(),
        );
        r.register(
            "modelroute_upstream_connections_opened",
            "Connections opened to upstream hosts (a pool reuses them across requests)",
            connections_opened.clone(),
        );
        r.register(
            "modelroute_upstream_connections_open",
            "Connections to upstream hosts open now (idle in the pool or in use)",
            connections_open.clone(),
        );
        r.register(
            "modelroute_audit_dropped",
            "Audit records dropped because the writer fell behind (a full queue)",
            audit_dropped.clone(),
        );
        r.register(
            "modelroute_spans_dropped",
            "Trace spans dropped because the OTLP exporter fell behind (a full queue)",
            spans_dropped,
        );
        r.register(
            "modelroute_config_version",
            "Version of the active config (counts applied configs)",
            config_version.clone(),
        );
        r.register(
            "modelroute_config_reloads",
            "Config loads by result (applied, rejected)",
            config_reloads.clone(),
        );
        r.register(
            "modelroute_operator_connected",
            "1 while a session with the operator is open, else 0",
            operator_connected.clone(),
        );
        r.register(
            "modelroute_operator_connects",
            "Session attempts with the operator by result (ok, refused, error)",
            operator_connects.clone(),
        );
        r.register(
            "modelroute_operator_snapshots",
            "Operator snapshots answered, by result (ack, nack)",
            operator_snapshots.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            ttft,
            attempts,
            retries,
            fallbacks,
            errors,
            tokens,
            circuit,
            streams_active,
            stream_bytes,
            connections_opened,
            connections_open,
            audit_dropped,
            config_version,
            config_reloads,
            operator_connected,
            operator_connects,
            operator_snapshots,
            cost,
            budget_rejections,
            budget_downgrades,
            budget_thresholds,
            rate_limited,
            budget_spent,
            budget_remaining,
            gen_ai,
            routing,
        }
    }

    /// A finished model call, in the GenAI metrics.
    pub fn gen_ai(&self, call: &GenAiCall<'_>) {
        self.gen_ai.record(call);
    }

    /// A request's cost at its target's price.
    pub fn cost(&self, route: &Arc<str>, target: &Arc<str>, cost: crate::cost::Cost) {
        let labels = CostLabels {
            route: Label(route.clone()),
            target: Label(target.clone()),
            estimated: if cost.estimated { "true" } else { "false" },
        };
        // nano-USD to USD; exact sums stay in the ledger, this is for dashboards.
        #[expect(clippy::cast_precision_loss, reason = "a dashboard figure")]
        let usd = cost.nano_usd as f64 / 1e9;
        self.cost.get_or_create(&labels).inc_by(usd);
    }

    pub fn budget_rejected(&self, route: &str, budget: &str) {
        self.budget_rejections
            .get_or_create(&budget_labels(route, budget))
            .inc();
    }

    pub fn budget_downgraded(&self, route: &str, budget: &str) {
        self.budget_downgrades
            .get_or_create(&budget_labels(route, budget))
            .inc();
    }

    pub fn budget_threshold(&self, route: &str, budget: &str, percent: u32) {
        let labels = ThresholdLabels {
            route: Label(route.into()),
            budget: budget.to_string(),
            percent,
        };
        self.budget_thresholds.get_or_create(&labels).inc();
    }

    pub fn rate_limited(&self, route: &str, limit: &str, kind: &'static str) {
        let labels = RateLimitLabels {
            route: Label(route.into()),
            limit: limit.to_string(),
            kind,
        };
        self.rate_limited.get_or_create(&labels).inc();
    }

    /// Sets the ledger gauges: per budget (`ns/modelroute/name`), spent and remaining
    /// nano-USD in its current window. Budgets no longer present are dropped.
    pub fn ledger(&self, budgets: impl IntoIterator<Item = (String, u64, u64)>) {
        self.budget_spent.clear();
        self.budget_remaining.clear();
        for (budget, spent, remaining) in budgets {
            let labels = LedgerLabels { budget };
            #[expect(clippy::cast_precision_loss, reason = "a dashboard figure")]
            let (spent, remaining) = (spent as f64 / 1e9, remaining as f64 / 1e9);
            self.budget_spent.get_or_create(&labels).set(spent);
            self.budget_remaining.get_or_create(&labels).set(remaining);
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn request(&self, route: &Arc<str>, target: Option<&Arc<str>>, status: u16, secs: f64) {
        let route = Label(route.clone());
        let target = Label(target.cloned().unwrap_or_else(|| Arc::from("")));
        self.requests
            .get_or_create(&RequestLabels {
                route: route.clone(),
                target,
                status: Status(status),
            })
            .inc();
        self.duration
            .get_or_create(&RouteLabels { route })
            .observe(secs);
    }

    pub fn error(&self, route: &Arc<str>, kind: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels {
                route: Label(route.clone()),
                kind,
            })
            .inc();
    }

    /// The counters of an upstream pool's connections to `host`.
    pub fn connection_counts(&self, host: &str) -> crate::provider::client::ConnectionCounts {
        let labels = HostLabels {
            host: host.to_string(),
        };
        crate::provider::client::ConnectionCounts {
            opened: self.connections_opened.get_or_create(&labels).clone(),
            open: self.connections_open.get_or_create(&labels).clone(),
        }
    }

    /// The counter of bytes streamed to clients for `route` served by `target`.
    pub fn stream_bytes(&self, route: &Arc<str>, target: &Arc<str>) -> Counter {
        self.stream_bytes
            .get_or_create(&target_labels(route, target))
            .clone()
    }

    pub fn ttft(&self, route: &Arc<str>, target: &Arc<str>, secs: f64) {
        self.ttft
            .get_or_create(&target_labels(route, target))
            .observe(secs);
    }

    pub fn attempt(&self, route: &Arc<str>, target: &Arc<str>, outcome: &'static str) {
        let labels = AttemptLabels {
            route: Label(route.clone()),
            target: Label(target.clone()),
            outcome,
        };
        self.attempts.get_or_create(&labels).inc();
    }

    pub fn retry(&self, route: &Arc<str>, target: &Arc<str>) {
        self.retries
            .get_or_create(&target_labels(route, target))
            .inc();
    }

    pub fn hedge(&self, route: &Arc<str>, outcome: &'static str) {
        self.routing.hedge(route, outcome);
    }

    pub fn fallback(&self, route: &Arc<str>) {
        self.fallbacks
            .get_or_create(&RouteLabels {
                route: Label(route.clone()),
            })
            .inc();
    }

    pub fn tokens(&self, route: &Arc<str>, target: &Arc<str>, usage: Usage) {
        for (direction, n) in [
            ("input", usage.prompt_tokens),
            ("output", usage.completion_tokens),
        ] {
            let labels = TokenLabels {
                route: Label(route.clone()),
                target: Label(target.clone()),
                direction,
            };
            self.tokens.get_or_create(&labels).inc_by(n);
        }
    }

    /// The gauge a target's circuit breaker keeps up to date.
    pub fn circuit_gauge(&self, target: &Arc<str>) -> Gauge {
        self.circuit
            .get_or_create(&CircuitLabels {
                target: Label(target.clone()),
            })
            .clone()
    }

    /// The counter of audit records dropped (shared with the audit log).
    pub fn audit_dropped(&self) -> Counter {
        self.audit_dropped.clone()
    }

    pub fn streams_active(&self) -> &Gauge {
        &self.streams_active
    }

    pub fn config_applied(&self, version: u64) {
        self.config_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        self.config_reloads
            .get_or_create(&ResultLabels { result: "applied" })
            .inc();
    }

    pub fn config_rejected(&self) {
        self.config_reloads
            .get_or_create(&ResultLabels { result: "rejected" })
            .inc();
    }

    pub fn operator_connected(&self, connected: bool) {
        self.operator_connected.set(i64::from(connected));
    }

    /// One session attempt: `ok`, `refused` (the operator answered with an error status) or
    /// `error` (no answer: token, CA bundle, network, TLS).
    pub fn operator_connect(&self, result: &'static str) {
        self.operator_connects
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// One snapshot answered: `ack` or `nack`.
    pub fn operator_snapshot(&self, result: &'static str) {
        self.operator_snapshots
            .get_or_create(&ResultLabels { result })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn budget_labels(route: &str, budget: &str) -> BudgetLabels {
    BudgetLabels {
        route: Label(route.into()),
        budget: budget.to_string(),
    }
}

fn target_labels(route: &Arc<str>, target: &Arc<str>) -> TargetLabels {
    TargetLabels {
        route: Label(route.clone()),
        target: Label(target.clone()),
    }
}

// === impl GenAiMetrics ===

impl GenAiMetrics {
    fn new() -> Self {
        Self {
            duration: Family::new_with_constructor(|| {
                // The conventions' advised boundaries: 10 ms doubling to 82 s.
                Histogram::new(exponential_buckets(0.01, 2.0, 14))
            }),
            tokens: Family::new_with_constructor(|| {
                // 1 to 67M tokens, times 4.
                Histogram::new(exponential_buckets(1.0, 4.0, 14))
            }),
            ttft: Family::new_with_constructor(|| {
                Histogram::new([
                    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                    5.0, 7.5, 10.0,
                ])
            }),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "gen_ai_client_operation_duration_seconds",
            "GenAI operation duration (OpenTelemetry gen_ai.client.operation.duration)",
            self.duration.clone(),
        );
        r.register(
            "gen_ai_client_token_usage",
            "Tokens used per operation (OpenTelemetry gen_ai.client.token.usage)",
            self.tokens.clone(),
        );
        r.register(
            "gen_ai_server_time_to_first_token_seconds",
            "Streams: time to the first event (OpenTelemetry gen_ai.server.time_to_first_token)",
            self.ttft.clone(),
        );
    }

    fn record(&self, call: &GenAiCall<'_>) {
        let request_model = Label(call.request_model.clone());
        let response_model = Label(
            call.response_model
                .cloned()
                .unwrap_or_else(|| Arc::from("")),
        );
        let labels = GenAiLabels {
            gen_ai_operation_name: call.operation,
            gen_ai_provider_name: call.provider,
            gen_ai_request_model: request_model.clone(),
            gen_ai_response_model: response_model.clone(),
            error_type: call.error.unwrap_or(""),
        };
        self.duration.get_or_create(&labels).observe(call.secs);
        if let Some(usage) = call.usage {
            for (kind, n) in [
                ("input", usage.prompt_tokens()),
                ("output", usage.output_tokens()),
            ] {
                let labels = GenAiTokenLabels {
                    gen_ai_operation_name: call.operation,
                    gen_ai_provider_name: call.provider,
                    gen_ai_request_model: request_model.clone(),
                    gen_ai_response_model: response_model.clone(),
                    gen_ai_token_type: kind,
                };
                #[expect(clippy::cast_precision_loss, reason = "a histogram sample")]
                self.tokens.get_or_create(&labels).observe(n as f64);
            }
        }
        if let Some(secs) = call.ttft {
            let labels = GenAiStreamLabels {
                gen_ai_operation_name: call.operation,
                gen_ai_provider_name: call.provider,
                gen_ai_request_model: request_model,
                gen_ai_response_model: response_model,
            };
            self.ttft.get_or_create(&labels).observe(secs);
        }
    }
}

/// Buckets from 1 ms to about 131 s, doubling: LLM latencies span five orders of magnitude.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

// === impl Label ===

impl EncodeLabelValue for Label {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

impl EncodeLabelValue for Status {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        write!(encoder, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_with_their_labels() {
        let m = Metrics::new();
        let route: Arc<str> = "gpt-4o".into();
        let target: Arc<str> = "openai/gpt-4o".into();
        m.request(&route, Some(&target), 200, 0.25);
        m.tokens(
            &route,
            &target,
            Usage {
                prompt_tokens: 3,
                completion_tokens: 7,
            },
        );
        m.circuit_gauge(&target).set(2);
        let text = m.encode();
        assert!(
            text.contains(
                r#"modelroute_requests_total{route="gpt-4o",target="openai/gpt-4o",status="200"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"modelroute_tokens_total{route="gpt-4o",target="openai/gpt-4o",direction="output"} 7"#), "{text}");
        assert!(
            text.contains(r#"modelroute_circuit_state{target="openai/gpt-4o"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"modelroute_request_duration_seconds_count{route="gpt-4o"} 1"#),
            "{text}"
        );
    }
}
