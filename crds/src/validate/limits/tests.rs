use super::super::tests::spec;
use super::*;
use crate::v1alpha1::{ControlPlaneLoss, Exhausted, Scope};
use crate::{from_yaml_documents, validate};

const BASE: &str = r#"
  providers:
    - {name: openai, kind: openai, apiKey: {env: OPENAI_API_KEY}}
    - {name: mock, kind: mock}
  routes:
    - model: chat
      targets: [{provider: openai, model: gpt-4o}]
    - model: embed
      targets: [{provider: mock, model: mock-embed}]
"#;

const LIMITS: &str = r#"
  pricing:
    - {provider: openai, model: gpt-4o, input: 2.5, cachedInput: 1.25, output: 10}
    - {provider: mock, model: "*", input: 0, output: 0}
  budgets:
    - name: team-monthly
      amountUsd: 500
      window: monthly
      routes: [chat]
      thresholds: [50, 80, 100]
    - name: per-tenant-daily
      amountUsd: "2.50"
      window: daily
      scope: header
      header: X-Tenant
      onExhausted: downgrade
      downgrade: {provider: mock, model: mock-small}
  rateLimits:
    - name: per-tenant
      requestsPerMinute: 600
      tokensPerMinute: 100000
      scope: header
      header: x-tenant
      routes: [chat]
    - {name: per-user, requestsPerMinute: 60, scope: user}
  onControlPlaneLoss: {mode: failOpen, capUsd: "5"}
"#;

fn with(extra: &str) -> ModelRouteSpec {
    spec(&format!("{BASE}{extra}"))
}

/// The paths of every problem.
fn problems(spec: &ModelRouteSpec) -> Vec<String> {
    validate(spec).into_iter().map(|p| p.path).collect()
}

#[test]
fn a_good_spec_has_no_problems_now_that_limits_are_enforced() {
    let s = with(LIMITS);
    assert_eq!(problems(&s), Vec::<String>::new());
}

#[test]
fn pricing_alone_is_accepted() {
    let s = with(
        "  pricing: [{provider: openai, model: gpt-4o, input: 2.5, output: 10}]\n  \
         onControlPlaneLoss: {mode: failClosed}\n",
    );
    assert_eq!(validate(&s), vec![]);
}

#[test]
fn the_typed_views_read_scope_downgrade_and_prices() {
    let s = with(LIMITS);
    let [monthly, tenant] = &s.budgets[..] else {
        panic!("two budgets")
    };
    assert_eq!(monthly.scope(), Some(Scope::Route));
    assert_eq!(monthly.exhausted(), Some(Exhausted::Reject));
    assert!(monthly.covers("chat") && !monthly.covers("embed"));
    assert_eq!(monthly.amount_usd, "500".parse().expect("an amount"));
    // Header names are case-insensitive and kept lowercase.
    assert_eq!(tenant.scope(), Some(Scope::Header("x-tenant")));
    assert!(tenant.covers("embed"), "no routes: every route");
    let Some(Exhausted::Downgrade(target)) = tenant.exhausted() else {
        panic!("a downgrade")
    };
    assert_eq!((&*target.provider, &*target.model), ("mock", "mock-small"));
    assert_eq!(s.rate_limits[1].scope(), Some(Scope::User));

    let gpt = s.price_override("openai", "gpt-4o").expect("gpt-4o priced");
    assert_eq!(gpt.input.picos_per_token(), 2_500_000);
    assert_eq!(gpt.cached_input().picos_per_token(), 1_250_000);
    let any = s.price_override("mock", "whatever").expect("the * entry");
    assert_eq!(any.model, "*");
    assert_eq!(
        any.cached_input(),
        any.input,
        "cachedInput defaults to input"
    );
    assert!(s.price_override("openai", "gpt-4o-mini").is_none());
}

#[test]
fn exact_prices_win_over_the_wildcard_whatever_the_order() {
    let s = with(
        "  pricing:\n    - {provider: mock, model: \"*\", input: 1, output: 1}\n    \
         - {provider: mock, model: m, input: 2, output: 2}\n",
    );
    let m = s.price_override("mock", "m").expect("priced");
    assert_eq!(m.input, "2".parse().expect("a price"));
}

#[test]
fn the_control_plane_loss_cap_defaults_to_one_percent_per_budget() {
    let amount: Usd = "500".parse().expect("an amount");
    assert_eq!(
        ControlPlaneLoss::default().cap(amount),
        "5".parse().expect("an amount")
    );
    let mut s = with(LIMITS);
    let tenant = s.budgets[1].clone();
    assert_eq!(
        s.control_plane_loss_cap(&tenant),
        "5".parse().expect("capUsd")
    );
    s.on_control_plane_loss = None;
    assert_eq!(
        s.control_plane_loss_cap(&tenant),
        "0.025".parse().expect("1% of 2.50")
    );
    let closed = ControlPlaneLoss {
        mode: ControlPlaneLossMode::FailClosed,
        cap_usd: None,
    };
    assert_eq!(closed.cap(amount), Usd::ZERO);
}

