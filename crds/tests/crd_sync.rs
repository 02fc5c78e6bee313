//! The committed CRD manifest must be exactly what the Rust types generate.
//! Regenerate with: `cargo run -p modelroute-crds --bin crdgen > crds/modelroute.dev_modelroutes.yaml`

use kube::CustomResourceExt;
use modelroute_crds::ModelRoute;
use serde_json::json;

#[test]
fn committed_crd_matches_the_types() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/modelroute.dev_modelroutes.yaml"
    );
    let committed = std::fs::read_to_string(path).expect("read committed CRD");
    let generated = serde_saphyr::to_string(&ModelRoute::crd()).unwrap();
    assert!(
        committed == generated,
        "crds/modelroute.dev_modelroutes.yaml is stale; regenerate it with \
         `cargo run -p modelroute-crds --bin crdgen > crds/modelroute.dev_modelroutes.yaml`"
    );
}

#[test]
fn every_example_is_a_valid_modelroute() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = modelroute_crds::from_yaml_documents(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for doc in docs {
            let problems = modelroute_crds::validate(&doc.spec);
            assert!(problems.is_empty(), "{}: {problems:?}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 1, "no examples found in {dir}");
}

#[test]
fn the_budgets_example_is_valid_now_that_limits_are_enforced() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/budgets.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let docs = modelroute_crds::from_yaml_documents(&text).unwrap();
    assert!(!docs[0].spec.budgets.is_empty() && !docs[0].spec.rate_limits.is_empty());
    let problems = modelroute_crds::validate(&docs[0].spec);
    assert!(problems.is_empty(), "{problems:?}");
}

/// The CRD's OpenAPI schema, as the API server will check objects against it.
#[expect(clippy::unwrap_used, clippy::expect_used, reason = "test helper")]
fn schema() -> jsonschema::Validator {
    let crd = serde_json::to_value(ModelRoute::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    jsonschema::draft4::new(schema).expect("the generated schema compiles")
}

#[test]
fn every_example_matches_the_generated_schema() {
    let validator = schema();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in modelroute_crds::from_yaml_documents(&text).unwrap() {
            let value = serde_json::to_value(&doc).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            seen += 1;
        }
    }
    assert!(seen >= 3, "examples found: {seen}");
}

#[test]
fn the_schema_refuses_what_the_api_server_must_refuse() {
    let validator = schema();
    let base = serde_json::json!({
        "apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRoute", "metadata": {"name": "x"},
        "spec": {"providers": [{"name": "mock", "kind": "mock"}],
                 "routes": [{"model": "m", "targets": [{"provider": "mock", "model": "x"}]}]}
    });
    assert!(validator.is_valid(&base));
    let limits = [
        ("/spec/budgets", budget(json!({}))),
        (
            "/spec/budgets",
            budget(json!({"amountUsd": "0.000001", "scope": "user"})),
        ),
        (
            "/spec/rateLimits",
            json!([{"name": "r", "tokensPerMinute": 1}]),
        ),
        ("/spec/pricing", price(json!({"cachedInput": 0.0375}))),
        ("/spec/onControlPlaneLoss", json!({"mode": "failClosed"})),
    ];
    for (pointer, value) in limits {
        let mut doc = base.clone();
        doc["spec"][&pointer["/spec/".len()..]] = value.clone();
        assert!(validator.is_valid(&doc), "{pointer} = {value} was refused");
    }
    let broken = |pointer: &str, value: serde_json::Value| {
        let mut v = base.clone();
        match v.pointer_mut(pointer) {
            Some(at) => *at = value,
            None => v["spec"][&pointer["/spec/".len()..]] = value,
        }
        v
    };
    for (pointer, value) in [
        ("/spec/routes/0/targets", serde_json::json!("mock")),
        ("/spec/routes/0/targets", serde_json::json!([])),
        ("/spec/providers/0/kind", serde_json::json!("bedrock")),
        (
            "/spec/providers/0/name",
            serde_json::json!("Not_A_Dns_Label"),
        ),
        ("/spec/routes/0/targets/0/provider", serde_json::json!(7)),
        (
            "/spec/routes/0/targets/0",
            serde_json::json!({"provider": "mock", "model": "x", "weight": 0}),
        ),
        (
            "/spec/routes/0/targets/0",
            serde_json::json!({"provider": "mock", "model": "x", "weight": -1}),
        ),
        ("/spec/budgets", budget(json!({"amountUsd": "-1"}))),
        ("/spec/budgets", budget(json!({"amountUsd": -1}))),
        ("/spec/budgets", budget(json!({"amountUsd": "1.0000001"}))),
        ("/spec/budgets", budget(json!({"amountUsd": "1e3"}))),
        ("/spec/budgets", budget(json!({"window": "yearly"}))),
        ("/spec/budgets", budget(json!({"scope": "namespace"}))),
        ("/spec/budgets", budget(json!({"thresholds": [0]}))),
        ("/spec/budgets", budget(json!({"thresholds": [101]}))),
        ("/spec/budgets", budget(json!({"onExhausted": "drop"}))),
        ("/spec/budgets", budget(json!({"name": "Team"}))),
        ("/spec/budgets", json!([{"name": "b", "window": "daily"}])),
        (
            "/spec/rateLimits",
            json!([{"name": "r", "requestsPerMinute": 0}]),
        ),
        (
            "/spec/rateLimits",
            json!([{"name": "r", "tokensPerMinute": -5}]),
        ),
        ("/spec/pricing", price(json!({"input": -1}))),
        ("/spec/pricing", price(json!({"output": "2.5"}))),
        ("/spec/pricing", price(json!({"cachedInput": 1_000_001}))),
        ("/spec/onControlPlaneLoss", json!({"mode": "failSafe"})),
    ] {
        let doc = broken(pointer, value.clone());
        assert!(
            !validator.is_valid(&doc),
            "{pointer} = {value} was accepted"
        );
    }
}

/// A list of one valid budget with `changes` merged in.
fn budget(changes: serde_json::Value) -> serde_json::Value {
    let mut b = json!({"name": "b", "amountUsd": 5, "window": "daily"});
    merge(&mut b, changes);
    json!([b])
}

/// A list of one valid price with `changes` merged in.
fn price(changes: serde_json::Value) -> serde_json::Value {
    let mut p = json!({"provider": "mock", "model": "*", "input": 2.5, "output": 10});
    merge(&mut p, changes);
    json!([p])
}

fn merge(into: &mut serde_json::Value, changes: serde_json::Value) {
    if let (Some(into), serde_json::Value::Object(changes)) = (into.as_object_mut(), changes) {
        into.extend(changes);
    }
}

/// CEL rules (`x-kubernetes-validations`) only beneath an array's `items`: API servers before 1.23
/// do not know the field, and their server-side apply (Helm 4, `kubectl apply
/// --server-side`) refuses it wherever their typed schema is closed — everywhere but
/// `items`, whose subtree it leaves open. There the rules wait, ignored, until the server knows
/// them; the cluster suite applies the CRD to a 1.20 server this way.
#[test]
fn cel_rules_sit_only_under_array_items() {
    fn walk(v: &serde_json::Value, path: &mut Vec<String>, bad: &mut Vec<String>) {
        if let Some(map) = v.as_object() {
            for (k, child) in map {
                if k == "x-kubernetes-validations" && !path.iter().any(|p| p == "items") {
                    bad.push(path.join("."));
                }
                path.push(k.clone());
                walk(child, path, bad);
                path.pop();
            }
        } else if let Some(list) = v.as_array() {
            for child in list {
                walk(child, path, bad);
            }
        }
    }
    let crd = serde_json::to_value(ModelRoute::crd()).unwrap();
    let mut bad = Vec::new();
    walk(&crd, &mut Vec::new(), &mut bad);
    assert!(bad.is_empty(), "CEL rules outside array items: {bad:?}");
}

/// A Kubernetes 1.20 API server refuses the whole CRD (with the misleading "per-version
/// schemas may not all be set to identical values") when an `enum` lists `null`, which
/// schemars writes for an optional enum: such fields must not be `Option`.
#[test]
fn no_enum_lists_null() {
    fn walk(v: &serde_json::Value, path: &mut Vec<String>, bad: &mut Vec<String>) {
        if let Some(map) = v.as_object() {
            if let Some(values) = map.get("enum").and_then(|e| e.as_array())
                && values.iter().any(serde_json::Value::is_null)
            {
                bad.push(path.join("."));
            }
            for (k, child) in map {
                path.push(k.clone());
                walk(child, path, bad);
                path.pop();
            }
        } else if let Some(list) = v.as_array() {
            for child in list {
                walk(child, path, bad);
            }
        }
    }
    let crd = serde_json::to_value(ModelRoute::crd()).unwrap();
    let mut bad = Vec::new();
    walk(&crd, &mut Vec::new(), &mut bad);
    assert!(bad.is_empty(), "enums listing null: {bad:?}");
}

/// `status.budgets` as the ledger writes it matches the schema: amounts as exact decimal
/// strings, no empty scope value (Kubernetes 1.20's server-side apply would store it as
/// null), and the schema refuses floats and over-precise amounts.
#[test]
fn budget_status_as_written_matches_the_schema() {
    use modelroute_crds::{BudgetStatus, ModelRouteStatus, NanoUsd};
    let validator = schema();
    let entry = |scope: &str, others: Option<u32>| BudgetStatus {
        name: "monthly".into(),
        window: "2026-12".parse().unwrap(),
        scope_value: scope.into(),
        others,
        most_spent_usd: others.map(|_| NanoUsd::from_nanos(7)),
        limit_usd: "500".parse().unwrap(),
        spent_usd: NanoUsd::from_nanos(12_345_678_901),
        remaining_usd: "487.654321099".parse().unwrap(),
        held_usd: NanoUsd::ZERO,
    };
    let status = ModelRouteStatus {
        budgets: vec![entry("", None), entry("tenant-a", None), entry("", Some(3))],
        ..ModelRouteStatus::default()
    };
    let written = serde_json::to_value(&status).unwrap();
    assert_eq!(written["budgets"][0].get("scopeValue"), None, "{written}");
    assert_eq!(written["budgets"][0]["spentUsd"], "12.345678901");
    assert_eq!(written["budgets"][0]["heldUsd"], "0");
    let doc = |status: serde_json::Value| {
        json!({
            "apiVersion": "modelroute.dev/v1alpha1", "kind": "ModelRoute", "metadata": {"name": "x"},
            "spec": {"providers": [{"name": "mock", "kind": "mock"}],
                     "routes": [{"model": "m", "targets": [{"provider": "mock", "model": "x"}]}]},
            "status": status,
        })
    };
    assert!(validator.is_valid(&doc(written.clone())), "{written}");
    let read: ModelRouteStatus = serde_json::from_value(written.clone()).unwrap();
    assert_eq!(read, status, "round trip");
    for (field, bad) in [
        ("spentUsd", json!(1.5)),
        ("spentUsd", json!("1.0000000001")),
        ("window", json!("December")),
        ("others", json!(0)),
    ] {
        let mut broken = written.clone();
        broken["budgets"][0][field] = bad.clone();
        assert!(
            !validator.is_valid(&doc(broken)),
            "{field} = {bad} was accepted"
        );
    }
}
