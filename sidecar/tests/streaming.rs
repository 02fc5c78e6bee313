//! Streaming through the real sidecar: no buffering, failover before the first byte only,
//! usage handling, keep-alives, idle timeouts and cancellation.

mod support;

use std::time::Duration;

use support::harness::route_yaml;
use support::*;

fn pieces(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn stream(words: &[&str], delay_ms: u64) -> Reply {
    Reply::Stream {
        pieces: pieces(words),
        delay: Duration::from_millis(delay_ms),
    }
}

async fn pair(policy: &str) -> (FakeUpstream, FakeUpstream, Sidecar) {
    let primary = FakeUpstream::start(stream(&["from ", "primary"], 0)).await;
    let fallback = FakeUpstream::start(stream(&["from ", "fallback"], 0)).await;
    let providers = format!(
        "    - {{name: primary, kind: openai, baseUrl: \"{}\"}}\n    - {{name: backup, kind: openai, baseUrl: \"{}\"}}",
        primary.base_url(),
        fallback.base_url()
    );
    let routes = format!(
        "    - model: m\n      targets: [{{provider: primary, model: p}}]\n      fallbacks: [{{provider: backup, model: b}}]\n      retry: {{attempts: 0}}\n{policy}"
    );
    (
        primary,
        fallback,
        Sidecar::start(&route_yaml(&providers, &routes)).await,
    )
}

#[tokio::test]
async fn chunks_reach_the_client_as_the_upstream_sends_them() {
    let (primary, _, sc) = pair("").await;
    primary.always(stream(&["a ", "b ", "c ", "d ", "e"], 150));
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.headers["content-type"], "text/event-stream");
    assert_eq!(s.headers["x-accel-buffering"], "no");
    assert_eq!(s.content(), "a b c d e");
    assert_eq!(s.data().last().unwrap(), "[DONE]");
    // Events arrive spread over time, not in one buffered burst: the first content
    // event arrives at least 4 upstream delays before the last one.
    let first = s
        .chunks
        .iter()
        .find(|(_, b)| b.windows(4).any(|w| w == b"\"a \""))
        .unwrap()
        .0;
    let last = s
        .chunks
        .iter()
        .find(|(_, b)| b.windows(3).any(|w| w == b"\"e\""))
        .unwrap()
        .0;
    assert!(
        last - first >= Duration::from_millis(4 * 150 - 50),
        "spread {:?}",
        last - first
    );
}

#[tokio::test]
async fn a_stream_that_breaks_before_its_first_event_fails_over_invisibly() {
    let (primary, fallback, sc) = pair("").await;
    primary.always(Reply::CutStream {
        pieces: pieces(&["x"]),
        sent: 0,
        delay: Duration::ZERO,
    });
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.content(), "from fallback");
    assert!(!s.text().contains("error"), "{}", s.text());
    assert_eq!(s.data().last().unwrap(), "[DONE]");
    assert_eq!((primary.hits(), fallback.hits()), (1, 1));
    assert_eq!(s.headers["x-modelroute-target"], "backup/b");
}

#[tokio::test]
async fn an_error_status_fails_over_and_all_failing_is_a_real_status() {
    let (primary, fallback, sc) = pair("").await;
    primary.always(Reply::Error {
        status: 503,
        message: "busy".into(),
        retry_after_ms: None,
    });
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(s.content(), "from fallback");
    fallback.always(Reply::Error {
        status: 429,
        message: "rate limited".into(),
        retry_after_ms: None,
    });
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(
        s.status, 429,
        "before any byte the client gets a real status"
    );
    assert!(s.text().contains("rate limited"), "{}", s.text());
}

#[tokio::test]
async fn no_retry_once_a_byte_reached_the_client() {
    let (primary, fallback, sc) = pair("").await;
    primary.always(Reply::CutStream {
        pieces: pieces(&["one ", "two ", "three"]),
        sent: 2,
        delay: Duration::from_millis(20),
    });
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.content(), "one two ");
    let last: serde_json::Value = serde_json::from_str(s.data().last().unwrap()).unwrap();
    assert_eq!(
        last["error"]["type"], "upstream_error",
        "the stream ends with an error event"
    );
    assert!(!s.text().contains("[DONE]"));
    assert_eq!((primary.hits(), fallback.hits()), (1, 0));
    assert_eq!(
        sc.metric(
            "modelroute_errors_total",
            &[("route", "m"), ("kind", "stream_interrupted")]
        )
        .await,
        1.0
    );
}

