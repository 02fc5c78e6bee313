//! Crossed thresholds and exhausted budgets, told to people: a Kubernetes Event on the
//! ModelRoute (reasons [`THRESHOLD`] and [`EXHAUSTED`]), a log line and a metric.
//!
//! Events are published by their own task, one after the other, so a slow API server never
//! holds up the ledger's writes; when more than [`QUEUE`] wait, the newest are dropped (and
//! logged). Messages name the budget, window, scope value and amounts — never a key.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::book::{Crossing, CrossingKind};
use crate::metrics::Metrics;
use modelroute_crds::NanoUsd;

/// Event reason: spend reached one of the budget's `thresholds`.
pub const THRESHOLD: &str = "BudgetThreshold";
/// Event reason: nothing is left to grant in the window.
pub const EXHAUSTED: &str = "BudgetExhausted";
/// `reportingController` of the Events.
pub const CONTROLLER: &str = "modelroute.dev/operator";
/// Crossings waiting to be published at most.
pub const QUEUE: usize = 256;

/// Longest Event note the API server accepts.
const MAX_NOTE_BYTES: usize = 1024;

/// Where crossings go.
#[derive(Clone, Debug)]
pub struct Announcer {
    tx: mpsc::Sender<Crossing>,
    metrics: Arc<Metrics>,
}

/// Publishes Events on ModelRoutes.
#[derive(Clone)]
pub struct EventSink {
    pub client: kube::Client,
    /// `reportingInstance`: this replica's name.
    pub instance: String,
}

// === impl Announcer ===

impl Announcer {
    /// An announcer and its publishing task (Events when `sink` is given; log lines and
    /// metrics always).
    pub fn new(
        sink: Option<EventSink>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> (Self, impl std::future::Future<Output = ()> + Send) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (Self { tx, metrics }, publish(rx, sink, shutdown))
    }

    pub fn announce(&self, crossings: Vec<Crossing>) {
        for c in crossings {
            let (namespace, route, budget) = (
                &c.key.budget.route.namespace,
                &c.key.budget.route.name,
                &c.key.budget.budget,
            );
            match c.kind {
                CrossingKind::Threshold(percent) => {
                    self.metrics
                        .budget_threshold(namespace, route, budget, percent);
                }
                CrossingKind::Exhausted => self.metrics.budget_exhausted(namespace, route, budget),
            }
            info!(modelroute = %c.key.budget.route, budget = %budget, window = %c.key.window, reason = reason(c.kind), "{}", note(&c));
            if self.tx.try_send(c).is_err() {
                warn!("too many budget events waiting; one dropped");
            }
        }
    }
}

/// The Event reason of a crossing.
pub fn reason(kind: CrossingKind) -> &'static str {
    match kind {
        CrossingKind::Threshold(_) => THRESHOLD,
        CrossingKind::Exhausted => EXHAUSTED,
    }
}

