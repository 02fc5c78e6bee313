//! Budgets and rate limits of a standalone sidecar, through the real server in front of a
//! fake OpenAI upstream that reports known usage (5 prompt and 7 completion tokens per
//! answer; streams: 11 prompt tokens and one completion token per piece).
//!
//! Prices are set with `spec.pricing` so costs are round: $1000 per 1M input tokens and
//! $2000 per 1M output tokens, so an answer costs 5 × $0.001 + 7 × $0.002 = $0.019.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::*;

const ANSWER_NANO: u64 = 19_000_000;

fn config(upstream: &FakeUpstream, budgets: &str, extra_providers: &str) -> String {
    format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {{name: shop, namespace: team-a}}
spec:
  providers:
    - {{name: main, kind: openai, baseUrl: "{}", apiKey: {{value: sk-test-main-0000}}}}
{extra_providers}
  pricing:
    - {{provider: main, model: "*", input: 1000, output: 2000}}
{extra_pricing}
  routes:
    - model: m
      targets: [{{provider: main, model: big}}]
{budgets}
"#,
        upstream.base_url(),
        extra_pricing = if extra_providers.is_empty() {
            ""
        } else {
            "    - {provider: cheap, model: \"*\", input: 1, output: 2}"
        }
    )
}

#[expect(
    clippy::unwrap_used,
    reason = "test helper: a failure should stop the test"
)]
fn nano(usd: &str) -> u64 {
    let (whole, frac) = usd.split_once('.').unwrap_or((usd, ""));
    let frac = format!("{frac:0<9}");
    whole.parse::<u64>().unwrap() * 1_000_000_000 + frac.parse::<u64>().unwrap()
}

