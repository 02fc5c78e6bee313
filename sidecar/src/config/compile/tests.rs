use std::sync::Arc;

use super::*;
use crate::provider::Backend;

fn docs(yaml: &str) -> Vec<ModelRoute> {
    modelroute_crds::from_yaml_documents(yaml).unwrap()
}

fn doc(name: &str, providers: &str, routes: &str) -> String {
    format!(
        "---\napiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}}}\nspec:\n  providers:\n{providers}\n  routes:\n{routes}\n"
    )
}

fn build(yaml: &str, previous: Option<&RouteTable>) -> Result<RouteTable, CompileError> {
    compile(
        &docs(yaml),
        "test",
        &SecretKeys::none(),
        previous,
        &Metrics::new(),
    )
}

#[test]
fn keys_come_from_files_trimmed_and_become_a_bearer_header() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "sk-test-from-file\n").unwrap();
    let yaml = doc(
        "a",
        &format!(
            "    - {{name: up, kind: openai, apiKey: {{file: {}}}}}",
            key.display()
        ),
        "    - model: m\n      targets: [{provider: up, model: x}]",
    );
    let table = build(&yaml, None).unwrap();
    let Backend::Http(p) = &table.providers()[0].backend else {
        panic!("not http")
    };
    let (name, value) = p.auth.as_ref().unwrap().expose();
    assert_eq!(
        (name.as_str(), value.to_str().unwrap()),
        ("authorization", "Bearer sk-test-from-file")
    );
    assert!(value.is_sensitive());
    assert_eq!(p.base, "https://api.openai.com/v1");
}

#[test]
fn a_secret_ref_needs_the_operator() {
    let yaml = doc(
        "a",
        "    - {name: up, kind: openai, apiKey: {secretRef: {name: s, key: k}}}",
        "    - model: m\n      targets: [{provider: up, model: x}]",
    );
    let err = build(&yaml, None).unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.problems[0].starts_with("ModelRoute a: spec.providers[0].apiKey.secretRef"),
        "{err}"
    );
}

#[test]
fn an_alias_routed_twice_across_documents_is_refused() {
    let mock = "    - {name: mock, kind: mock}";
    let route = "    - model: shared\n      targets: [{provider: mock, model: x}]";
    let yaml = format!(
        "{}{}",
        doc("first", mock, route),
        doc("second", mock, route)
    );
    let err = build(&yaml, None).unwrap_err();
    assert_eq!(
        err.problems,
        [
            "ModelRoute second: spec.routes[0].model: alias \"shared\" is already routed by ModelRoute first"
        ]
    );
}

#[test]
fn defaults_fill_what_is_left_out() {
    let yaml = doc(
        "a",
        "    - {name: mock, kind: mock}",
        "    - model: m\n      targets: [{provider: mock, model: x}]\n      timeouts: {total: 30s}",
    );
    let table = build(&yaml, None).unwrap();
    let route = table.route("m").unwrap();
    assert_eq!(route.retry, RetryPolicy::default());
    assert_eq!(route.breaker, BreakerPolicy::default());
    assert_eq!(route.timeouts.total, Duration::from_secs(30));
    // The default first-byte timeout never outlasts the total.
    assert_eq!(route.timeouts.first_byte, Duration::from_secs(30));
    assert_eq!(route.targets[0].label.as_ref(), "mock/x");
}

#[test]
fn versions_count_up_and_the_hash_follows_content_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    std::fs::write(&key, "one").unwrap();
    let yaml = doc(
        "a",
        &format!(
            "    - {{name: up, kind: openai, apiKey: {{file: {}}}}}",
            key.display()
        ),
        "    - model: m\n      targets: [{provider: up, model: x}]",
    );
    let first = build(&yaml, None).unwrap();
    let same = build(&yaml, Some(&first)).unwrap();
    assert_eq!((first.version, same.version), (1, 2));
    assert_eq!(first.hash, same.hash);
    std::fs::write(&key, "two").unwrap();
    let rotated = build(&yaml, Some(&same)).unwrap();
    assert_ne!(rotated.hash, same.hash, "a rotated key is a new config");
    assert!(!rotated.hash.contains("two"));
}