/// The Event note: budget, scope value, window, percent and amounts.
pub fn note(c: &Crossing) -> String {
    let budget = &c.key.budget.budget;
    let window = c.key.window;
    let scope = if c.key.scope.is_empty() {
        String::new()
    } else {
        format!(" for scope value {:?}", c.key.scope)
    };
    let (spent, limit) = (NanoUsd::from_nanos(c.spent), NanoUsd::from_nanos(c.limit));
    let mut text = match c.kind {
        CrossingKind::Threshold(percent) => format!(
            "budget {budget}{scope}: spend reached {percent}% of {limit} USD in window \
             {window} ({spent} USD spent)"
        ),
        CrossingKind::Exhausted => format!(
            "budget {budget}{scope}: nothing left to grant in window {window} ({spent} of \
             {limit} USD spent, the rest held by sidecars); requests now follow onExhausted \
             until the window ends"
        ),
    };
    if text.len() > MAX_NOTE_BYTES {
        let mut end = MAX_NOTE_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

async fn publish(
    mut rx: mpsc::Receiver<Crossing>,
    sink: Option<EventSink>,
    shutdown: CancellationToken,
) {
    loop {
        let crossing = tokio::select! {
            () = shutdown.cancelled() => return,
            c = rx.recv() => match c { Some(c) => c, None => return },
        };
        let Some(sink) = &sink else {
            continue;
        };
        if let Err(e) = sink.publish(&crossing).await {
            warn!(modelroute = %crossing.key.budget.route, error = %e, "cannot record a budget Event");
        }
    }
}

// === impl EventSink ===

impl EventSink {
    pub async fn publish(&self, c: &Crossing) -> Result<(), kube::Error> {
        // A recorder per Event: its cache would turn a second Event with the same reason
        // into a count on the first (with the first one's note), and each of these says
        // something new.
        let instance: String = self.instance.chars().take(128).collect();
        let recorder = Recorder::new(
            self.client.clone(),
            Reporter {
                controller: CONTROLLER.into(),
                instance: Some(instance),
            },
        );
        let route = &c.key.budget.route;
        let reference = ObjectReference {
            api_version: Some("modelroute.dev/v1alpha1".into()),
            kind: Some("ModelRoute".into()),
            namespace: Some(route.namespace.clone()),
            name: Some(route.name.clone()),
            uid: c.uid.clone(),
            ..ObjectReference::default()
        };
        let event = Event {
            type_: match c.kind {
                CrossingKind::Threshold(_) => EventType::Normal,
                CrossingKind::Exhausted => EventType::Warning,
            },
            reason: reason(c.kind).into(),
            note: Some(note(c)),
            action: "Spend".into(),
            secondary: None,
        };
        recorder.publish(&event, &reference).await
    }
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::index::ObjectKey;
    use crate::ledger::key::{AccountKey, BudgetRef};
    use crate::mock_api;

    fn crossing(kind: CrossingKind) -> Crossing {
        Crossing {
            key: AccountKey::new(
                BudgetRef::new(ObjectKey::new("shop", "chat"), "tenant-daily"),
                "acme",
                "2026-12-07".parse().expect("window"),
            ),
            uid: Some("uid-chat".into()),
            kind,
            spent: 1_250_000_000,
            limit: 2_500_000_000,
        }
    }

    #[test]
    fn notes_name_budget_scope_window_and_amounts() {
        assert_eq!(
            note(&crossing(CrossingKind::Threshold(50))),
            "budget tenant-daily for scope value \"acme\": spend reached 50% of 2.5 USD in \
             window 2026-12-07 (1.25 USD spent)"
        );
        let exhausted = note(&crossing(CrossingKind::Exhausted));
        assert!(exhausted.starts_with("budget tenant-daily for scope value \"acme\": nothing left to grant in window 2026-12-07"), "{exhausted}");
        let mut long = crossing(CrossingKind::Exhausted);
        long.key.scope = "é".repeat(600);
        assert!(note(&long).len() <= MAX_NOTE_BYTES);
    }

    #[tokio::test]
    async fn an_event_is_recorded_on_the_modelroute() {
        let (client, mut server) = mock_api::pair();
        let sink = EventSink {
            client,
            instance: "operator-0".into(),
        };
        let publish =
            tokio::spawn(async move { sink.publish(&crossing(CrossingKind::Threshold(80))).await });
        let call = server.next().await;
        call.expect(
            Method::POST,
            "/apis/events.k8s.io/v1/namespaces/shop/events",
        );
        let body = call.body.clone();
        assert_eq!(body["reason"], THRESHOLD);
        assert_eq!(body["type"], "Normal");
        assert_eq!(body["action"], "Spend");
        assert_eq!(body["reportingController"], CONTROLLER);
        assert_eq!(body["reportingInstance"], "operator-0");
        assert_eq!(
            body["regarding"],
            json!({"apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRoute",
                   "namespace": "shop", "name": "chat", "uid": "uid-chat"})
        );
        let text = body["note"].as_str().expect("a note");
        assert!(
            text.contains("80%") && text.contains("2026-12-07"),
            "{text}"
        );
        assert!(body["eventTime"].is_string());
        call.respond(http::StatusCode::CREATED, &body);
        publish.await.expect("task").expect("published");
    }
}
