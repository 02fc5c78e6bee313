//! Metrics of routing decisions: which rule matched, hedged tries, the response cache.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::metrics::Label;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuleLabels {
    route: Label,
    rule: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    route: Label,
    outcome: &'static str,
}

#[derive(Debug, Default)]
pub struct RoutingMetrics {
    rules: Family<RuleLabels, Counter>,
    hedges: Family<OutcomeLabels, Counter>,
    cache: Family<OutcomeLabels, Counter>,
    cache_entries: Gauge,
    cache_bytes: Gauge,
}

impl RoutingMetrics {
    pub fn register(&self, r: &mut Registry) {
        r.register(
            "modelroute_rule_matches",
            "Requests sent to a match rule's targets, by route and rule",
            self.rules.clone(),
        );
        r.register(
            "modelroute_hedges",
            "Hedged tries: started, denied (hedge budget spent), first_won, hedge_won",
            self.hedges.clone(),
        );
        r.register(
            "modelroute_cache_lookups",
            "Response cache lookups: hit, miss, bypass (Cache-Control: no-cache), \
             uncacheable (not deterministic), stored",
            self.cache.clone(),
        );
        r.register(
            "modelroute_cache_entries",
            "Answers held by the response cache",
            self.cache_entries.clone(),
        );
        r.register(
            "modelroute_cache_bytes",
            "Memory held by the response cache's answers (its bound: --cache-max-bytes)",
            self.cache_bytes.clone(),
        );
    }

    pub fn rule(&self, route: &Arc<str>, rule: &Arc<str>) {
        let labels = RuleLabels {
            route: Label(route.clone()),
            rule: Label(rule.clone()),
        };
        self.rules.get_or_create(&labels).inc();
    }

    pub fn hedge(&self, route: &Arc<str>, outcome: &'static str) {
        let labels = OutcomeLabels {
            route: Label(route.clone()),
            outcome,
        };
        self.hedges.get_or_create(&labels).inc();
    }

    pub fn cache(&self, route: &Arc<str>, outcome: &'static str) {
        let labels = OutcomeLabels {
            route: Label(route.clone()),
            outcome,
        };
        self.cache.get_or_create(&labels).inc();
    }

    pub fn cache_size(&self, entries: u64, bytes: u64) {
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}
