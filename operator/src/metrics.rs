//! The operator's Prometheus metrics, served on the admin port's `/metrics`.
//!
//! Labels are small fixed sets (results, refusal reasons); nothing per pod, and per
//! ModelRoute only for budgets (namespace, ModelRoute, budget and window or threshold: one
//! series per budget, never per scope value), so cardinality grows with the budgets people
//! write, not with the fleet or its tenants.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use crate::ledger::book::Total;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// One budget in one window.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    namespace: String,
    modelroute: String,
    budget: String,
    window: String,
}

/// One threshold of one budget.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThresholdLabels {
    namespace: String,
    modelroute: String,
    budget: String,
    percent: u32,
}

/// One budget.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetNameLabels {
    namespace: String,
    modelroute: String,
    budget: String,
}

type UsdGauge = Gauge<f64, AtomicU64>;

/// Every metric family of the operator.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connected: Gauge,
    refused: Family<ReasonLabels, Counter>,
    stream_errors: Family<ReasonLabels, Counter>,
    snapshots_sent: Counter,
    acks: Family<ResultLabels, Counter>,
    convergence: Histogram,
    world_version: Gauge,
    routes: Family<ResultLabels, Gauge>,
    reconciles: Family<ResultLabels, Counter>,
    leader: Gauge,
    webhook_reviews: Family<OutcomeLabels, Counter>,
    webhook_duration: Histogram,
    usage_reports: Family<ResultLabels, Counter>,
    usage_ignored: Family<ReasonLabels, Counter>,
    ledger_writes: Family<ResultLabels, Counter>,
    budget_spent: Family<BudgetLabels, UsdGauge>,
    budget_remaining: Family<BudgetLabels, UsdGauge>,
    budget_thresholds: Family<ThresholdLabels, Counter>,
    budget_exhausted: Family<BudgetNameLabels, Counter>,
    /// The budget series set last, so the ones gone (a window ended) can be removed.
    budget_series: Mutex<HashSet<BudgetLabels>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

