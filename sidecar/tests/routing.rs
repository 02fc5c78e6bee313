//! Smart routing through the real sidecar in front of fake upstreams on loopback:
//! strategies, match rules, context windows, hedging, prompt-cache affinity and the
//! response cache.

#![allow(clippy::unwrap_used, reason = "test helpers outside #[test] fns")]

mod support;

use std::time::Duration;

use serde_json::Value;
use support::harness::route_yaml;
use support::*;

fn ok(text: &str) -> Reply {
    Reply::Text(text.into())
}

fn slow(ms: u64, text: &str) -> Reply {
    Reply::Delay(Duration::from_millis(ms), Box::new(ok(text)))
}

fn provider(name: &str, upstream: &FakeUpstream) -> String {
    format!(
        "    - {{name: {name}, kind: openai, baseUrl: \"{}\"}}",
        upstream.base_url()
    )
}

async fn upstreams<const N: usize>() -> [FakeUpstream; N] {
    let mut out = Vec::new();
    for i in 0..N {
        out.push(FakeUpstream::start(ok(&format!("from {i}"))).await);
    }
    out.try_into().map_err(|_| ()).unwrap()
}

/// Sends `n` requests one after another; returns the serving target of each.
async fn served_by(sc: &Sidecar, body: &Value, headers: &[(&str, &str)], n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (status, h, b) = post_json_with(&sc.chat_url(), body, headers).await;
        assert_eq!(status, 200, "{b}");
        out.push(h["x-modelroute-target"].to_str().unwrap().to_string());
    }
    out
}

fn count(served: &[String], target: &str) -> usize {
    served.iter().filter(|t| *t == target).count()
}

#[tokio::test]
async fn latency_strategy_moves_traffic_to_the_faster_target_and_back() {
    let [a, b] = upstreams::<2>().await;
    a.always(slow(120, "a"));
    let providers = [provider("a", &a), provider("b", &b)].join("\n");
    let routes = "    - model: m\n      strategy: {type: latency}\n      targets: [{provider: a, model: x}, {provider: b, model: x}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let body = chat("m", "hi");
    let first = served_by(&sc, &body, &[], 30).await;
    assert!(count(&first, "b/x") >= 24, "a is slow: {first:?}");
    // Now b is slower than a ever was: its next answer raises its score past a's at once
    // (peak-sensitive).
    a.always(ok("a"));
    b.always(slow(300, "b"));
    let second = served_by(&sc, &body, &[], 30).await;
    assert!(count(&second, "a/x") >= 24, "b is slow: {second:?}");
}

#[tokio::test]
async fn cost_strategy_picks_the_cheapest_healthy_target() {
    let [cheap, dear] = upstreams::<2>().await;
    let providers = [provider("cheap", &cheap), provider("dear", &dear)].join("\n");
    let routes = "    - model: m\n      strategy: {type: cost}\n      retry: {attempts: 0}\n      circuitBreaker: {consecutiveFailures: 2, cooldown: 1m}\n      targets: [{provider: dear, model: big}, {provider: cheap, model: small}]";
    let pricing = "  pricing:\n    - {provider: cheap, model: small, input: 0.1, output: 0.4}\n    - {provider: dear, model: big, input: 5, output: 15}\n";
    let sc = Sidecar::start(&format!("{}{pricing}", route_yaml(&providers, routes))).await;
    let body = chat("m", "hi");
    let served = served_by(&sc, &body, &[], 10).await;
    assert_eq!(count(&served, "cheap/small"), 10, "{served:?}");
    // The cheap one fails: each request fails over to the dear one, and once the circuit
    // opens the cheap one is not even tried.
    cheap.always(Reply::Error {
        status: 503,
        message: "down".into(),
        retry_after_ms: None,
    });
    let served = served_by(&sc, &body, &[], 6).await;
    assert_eq!(count(&served, "dear/big"), 6, "{served:?}");
    assert_eq!(cheap.hits(), 12, "2 failures open the circuit");
}

