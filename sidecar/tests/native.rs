//! Native pass-through: the Anthropic and Gemini APIs served as they are (for the
//! providers' own SDKs), routed by alias to targets of that provider kind, with the
//! provider key injected, retries and failover, usage counted, and errors in the
//! provider's own shape. The Anthropic and Google GenAI Python SDKs drive it too.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure should stop the test"
)]

mod support;

use serde_json::{Value, json};
use support::fake_anthropic::{AnthropicReply, FakeAnthropic, KEY, message};
use support::fake_gemini::{FakeGemini, GeminiReply, TEST_KEY};
use support::harness::route_yaml;
use support::*;

const NO_RETRY: &str = "      retry: {attempts: 0}\n      circuitBreaker: {consecutiveFailures: 0}";

/// Alias `m`: an OpenAI target (weighted to be tried first) and an Anthropic one; alias
/// `oa-only`: only the OpenAI target.
async fn anthropic_setup() -> (FakeAnthropic, FakeUpstream, Sidecar) {
    let claude = FakeAnthropic::start().await;
    let openai = FakeUpstream::start(Reply::Text("from openai".into())).await;
    let providers = format!(
        "{}\n{}\n    - {{name: oa, kind: openai, baseUrl: \"{}\"}}",
        claude.provider("claude"),
        claude.provider("claude-backup"),
        openai.base_url()
    );
    let routes = format!(
        "    - model: m\n      targets: [{{provider: oa, model: gpt, weight: 1000}}, {{provider: claude, model: claude-sonnet-4-5, weight: 1}}]\n      fallbacks: [{{provider: claude-backup, model: claude-haiku-4-5}}]\n{NO_RETRY}\n    - model: oa-only\n      targets: [{{provider: oa, model: gpt}}]"
    );
    let sc = Sidecar::start(&route_yaml(&providers, &routes)).await;
    (claude, openai, sc)
}

fn hello() -> Value {
    message(
        vec![json!({"type": "text", "text": "Hello from Claude"})],
        "end_turn",
    )
}