fn ask(max_tokens: u64) -> Value {
    json!({"model": "m", "max_tokens": max_tokens, "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn every_answer_is_priced_and_a_spent_budget_refuses_with_its_reset() {
    let upstream = FakeUpstream::start(Reply::Text("ok".into())).await;
    let budgets = "  budgets:\n    - {name: monthly, amountUsd: \"0.1\", window: monthly, thresholds: [50, 100]}";
    let sc = Sidecar::start(&config(&upstream, budgets, "")).await;
    let mut served = 0u64;
    let mut refused = None;
    for _ in 0..20 {
        let (status, headers, body) = post_json(&sc.chat_url(), &ask(10)).await;
        if status == 200 {
            assert!(refused.is_none(), "served after a refusal");
            assert_eq!(headers["x-modelroute-cost-usd"], "0.019");
            assert!(headers.get("x-modelroute-cost-estimated").is_none());
            served += 1;
        } else {
            assert_eq!(status, 429, "{body}");
            assert_eq!(body["error"]["type"], "budget_exceeded");
            assert_eq!(body["error"]["code"], "budget_exceeded");
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("budget `monthly` of ModelRoute team-a/shop"),
                "{message}"
            );
            let reset = headers["x-modelroute-budget-reset"]
                .to_str()
                .unwrap()
                .to_string();
            assert!(
                reset.ends_with("-01T00:00:00Z") && message.contains(&reset),
                "{reset}"
            );
            refused = Some(body);
        }
    }
    assert!(refused.is_some(), "the budget never ran out");
    // Every served answer was counted and nothing beyond the budget was spent.
    assert!(
        served * ANSWER_NANO <= 100_000_000 && served >= 3,
        "served {served}"
    );
    assert_eq!(
        upstream.hits() as u64,
        served,
        "a refused request reached the upstream"
    );
    let (_, _, cfg) = get_json(&format!("{}/config", sc.admin)).await;
    let account = &cfg["budgets"]["accounts"][0];
    assert_eq!(account["budget"], "team-a/shop/monthly");
    assert_eq!(
        nano(account["spentUsd"].as_str().unwrap()),
        served * ANSWER_NANO
    );
    assert_eq!(account["reservedUsd"], "0", "reservations left behind");
    assert_eq!(cfg["budgets"]["mode"], "standalone");
    let rejected = sc
        .metric(
            "modelroute_budget_rejections_total",
            &[("budget", "monthly")],
        )
        .await;
    assert_eq!(rejected, (20 - served) as f64);
    let cost = sc
        .metric("modelroute_cost_usd_total", &[("route", "m")])
        .await;
    assert!((cost - served as f64 * 0.019).abs() < 1e-9, "{cost}");
    let crossed = sc
        .metric(
            "modelroute_budget_threshold_crossings_total",
            &[("percent", "50")],
        )
        .await;
    assert_eq!(crossed, 1.0);
    let spent_gauge = sc
        .metric(
            "modelroute_budget_spent_usd",
            &[("budget", "team-a/shop/monthly")],
        )
        .await;
    assert!((spent_gauge - served as f64 * 0.019).abs() < 1e-9);
}

#[tokio::test]
async fn concurrent_requests_never_spend_more_than_the_budget() {
    let upstream = FakeUpstream::start(Reply::Delay(
        Duration::from_millis(20),
        Box::new(Reply::Text("ok".into())),
    ))
    .await;
    let budgets = "  budgets:\n    - {name: daily, amountUsd: \"0.2\", window: daily}";
    let sc = Sidecar::start(&config(&upstream, budgets, "")).await;
    let url = sc.chat_url();
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move { post_json(&url, &ask(10)).await }));
    }
    let (mut served, mut refused) = (0u64, 0u64);
    for t in tasks {
        let (status, _, body) = t.await.unwrap();
        match status.as_u16() {
            200 => served += 1,
            429 => {
                assert_eq!(body["error"]["type"], "budget_exceeded");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(served + refused, 60);
    assert!(
        served * ANSWER_NANO <= 200_000_000,
        "overspent: {served} served"
    );
    // Requests wait while others hold the rest of the budget, so it is used up: at most
    // the last request's worst case is left unspent.
    assert!(served >= 8, "only {served} served of a budget for 10");
    assert_eq!(upstream.hits() as u64, served);
}

#[tokio::test]
async fn max_tokens_is_clamped_to_what_the_budget_can_pay_for() {
    let upstream = FakeUpstream::start(Reply::Text("ok".into())).await;
    // $0.2 pays for about 100 output tokens at $2000/M, far below the 4096 reserved for a
    // request that sets no limit.
    let budgets = "  budgets:\n    - {name: small, amountUsd: \"0.2\", window: daily}";
    let sc = Sidecar::start(&config(&upstream, budgets, "")).await;
    let no_limit = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, body) = post_json(&sc.chat_url(), &no_limit).await;
    assert_eq!(status, 200, "{body}");
    let clamped: u64 = headers["x-modelroute-max-tokens-clamped"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((16..100).contains(&clamped), "{clamped}");
    assert_eq!(upstream.seen()[0].body["max_tokens"], clamped);
    // A client limit the budget can pay for is left alone.
    let (status, headers, _) = post_json(&sc.chat_url(), &ask(20)).await;
    assert_eq!(status, 200);
    assert!(headers.get("x-modelroute-max-tokens-clamped").is_none());
    assert_eq!(upstream.seen()[1].body["max_tokens"], 20);
}

#[tokio::test]
async fn per_tenant_budgets_keep_tenants_apart() {
    let upstream = FakeUpstream::start(Reply::Text("ok".into())).await;
    let budgets = "  budgets:\n    - {name: per-tenant, amountUsd: \"0.05\", window: daily, scope: header, header: x-tenant}";
    let sc = Sidecar::start(&config(&upstream, budgets, "")).await;
    let as_tenant = |t: &'static str| {
        let url = sc.chat_url();
        async move { post_json_with(&url, &ask(5), &[("x-tenant", t)]).await }
    };
    let mut acme_served = 0;
    loop {
        let (status, _, body) = as_tenant("acme").await;
        if status == 429 {
            assert!(
                body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("x-tenant \"acme\"")
            );
            break;
        }
        acme_served += 1;
        assert!(acme_served < 10, "acme's budget never ran out");
    }
    assert!(acme_served >= 1);
    let (status, _, body) = as_tenant("globex").await;
    assert_eq!(status, 200, "another tenant is refused: {body}");
    let (_, _, cfg) = get_json(&format!("{}/config", sc.admin)).await;
    let scopes: Vec<&str> = cfg["budgets"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["scope"].as_str().unwrap())
        .collect();
    assert_eq!(scopes, ["acme", "globex"]);
}

#[tokio::test]
async fn a_spent_budget_can_downgrade_to_a_cheaper_target() {
    let upstream = FakeUpstream::start(Reply::Text("from big".into())).await;
    let cheap = FakeUpstream::start(Reply::Text("from cheap".into())).await;
    let providers = format!(
        "    - {{name: cheap, kind: openai, baseUrl: \"{}\"}}",
        cheap.base_url()
    );
    let budgets = "  budgets:\n    - {name: premium, amountUsd: \"0.05\", window: daily, onExhausted: downgrade, downgrade: {provider: cheap, model: small}}";
    let sc = Sidecar::start(&config(&upstream, budgets, &providers)).await;
    let mut targets = Vec::new();
    for _ in 0..6 {
        let (status, headers, body) = post_json(&sc.chat_url(), &ask(5)).await;
        assert_eq!(status, 200, "{body}");
        targets.push(headers["x-modelroute-target"].to_str().unwrap().to_string());
    }
    let first_cheap = targets
        .iter()
        .position(|t| t == "cheap/small")
        .expect("never downgraded");
    assert!(first_cheap >= 1, "downgraded before spending: {targets:?}");
    assert!(targets[..first_cheap].iter().all(|t| t == "main/big"));
    assert!(
        targets[first_cheap..].iter().all(|t| t == "cheap/small"),
        "{targets:?}"
    );
    assert_eq!(cheap.seen()[0].body["model"], "small");
    let downgrades = sc
        .metric(
            "modelroute_budget_downgrades_total",
            &[("budget", "premium")],
        )
        .await;
    assert_eq!(downgrades, (6 - first_cheap) as f64);
}

#[tokio::test]
async fn a_stream_that_outgrows_its_budget_ends_with_finish_reason_length() {
    // The upstream ignores max_tokens and keeps talking.
    let pieces: Vec<String> = (0..400).map(|i| format!("word{i} ")).collect();
    let upstream = FakeUpstream::start(Reply::Stream {
        pieces,
        delay: Duration::ZERO,
    })
    .await;
    let budgets = "  budgets:\n    - {name: small, amountUsd: \"0.2\", window: daily}";
    let sc = Sidecar::start(&config(&upstream, budgets, "")).await;
    let streamed = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    let data = streamed.data();
    let finishes: Vec<Value> = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["choices"][0]["finish_reason"].is_string())
        .collect();
    assert_eq!(finishes.len(), 1, "{data:?}");
    assert_eq!(finishes[0]["choices"][0]["finish_reason"], "length");
    assert_eq!(finishes[0]["modelroute"]["stopped"], "budget");
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let words = streamed.content().split_whitespace().count();
    assert!(
        (10..400).contains(&words),
        "{words} words reached the client"
    );
    // The reservation was released; what was generated is spent (estimated: the stream was
    // cut before the provider's usage), within the budget plus the one event that crossed
    // the bound (docs/budgets.md, the bound's in-flight term).
    let (_, _, cfg) = get_json(&format!("{}/config", sc.admin)).await;
    let account = &cfg["budgets"]["accounts"][0];
    assert_eq!(account["reservedUsd"], "0");
    let spent = nano(account["spentUsd"].as_str().unwrap());
    assert!(spent <= 200_000_000 + 10 * 2_000_000, "{spent}");
    assert!(
        spent >= 150_000_000,
        "{spent}: the stream was cut long before its bound"
    );
}

