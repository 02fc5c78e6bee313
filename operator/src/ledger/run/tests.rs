//! The ledger task against a mocked API server: restore on leading, persist, acknowledge,
//! empty on losing the Lease.

use std::collections::BTreeMap;

use http::Method;
use modelroute_crds::Window;
use modelroute_proto::{AccountKey as WireKey, AccountUsage, Usage};
use serde_json::json;

use super::*;
use crate::fixtures::route;
use crate::index::{Index, ObjectKey, SecretMap};
use crate::ledger::events::Announcer;
use crate::mock_api;

const BUDGET: &str = "
  providers: [{name: mock, kind: mock}]
  routes: [{model: chat, targets: [{provider: mock, model: m}]}]
  budgets:
    - {name: team, amountUsd: 1, window: monthly}
";

#[tokio::test]
async fn a_leader_restores_persists_and_acknowledges_then_forgets_when_it_steps_down() {
    let (index, world) = Index::new();
    index.update(
        &[route("shop", "chat", 1, BUDGET)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let metrics = Arc::new(Metrics::new());
    let ledger = Arc::new(Ledger::new(true, metrics.clone()));
    let (client, mut server) = mock_api::pair();
    let shutdown = CancellationToken::new();
    let (announcer, publish) = Announcer::new(None, metrics.clone(), shutdown.clone());
    tokio::spawn(publish);
    let (_synced_tx, synced) = watch::channel(true);
    let (leader_tx, leader) = watch::channel(true);
    let task = tokio::spawn(run(
        Parts {
            ledger: ledger.clone(),
            store: Store::Status(client),
            announcer,
            metrics: metrics.clone(),
            world,
            synced,
            leader,
            pods_known: true,
        },
        shutdown.clone(),
    ));
    let window = Window::Monthly.id(SystemTime::now()).to_string();

    // Leading: the ledger is read back from status before anything is served.
    assert!(!*ledger.ready().borrow());
    let call = server.next().await;
    call.expect(Method::GET, "/apis/modelroute.dev/v1alpha1/modelroutes");
    call.ok(&json!({
        "apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRouteList",
        "metadata": {"resourceVersion": "1"},
        "items": [{
            "apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRoute",
            "metadata": {"name": "chat", "namespace": "shop"},
            "spec": {},
            "status": {"budgets": [{"name": "team", "window": window, "limitUsd": "1",
                                    "spentUsd": "0.0000003", "remainingUsd": "0.9999997",
                                    "heldUsd": "0"}]},
        }],
    }));
    let mut ready = ledger.ready();
    tokio::time::timeout(Duration::from_secs(5), ready.wait_for(|r| *r))
        .await
        .expect("ready in time")
        .expect("ready");

    // A report: applied at once, acknowledged once written.
    let pod = ObjectKey::new("shop", "app");
    let usage = Usage {
        seq: 1,
        incarnation: "i".into(),
        accounts: vec![AccountUsage {
            key: Some(WireKey {
                namespace: "shop".into(),
                model_route: "chat".into(),
                budget: "team".into(),
                scope_value: String::new(),
                window: window.clone(),
            }),
            spent_nano_usd: 5,
            held_nano_usd: 0,
            want_nano_usd: 0,
            need_nano_usd: 0,
        }],
        answers_applied: 0,
    };
    let answer = ledger.report(&pod, &usage);
    assert_eq!(
        answer.grants[0].spent_nano_usd, 305,
        "continues from status"
    );
    assert_eq!(ledger.acked(&pod, "i"), 0);
    let mut changes = ledger.subscribe();
    loop {
        let call = server.next().await;
        call.expect(
            Method::PATCH,
            "/apis/modelroute.dev/v1alpha1/namespaces/shop/modelroutes/chat/status",
        );
        assert_eq!(
            call.query.get("fieldManager").map(String::as_str),
            Some(crate::ledger::store::FIELD_MANAGER)
        );
        let spent = call.body["status"]["budgets"][0]["spentUsd"].clone();
        let body = call.body.clone();
        call.ok(&body);
        if spent == "0.000000305" {
            break;
        }
    }
    tokio::time::timeout(
        Duration::from_secs(5),
        changes.wait_for(|_| ledger.acked(&pod, "i") == 1),
    )
    .await
    .expect("acknowledged in time")
    .expect("acknowledged");
    let metrics_text = metrics.encode();
    assert!(
        metrics_text.contains(&format!(
            "modelroute_operator_budget_spent_usd{{namespace=\"shop\",modelroute=\"chat\",budget=\"team\",window=\"{window}\"}} 3.05e-7"
        )),
        "{metrics_text}"
    );

    // Lost the Lease: not ready, nothing kept, nothing written.
    leader_tx.send_replace(false);
    tokio::time::timeout(Duration::from_secs(5), ready.wait_for(|r| !*r))
        .await
        .expect("stepped down in time")
        .expect("stepped down");
    assert!(ledger.statuses(&ObjectKey::new("shop", "chat")).is_empty());
    assert!(
        server.try_next(Duration::from_millis(1500)).await.is_none(),
        "no write after stepping down"
    );
    assert!(
        !metrics.encode().contains("budget_spent_usd{"),
        "gauges removed"
    );
    shutdown.cancel();
    task.await.expect("the task ends");
}