#[tokio::test]
async fn usage_is_always_requested_but_only_shown_when_asked() {
    let (primary, _, sc) = pair("").await;
    primary.always(stream(&["x ", "y"], 0));
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(
        primary.seen()[0].body["stream_options"]["include_usage"],
        true
    );
    assert!(
        !s.text().contains("\"usage\":{"),
        "usage chunk hidden: {}",
        s.text()
    );
    assert_eq!(
        sc.metric("modelroute_tokens_total", &[("direction", "input")])
            .await,
        11.0
    );
    assert_eq!(
        sc.metric("modelroute_tokens_total", &[("direction", "output")])
            .await,
        2.0
    );

    let mut asked = chat_stream("m", "hi");
    asked["stream_options"] = serde_json::json!({"include_usage": true});
    let s = post_stream(&sc.chat_url(), &asked).await;
    let usage: Vec<_> = s
        .data()
        .into_iter()
        .filter(|d| d.contains("\"usage\":{"))
        .collect();
    assert_eq!(usage.len(), 1, "{}", s.text());
}

#[tokio::test]
async fn keep_alives_flow_while_the_first_token_is_slow_and_failover_still_works() {
    let (primary, fallback, sc) =
        pair("      timeouts: {firstByte: 900ms, keepAlive: 200ms}\n").await;
    primary.always(Reply::Hang);
    fallback.always(Reply::Delay(
        Duration::from_millis(300),
        Box::new(stream(&["late"], 0)),
    ));
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(s.status, 200);
    let text = s.text();
    let first_data = text.find("data:").unwrap();
    let keep_alives = text[..first_data].matches(": keep-alive").count();
    assert!(
        keep_alives >= 3,
        "{keep_alives} keep-alives before data: {text}"
    );
    assert_eq!(s.content(), "late");
    assert!(!text.contains("error"), "{text}");
    assert_eq!(fallback.hits(), 1);
}

#[tokio::test]
async fn after_keep_alives_a_final_failure_is_an_error_event() {
    let (primary, fallback, sc) =
        pair("      timeouts: {firstByte: 300ms, keepAlive: 100ms}\n").await;
    primary.always(Reply::Hang);
    fallback.always(Reply::Hang);
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(s.status, 200, "headers went out with the keep-alives");
    let last: serde_json::Value = serde_json::from_str(s.data().last().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "timeout", "{}", s.text());
}

#[tokio::test]
async fn an_idle_upstream_ends_the_stream_with_an_error_event() {
    let (primary, _, sc) = pair("      timeouts: {idle: 200ms, keepAlive: 1h}\n").await;
    // One event, then silence far longer than the idle timeout.
    primary.always(stream(&["first ", "never"], 5_000));
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert_eq!(s.content(), "first ");
    let last: serde_json::Value = serde_json::from_str(s.data().last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idle timeout"),
        "{}",
        s.text()
    );
    assert!(
        primary.wait_cancelled(1).await,
        "the idle upstream stream was not dropped"
    );
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_cancels_the_upstream() {
    use http_body_util::BodyExt;
    let (primary, _, sc) = pair("").await;
    primary.always(stream(&["a ", "b ", "c ", "d ", "e ", "f ", "g"], 100));
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = http::Request::post(sc.chat_url())
        .body(http_body_util::Full::new(bytes::Bytes::from(
            chat_stream("m", "hi").to_string(),
        )))
        .unwrap();
    let mut body = client.request(req).await.unwrap().into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.is_data());
    drop(body);
    drop(client);
    assert!(
        primary.wait_cancelled(1).await,
        "upstream stream still being read"
    );
    assert!(
        sc.metric("modelroute_errors_total", &[("kind", "client_closed")])
            .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_client_that_disconnects_while_waiting_cancels_the_upstream() {
    let (primary, _, sc) = pair("").await;
    primary.always(Reply::Hang);
    for body in [chat("m", "hi"), chat_stream("m", "hi")] {
        let before = primary.cancelled();
        let url = sc.chat_url();
        let call = tokio::spawn(async move { post_json(&url, &body).await });
        // Wait until the upstream has the request, then hang up.
        for _ in 0..200 {
            if primary.hits() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        call.abort();
        assert!(
            primary.wait_cancelled(before + 1).await,
            "upstream request not cancelled"
        );
    }
}

#[tokio::test]
async fn two_hundred_concurrent_streams_all_complete() {
    let (primary, _, sc) = pair("").await;
    primary.always(stream(&["a ", "b ", "c"], 20));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let url = sc.chat_url();
        tasks.spawn(async move { post_stream(&url, &chat_stream("m", "hi")).await.content() });
    }
    let mut done = 0;
    while let Some(content) = tasks.join_next().await {
        assert_eq!(content.unwrap(), "a b c");
        done += 1;
    }
    assert_eq!(done, 200);
}