#[tokio::test]
async fn rate_limits_refuse_with_openai_headers() {
    let upstream = FakeUpstream::start(Reply::Text("ok".into())).await;
    let limits = "  rateLimits:\n    - {name: per-user, requestsPerMinute: 2, scope: user}";
    let sc = Sidecar::start(&config(&upstream, limits, "")).await;
    let as_user =
        |u: &str| json!({"model": "m", "user": u, "messages": [{"role": "user", "content": "hi"}]});
    for left in ["1", "0"] {
        let (status, headers, _) = post_json(&sc.chat_url(), &as_user("u1")).await;
        assert_eq!(status, 200);
        assert_eq!(headers["x-ratelimit-limit-requests"], "2");
        assert_eq!(headers["x-ratelimit-remaining-requests"], left);
        assert!(
            headers["x-ratelimit-reset-requests"]
                .to_str()
                .unwrap()
                .ends_with('s')
        );
    }
    let (status, headers, body) = post_json(&sc.chat_url(), &as_user("u1")).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(body["error"]["type"], "requests");
    assert_eq!(headers["retry-after"], "30");
    // Like OpenAI's 429s, the refusal says where the bucket stands.
    assert_eq!(headers["x-ratelimit-limit-requests"], "2");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    assert_eq!(headers["x-ratelimit-reset-requests"], "1m0s");
    // Another user has a bucket of their own.
    let (status, _, _) = post_json(&sc.chat_url(), &as_user("u2")).await;
    assert_eq!(status, 200);
    assert_eq!(upstream.hits(), 3);
    let limited = sc
        .metric(
            "modelroute_rate_limited_total",
            &[("limit", "per-user"), ("kind", "requests")],
        )
        .await;
    assert_eq!(limited, 1.0);
}

