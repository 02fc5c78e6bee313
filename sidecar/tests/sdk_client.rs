//! The real OpenAI Python SDK against the sidecar: plain, streaming, embeddings, models,
//! and how errors surface (status errors, and an error event mid-stream).
//!
//! Needs a Python with the `openai` package: `$MODELROUTE_PYTHON`, or `.venv/bin/python`
//! at the workspace root (`scripts/test` creates it). Without one the test fails in CI
//! (`CI` set) and is skipped loudly elsewhere.

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers: a failure should stop the test"
)]

mod support;

use std::time::Duration;

use support::harness::route_yaml;
use support::*;

#[tokio::test]
async fn the_openai_python_sdk_works_unchanged() {
    let Some(python) = python() else { return };
    let yaml = route_yaml(
        "    - {name: mock, kind: mock, mock: {reply: \"Hello there, friend\", chunkDelay: 5ms}}",
        "    - model: m\n      targets: [{provider: mock, model: mock-1}]\n    - model: m-embed\n      targets: [{provider: mock, model: e}]",
    );
    let sc = Sidecar::start(&yaml).await;
    let base = format!("{}/v1", sc.url);

    let plain = sdk(&python, &base, "plain").await;
    assert_eq!(plain["content"], "Hello there, friend");
    assert_eq!(plain["finish"], "stop");
    assert_eq!(plain["completion_tokens"], 3);

    let stream = sdk(&python, &base, "stream").await;
    assert_eq!(stream["content"], "Hello there, friend");
    assert_eq!(stream["finish"], serde_json::json!(["stop"]));
    assert_eq!(
        stream["usage"],
        serde_json::json!([]),
        "usage hidden unless asked"
    );

    let stream = sdk(&python, &base, "stream_usage").await;
    assert_eq!(stream["usage"], serde_json::json!([3]));

    let emb = sdk(&python, &base, "embeddings").await;
    assert_eq!(
        (emb["count"].as_u64(), emb["dims"].as_u64()),
        (Some(2), Some(8))
    );

    let models = sdk(&python, &base, "models").await;
    assert_eq!(models["ids"], serde_json::json!(["m", "m-embed"]));

    let unknown = sdk(&python, &base, "unknown_model").await;
    assert_eq!(unknown["error"], "NotFoundError");
    assert_eq!(unknown["code"], "model_not_found");
}

#[tokio::test]
async fn the_sdk_surfaces_upstream_failures() {
    let Some(python) = python() else { return };
    let upstream = FakeUpstream::start(Reply::Error {
        status: 503,
        message: "provider overloaded".into(),
        retry_after_ms: None,
    })
    .await;
    let yaml = route_yaml(
        &format!(
            "    - {{name: up, kind: openai, baseUrl: \"{}\"}}",
            upstream.base_url()
        ),
        "    - model: m\n      targets: [{provider: up, model: x}]\n      retry: {attempts: 0}\n      circuitBreaker: {consecutiveFailures: 0}",
    );
    let sc = Sidecar::start(&yaml).await;
    let base = format!("{}/v1", sc.url);

    let down = sdk(&python, &base, "upstream_down").await;
    assert_eq!(down["error"], "InternalServerError");
    assert_eq!(down["status"], 503);
    assert!(
        down["message"]
            .as_str()
            .unwrap()
            .contains("provider overloaded"),
        "{down}"
    );

    upstream.always(Reply::CutStream {
        pieces: vec!["partial ".into(), "answer".into(), "never".into()],
        sent: 2,
        delay: Duration::from_millis(10),
    });
    let broken = sdk(&python, &base, "stream_broken").await;
    assert_eq!(broken["error"], "APIError", "{broken}");
    let message = broken["message"].as_str().unwrap();
    assert!(
        message.contains("up/x") && message.contains("stream"),
        "{broken}"
    );
}