#[test]
fn unchanged_targets_keep_their_breaker_and_pool() {
    let yaml = doc(
        "a",
        "    - {name: up, kind: openai, baseUrl: \"http://127.0.0.1:9/v1\"}",
        "    - model: m\n      targets: [{provider: up, model: x}]\n    - model: n\n      targets: [{provider: up, model: x}]",
    );
    let first = build(&yaml, None).unwrap();
    let second = build(&yaml, Some(&first)).unwrap();
    let b1 = &first.route("m").unwrap().targets[0].breaker;
    let b2 = &second.route("m").unwrap().targets[0].breaker;
    assert!(Arc::ptr_eq(b1, b2));
    // Two routes over the same endpoint and model share one breaker.
    assert!(Arc::ptr_eq(
        b2,
        &second.route("n").unwrap().targets[0].breaker
    ));

    let moved = yaml.replace("127.0.0.1:9", "127.0.0.1:10");
    let third = build(&moved, Some(&second)).unwrap();
    assert!(
        !Arc::ptr_eq(b2, &third.route("m").unwrap().targets[0].breaker),
        "a new endpoint starts fresh"
    );
}

fn secret_ref_doc(namespace: Option<&str>) -> Vec<ModelRoute> {
    let mut docs = docs(&doc(
        "a",
        "    - {name: up, kind: openai, apiKey: {secretRef: {name: llm, key: openai}}}",
        "    - model: m\n      targets: [{provider: up, model: x}]",
    ));
    docs[0].metadata.namespace = namespace.map(str::to_string);
    docs
}

fn auth_header(table: &RouteTable) -> String {
    let Backend::Http(p) = &table.providers()[0].backend else {
        panic!("not http")
    };
    let (_, value) = p.auth.as_ref().unwrap().expose();
    value.to_str().unwrap().to_string()
}

#[test]
fn secret_refs_resolve_from_the_snapshot_in_the_own_namespace() {
    let mut keys = SecretKeys::empty();
    keys.insert("team", "llm", "openai", b"sk-test-team\n".to_vec());
    keys.insert("other", "llm", "openai", b"sk-test-other".to_vec());
    let table = compile(
        &secret_ref_doc(Some("team")),
        "test",
        &keys,
        None,
        &Metrics::new(),
    )
    .unwrap();
    assert_eq!(auth_header(&table), "Bearer sk-test-team");

    // Without metadata.namespace a ModelRoute lives in "default", which has no such Secret.
    let err = compile(&secret_ref_doc(None), "test", &keys, None, &Metrics::new()).unwrap_err();
    assert_eq!(
        err.problems,
        [
            "ModelRoute a: spec.providers[0].apiKey.secretRef: Secret llm has no key openai in the snapshot"
        ]
    );
}

#[test]
fn secret_values_that_are_not_text_or_not_header_safe_are_named() {
    let docs = secret_ref_doc(Some("team"));
    let mut keys = SecretKeys::empty();
    keys.insert("team", "llm", "openai", vec![0xc3, 0x28]);
    let err = compile(&docs, "test", &keys, None, &Metrics::new()).unwrap_err();
    assert_eq!(
        err.problems,
        [
            "ModelRoute team/a: spec.providers[0].apiKey.secretRef: key openai of Secret llm is not UTF-8 text"
        ]
    );
    keys.insert("team", "llm", "openai", b"sk-test\x01bad".to_vec());
    let err = compile(&docs, "test", &keys, None, &Metrics::new()).unwrap_err();
    assert_eq!(
        err.problems,
        [
            "ModelRoute team/a: spec.providers[0].apiKey.secretRef: the key contains characters not allowed in a header"
        ]
    );
    assert!(!err.to_string().contains("sk-test"), "{err}");
}

#[test]
fn a_rotated_secret_is_a_new_config() {
    let docs = secret_ref_doc(Some("team"));
    let mut keys = SecretKeys::empty();
    keys.insert("team", "llm", "openai", b"sk-test-one".to_vec());
    let metrics = Metrics::new();
    let first = compile(&docs, "test", &keys, None, &metrics).unwrap();
    let same = compile(&docs, "test", &keys, Some(&first), &metrics).unwrap();
    assert_eq!(first.hash, same.hash);
    keys.insert("team", "llm", "openai", b"sk-test-two".to_vec());
    let rotated = compile(&docs, "test", &keys, Some(&same), &metrics).unwrap();
    assert_ne!(rotated.hash, same.hash);
    assert_eq!(auth_header(&rotated), "Bearer sk-test-two");
}