#[tokio::test]
async fn a_standalone_ledger_file_keeps_spend_across_a_restart() {
    let upstream = FakeUpstream::start(Reply::Text("ok".into())).await;
    let budgets = "  budgets:\n    - {name: monthly, amountUsd: 10, window: monthly}";
    let state = tempfile::tempdir().unwrap();
    let ledger = state.path().join("ledger.json");
    let start = || async {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("route.yaml"),
            config(&upstream, budgets, ""),
        )
        .unwrap();
        Sidecar::start_in(dir, 1024 * 1024, Some(ledger.clone())).await
    };
    let mut sc = start().await;
    for _ in 0..3 {
        let (status, _, _) = post_json(&sc.chat_url(), &ask(5)).await;
        assert_eq!(status, 200);
    }
    sc.stop().await;
    let kept: Value = serde_json::from_slice(&std::fs::read(&ledger).unwrap()).unwrap();
    assert_eq!(kept["accounts"][0]["spentNanoUsd"], 3 * ANSWER_NANO);
    let sc = start().await;
    let (status, _, _) = post_json(&sc.chat_url(), &ask(5)).await;
    assert_eq!(status, 200);
    let (_, _, cfg) = get_json(&format!("{}/config", sc.admin)).await;
    let spent = cfg["budgets"]["accounts"][0]["spentUsd"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(nano(&spent), 4 * ANSWER_NANO);
}

#[tokio::test]
async fn a_budget_over_an_unpriced_target_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: shop}
spec:
  providers:
    - {name: local, kind: openai, baseUrl: "http://127.0.0.1:9/v1"}
  routes:
    - model: m
      targets: [{provider: local, model: llama-3-8b}]
  budgets:
    - {name: monthly, amountUsd: 10, window: monthly}
