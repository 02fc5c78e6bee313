//! The stores against a mocked API server and a temporary directory.

use http::Method;
use modelroute_crds::NanoUsd;
use serde_json::{Value, json};

use super::*;
use crate::ledger::saved::SavedAccount;
use crate::mock_api;

fn entry(name: &str, scope: &str, spent: u64, held: u64) -> BudgetStatus {
    BudgetStatus {
        name: name.into(),
        window: "2026-12".parse().expect("window"),
        scope_value: scope.into(),
        others: None,
        most_spent_usd: None,
        limit_usd: NanoUsd::from_nanos(1_000_000_000),
        spent_usd: NanoUsd::from_nanos(spent),
        remaining_usd: NanoUsd::from_nanos(1_000_000_000 - spent),
        held_usd: NanoUsd::from_nanos(held),
    }
}

fn object(ns: &str, name: &str, budgets: Value) -> Value {
    json!({
        "apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRoute",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "7"},
        "spec": {"providers": [], "routes": []},
        "status": {"observedGeneration": 1, "budgets": budgets},
    })
}

#[tokio::test]
async fn restore_reads_status_budgets_of_every_modelroute() {
    let (client, mut server) = mock_api::pair();
    let store = Store::Status(client);
    let restore = tokio::spawn(async move { store.restore().await });
    let call = server.next().await;
    call.expect(Method::GET, "/apis/modelroute.dev/v1alpha1/modelroutes");
    let good = serde_json::to_value(vec![
        entry("team", "", 500, 20),
        entry("tenant", "acme", 7, 0),
    ])
    .expect("json");
    let mut with_bad = serde_json::to_value(vec![entry("team", "", 9, 0)]).expect("json");
    with_bad
        .as_array_mut()
        .expect("array")
        .push(json!({"name": "broken", "window": "December"}));
    call.ok(&json!({
        "apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRouteList",
        "metadata": {"resourceVersion": "9"},
        "items": [
            object("a", "one", good),
            object("b", "two", with_bad),
            {"apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRoute",
             "metadata": {"name": "none", "namespace": "c"}, "spec": {}},
        ],
    }));
    let saved = restore.await.expect("task").expect("restored");
    let got: Vec<(String, String, String, u64, u64)> = saved
        .accounts
        .iter()
        .map(|a| {
            (
                format!("{}/{}", a.namespace, a.model_route),
                a.budget.clone(),
                a.scope_value.clone(),
                a.spent_nano_usd,
                a.held_nano_usd,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a/one".into(), "team".into(), String::new(), 500, 20),
            ("a/one".into(), "tenant".into(), "acme".into(), 7, 0),
            ("b/two".into(), "team".into(), String::new(), 9, 0),
        ],
        "the broken entry skipped, the rest kept"
    );
}

#[tokio::test]
async fn status_budgets_are_applied_under_the_ledgers_own_field_manager() {
    let (client, mut server) = mock_api::pair();
    let store = Store::Status(client);
    let flush = Flush {
        epoch: 1,
        routes: vec![
            (
                ObjectKey::new("a", "one"),
                Some("uid-1".into()),
                vec![entry("team", "", 500, 20)],
            ),
            (
                ObjectKey::new("a", "gone"),
                None,
                vec![entry("team", "", 1, 0)],
            ),
            (ObjectKey::new("b", "emptied"), None, vec![]),
        ],
        accounts: vec![],
    };
    let write = tokio::spawn(async move { store.write(&flush).await });
    let call = server.next().await;
    call.expect(
        Method::PATCH,
        "/apis/modelroute.dev/v1alpha1/namespaces/a/modelroutes/one/status",
    );
    assert_eq!(
        call.query.get("fieldManager").map(String::as_str),
        Some(FIELD_MANAGER)
    );
    assert_eq!(call.query.get("force").map(String::as_str), Some("true"));
    let keys: Vec<&String> = call.body.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["apiVersion", "kind", "status"]);
    let status = call.body["status"].as_object().expect("status");
    assert_eq!(
        status.keys().collect::<Vec<_>>(),
        ["budgets"],
        "budgets only"
    );
    let budgets = &call.body["status"]["budgets"];
    assert_eq!(budgets[0]["spentUsd"], "0.0000005");
    assert_eq!(
        budgets[0].get("scopeValue"),
        None,
        "no empty string for 1.20"
    );
    let body = object("a", "one", budgets.clone());
    call.ok(&body);
    // Deleted meanwhile: nothing to persist, not an error.
    let call = server.next().await;
    call.expect(
        Method::PATCH,
        "/apis/modelroute.dev/v1alpha1/namespaces/a/modelroutes/gone/status",
    );
    call.fail(404, "NotFound");
    // No budgets left: an apply of nothing, which removes the field.
    let call = server.next().await;
    call.expect(
        Method::PATCH,
        "/apis/modelroute.dev/v1alpha1/namespaces/b/modelroutes/emptied/status",
    );
    assert_eq!(call.body["status"], json!({}));
    call.ok(&object("b", "emptied", json!([])));
    assert_eq!(write.await.expect("task"), Ok(()));
}

#[tokio::test]
async fn a_failed_status_write_names_the_modelroute_to_write_again() {
    let (client, mut server) = mock_api::pair();
    let store = Store::Status(client);
    let flush = Flush {
        epoch: 3,
        routes: vec![(
            ObjectKey::new("a", "one"),
            None,
            vec![entry("team", "", 1, 0)],
        )],
        accounts: vec![],
    };
    let write = tokio::spawn(async move { store.write(&flush).await });
    server.next().await.fail(500, "InternalError");
    assert_eq!(
        write.await.expect("task"),
        Err(vec![ObjectKey::new("a", "one")])
    );
}

#[tokio::test]
async fn the_ledger_file_is_replaced_atomically_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ledger.json");
    let store = Store::File(path.clone());
    assert!(store.persistent() && store.whole());
    assert_eq!(
        store.restore().await.expect("missing is empty"),
        Saved::default()
    );
    let account = SavedAccount {
        namespace: "default".into(),
        model_route: "r".into(),
        budget: "b".into(),
        scope_value: "acme".into(),
        window: "2026-12-07".parse().expect("window"),
        spent_nano_usd: 12_345,
        held_nano_usd: 678,
    };
    let flush = Flush {
        epoch: 1,
        routes: vec![],
        accounts: vec![account.clone()],
    };
    store.write(&flush).await.expect("written");
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["ledger.json"], "no temporary file left behind");
    let back = store.restore().await.expect("read back");
    assert_eq!(back.accounts, vec![account]);

    std::fs::write(&path, "{\"version\": 2, \"accounts\": []}").expect("write");
    let err = store
        .restore()
        .await
        .expect_err("newer version")
        .to_string();
    assert!(err.contains("version 2"), "{err}");
    std::fs::write(&path, "not json").expect("write");
    let err = store.restore().await.expect_err("garbage").to_string();
    assert!(err.contains("is not a ledger file"), "{err}");
}

#[tokio::test]
async fn an_unwritable_ledger_file_is_reported_for_a_retry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::File(dir.path().join("missing-dir").join("ledger.json"));
    let flush = Flush {
        epoch: 1,
        routes: vec![(ObjectKey::new("a", "one"), None, vec![])],
        accounts: vec![],
    };
    assert_eq!(
        store.write(&flush).await,
        Err(vec![ObjectKey::new("a", "one")])
    );
}
