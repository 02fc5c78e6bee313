use super::*;
use crate::from_yaml_documents;

pub(super) fn spec(yaml: &str) -> ModelRouteSpec {
    let doc = format!(
        "apiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: t}}\nspec:\n{yaml}"
    );
    from_yaml_documents(&doc).unwrap().remove(0).spec
}

pub(super) fn paths(spec: &ModelRouteSpec) -> Vec<String> {
    validate(spec).into_iter().map(|p| p.path).collect()
}

pub(super) const GOOD: &str = r#"
  providers:
    - name: openai
      kind: openai
      baseUrl: https://api.openai.com/v1
      apiKey: {env: OPENAI_API_KEY}
    - name: mock
      kind: mock
  routes:
    - model: gpt-4o
      targets:
        - {provider: openai, model: gpt-4o, weight: 9}
        - {provider: mock, model: mock-1}
      fallbacks:
        - {provider: mock, model: mock-2}
      retry: {attempts: 2, backoffBase: 50ms, backoffMax: 1s}
      timeouts: {firstByte: 10s, total: 30s}
"#;

#[test]
fn a_good_spec_has_no_problems() {
    assert_eq!(validate(&spec(GOOD)), vec![]);
}

#[test]
fn unknown_provider_is_named() {
    let s = spec(
        "  providers: [{name: a, kind: mock}]\n  routes:\n    - model: m\n      targets: [{provider: b, model: x}]\n",
    );
    let problems = validate(&s);
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].path, "spec.routes[0].targets[0].provider");
    assert!(problems[0].message.contains("\"b\""), "{}", problems[0]);
}

#[test]
fn empty_targets_zero_weight_and_duplicates_are_refused() {
    let s = spec(
        r#"
  providers: [{name: a, kind: mock}, {name: a, kind: mock}]
  routes:
    - model: m
      targets: []
    - model: m
      targets: [{provider: a, model: x, weight: 0}, {provider: a, model: x}]
      fallbacks: [{provider: a, model: x}]
"#,
    );
    let got = paths(&s);
    assert_eq!(
        got,
        vec![
            "spec.providers[1].name",
            "spec.routes[0].targets",
            "spec.routes[1].model",
            "spec.routes[1].targets[1]",
            "spec.routes[1].fallbacks[0]",
            "spec.routes[1].targets[0].weight",
        ]
    );
}

#[test]
fn api_key_needs_exactly_one_source() {
    let s = spec(
        "  providers:\n    - {name: a, kind: openai, apiKey: {env: A, file: /k}}\n    - {name: b, kind: openai, apiKey: {}}\n",
    );
    assert_eq!(
        paths(&s),
        vec!["spec.providers[0].apiKey", "spec.providers[1].apiKey"]
    );
}

#[test]
fn bad_urls_names_and_headers_are_refused() {
    let s = spec(
        r#"
  providers:
    - {name: Upper, kind: openai, baseUrl: "ftp://x"}
    - {name: b, kind: openai, baseUrl: "https://"}
    - {name: c, kind: openai, headers: {"bad header": v}}
    - {name: d, kind: mock, baseUrl: "http://x"}
    - {name: e, kind: openai, mock: {}}
"#,
    );
    assert_eq!(
        paths(&s),
        vec![
            "spec.providers[0].name",
            "spec.providers[0].baseUrl",
            "spec.providers[1].baseUrl",
            "spec.providers[2].headers",
            "spec.providers[3]",
            "spec.providers[4].mock",
        ]
    );
}

#[test]
fn durations_must_be_positive_and_ordered() {
    let s = spec(
        r#"
  providers: [{name: a, kind: mock}]
  routes:
    - model: m
      targets: [{provider: a, model: x}]
      retry: {backoffBase: 2s, backoffMax: 1s}
      timeouts: {idle: 0s, firstByte: 20s, total: 10s}
      circuitBreaker: {cooldown: 0s}
"#,
    );
    assert_eq!(
        paths(&s),
        vec![
            "spec.routes[0].retry.backoffBase",
            "spec.routes[0].timeouts.idle",
            "spec.routes[0].timeouts.firstByte",
            "spec.routes[0].circuitBreaker.cooldown",
        ]
    );
}

#[test]
fn bad_durations_fail_to_parse_with_a_hint() {
    let doc = "apiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: t}\nspec:\n  routes:\n    - model: m\n      targets: []\n      timeouts: {total: \"30\"}\n";
    let err = from_yaml_documents(doc).unwrap_err();
    assert!(err.contains("1m30s"), "{err}");
}

#[test]
fn unknown_fields_are_refused() {
    let doc = "apiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: t}\nspec:\n  routs: []\n";
    let err = from_yaml_documents(doc).unwrap_err();
    assert!(err.contains("routs"), "{err}");
}

