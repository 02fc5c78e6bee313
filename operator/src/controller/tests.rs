//! The status controller against a mocked API server: each test judges ModelRoutes with the
//! real index, runs one reconcile, and checks the one call it makes (or that it makes none).

use std::collections::BTreeMap;
use std::time::Duration;

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::controller::Action;
use modelroute_crds::ModelRouteStatus;
use tokio::task::JoinHandle;

use super::*;
use crate::fixtures::{KEYED, MOCK, llm_keys, route};
use crate::index::{Index, ObjectKey, SecretMap, SidecarPod};
use crate::mock_api::{self, ApiServer};

const UNKNOWN_PROVIDER: &str = "
  providers:
    - name: mock
      kind: mock
  routes:
    - model: chat
      targets: [{provider: opneai, model: m}]
";

const SELECTS_APP_CHAT: &str = "
  podSelector:
    matchLabels: {app: chat}
  providers:
    - name: mock
      kind: mock
  routes:
    - model: chat
      targets: [{provider: mock, model: m}]
";

/// What the API server should see.
enum Scenario {
    /// One server-side apply of `namespace/name`'s status; the verifier answers like the
    /// API server (the object with the applied status) and hands back the applied status.
    StatusApply { namespace: String, name: String },
    /// No call at all.
    NoCall,
}

/// The operator's parts a reconcile reads, with a mocked API server.
struct Fixture {
    index: Index,
    ctx: Arc<Context>,
    server: Option<ApiServer>,
}

fn condition<'a>(status: &'a ModelRouteStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status:?}"))
}

// === impl Fixture ===

impl Fixture {
    fn new() -> Self {
        let (index, world) = Index::new();
        let (client, server) = mock_api::pair();
        let ctx = Context::new(
            client,
            world,
            Arc::new(Registry::default()),
            Arc::new(Metrics::new()),
        );
        Self {
            index,
            ctx: Arc::new(ctx),
            server: Some(server),
        }
    }

    /// Runs one reconcile of `route` while the verifier plays `scenario`; returns the
    /// reconcile's action and the applied status, if any.
    async fn reconcile(
        &mut self,
        route: &ModelRoute,
        scenario: Scenario,
    ) -> (Action, Option<ModelRouteStatus>) {
        let server = self.server.take().expect("one reconcile per fixture");
        let verifier = play(server, scenario, route.clone());
        let guard = Arc::new(DeserializeGuard(Ok(route.clone())));
        let action =
            tokio::time::timeout(Duration::from_secs(10), reconcile(guard, self.ctx.clone()))
                .await
                .expect("reconcile finished (a call nobody answers would hang it)")
                .expect("reconcile succeeded");
        let applied = verifier.await.expect("the scenario held");
        (action, applied)
    }
}

/// Plays `scenario` on `server`.
fn play(
    mut server: ApiServer,
    scenario: Scenario,
    object: ModelRoute,
) -> JoinHandle<Option<ModelRouteStatus>> {
    tokio::spawn(async move {
        match scenario {
            Scenario::NoCall => None,
            Scenario::StatusApply { namespace, name } => {
                let call = server.next().await;
                call.expect(
                    Method::PATCH,
                    &format!(
                        "/apis/modelroute.dev/v1alpha1/namespaces/{namespace}/modelroutes/{name}/status"
                    ),
                );
                assert_eq!(
                    call.query.get("fieldManager").map(String::as_str),
                    Some(FIELD_MANAGER)
                );
                assert_eq!(call.query.get("force").map(String::as_str), Some("true"));
                let body = call.body.clone();
                assert_eq!(body["apiVersion"], "modelroute.dev/v1alpha1");
                assert_eq!(body["kind"], "ModelRoute");
                let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
                assert_eq!(
                    keys,
                    ["apiVersion", "kind", "status"],
                    "an apply of the status only"
                );
                let status: ModelRouteStatus =
                    serde_json::from_value(body["status"].clone()).expect("a ModelRouteStatus");
                // Kubernetes 1.20's server-side apply stores "" as null, and the schema
                // refuses a null message.
                for c in &status.conditions {
                    assert!(!c.message.is_empty(), "empty message in {c:?}");
                    assert!(!c.reason.is_empty(), "empty reason in {c:?}");
                }
                // The API server answers with the whole object.
                let mut answer = serde_json::to_value(&object).unwrap();
                answer["status"] = body["status"].clone();
                call.ok(&answer);
                Some(status)
            }
        }
    })
}

