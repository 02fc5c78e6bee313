//! Retries, fallbacks, circuit breaking and timeouts, through the real sidecar in front
//! of fake upstreams on loopback.

mod support;

use std::time::Duration;

use support::harness::route_yaml;
use support::*;
use tokio::time::Instant;

fn err(status: u16, message: &str) -> Reply {
    Reply::Error {
        status,
        message: message.into(),
        retry_after_ms: None,
    }
}

fn ok(text: &str) -> Reply {
    Reply::Text(text.into())
}

/// Primary and fallback upstreams behind one alias `m`.
async fn pair(policy: &str) -> (FakeUpstream, FakeUpstream, Sidecar) {
    let primary = FakeUpstream::start(ok("from primary")).await;
    let fallback = FakeUpstream::start(ok("from fallback")).await;
    let providers = format!(
        "    - {{name: primary, kind: openai, baseUrl: \"{}\", apiKey: {{value: sk-test-primary-key-0000}}}}\n    - {{name: backup, kind: openai, baseUrl: \"{}\"}}",
        primary.base_url(),
        fallback.base_url()
    );
    let routes = format!(
        "    - model: m\n      targets: [{{provider: primary, model: p-model}}]\n      fallbacks: [{{provider: backup, model: b-model}}]\n{policy}"
    );
    let sidecar = Sidecar::start(&route_yaml(&providers, &routes)).await;
    (primary, fallback, sidecar)
}

const FAST_RETRY: &str = "      retry: {attempts: 2, backoffBase: 10ms, backoffMax: 20ms}\n";

#[tokio::test]
async fn a_transient_failure_is_retried_invisibly() {
    let (primary, fallback, sc) = pair(FAST_RETRY).await;
    primary.script([err(503, "overloaded"), err(500, "oops")]);
    let (status, headers, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from primary");
    assert_eq!(primary.hits(), 3);
    assert_eq!(fallback.hits(), 0);
    assert_eq!(headers["x-modelroute-attempts"], "3");
    assert_eq!(headers["x-modelroute-target"], "primary/p-model");
    assert_eq!(
        sc.metric("modelroute_retries_total", &[("route", "m")])
            .await,
        2.0
    );
}

#[tokio::test]
async fn retries_exhausted_fall_back_and_the_upstream_model_is_rewritten() {
    let (primary, fallback, sc) = pair(FAST_RETRY).await;
    primary.always(err(502, "bad gateway"));
    let (status, headers, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from fallback");
    assert_eq!(primary.hits(), 3, "one try and two retries");
    assert_eq!(fallback.hits(), 1);
    assert_eq!(primary.seen()[0].body["model"], "p-model");
    assert_eq!(fallback.seen()[0].body["model"], "b-model");
    assert_eq!(headers["x-modelroute-target"], "backup/b-model");
    assert_eq!(
        sc.metric("modelroute_fallbacks_total", &[("route", "m")])
            .await,
        1.0
    );
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_cap() {
    let (primary, fallback, sc) =
        pair("      retry: {attempts: 1, backoffBase: 1ms, backoffMax: 1ms, maxRetryAfter: 2s}\n")
            .await;
    primary.script([Reply::Error {
        status: 429,
        message: "slow down".into(),
        retry_after_ms: Some(400),
    }]);
    let started = Instant::now();
    let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(primary.hits(), 2);
    assert_eq!(fallback.hits(), 0);

    // A retry-after beyond the cap is not waited for: on to the fallback at once.
    primary.script([Reply::Error {
        status: 429,
        message: "come back in an hour".into(),
        retry_after_ms: Some(3_600_000),
    }]);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "from fallback");
    assert_eq!(primary.hits(), 3);
}

#[tokio::test]
async fn the_request_s_own_errors_are_not_retried() {
    let (primary, fallback, sc) = pair(FAST_RETRY).await;
    primary.script([err(400, "messages: field required")]);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("messages: field required"),
        "{body}"
    );
    assert_eq!(body["error"]["code"], "fake_code");
    assert_eq!((primary.hits(), fallback.hits()), (1, 0));
}

#[tokio::test]
async fn when_all_fail_the_client_gets_the_last_status_and_message_but_never_the_key() {
    let (primary, fallback, sc) = pair(FAST_RETRY).await;
    // An upstream that echoes the key it got, as some servers do.
    primary.always(err(503, "bad key sk-test-primary-key-0000"));
    fallback.always(err(503, "fallback is down too"));
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 503);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("backup/b-model") && message.contains("fallback is down too"),
        "{message}"
    );
    assert!(
        message.contains("6 tries"),
        "three tries per target: {message}"
    );
    assert!(!body.to_string().contains("sk-test-primary-key-0000"));

    // Only the primary answered: its message reaches the client, scrubbed.
    fallback.always(err(404, "no such model"));
    primary.always(err(500, "key sk-test-primary-key-0000 rejected"));
    let (_, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert!(
        !body.to_string().contains("sk-test-primary-key-0000"),
        "{body}"
    );
}