#[tokio::test]
async fn rules_route_tenants_security_levels_and_long_prompts() {
    let [shared, acme, secure, long] = upstreams::<4>().await;
    let providers = [
        provider("shared", &shared),
        provider("acme", &acme),
        provider("secure", &secure),
        provider("long", &long),
    ]
    .join("\n");
    let routes = r#"    - model: m
      targets: [{provider: shared, model: s}]
      rules:
        - name: acme
          match: {headers: {x-tenant: {exact: acme}}}
          targets: [{provider: acme, model: dedicated}]
        - name: secure
          match: {headers: {x-security-level: {oneOf: [high, secret]}}}
          targets: [{provider: secure, model: onprem}]
        - name: long-prompts
          match: {promptTokens: {atLeast: 2000}}
          targets: [{provider: long, model: long-context}]"#;
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let url = sc.chat_url();
    let hi = chat("m", "hi");
    let (_, h, _) = post_json_with(&url, &hi, &[("x-tenant", "acme")]).await;
    assert_eq!(h["x-modelroute-target"], "acme/dedicated");
    assert_eq!(h["x-modelroute-rule"], "acme");
    let (_, h, _) = post_json_with(&url, &hi, &[("x-security-level", "secret")]).await;
    assert_eq!(h["x-modelroute-target"], "secure/onprem");
    let (_, h, _) = post_json_with(&url, &hi, &[("x-tenant", "other")]).await;
    assert_eq!(h["x-modelroute-target"], "shared/s");
    assert!(h.get("x-modelroute-rule").is_none());
    let essay = chat("m", &"many words of a long document ".repeat(2000));
    let (_, h, _) = post_json_with(&url, &essay, &[]).await;
    assert_eq!(h["x-modelroute-target"], "long/long-context");
    assert_eq!(
        sc.metric(
            "modelroute_rule_matches_total",
            &[("route", "m"), ("rule", "acme")]
        )
        .await,
        1.0
    );
    assert_eq!(shared.hits(), 1);
}

#[tokio::test]
async fn context_windows_skip_small_targets_and_a_context_error_fails_over_to_a_larger_one() {
    let [small, large] = upstreams::<2>().await;
    let providers = [provider("small", &small), provider("large", &large)].join("\n");
    let routes = "    - model: m\n      targets: [{provider: small, model: s, contextWindow: 1000}]\n      fallbacks: [{provider: large, model: l, contextWindow: 200000}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let essay = chat("m", &"many words of a long document ".repeat(500));
    let (status, h, _) = post_json(&sc.chat_url(), &essay).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-modelroute-target"], "large/l");
    assert_eq!(small.hits(), 0, "the small target was skipped, not tried");
    let (_, h, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(h["x-modelroute-target"], "small/s");

    // Without declared windows on the first target: its context-length refusal (OpenAI's
    // documented code) moves the request to the target with a larger declared window.
    let routes = "    - model: m\n      targets: [{provider: small, model: s}]\n      fallbacks: [{provider: large, model: l, contextWindow: 200000}]";
    sc.write_config(&route_yaml(&providers, routes));
    assert!(sc.wait_version(2).await);
    small.script([Reply::Raw {
        status: 400,
        content_type: "application/json",
        body: r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#.into(),
    }]);
    let (status, h, b) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(h["x-modelroute-target"], "large/l");
    assert_eq!(h["x-modelroute-attempts"], "2");
}

#[tokio::test]
async fn a_request_error_that_is_not_about_context_is_not_failed_over() {
    let [small, large] = upstreams::<2>().await;
    let providers = [provider("small", &small), provider("large", &large)].join("\n");
    let routes = "    - model: m\n      targets: [{provider: small, model: s}]\n      fallbacks: [{provider: large, model: l, contextWindow: 200000}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    small.script([Reply::Error {
        status: 400,
        message: "temperature must be at most 2".into(),
        retry_after_ms: None,
    }]);
    let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 400);
    assert_eq!(large.hits(), 0);
}

#[tokio::test]
async fn hedging_answers_from_the_second_target_when_the_first_is_slow() {
    let [tail, quick] = upstreams::<2>().await;
    tail.always(slow(2_000, "slow"));
    let providers = [provider("tail", &tail), provider("quick", &quick)].join("\n");
    let routes = "    - model: m\n      strategy: {type: priority}\n      hedge: {delay: 50ms, maxPercent: 100}\n      targets: [{provider: tail, model: t}, {provider: quick, model: q}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let (status, h, b) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{b}");
    assert_eq!(h["x-modelroute-target"], "quick/q");
    assert_eq!(b["choices"][0]["message"]["content"], "from 1");
    assert!(tail.wait_cancelled(1).await, "the losing try is cancelled");
    let pieces = Reply::Stream {
        pieces: vec!["fast".into(), " answer".into()],
        delay: Duration::from_millis(1),
    };
    tail.always(Reply::Delay(
        Duration::from_secs(2),
        Box::new(pieces.clone()),
    ));
    quick.always(pieces);
    let stream = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(stream.headers["x-modelroute-target"], "quick/q");
    assert_eq!(stream.content(), "fast answer");
    let started = sc
        .metric(
            "modelroute_hedges_total",
            &[("route", "m"), ("outcome", "started")],
        )
        .await;
    let won = sc
        .metric(
            "modelroute_hedges_total",
            &[("route", "m"), ("outcome", "hedge_won")],
        )
        .await;
    assert_eq!((started, won), (2.0, 2.0));
}