"#;
    std::fs::write(dir.path().join("route.yaml"), yaml).unwrap();
    let err = modelroute_sidecar::start(modelroute_sidecar::Options {
        config: Some(dir.path().to_path_buf()),
        operator: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        max_body_bytes: 1024,
        drain_timeout: Duration::from_secs(1),
        ledger_file: None,
        pod_name: String::new(),
        ..modelroute_sidecar::Options::default()
    })
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("local/llama-3-8b has no price") && err.contains("spec.pricing"),
        "{err}"
    );
}

#[tokio::test]
async fn a_provider_account_limit_spills_to_the_fallback_instead_of_collecting_429s() {
    let primary = FakeUpstream::start(Reply::Text("from primary".into())).await;
    let fallback = FakeUpstream::start(Reply::Text("from fallback".into())).await;
    let yaml = format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {{name: shop}}
spec:
  providers:
    - name: primary
      kind: openai
      baseUrl: "{}"
      rateLimit: {{requestsPerMinute: 2, maxQueue: 0s}}
    - {{name: backup, kind: openai, baseUrl: "{}"}}
  routes:
    - model: m
      targets: [{{provider: primary, model: p}}]
      fallbacks: [{{provider: backup, model: b}}]
"#,
        primary.base_url(),
        fallback.base_url()
    );
    let sc = Sidecar::start(&yaml).await;
    let mut served_by = Vec::new();
    for _ in 0..4 {
        let (status, headers, body) = post_json(&sc.chat_url(), &ask(5)).await;
        assert_eq!(status, 200, "{body}");
        served_by.push(headers["x-modelroute-target"].to_str().unwrap().to_string());
    }
    assert_eq!(
        served_by,
        ["primary/p", "primary/p", "backup/b", "backup/b"]
    );
    assert_eq!(
        primary.hits(),
        2,
        "a request beyond the account's limit was sent"
    );
    let limited = sc
        .metric(
            "modelroute_upstream_attempts_total",
            &[("target", "primary/p"), ("outcome", "provider_limited")],
        )
        .await;
    assert_eq!(limited, 2.0);
}

#[tokio::test]
async fn a_provider_account_limit_queues_briefly_when_room_is_near() {
    let primary = FakeUpstream::start(Reply::Text("ok".into())).await;
    let yaml = format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {{name: shop}}
spec:
  providers:
    - name: primary
      kind: openai
      baseUrl: "{}"
      rateLimit: {{requestsPerMinute: 600, maxQueue: 5s}}
  routes:
    - model: m
      targets: [{{provider: primary, model: p}}]
"#,
        primary.base_url()
    );
    let sc = Sidecar::start(&yaml).await;
    // 600 a minute is one every 100 ms once the minute's burst is used: 610 requests all
    // get through by waiting, none is refused.
    let url = sc.chat_url();
    let mut tasks = Vec::new();
    for _ in 0..610 {
        let url = url.clone();
        tasks.push(tokio::spawn(
            async move { post_json(&url, &ask(5)).await.0 },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(primary.hits(), 610);
}

#[tokio::test]
async fn an_answer_without_usage_is_costed_by_estimate_and_says_so() {
    let body = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "big",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "Four short words here."}}],
    });
    let upstream = FakeUpstream::start(Reply::Raw {
        status: 200,
        content_type: "application/json",
        body: body.to_string(),
    })
    .await;
    let sc = Sidecar::start(&config(&upstream, "", "")).await;
    let (status, headers, _) = post_json(&sc.chat_url(), &ask(5)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-modelroute-cost-estimated"], "true");
    // Prompt and answer estimated from their text: more than nothing, and at least what
    // the words alone would cost.
    let cost = nano(headers["x-modelroute-cost-usd"].to_str().unwrap());
    assert!(cost >= 4 * 2_000_000, "{cost}");
    let estimated = sc
        .metric("modelroute_cost_usd_total", &[("estimated", "true")])
        .await;
    assert!((estimated - cost as f64 / 1e9).abs() < 1e-9);
}