#[test]
fn other_kinds_are_refused_and_empty_documents_skipped() {
    let err = from_yaml_documents("apiVersion: v1\nkind: ConfigMap\n").unwrap_err();
    assert!(err.contains("ConfigMap"), "{err}");
    let docs = from_yaml_documents(
        "---\n---\napiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: a}\nspec: {}\n",
    )
    .unwrap();
    assert_eq!(docs.len(), 1);
}

#[test]
fn scalars_that_look_like_booleans_or_numbers_stay_strings() {
    let s = spec(
        "  providers: [{name: n, kind: mock}]\n  routes:\n    - model: y\n      targets: [{provider: n, model: 1.5}]\n",
    );
    assert_eq!(s.routes[0].model, "y");
    assert_eq!(s.routes[0].targets[0].model, "1.5");
    assert_eq!(s.providers[0].name, "n");
}

#[test]
fn routing_fields_are_accepted_when_well_formed() {
    let good = GOOD.replace(
        "      timeouts:",
        r#"      strategy: {type: weighted, sticky: {header: x-session-id}}
      rules:
        - name: acme
          match: {headers: {x-tenant: {exact: acme}}, promptTokens: {atLeast: 8000}}
          targets: [{provider: mock, model: long, contextWindow: 200000}]
          strategy: {type: cost, maxLatency: 2s}
        - match: {user: {regex: "vip-[0-9]+"}, tools: true, images: false, stream: true}
          targets: [{provider: openai, model: gpt-4o-mini}]
      hedge: {delay: 1s, percentile: 95, maxPercent: 5}
      cache: {ttl: 10m, mode: always}
      promptAffinity: {minTokens: 2048}
      timeouts:"#,
    );
    assert_eq!(validate(&spec(&good)), vec![]);
}

#[test]
fn routing_mistakes_are_named() {
    let bad = GOOD.replace(
        "      timeouts:",
        r#"      strategy: {type: latency, sticky: {user: true}, maxLatency: 1s}
      rules:
        - name: a
          match: {}
          targets: [{provider: nope, model: x, contextWindow: 0}]
        - name: a
          match:
            headers: {"bad header": {exact: v}, x-t: {exact: a, prefix: b}}
            user: {regex: "("}
            promptTokens: {atLeast: 10, below: 10}
          targets: [{provider: mock, model: m}]
      hedge: {maxPercent: 0}
      cache: {ttl: 0s}
      promptAffinity: {minTokens: 0}
      timeouts:"#,
    );
    assert_eq!(
        paths(&spec(&bad)),
        [
            "spec.routes[0].strategy.sticky",
            "spec.routes[0].strategy.maxLatency",
            "spec.routes[0].rules[0].match",
            "spec.routes[0].rules[0].targets[0].provider",
            "spec.routes[0].rules[0].targets[0].contextWindow",
            "spec.routes[0].rules[1].name",
            "spec.routes[0].rules[1].match.headers",
            "spec.routes[0].rules[1].match.headers.x-t",
            "spec.routes[0].rules[1].match.user.regex",
            "spec.routes[0].rules[1].match.promptTokens",
            "spec.routes[0].hedge",
            "spec.routes[0].hedge.maxPercent",
            "spec.routes[0].cache.ttl",
            "spec.routes[0].promptAffinity.minTokens",
        ]
    );
}

#[test]
fn hedging_needs_a_second_target() {
    let one = "  providers: [{name: a, kind: mock}]\n  routes:\n    - model: m\n      targets: [{provider: a, model: x}]\n      hedge: {delay: 1s}\n";
    assert_eq!(paths(&spec(one)), ["spec.routes[0].hedge"]);
}

#[test]
fn secret_refs_must_name_a_valid_secret_and_key() {
    let bad = GOOD.replace(
        "apiKey: {env: OPENAI_API_KEY}",
        "apiKey: {secretRef: {name: ../etc, key: \"a/b\"}}",
    );
    assert_eq!(
        paths(&spec(&bad)),
        [
            "spec.providers[0].apiKey.secretRef.name",
            "spec.providers[0].apiKey.secretRef.key"
        ]
    );
    let good = GOOD.replace(
        "apiKey: {env: OPENAI_API_KEY}",
        "apiKey: {secretRef: {name: llm-keys.prod, key: OPENAI_API_KEY.v2}}",
    );
    assert_eq!(validate(&spec(&good)), vec![]);
}

#[test]
fn a_provider_rate_limit_needs_a_limit() {
    let s = spec(
        "  providers: [{name: a, kind: openai, baseUrl: \"http://x/v1\", rateLimit: {maxQueue: 2s}}]\n  routes:\n    - model: m\n      targets: [{provider: a, model: x}]\n",
    );
    let problems = validate(&s);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].path, "spec.providers[0].rateLimit");
    let ok = spec(
        "  providers: [{name: a, kind: openai, baseUrl: \"http://x/v1\", rateLimit: {requestsPerMinute: 500}}]\n  routes:\n    - model: m\n      targets: [{provider: a, model: x}]\n",
    );
    assert_eq!(validate(&ok), vec![]);
}