#[tokio::test]
async fn hedging_keeps_to_its_budget() {
    let [tail, quick] = upstreams::<2>().await;
    tail.always(slow(300, "slow"));
    let providers = [provider("tail", &tail), provider("quick", &quick)].join("\n");
    let routes = "    - model: m\n      strategy: {type: priority}\n      hedge: {delay: 20ms, maxPercent: 10}\n      targets: [{provider: tail, model: t}, {provider: quick, model: q}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let served = served_by(&sc, &chat("m", "hi"), &[], 30).await;
    // 30 requests earn 3 hedges at 10%; every other request waits for the slow target.
    assert_eq!(count(&served, "quick/q"), 3, "{served:?}");
    let denied = sc
        .metric(
            "modelroute_hedges_total",
            &[("route", "m"), ("outcome", "denied")],
        )
        .await;
    assert_eq!(denied, 27.0);
}

#[tokio::test]
async fn sticky_weighted_keeps_a_session_on_one_target() {
    let [a, b] = upstreams::<2>().await;
    let providers = [provider("a", &a), provider("b", &b)].join("\n");
    let routes = "    - model: m\n      strategy: {type: weighted, sticky: {header: x-session-id}}\n      targets: [{provider: a, model: x}, {provider: b, model: x}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let body = chat("m", "hi");
    let mut firsts = Vec::new();
    for session in 0..12 {
        let id = format!("session-{session}");
        let served = served_by(&sc, &body, &[("x-session-id", &id)], 5).await;
        assert!(served.iter().all(|t| *t == served[0]), "{id}: {served:?}");
        firsts.push(served[0].clone());
    }
    // Sessions still split between the arms (each arm has p = 1/2^12 of getting none).
    assert!(
        count(&firsts, "a/x") > 0 && count(&firsts, "b/x") > 0,
        "{firsts:?}"
    );
}

#[tokio::test]
async fn prompt_affinity_keeps_a_shared_prefix_on_one_target() {
    let [a, b, c] = upstreams::<3>().await;
    let providers = [provider("a", &a), provider("b", &b), provider("c", &c)].join("\n");
    let routes = "    - model: m\n      promptAffinity: {minTokens: 200}\n      targets: [{provider: a, model: x}, {provider: b, model: x}, {provider: c, model: x}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let with_system = |system: &str, question: &str| {
        serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": question},
        ]})
    };
    let mut firsts = Vec::new();
    for p in 0..10 {
        let system = format!(
            "You are assistant number {p}. {}",
            "Follow the rules. ".repeat(100)
        );
        let mut served = Vec::new();
        for q in 0..4 {
            let body = with_system(&system, &format!("question {q}"));
            served.extend(served_by(&sc, &body, &[], 1).await);
        }
        assert!(
            served.iter().all(|t| *t == served[0]),
            "prefix {p}: {served:?}"
        );
        firsts.push(served[0].clone());
    }
    let distinct: std::collections::HashSet<_> = firsts.iter().collect();
    assert!(
        distinct.len() >= 2,
        "prefixes spread over targets: {firsts:?}"
    );
}

fn deterministic(mut body: Value) -> Value {
    body["temperature"] = 0.into();
    body
}