// === impl Metrics ===

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_spans_dropped(Counter::default())
    }

    /// Metrics whose `modelroute_operator_spans_dropped_total` is `spans_dropped`, the
    /// counter the span exporter (started before the operator) already holds.
    pub fn with_spans_dropped(spans_dropped: Counter) -> Self {
        let mut registry = Registry::with_prefix("modelroute_operator");
        registry.register(
            "spans_dropped",
            "Trace spans dropped because the OTLP exporter fell behind (a full queue)",
            spans_dropped,
        );
        let connected = Gauge::default();
        registry.register(
            "sidecars_connected",
            "Sidecars with an authenticated session",
            connected.clone(),
        );
        let refused = Family::default();
        registry.register(
            "sessions_refused",
            "Sessions refused at the hello, by reason",
            refused.clone(),
        );
        let stream_errors = Family::default();
        registry.register(
            "session_errors",
            "Sessions ended by a protocol error (malformed or unexpected message)",
            stream_errors.clone(),
        );
        let snapshots_sent = Counter::default();
        registry.register(
            "snapshots_sent",
            "Snapshots sent to sidecars",
            snapshots_sent.clone(),
        );
        let acks = Family::default();
        registry.register(
            "snapshot_replies",
            "Sidecar answers to snapshots (result=ack|nack)",
            acks.clone(),
        );
        // 1 ms .. ~33 s.
        let convergence = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "push_convergence_seconds",
            "From a change the operator saw to a sidecar's ACK of the snapshot holding it",
            convergence.clone(),
        );
        let world_version = Gauge::default();
        registry.register(
            "config_version",
            "Version of the state the operator serves (increases with every change)",
            world_version.clone(),
        );
        let routes = Family::default();
        registry.register(
            "modelroutes",
            "ModelRoutes known, by result (valid|invalid)",
            routes.clone(),
        );
        let reconciles = Family::default();
        registry.register(
            "reconciles",
            "Status reconciles, by result (ok|error)",
            reconciles.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let webhook_reviews = Family::default();
        registry.register(
            "webhook_reviews",
            "Admission reviews answered, by outcome (injected|denied|malformed|ignored|not_requested|opted_out|already_injected|excluded_namespace|host_network|error)",
            webhook_reviews.clone(),
        );
        // 50 µs .. ~1.6 s.
        let webhook_duration = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "webhook_review_seconds",
            "Time to read, judge and answer one admission review",
            webhook_duration.clone(),
        );
        let usage_reports = Family::default();
        registry.register(
            "usage_reports",
            "Usage reports from sidecars, by result (applied|duplicate)",
            usage_reports.clone(),
        );
        let usage_ignored = Family::default();
        registry.register(
            "usage_keys_ignored",
            "Keys of usage reports not booked, by reason (other_namespace|unknown_budget|bad_window|stale_window|long_scope_value|other_pod|scoped_route|too_many_scope_values|missing)",
            usage_ignored.clone(),
        );
        let ledger_writes = Family::default();
        registry.register(
            "ledger_writes",
            "Writes of the budget ledger (status.budgets or --ledger-file), by result (ok|error)",
            ledger_writes.clone(),
        );
        let budget_spent = Family::default();
        registry.register(
            "budget_spent_usd",
            "Spend recorded per budget and window (summed over scope values)",
            budget_spent.clone(),
        );
        let budget_remaining = Family::default();
        registry.register(
            "budget_remaining_usd",
            "Amount left per budget and window (for scoped budgets: the smallest of any scope value that spent)",
            budget_remaining.clone(),
        );
        let budget_thresholds = Family::default();
        registry.register(
            "budget_threshold_crossings",
            "Budget thresholds crossed (once per scope value and window)",
            budget_thresholds.clone(),
        );
        let budget_exhausted = Family::default();
        registry.register(
            "budget_exhausted",
            "Budgets with nothing left to grant (once per scope value and window)",
            budget_exhausted.clone(),
        );
        Self {
            registry,
            usage_reports,
            usage_ignored,
            ledger_writes,
            budget_spent,
            budget_remaining,
            budget_thresholds,
            budget_exhausted,
            budget_series: Mutex::default(),
            webhook_reviews,
            webhook_duration,
            connected,
            refused,
            stream_errors,
            snapshots_sent,
            acks,
            convergence,
            world_version,
            routes,
            reconciles,
            leader,
        }
    }

    pub fn webhook_review(&self, outcome: &'static str, took: std::time::Duration) {
        self.webhook_reviews
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.webhook_duration.observe(took.as_secs_f64());
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn session_opened(&self) {
        self.connected.inc();
    }

    pub fn session_closed(&self) {
        self.connected.dec();
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn session_error(&self, reason: &'static str) {
        self.stream_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn snapshot_sent(&self) {
        self.snapshots_sent.inc();
    }

    pub fn ack(&self, converged_after: Option<std::time::Duration>) {
        self.acks
            .get_or_create(&ResultLabels { result: "ack" })
            .inc();
        if let Some(d) = converged_after {
            self.convergence.observe(d.as_secs_f64());
        }
    }

    pub fn nack(&self) {
        self.acks
            .get_or_create(&ResultLabels { result: "nack" })
            .inc();
    }

    pub fn world(&self, version: u64, valid: usize, invalid: usize) {
        self.world_version
            .set(i64::try_from(version).unwrap_or(i64::MAX));
        let set = |result, n: usize| {
            self.routes
                .get_or_create(&ResultLabels { result })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("valid", valid);
        set("invalid", invalid);
    }

    pub fn reconciled(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reconciles
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn usage_report(&self, duplicate: bool) {
        let result = if duplicate { "duplicate" } else { "applied" };
        self.usage_reports
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn usage_key_ignored(&self, reason: &'static str) {
        self.usage_ignored
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn ledger_write(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.ledger_writes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    pub fn budget_threshold(&self, namespace: &str, modelroute: &str, budget: &str, percent: u32) {
        self.budget_thresholds
            .get_or_create(&ThresholdLabels {
                namespace: namespace.into(),
                modelroute: modelroute.into(),
                budget: budget.into(),
                percent,
            })
            .inc();
    }

    pub fn budget_exhausted(&self, namespace: &str, modelroute: &str, budget: &str) {
        self.budget_exhausted
            .get_or_create(&BudgetNameLabels {
                namespace: namespace.into(),
                modelroute: modelroute.into(),
                budget: budget.into(),
            })
            .inc();
    }

    /// Sets spend and remaining of every budget and window; removes the series of those
    /// that are gone.
    pub fn budgets(&self, totals: &[Total]) {
        // Metrics are not accounting: an f64 of USD is fine here.
        let usd = |nanos: u64| nanos as f64 / 1e9;
        let mut now = HashSet::with_capacity(totals.len());
        for t in totals {
            let labels = BudgetLabels {
                namespace: t.budget.route.namespace.clone(),
                modelroute: t.budget.route.name.clone(),
                budget: t.budget.budget.clone(),
                window: t.window.to_string(),
            };
            self.budget_spent.get_or_create(&labels).set(usd(t.spent));
            self.budget_remaining
                .get_or_create(&labels)
                .set(usd(t.remaining));
            now.insert(labels);
        }
        let Ok(mut series) = self.budget_series.lock() else {
            return;
        };
        for gone in series.difference(&now) {
            self.budget_spent.remove(gone);
            self.budget_remaining.remove(gone);
        }
        *series = now;
    }

    /// Removes every budget gauge (this replica stopped leading).
    pub fn clear_budgets(&self) {
        self.budgets(&[]);
    }
}