fn status_apply(ns: &str, name: &str) -> Scenario {
    Scenario::StatusApply {
        namespace: ns.into(),
        name: name.into(),
    }
}

#[tokio::test]
async fn valid_route_gets_ready_with_generation_and_route_count() {
    // This test's thread only (its runtime is single-threaded).
    let (_traced, spans) = modelroute_otel::testing::traced();
    let mut fx = Fixture::new();
    let r = route("team-a", "chat", 3, KEYED);
    fx.index
        .update([&r], &llm_keys("team-a", "sk-test"), BTreeMap::new());

    // Other tests reconciling at the same time (untraced) may have registered the span's
    // callsite as off a moment ago; look again with this test's subscriber in place.
    tracing::callsite::rebuild_interest_cache();
    let (action, applied) = fx.reconcile(&r, status_apply("team-a", "chat")).await;
    let status = applied.expect("a status write");
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.routes, Some(2));
    let ready = condition(&status, "Ready");
    assert_eq!(ready.status, "True");
    assert_eq!(ready.reason, "Published");
    assert_eq!(ready.observed_generation, Some(3));
    assert_eq!(condition(&status, "Invalid").status, "False");
    assert_eq!(condition(&status, "Degraded").status, "False");
    assert_eq!(action, Action::requeue(reconcile::RESYNC));
    // The key never appears in status.
    assert!(!serde_json::to_string(&status).unwrap().contains("sk-test"));
    // The reconcile is a span naming the ModelRoute.
    let reconciles = spans.named("reconcile ModelRoute");
    let [span] = &reconciles[..] else {
        panic!("one reconcile span, got {reconciles:?}");
    };
    let attr = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr("k8s.namespace.name").as_deref(), Some("team-a"));
    assert_eq!(attr("modelroute.name").as_deref(), Some("chat"));
}

#[tokio::test]
async fn unknown_provider_is_invalid_spec_naming_the_field() {
    let mut fx = Fixture::new();
    let r = route("team-a", "typo", 1, UNKNOWN_PROVIDER);
    fx.index
        .update([&r], &SecretMap::default(), BTreeMap::new());

    let (_, applied) = fx.reconcile(&r, status_apply("team-a", "typo")).await;
    let status = applied.expect("a status write");
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(
        ready
            .message
            .starts_with("generation 1 refused; no sidecar receives this ModelRoute"),
        "{}",
        ready.message
    );
    let invalid = condition(&status, "Invalid");
    assert_eq!(invalid.status, "True");
    assert_eq!(invalid.reason, "InvalidSpec");
    assert!(
        invalid.message.contains("spec.routes[0].targets[0]") && invalid.message.contains("opneai"),
        "the message names the field and the value: {}",
        invalid.message
    );
    assert_eq!(invalid.observed_generation, Some(1));
}

#[tokio::test]
async fn missing_secret_is_secret_not_found() {
    let mut fx = Fixture::new();
    let r = route("team-a", "keyed", 1, KEYED);
    // The Secret exists, but in another namespace.
    fx.index
        .update([&r], &llm_keys("team-b", "sk-b"), BTreeMap::new());

    let (_, applied) = fx.reconcile(&r, status_apply("team-a", "keyed")).await;
    let status = applied.expect("a status write");
    let ready = condition(&status, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "SecretNotFound")
    );
    let invalid = condition(&status, "Invalid");
    assert_eq!(invalid.reason, "SecretNotFound");
    assert!(
        invalid
            .message
            .contains("spec.providers[0].apiKey.secretRef: Secret \"llm-keys\" not found in namespace \"team-a\""),
        "{}",
        invalid.message
    );
}