#[test]
fn bad_pricing_is_named() {
    let s = with(
        r#"
  pricing:
    - {provider: opneai, model: gpt-4o, input: 1, output: 1}
    - {provider: openai, model: "gpt-*", input: 1, output: 1}
    - {provider: openai, model: " ", input: 1, output: 1}
    - {provider: mock, model: "*", input: 0, output: 0}
    - {provider: mock, model: "*", input: 1, output: 1}
"#,
    );
    assert_eq!(
        problems(&s),
        [
            "spec.pricing[0].provider",
            "spec.pricing[1].model",
            "spec.pricing[2].model",
            "spec.pricing[4]",
        ]
    );
}

#[test]
fn bad_budgets_are_named_field_by_field() {
    let s = with(
        r#"
  budgets:
    - {name: a, amountUsd: 0, window: daily, thresholds: [80, 50, 101, 0, 90, 90]}
    - {name: a, amountUsd: 1, window: total, scope: pod}
    - {name: Bad_Name, amountUsd: 1, window: daily, scope: header}
    - {name: c, amountUsd: 1, window: daily, header: x-tenant, routes: [chat, nope, chat]}
    - {name: d, amountUsd: 1, window: daily, scope: header, header: "bad header"}
    - {name: e, amountUsd: 1, window: daily, scope: header, header: Authorization}
    - {name: f, amountUsd: 1, window: daily, onExhausted: downgrade}
    - {name: g, amountUsd: 1, window: daily, downgrade: {provider: mock, model: m}}
    - name: h
      amountUsd: 1
      window: daily
      onExhausted: downgrade
      downgrade: {provider: opneai, model: ""}
    - {name: i, amountUsd: 1, window: total, scope: user}
    - {name: j, amountUsd: 1, window: total}
"#,
    );
    assert_eq!(
        problems(&s),
        [
            "spec.budgets[0].amountUsd",
            "spec.budgets[0].thresholds[1]",
            "spec.budgets[0].thresholds[2]",
            "spec.budgets[0].thresholds[3]",
            "spec.budgets[0].thresholds[5]",
            "spec.budgets[1].name",
            "spec.budgets[1].window",
            "spec.budgets[2].name",
            "spec.budgets[2].header",
            "spec.budgets[3].header",
            "spec.budgets[3].routes[1]",
            "spec.budgets[3].routes[2]",
            "spec.budgets[4].header",
            "spec.budgets[5].header",
            "spec.budgets[6].downgrade",
            "spec.budgets[7].downgrade",
            "spec.budgets[8].downgrade.provider",
            "spec.budgets[8].downgrade.model",
            "spec.budgets[9].window",
        ]
    );
    let all = validate(&s);
    let message = |path: &str| {
        all.iter()
            .find(|p| p.path == path)
            .map(|p| p.message.clone())
            .unwrap_or_default()
    };
    assert!(message("spec.budgets[3].routes[1]").contains("(known: chat, embed)"));
    assert!(message("spec.budgets[0].thresholds[1]").contains("80 then 50"));
    assert!(message("spec.budgets[5].header").contains("credentials"));
    assert!(message("spec.budgets[1].window").contains("never resets"));
}

#[test]
fn bad_rate_limits_are_named() {
    let s = with(
        r#"
  rateLimits:
    - {name: a}
    - {name: b, requestsPerMinute: 0, tokensPerMinute: 0}
    - {name: b, tokensPerMinute: 10, scope: header, routes: [embedding]}
    - {name: c, requestsPerMinute: 1, scope: pod, header: x-tenant}
"#,
    );
    assert_eq!(
        problems(&s),
        [
            "spec.rateLimits[0]",
            "spec.rateLimits[1].requestsPerMinute",
            "spec.rateLimits[1].tokensPerMinute",
            "spec.rateLimits[2].name",
            "spec.rateLimits[2].header",
            "spec.rateLimits[2].routes[0]",
            "spec.rateLimits[3].header",
        ]
    );
}

#[test]
fn fail_closed_takes_no_cap() {
    let s = with("  onControlPlaneLoss: {mode: failClosed, capUsd: 1}\n");
    assert_eq!(problems(&s), ["spec.onControlPlaneLoss.capUsd"]);
}

#[test]
fn malformed_limits_fail_to_parse_with_the_reason() {
    let parse = |extra: &str| {
        let doc = format!(
            "apiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: t}}\n\
             spec:\n{BASE}{extra}"
        );
        from_yaml_documents(&doc).expect_err(extra)
    };
    for (extra, why) in [
        (
            "  budgets: [{name: a, amountUsd: 0.5, window: daily}]\n",
            "as a string",
        ),
        (
            "  budgets: [{name: a, amountUsd: \"0.0000001\", window: daily}]\n",
            "more than 6 decimals",
        ),
        (
            "  budgets: [{name: a, amountUsd: -5, window: daily}]\n",
            "negative",
        ),
        (
            "  budgets: [{name: a, amountUsd: 5, window: yearly}]\n",
            "yearly",
        ),
        (
            "  budgets: [{name: a, amountUsd: 5, window: daily, scope: namespace}]\n",
            "namespace",
        ),
        (
            "  budgets: [{name: a, amount: 5, window: daily}]\n",
            "amount",
        ),
        (
            "  pricing: [{provider: mock, model: m, input: -1, output: 1}]\n",
            "negative",
        ),
        (
            "  pricing: [{provider: mock, model: m, input: .nan, output: 1}]\n",
            "finite",
        ),
        ("  onControlPlaneLoss: {mode: failSafe}\n", "failSafe"),
    ] {
        let err = parse(extra);
        assert!(err.contains(why), "{extra}: {err}");
    }
}