#[tokio::test]
async fn messages_pass_through_with_the_key_injected_and_only_to_anthropic_targets() {
    let (claude, openai, sc) = anthropic_setup().await;
    claude.script([AnthropicReply::Message(hello())]);
    let body = json!({"model": "m", "max_tokens": 64, "metadata": {"user_id": "u1"},
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, answer) = post_json_with(
        &format!("{}/v1/messages", sc.url),
        &body,
        &[
            ("x-api-key", "app-placeholder"),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "message", "untranslated: {answer}");
    assert_eq!(answer["content"][0]["text"], "Hello from Claude");
    assert_eq!(headers["x-modelroute-target"], "claude/claude-sonnet-4-5");
    let seen = &claude.seen()[0];
    assert_eq!(seen.body["model"], "claude-sonnet-4-5");
    assert_eq!(seen.body["metadata"]["user_id"], "u1");
    assert_eq!(seen.headers["x-api-key"], KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    claude.assert_all_valid();
    assert_eq!(
        openai.hits(),
        0,
        "an OpenAI target never gets an Anthropic request"
    );
    assert_eq!(
        sc.metric(
            "modelroute_tokens_total",
            &[("route", "m"), ("direction", "input")]
        )
        .await,
        21.0
    );
    assert_eq!(
        sc.metric(
            "modelroute_tokens_total",
            &[("route", "m"), ("direction", "output")]
        )
        .await,
        9.0
    );
}

#[tokio::test]
async fn streamed_messages_pass_through_event_by_event() {
    let (claude, _, sc) = anthropic_setup().await;
    claude.script([AnthropicReply::Message(hello())]);
    let body = json!({"model": "m", "max_tokens": 64, "stream": true,
        "messages": [{"role": "user", "content": "hi"}]});
    let s = post_stream(&format!("{}/v1/messages", sc.url), &body).await;
    assert_eq!(s.status, 200);
    let text = s.text();
    assert!(text.starts_with("event: message_start\n"), "{text}");
    assert!(
        text.trim_end().ends_with(r#"{"type":"message_stop"}"#),
        "{text}"
    );
    assert!(
        !text.contains("[DONE]"),
        "no OpenAI terminator in an Anthropic stream"
    );
    assert_eq!(claude.seen()[0].body["stream"], true);
    assert_eq!(
        sc.metric(
            "modelroute_tokens_total",
            &[("route", "m"), ("direction", "output")]
        )
        .await,
        9.0
    );
}

#[tokio::test]
async fn an_overloaded_anthropic_target_fails_over_to_the_next_one() {
    let (claude, _, sc) = anthropic_setup().await;
    claude.script([
        AnthropicReply::Error {
            status: 529,
            kind: "overloaded_error",
            message: "Overloaded",
        },
        AnthropicReply::Message(hello()),
    ]);
    let body =
        json!({"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]});
    let (status, headers, answer) = post_json(&format!("{}/v1/messages", sc.url), &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        headers["x-modelroute-target"],
        "claude-backup/claude-haiku-4-5"
    );
    assert_eq!(claude.seen()[1].body["model"], "claude-haiku-4-5");
}

#[tokio::test]
async fn errors_come_back_in_anthropic_s_shape() {
    let (_, _, sc) = anthropic_setup().await;
    let url = format!("{}/v1/messages", sc.url);
    let (status, _, body) = post_json(
        &url,
        &json!({"model": "oa-only", "max_tokens": 1, "messages": []}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("oa-only"),
        "{body}"
    );
    let (status, _, body) = post_json(
        &url,
        &json!({"model": "nope", "max_tokens": 1, "messages": []}),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["type"], "not_found_error");
}

fn gemini_text(text: &str, finish: Option<&str>) -> Value {
    let mut candidate =
        json!({"content": {"role": "model", "parts": [{"text": text}]}, "index": 0});
    if let Some(f) = finish {
        candidate["finishReason"] = json!(f);
    }
    json!({"candidates": [candidate],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7},
        "modelVersion": "gemini-2.5-flash"})
}

async fn gemini_setup() -> (FakeGemini, Sidecar) {
    let gemini = FakeGemini::start(GeminiReply::Json(gemini_text(
        "Hello from Gemini",
        Some("STOP"),
    )))
    .await;
    let providers = format!(
        "    - {{name: g, kind: gemini, baseUrl: \"{}\", apiKey: {{value: {TEST_KEY}}}}}",
        gemini.base_url()
    );
    let routes = format!(
        "    - model: m\n      targets: [{{provider: g, model: gemini-2.5-flash}}]\n{NO_RETRY}"
    );
    let sc = Sidecar::start(&route_yaml(&providers, &routes)).await;
    (gemini, sc)
}

#[tokio::test]
async fn generate_content_passes_through_with_the_key_in_a_header() {
    let (gemini, sc) = gemini_setup().await;
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let (status, _, answer) = post_json_with(
        &format!("{}/v1beta/models/m:generateContent", sc.url),
        &body,
        &[("x-goog-api-key", "app-placeholder")],
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["candidates"][0]["content"]["parts"][0]["text"],
        "Hello from Gemini"
    );
    let seen = gemini.last_accepted();
    assert_eq!(seen.path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(seen.headers["x-goog-api-key"], TEST_KEY);
    assert_eq!(seen.body, body, "the body is passed on unchanged");
    assert_eq!(
        sc.metric(
            "modelroute_tokens_total",
            &[("route", "m"), ("direction", "output")]
        )
        .await,
        4.0
    );
}

#[tokio::test]
async fn stream_generate_content_passes_through_and_needs_alt_sse() {
    let (gemini, sc) = gemini_setup().await;
    gemini.script([GeminiReply::Sse(vec![
        gemini_text("Hel", None),
        gemini_text("lo", Some("STOP")),
    ])]);
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let s = post_stream(
        &format!("{}/v1beta/models/m:streamGenerateContent?alt=sse", sc.url),
        &body,
    )
    .await;
    assert_eq!(s.status, 200);
    let data = s.data();
    assert_eq!(data.len(), 2, "{}", s.text());
    let last: Value = serde_json::from_str(&data[1]).unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    let seen = gemini.last_accepted();
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));

    let (status, _, err) = post_json(
        &format!("{}/v1beta/models/m:streamGenerateContent", sc.url),
        &body,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["status"], "INVALID_ARGUMENT");
    let (status, _, err) = post_json(
        &format!("{}/v1beta/models/nope:generateContent", sc.url),
        &body,
    )
    .await;
    assert_eq!(
        (status.as_u16(), err["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );
}

#[tokio::test]
async fn the_anthropic_sdk_works_unchanged_through_the_sidecar() {
    let Some(python) = python() else { return };
    let (claude, _, sc) = anthropic_setup().await;
    claude.script([
        AnthropicReply::Message(hello()),
        AnthropicReply::Message(hello()),
    ]);
    let plain = native_sdk(&python, &sc.url, "anthropic_plain").await;
    let why: Vec<_> = claude
        .seen()
        .into_iter()
        .filter_map(|s| s.rejected)
        .collect();
    assert_eq!(plain["text"], "Hello from Claude", "{plain} {why:?}");
    assert_eq!(
        (plain["stop"].as_str(), plain["output"].as_u64()),
        (Some("end_turn"), Some(9))
    );
    let stream = native_sdk(&python, &sc.url, "anthropic_stream").await;
    assert_eq!(stream["text"], "Hello from Claude", "{stream}");
    assert_eq!(stream["stop"], "end_turn");
    let unknown = native_sdk(&python, &sc.url, "anthropic_unknown_model").await;
    assert_eq!(unknown["error"], "NotFoundError", "{unknown}");
    assert_eq!(unknown["type"], "not_found_error");
    claude.assert_all_valid();
}

#[tokio::test]
async fn the_google_genai_sdk_works_unchanged_through_the_sidecar() {
    let Some(python) = python() else { return };
    let (gemini, sc) = gemini_setup().await;
    let plain = native_sdk(&python, &sc.url, "gemini_plain").await;
    assert_eq!(plain["text"], "Hello from Gemini", "{plain}");
    assert_eq!(plain["prompt"], 3);
    gemini.script([GeminiReply::Sse(vec![
        gemini_text("Hello ", None),
        gemini_text("again", Some("STOP")),
    ])]);
    let stream = native_sdk(&python, &sc.url, "gemini_stream").await;
    assert_eq!(stream["text"], "Hello again", "{stream}");
    let unknown = native_sdk(&python, &sc.url, "gemini_unknown_model").await;
    assert_eq!(
        (unknown["status"].as_u64(), unknown["status_name"].as_str()),
        (Some(404), Some("NOT_FOUND")),
        "{unknown}"
    );
    assert!(
        gemini
            .seen()
            .iter()
            .all(|s| s.query.as_deref().is_none_or(|q| !q.contains("key=")))
    );
}
