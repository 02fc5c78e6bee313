//! For every provider kind: translated stream chunks reach the client as the upstream
//! sends them, not buffered until the end. The upstream sends five content events 150 ms
//! apart in its own wire format; the client's first and last content chunks must arrive
//! at least four gaps apart (a lower bound only, so a slow machine cannot fail it).

#![allow(clippy::panic, reason = "test helper: a failure should stop the test")]

mod support;

use std::time::Duration;

use serde_json::json;
use support::harness::route_yaml;
use support::*;
use tokio::time::Instant;

const GAP: Duration = Duration::from_millis(150);
const WORDS: [&str; 5] = ["one ", "two ", "three ", "four ", "five"];

fn openai_events() -> Vec<String> {
    let mut events: Vec<String> = WORDS
        .iter()
        .map(|w| {
            let c = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "x",
                "choices": [{"index": 0, "delta": {"content": w}, "finish_reason": null}]});
            format!("data: {c}\n\n")
        })
        .collect();
    let last = json!({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "x",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
    events.push(format!("data: {last}\n\ndata: [DONE]\n\n"));
    events
}

fn anthropic_events() -> Vec<String> {
    let ev = |kind: &str, v: serde_json::Value| format!("event: {kind}\ndata: {v}\n\n");
    let start = json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "model": "claude-x", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 5, "output_tokens": 1}}});
    let block = json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}});
    let mut events = vec![ev("message_start", start) + &ev("content_block_start", block)];
    for w in WORDS {
        events.push(ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}}),
        ));
    }
    events.push(
        ev("content_block_stop", json!({"type": "content_block_stop", "index": 0}))
            + &ev("message_delta", json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 5}}))
            + &ev("message_stop", json!({"type": "message_stop"})),
    );
    events
}

fn gemini_events() -> Vec<String> {
    WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut candidate = json!({"content": {"role": "model", "parts": [{"text": w}]}, "index": 0});
            if i == WORDS.len() - 1 {
                candidate["finishReason"] = json!("STOP");
            }
            let chunk = json!({"candidates": [candidate],
                "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": i + 1, "totalTokenCount": i + 3}});
            format!("data: {chunk}\r\n\r\n")
        })
        .collect()
}

async fn assert_streams_live(kind: &str, extra: &str, events: Vec<String>) {
    let upstream = FakeUpstream::start(Reply::Events { events, delay: GAP }).await;
    let base = match kind {
        "azure-openai" => format!("http://{}", upstream.addr),
        "gemini" => format!("http://{}/v1beta", upstream.addr),
        _ => upstream.base_url(),
    };
    let yaml = route_yaml(
        &format!(
            "    - {{name: up, kind: {kind}, baseUrl: \"{base}\", apiKey: {{value: test-key-not-real}}{extra}}}"
        ),
        "    - model: m\n      targets: [{provider: up, model: some-model}]",
    );
    let sc = Sidecar::start(&yaml).await;
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "count")).await;
    assert_eq!(s.status, 200, "{kind}: {}", s.text());
    assert_eq!(
        s.content(),
        "one two three four five",
        "{kind}: {}",
        s.text()
    );
    assert_eq!(
        s.data().last().map(String::as_str),
        Some("[DONE]"),
        "{kind}"
    );
    let arrival = |word: &str| -> Instant {
        let needle = format!("\"content\":\"{word}\"");
        s.chunks
            .iter()
            .find(|(_, b)| String::from_utf8_lossy(b).contains(&needle))
            .unwrap_or_else(|| panic!("{kind}: no chunk with {needle}: {}", s.text()))
            .0
    };
    let spread = arrival("five") - arrival("one ");
    assert!(
        spread >= GAP * 4 - Duration::from_millis(50),
        "{kind}: chunks were held back: {spread:?}"
    );
}

#[tokio::test]
async fn openai_streams_are_live() {
    assert_streams_live("openai", "", openai_events()).await;
}

#[tokio::test]
async fn azure_streams_are_live() {
    assert_streams_live("azure-openai", "", openai_events()).await;
}

#[tokio::test]
async fn anthropic_streams_are_live() {
    assert_streams_live("anthropic", "", anthropic_events()).await;
}

#[tokio::test]
async fn gemini_streams_are_live() {
    assert_streams_live("gemini", "", gemini_events()).await;
}