#[tokio::test]
async fn the_key_is_injected_and_client_credentials_are_not_forwarded() {
    let (primary, _, sc) = pair("").await;
    let (status, _, _) = post_json_with(
        &sc.chat_url(),
        &chat("m", "hi"),
        &[
            ("authorization", "Bearer app-placeholder"),
            ("x-api-key", "nope"),
            ("openai-beta", "x=1"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let seen = &primary.seen()[0];
    assert_eq!(
        seen.headers["authorization"],
        "Bearer sk-test-primary-key-0000"
    );
    assert!(seen.headers.get("x-api-key").is_none());
    assert_eq!(seen.headers["openai-beta"], "x=1");
    assert_eq!(seen.path, "/v1/chat/completions");
}

#[tokio::test]
async fn a_connection_refused_fails_over() {
    // A port nothing listens on: bind, note it, close.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let fallback = FakeUpstream::start(ok("from fallback")).await;
    let providers = format!(
        "    - {{name: dead, kind: openai, baseUrl: \"http://{closed}/v1\"}}\n    - {{name: backup, kind: openai, baseUrl: \"{}\"}}",
        fallback.base_url()
    );
    let routes = "    - model: m\n      targets: [{provider: dead, model: x}]\n      fallbacks: [{provider: backup, model: fb}]\n      retry: {attempts: 1, backoffBase: 1ms, backoffMax: 1ms}";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from fallback");
    assert_eq!(
        sc.metric(
            "modelroute_upstream_attempts_total",
            &[("target", "dead/x"), ("outcome", "connect_error")]
        )
        .await,
        2.0
    );
}

#[tokio::test]
async fn a_hanging_target_times_out_fails_over_and_is_cancelled() {
    let (primary, fallback, sc) =
        pair("      retry: {attempts: 0}\n      timeouts: {firstByte: 200ms}\n").await;
    primary.always(Reply::Hang);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from fallback");
    assert!(
        primary.wait_cancelled(1).await,
        "the hung upstream request was not cancelled"
    );
    assert_eq!(fallback.hits(), 1);
}

#[tokio::test]
async fn the_total_timeout_bounds_everything() {
    let (primary, fallback, sc) =
        pair("      retry: {attempts: 5, backoffBase: 100ms, backoffMax: 100ms}\n      timeouts: {firstByte: 300ms, total: 500ms}\n").await;
    primary.always(Reply::Hang);
    fallback.always(Reply::Hang);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "timeout");
}

#[tokio::test]
async fn the_breaker_opens_skips_the_target_and_recovers_after_the_cooldown() {
    let (primary, fallback, sc) =
        pair("      retry: {attempts: 0}\n      circuitBreaker: {consecutiveFailures: 2, cooldown: 300ms}\n").await;
    primary.always(err(500, "down"));
    for _ in 0..2 {
        let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(primary.hits(), 2);
    let (_, _, config) = get_json(&format!("{}/config", sc.admin)).await;
    assert_eq!(config["circuits"]["primary/p-model"], "open");
    assert_eq!(
        sc.metric("modelroute_circuit_state", &[("target", "primary/p-model")])
            .await,
        2.0
    );

    // Open: the primary is not even tried.
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "from fallback");
    assert_eq!(primary.hits(), 2);

    // After the cooldown one probe goes through; it succeeds and closes the circuit.
    tokio::time::sleep(Duration::from_millis(350)).await;
    primary.always(ok("from primary"));
    let (_, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(body["choices"][0]["message"]["content"], "from primary");
    assert_eq!(primary.hits(), 3);
    let (_, _, config) = get_json(&format!("{}/config", sc.admin)).await;
    assert_eq!(config["circuits"]["primary/p-model"], "closed");
    assert_eq!(fallback.hits(), 3);
}

#[tokio::test]
async fn every_circuit_open_is_a_clear_503() {
    let upstream = FakeUpstream::start(err(500, "down")).await;
    let providers = format!(
        "    - {{name: only, kind: openai, baseUrl: \"{}\"}}",
        upstream.base_url()
    );
    let routes = "    - model: m\n      targets: [{provider: only, model: x}]\n      retry: {attempts: 0}\n      circuitBreaker: {consecutiveFailures: 1, cooldown: 1h}";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 500);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 503);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("open circuit breaker"),
        "{body}"
    );
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn weights_split_the_traffic() {
    let a = FakeUpstream::start(ok("a")).await;
    let b = FakeUpstream::start(ok("b")).await;
    let providers = format!(
        "    - {{name: a, kind: openai, baseUrl: \"{}\"}}\n    - {{name: b, kind: openai, baseUrl: \"{}\"}}",
        a.base_url(),
        b.base_url()
    );
    let routes = "    - model: m\n      targets: [{provider: a, model: x, weight: 3}, {provider: b, model: x, weight: 1}]";
    let sc = Sidecar::start(&route_yaml(&providers, routes)).await;
    let n = 400;
    for _ in 0..n {
        let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
        assert_eq!(status, 200);
    }
    let share = a.hits() as f64 / n as f64;
    // Expected 0.75; five standard deviations of binomial(400, 0.75) is about 0.108.
    assert!((share - 0.75).abs() < 0.108, "a got {share}");
    assert_eq!(a.hits() + b.hits(), n);
}