#[tokio::test]
async fn refused_generation_says_the_old_one_keeps_serving() {
    let mut fx = Fixture::new();
    fx.index.update(
        [&route("default", "r", 1, MOCK)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let bad = route("default", "r", 2, UNKNOWN_PROVIDER);
    fx.index
        .update([&bad], &SecretMap::default(), BTreeMap::new());

    let (_, applied) = fx.reconcile(&bad, status_apply("default", "r")).await;
    let ready = condition(applied.as_ref().unwrap(), "Ready").clone();
    assert_eq!(ready.status, "False");
    assert!(
        ready
            .message
            .starts_with("generation 2 refused; sidecars keep generation 1"),
        "{}",
        ready.message
    );
}

#[tokio::test]
async fn current_status_is_not_written_again() {
    let r = route("team-a", "chat", 1, MOCK);
    // First pass: learn the status the operator writes.
    let mut first = Fixture::new();
    first
        .index
        .update([&r], &SecretMap::default(), BTreeMap::new());
    let (_, applied) = first.reconcile(&r, status_apply("team-a", "chat")).await;

    // Second pass: the object already carries it.
    let mut current = r.clone();
    current.status = applied;
    let mut again = Fixture::new();
    again
        .index
        .update([&current], &SecretMap::default(), BTreeMap::new());
    let (action, written) = again.reconcile(&current, Scenario::NoCall).await;
    assert_eq!(written, None);
    assert_eq!(action, Action::requeue(reconcile::RESYNC));
}

/// `status.budgets` belongs to the ledger's field manager: the controller neither compares
/// it nor applies it (an apply without it leaves it to its owner).
#[tokio::test]
async fn budgets_in_status_are_left_to_the_ledger() {
    let r = route("team-a", "chat", 1, MOCK);
    let mut first = Fixture::new();
    first
        .index
        .update([&r], &SecretMap::default(), BTreeMap::new());
    let (_, applied) = first.reconcile(&r, status_apply("team-a", "chat")).await;
    let applied = applied.expect("a status write");
    assert!(applied.budgets.is_empty());

    let mut current = r.clone();
    let mut status = applied;
    status.budgets = vec![modelroute_crds::BudgetStatus {
        name: "team".into(),
        window: "2026-12".parse().unwrap(),
        scope_value: String::new(),
        others: None,
        most_spent_usd: None,
        limit_usd: "1".parse().unwrap(),
        spent_usd: "0.5".parse().unwrap(),
        remaining_usd: "0.5".parse().unwrap(),
        held_usd: "0".parse().unwrap(),
    }];
    current.status = Some(status);
    let mut again = Fixture::new();
    again
        .index
        .update([&current], &SecretMap::default(), BTreeMap::new());
    let (_, written) = again.reconcile(&current, Scenario::NoCall).await;
    assert_eq!(written, None, "only budgets differ: nothing to write");

    // A real change: the apply carries no budgets.
    let mut changed = current.clone();
    changed.metadata.generation = Some(2);
    let mut third = Fixture::new();
    third
        .index
        .update([&changed], &SecretMap::default(), BTreeMap::new());
    let (_, written) = third
        .reconcile(&changed, status_apply("team-a", "chat"))
        .await;
    assert!(written.expect("written").budgets.is_empty());
}

#[tokio::test]
async fn sidecar_nack_makes_it_degraded_with_the_reason() {
    let mut fx = Fixture::new();
    let r = route("team-a", "chat", 4, MOCK);
    fx.index
        .update([&r], &SecretMap::default(), BTreeMap::new());
    let key = ObjectKey::new("team-a", "chat");
    let registry = &fx.ctx.registry;
    let refusing = registry.connect(ObjectKey::new("team-a", "app-1"));
    registry.nacked(
        refusing,
        Arc::from([(key.clone(), 4)]),
        "route chat: provider kind `mock` is disabled in this sidecar".into(),
    );
    let fine = registry.connect(ObjectKey::new("team-a", "app-2"));
    registry.acked(fine, "hash".into(), Arc::from([(key, 4)]));

    let (_, applied) = fx.reconcile(&r, status_apply("team-a", "chat")).await;
    let status = applied.unwrap();
    let degraded = condition(&status, "Degraded");
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "SidecarsRefused");
    assert!(
        degraded
            .message
            .contains("provider kind `mock` is disabled"),
        "{}",
        degraded.message
    );
    assert_eq!(
        status.last_nack.as_deref(),
        Some("route chat: provider kind `mock` is disabled in this sidecar")
    );
    assert_eq!(status.sidecars.as_ref().unwrap().in_sync, 1);
    // Ready speaks for the operator's judgement, which is fine.
    assert_eq!(condition(&status, "Ready").status, "True");
}

#[tokio::test]
async fn selected_counts_sidecar_pods_by_labels_in_the_namespace() {
    let mut fx = Fixture::new();
    let r = route("team-a", "chat", 1, SELECTS_APP_CHAT);
    let pod = |labels: &[(&str, &str)]| SidecarPod {
        uid: "u".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let pods = BTreeMap::from([
        (ObjectKey::new("team-a", "chat-1"), pod(&[("app", "chat")])),
        (
            ObjectKey::new("team-a", "chat-2"),
            pod(&[("app", "chat"), ("tier", "web")]),
        ),
        (ObjectKey::new("team-a", "batch"), pod(&[("app", "batch")])),
        (ObjectKey::new("team-b", "chat-1"), pod(&[("app", "chat")])),
    ]);
    fx.index.update([&r], &SecretMap::default(), pods);

    let (_, applied) = fx.reconcile(&r, status_apply("team-a", "chat")).await;
    let sidecars = applied.unwrap().sidecars.unwrap();
    assert_eq!(sidecars.selected, 2);
    assert_eq!(sidecars.in_sync, 0);
}

#[tokio::test]
async fn a_generation_the_index_has_not_judged_is_requeued_without_a_call() {
    let mut fx = Fixture::new();
    fx.index.update(
        [&route("team-a", "chat", 1, MOCK)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    // The controller's watch already has generation 2; the index does not.
    let newer = route("team-a", "chat", 2, MOCK);
    let (action, written) = fx.reconcile(&newer, Scenario::NoCall).await;
    assert_eq!(written, None);
    assert_eq!(action, Action::requeue(reconcile::CATCH_UP));

    let unknown = route("team-a", "other", 1, MOCK);
    let mut fx = Fixture::new();
    let (action, _) = fx.reconcile(&unknown, Scenario::NoCall).await;
    assert_eq!(action, Action::requeue(reconcile::CATCH_UP));
}

#[tokio::test]
async fn failed_writes_are_retried_with_growing_delays() {
    let mut fx = Fixture::new();
    let r = route("team-a", "chat", 1, MOCK);
    fx.index
        .update([&r], &SecretMap::default(), BTreeMap::new());
    let mut server = fx.server.take().unwrap();
    let answer = tokio::spawn(async move {
        server.next().await.fail(500, "InternalError");
    });
    let guard = Arc::new(DeserializeGuard(Ok(r)));
    let err = reconcile(guard.clone(), fx.ctx.clone())
        .await
        .expect_err("a 500 fails the reconcile");
    answer.await.unwrap();
    assert!(err.to_string().contains("team-a/chat"), "{err}");
    let delays: Vec<Action> = (0..3)
        .map(|_| error_policy(guard.clone(), &err, fx.ctx.clone()))
        .collect();
    assert_eq!(
        delays,
        [
            Action::requeue(Duration::from_secs(1)),
            Action::requeue(Duration::from_secs(2)),
            Action::requeue(Duration::from_secs(4)),
        ]
    );
    assert_eq!(reconcile::retry_delay(30), reconcile::RETRY_MAX);
    let metrics = fx.ctx.metrics.encode();
    assert!(
        metrics.contains("modelroute_operator_reconciles_total{result=\"error\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(start_paused = true)]
async fn changes_are_coalesced_to_at_most_one_pass_per_interval() {
    let (index, world) = Index::new();
    let registry = Registry::default();
    let mut triggers = std::pin::pin!(changes(world, registry.subscribe()));
    let start = tokio::time::Instant::now();
    // A first change passes at once.
    registry.connect(ObjectKey::new("a", "p"));
    triggers.next().await.unwrap();
    // A burst right after is one more pass, no sooner than the interval.
    for i in 0..100 {
        registry.connect(ObjectKey::new("a", format!("p{i}")));
    }
    index.update(
        [&route("a", "r", 1, MOCK)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    triggers.next().await.unwrap();
    assert!(start.elapsed() >= MIN_TRIGGER_INTERVAL);
    // Nothing left pending.
    let quiet = tokio::time::timeout(Duration::from_secs(5), triggers.next()).await;
    assert!(quiet.is_err(), "no pass without a change");
}

/// Answers the controller's calls: lists with `route` (unless `lists` is false: then
/// lists hang, like an unreachable API server), keeps watches open, applies status writes.
/// Returns how many lists and status writes it answered, once `until` resolves.
async fn serve_controller(
    server: &mut ApiServer,
    route: &ModelRoute,
    lists: bool,
    until: impl std::future::Future<Output = ()>,
) -> (usize, usize) {
    let mut parked = Vec::new();
    let (mut listed, mut written) = (0, 0);
    let mut until = std::pin::pin!(until);
    loop {
        let call = tokio::select! {
            // First: once the controller has ended, the client is gone too.
            biased;
            () = &mut until => return (listed, written),
            call = server.next() => call,
        };
        let watch = call.query.get("watch").map(String::as_str) == Some("true");
        if watch || (call.method == Method::GET && !lists) {
            parked.push(call);
        } else if call.method == Method::GET {
            call.expect(Method::GET, "/apis/modelroute.dev/v1alpha1/modelroutes");
            let mut item = serde_json::to_value(route).unwrap();
            item["metadata"]["resourceVersion"] = serde_json::json!("10");
            call.ok(&serde_json::json!({
                "apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRouteList",
                "metadata": {"resourceVersion": "10"}, "items": [item],
            }));
            listed += 1;
        } else {
            call.expect(
                Method::PATCH,
                "/apis/modelroute.dev/v1alpha1/namespaces/team-a/modelroutes/chat/status",
            );
            let mut answer = serde_json::to_value(route).unwrap();
            answer["status"] = call.body["status"].clone();
            call.ok(&answer);
            written += 1;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_controller_runs_only_while_leading() {
    let mut fx = Fixture::new();
    let mut server = fx.server.take().expect("server");
    let r = route("team-a", "chat", 1, MOCK);
    fx.index
        .update([&r], &SecretMap::default(), BTreeMap::new());
    let (leading, leader) = watch::channel(false);
    let shutdown = CancellationToken::new();
    let ctx = Arc::try_unwrap(fx.ctx).expect("the only reference");
    let controller = tokio::spawn(run(ctx, leader, shutdown.clone()));
    let mut controller = std::pin::pin!(controller);
    let a_while = || tokio::time::sleep(Duration::from_secs(2));

    // A follower does not even watch.
    assert!(server.try_next(Duration::from_secs(2)).await.is_none());

    // Leading: it lists, watches and writes the status.
    leading.send_replace(true);
    let served = serve_controller(&mut server, &r, true, a_while()).await;
    assert_eq!(served, (1, 1));

    // Not leading: it stops; no more calls.
    leading.send_replace(false);
    assert!(server.try_next(Duration::from_secs(2)).await.is_none());

    // Leading again while lists hang, then not leading: the stuck controller is dropped
    // after the grace...
    leading.send_replace(true);
    let served = serve_controller(&mut server, &r, false, a_while()).await;
    assert_eq!(served, (0, 0));
    leading.send_replace(false);
    let served = serve_controller(&mut server, &r, false, tokio::time::sleep(STOP_GRACE)).await;
    assert_eq!(served, (0, 0));

    // ...so leading once more starts a fresh one.
    leading.send_replace(true);
    let served = serve_controller(&mut server, &r, true, a_while()).await;
    assert_eq!(served, (1, 1));

    // Shutdown ends it.
    shutdown.cancel();
    let until = async {
        (&mut controller).await.expect("no panic");
    };
    serve_controller(&mut server, &r, true, until).await;
    assert!(controller.is_finished());
}