#[tokio::test]
async fn the_cache_answers_a_repeated_request_without_an_upstream_call() {
    let [up] = upstreams::<1>().await;
    let providers = provider("up", &up);
    let routes =
        "    - model: m\n      cache: {ttl: 1m}\n      targets: [{provider: up, model: x}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let url = sc.chat_url();
    let body = deterministic(chat("m", "what is 2+2?"));
    let (_, h1, b1) = post_json(&url, &body).await;
    assert_eq!(h1["x-modelroute-cache"], "miss");
    // Equivalent after normalization: key order, surrounding whitespace.
    let same = serde_json::json!({"temperature": 0, "messages": [{"content": "  what is 2+2?\n", "role": "user"}], "model": "m"});
    let (_, h2, b2) = post_json(&url, &same).await;
    assert_eq!(h2["x-modelroute-cache"], "hit");
    assert_eq!(b1, b2);
    assert_eq!(up.hits(), 1);
    // A different question, the client's no-cache, and a non-deterministic request go up.
    post_json(&url, &deterministic(chat("m", "what is 3+3?"))).await;
    let (_, h, _) = post_json_with(&url, &body, &[("cache-control", "no-cache")]).await;
    assert_eq!(h["x-modelroute-cache"], "bypass");
    let (_, h, _) = post_json(&url, &chat("m", "what is 2+2?")).await;
    assert!(h.get("x-modelroute-cache").is_none());
    assert_eq!(up.hits(), 4);
    assert_eq!(
        sc.metric(
            "modelroute_cache_lookups_total",
            &[("route", "m"), ("outcome", "hit")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn a_cached_stream_is_replayed_as_the_same_stream() {
    let [up] = upstreams::<1>().await;
    up.always(Reply::Stream {
        pieces: vec!["Hel".into(), "lo".into(), " there".into()],
        delay: Duration::from_millis(5),
    });
    let providers = provider("up", &up);
    let routes = "    - model: m\n      cache: {}\n      targets: [{provider: up, model: x}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let body = deterministic(chat_stream("m", "greet me"));
    let first = post_stream(&sc.chat_url(), &body).await;
    assert_eq!(first.headers["x-modelroute-cache"], "miss");
    let second = post_stream(&sc.chat_url(), &body).await;
    assert_eq!(second.headers["x-modelroute-cache"], "hit");
    assert_eq!(second.headers["content-type"], "text/event-stream");
    assert_eq!(second.content(), "Hello there");
    assert_eq!(first.text(), second.text());
    assert!(second.chunks.len() > 1, "replayed event by event");
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn a_broken_stream_is_not_cached() {
    let [up] = upstreams::<1>().await;
    up.always(Reply::CutStream {
        pieces: vec!["a".into(), "b".into(), "c".into()],
        sent: 2,
        delay: Duration::from_millis(5),
    });
    let providers = provider("up", &up);
    let routes = "    - model: m\n      cache: {}\n      targets: [{provider: up, model: x}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let body = deterministic(chat_stream("m", "greet me"));
    post_stream(&sc.chat_url(), &body).await;
    let again = post_stream(&sc.chat_url(), &body).await;
    assert_eq!(again.headers["x-modelroute-cache"], "miss");
    assert_eq!(up.hits(), 2);
}

#[tokio::test]
async fn hedging_cuts_a_slow_tail() {
    let [primary, second] = upstreams::<2>().await;
    // Every fourth answer of the primary is slow: its tail.
    for _ in 0..3 {
        primary.script([ok("p"), ok("p"), ok("p"), slow(2_000, "p")]);
    }
    let providers = [provider("primary", &primary), provider("second", &second)].join("\n");
    let routes = "    - model: m\n      strategy: {type: priority}\n      hedge: {delay: 100ms, maxPercent: 50}\n      targets: [{provider: primary, model: p}, {provider: second, model: s}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let served = served_by(&sc, &chat("m", "hi"), &[], 12).await;
    let tail: Vec<&str> = served
        .iter()
        .skip(3)
        .step_by(4)
        .map(String::as_str)
        .collect();
    assert_eq!(tail, ["second/s"; 3], "{served:?}");
    assert_eq!(count(&served, "primary/p"), 9, "{served:?}");
    assert!(
        primary.wait_cancelled(3).await,
        "each slow try is cancelled"
    );
}

#[tokio::test]
async fn cache_hits_cost_nothing_in_budgets() {
    let [up] = upstreams::<1>().await;
    let providers = provider("up", &up);
    let routes =
        "    - model: m\n      cache: {ttl: 1m}\n      targets: [{provider: up, model: x}]";
    let limits = "  pricing:\n    - {provider: up, model: \"*\", input: 1000, output: 2000}\n  budgets:\n    - {name: daily, amountUsd: 100, window: daily}\n  rateLimits:\n    - {name: rpm, requestsPerMinute: 2}\n";
    let sc = Sidecar::start(&format!("{}{limits}", route_yaml(&providers, routes))).await;
    let body = deterministic(chat("m", "what is 2+2?"));
    let (status, h, _) = post_json(&sc.chat_url(), &body).await;
    assert_eq!(status, 200);
    assert_eq!(h["x-modelroute-cache"], "miss");
    let spent = sc
        .metric("modelroute_cost_usd_total", &[("route", "m")])
        .await;
    assert!(spent > 0.0);
    // More hits than the rate limit allows requests, and not a cent more spent.
    for _ in 0..5 {
        let (status, h, _) = post_json(&sc.chat_url(), &body).await;
        assert_eq!(status, 200);
        assert_eq!(h["x-modelroute-cache"], "hit");
    }
    assert_eq!(
        sc.metric("modelroute_cost_usd_total", &[("route", "m")])
            .await,
        spent
    );
    assert_eq!(
        sc.metric(
            "modelroute_budget_spent_usd",
            &[("budget", "default/test/daily")]
        )
        .await,
        spent
    );
    assert_eq!(up.hits(), 1);
}
