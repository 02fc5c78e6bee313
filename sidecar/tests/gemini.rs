//! The real sidecar in front of a strict fake Gemini API: plain and streamed chat, tools
//! (with a schema Gemini cannot take as is), images, JSON mode, embeddings, a cut
//! stream, a mid-stream error, cross-provider fallback, 429 with RetryInfo, and the
//! OpenAI Python SDK end to end.

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers: a failure should stop the test"
)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_gemini::{FakeGemini, GeminiReply, TEST_KEY};
use support::harness::route_yaml;
use support::*;
use tokio::time::Instant;

const MODEL: &str = "gemini-2.5-flash";

fn testdata(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/provider/gemini/testdata")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON fixture without its provenance keys.
fn fixture(name: &str) -> Value {
    let mut v: Value = serde_json::from_str(&testdata(name)).unwrap();
    v.as_object_mut()
        .unwrap()
        .retain(|k, _| !k.starts_with('_'));
    v
}

/// The events of an .sse fixture.
fn sse_fixture(name: &str) -> Vec<Value> {
    testdata(name)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn provider(gemini: &FakeGemini) -> String {
    format!(
        "    - {{name: g, kind: gemini, baseUrl: \"{}\", apiKey: {{value: {TEST_KEY}}}}}",
        gemini.base_url()
    )
}

async fn sidecar(gemini: &FakeGemini, policy: &str) -> Sidecar {
    let yaml = route_yaml(
        &provider(gemini),
        &format!(
            "    - model: m\n      targets: [{{provider: g, model: {MODEL}}}]\n{policy}    - model: m-embed\n      targets: [{{provider: g, model: gemini-embedding-001}}]"
        ),
    );
    Sidecar::start(&yaml).await
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
    "name": "get_current_temperature", "description": "Gets the current temperature.", "strict": true,
    "parameters": {
        "type": "object", "additionalProperties": false,
        "$defs": {"Unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "properties": {
            "location": {"type": "string"},
            "unit": {"anyOf": [{"$ref": "#/$defs/Unit"}, {"type": "null"}]},
            "note": {"type": ["string", "null"]}
        },
        "required": ["location", "unit", "note"]
    }}})
}

fn parse_chunks(s: &Streamed) -> Vec<Value> {
    s.data()
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

#[tokio::test]
async fn the_strict_fake_refuses_what_gemini_refuses() {
    // The fake is only worth something if an unrewritten request fails on it.
    let gemini = FakeGemini::start(GeminiReply::Json(fixture("text_response.json"))).await;
    let url = format!(
        "http://{}/v1beta/models/{MODEL}:generateContent",
        gemini.addr
    );
    let good = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]});
    let key = [("x-goog-api-key", TEST_KEY)];
    let (status, _, _) = post_json_with(&url, &good, &key).await;
    assert_eq!(status, 200);
    let (status, _, body) = post_json_with(&format!("{url}?key={TEST_KEY}"), &good, &key).await;
    assert_eq!(status, 400, "{body}");
    let (status, _, _) = post_json_with(&url, &good, &[("x-goog-api-key", "wrong")]).await;
    assert_eq!(status, 400);
    let mut raw_schema = good.clone();
    raw_schema["tools"] = json!([{"functionDeclarations": [{"name": "f", "parameters": weather_tool()["function"]["parameters"]}]}]);
    let (status, _, body) = post_json_with(&url, &raw_schema, &key).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown name"),
        "{body}"
    );
    let mut typed = good.clone();
    typed["generationConfig"] = json!({"responseMimeType": "application/json", "responseSchema": {"type": ["STRING", "NULL"]}});
    let (status, _, _) = post_json_with(&url, &typed, &key).await;
    assert_eq!(status, 400);
    let mut unknown = good;
    unknown["model"] = json!("x");
    let (status, _, _) = post_json_with(&url, &unknown, &key).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn plain_chat_round_trips_content_and_usage() {
    let gemini = FakeGemini::start(GeminiReply::Json(fixture("text_response.json"))).await;
    let sc = sidecar(&gemini, "").await;
    let (status, _, body) = post_json(
        &sc.chat_url(),
        &json!({"model": "m", "messages": [
            {"role": "system", "content": "You are a cat."},
            {"role": "user", "content": "Hello there"}
        ], "temperature": 0.7, "max_tokens": 256, "stop": "END"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "m");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Meow! Hello there, I'm Neko."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 14);
    assert_eq!(body["usage"]["completion_tokens"], 10);
    assert_eq!(body["usage"]["total_tokens"], 24);
    let seen = gemini.last_accepted();
    assert_eq!(seen.path, format!("/v1beta/models/{MODEL}:generateContent"));
    assert_eq!(seen.query, None);
    assert_eq!(seen.headers["x-goog-api-key"], TEST_KEY);
    assert_eq!(
        seen.body["systemInstruction"],
        json!({"parts": [{"text": "You are a cat."}]})
    );
    assert_eq!(
        seen.body["generationConfig"],
        json!({"temperature": 0.7, "maxOutputTokens": 256, "stopSequences": ["END"]})
    );
}

#[tokio::test]
async fn streaming_chat_round_trips_content_and_usage() {
    let gemini = FakeGemini::start(GeminiReply::Sse(sse_fixture("stream_thoughts_text.sse"))).await;
    let sc = sidecar(&gemini, "").await;
    let mut req = chat_stream("m", "a haiku");
    req["stream_options"] = json!({"include_usage": true});
    let s = post_stream(&sc.chat_url(), &req).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.content(), "Soft rain on the roof, quiet night.");
    let chunks = parse_chunks(&s);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert!(reasoning.starts_with("**Planning the answer**"));
    let usage = chunks
        .iter()
        .find_map(|c| c.get("usage"))
        .expect("usage chunk");
    assert_eq!(usage["prompt_tokens"], 7);
    assert_eq!(usage["completion_tokens"], 52);
    assert_eq!(usage["completion_tokens_details"]["reasoning_tokens"], 40);
    assert_eq!(s.data().last().map(String::as_str), Some("[DONE]"));
    let seen = gemini.last_accepted();
    assert_eq!(
        seen.path,
        format!("/v1beta/models/{MODEL}:streamGenerateContent")
    );
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));

    // Without include_usage the usage chunk is not shown.
    gemini.script([GeminiReply::Sse(sse_fixture("stream_text.sse"))]);
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "story")).await;
    assert_eq!(
        s.content(),
        "Once upon a time, a little cat named Neko found a magic backpack."
    );
    assert!(!parse_chunks(&s).iter().any(|c| c.get("usage").is_some()));
    assert_eq!(s.data().last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn tools_with_an_openai_strict_schema_are_rewritten_and_accepted() {
    let gemini = FakeGemini::start(GeminiReply::Json(fixture("function_call_response.json"))).await;
    let sc = sidecar(&gemini, "").await;
    let (status, _, body) = post_json(
        &sc.chat_url(),
        &json!({"model": "m", "messages": [{"role": "user", "content": "What's the temperature in London?"}],
            "tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "get_current_temperature"}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = gemini.last_accepted();
    let params = &seen.body["tools"][0]["functionDeclarations"][0]["parameters"];
    assert_eq!(
        *params,
        json!({"type": "OBJECT", "properties": {
            "location": {"type": "STRING"},
            "unit": {"type": "STRING", "enum": ["celsius", "fahrenheit"], "nullable": true},
            "note": {"type": "STRING", "nullable": true}
        }, "required": ["location", "unit", "note"]})
    );
    assert_eq!(
        seen.body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_current_temperature"]}})
    );
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(message["tool_calls"][0]["id"], "call_4162774");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"location\":\"London\"}"
    );
    assert_eq!(body["usage"]["completion_tokens"], 118);

    // The follow-up with the tool result, signature echoed, is accepted too.
    gemini.script([GeminiReply::Json(fixture("text_response.json"))]);
    let (status, _, body) = post_json(
        &sc.chat_url(),
        &json!({"model": "m", "messages": [
            {"role": "user", "content": "What's the temperature in London?"},
            message,
            {"role": "tool", "tool_call_id": "call_4162774", "content": "15 degrees"}
        ], "tools": [weather_tool()]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let seen = gemini.last_accepted();
    assert_eq!(
        seen.body["contents"][1]["parts"][0]["thoughtSignature"],
        "CikBcsjafFK168IbtVtoxVV0Tsn8O+eU45rzJahzwuKGmMbdMdfpmNpgBwpl"
    );
    assert_eq!(
        seen.body["contents"][2]["parts"][0]["functionResponse"],
        json!({"id": "call_4162774", "name": "get_current_temperature", "response": {"result": "15 degrees"}})
    );

    // A schema with no faithful equivalent never reaches Gemini.
    let hits = gemini.hits();
    let mut tool = weather_tool();
    tool["function"]["parameters"]["properties"]["location"] = json!({"not": {"type": "null"}});
    let (status, _, body) = post_json(
        &sc.chat_url(),
        &json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [tool]}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("tools[0].function.parameters.properties.location.not"),
        "{body}"
    );
    assert_eq!(gemini.hits(), hits);
}

#[tokio::test]
async fn streamed_parallel_tool_calls_get_their_own_indices() {
    let gemini = FakeGemini::start(GeminiReply::Sse(sse_fixture(
        "stream_parallel_function_calls.sse",
    )))
    .await;
    let sc = sidecar(&gemini, "").await;
    let mut req = chat_stream("m", "Paris and London?");
    req["tools"] = json!([weather_tool()]);
    let s = post_stream(&sc.chat_url(), &req).await;
    let chunks = parse_chunks(&s);
    let calls: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 2, "{chunks:?}");
    assert_eq!(
        (calls[0]["index"].as_u64(), calls[1]["index"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!(
        (calls[0]["id"].as_str(), calls[1]["id"].as_str()),
        (Some("call_1"), Some("call_2"))
    );
    assert_eq!(
        calls[1]["function"]["arguments"],
        "{\"location\":\"London\"}"
    );
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
    assert_eq!(s.data().last().map(String::as_str), Some("[DONE]"));
    gemini.last_accepted();
}

#[tokio::test]
async fn images_and_json_mode_are_accepted() {
    let gemini = FakeGemini::start(GeminiReply::Json(fixture("text_response.json"))).await;
    let sc = sidecar(&gemini, "").await;
    let (status, _, body) = post_json(
        &sc.chat_url(),
        &json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in these?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://example.com/images/cat.jpg?x=1"}}
        ]}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        gemini.last_accepted().body["contents"][0]["parts"],
        json!([
            {"text": "What is in these?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
            {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/images/cat.jpg?x=1"}}
        ])
    );

    gemini.script([GeminiReply::Json(fixture("json_mode_response.json"))]);
    let (status, _, body) = post_json(
        &sc.chat_url(),
        &json!({"model": "m", "messages": [{"role": "user", "content": "cookies"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "strict": true, "schema": {
                "type": "array", "items": {"type": "object", "additionalProperties": false,
                "properties": {"recipeName": {"type": "string"}, "rating": {"type": ["integer", "null"]}},
                "required": ["recipeName", "rating"]}}}}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let content: Value =
        serde_json::from_str(body["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content[0]["recipeName"], "Chocolate Chip Cookies");
    let seen = gemini.last_accepted();
    assert_eq!(
        seen.body["generationConfig"]["responseSchema"]["items"]["properties"]["rating"],
        json!({"type": "INTEGER", "nullable": true})
    );
    assert_eq!(body["usage"]["total_tokens"], 68);
}

#[tokio::test]
async fn embeddings_round_trip() {
    let gemini = FakeGemini::start(GeminiReply::Json(fixture(
        "batch_embed_contents_response.json",
    )))
    .await;
    let sc = sidecar(&gemini, "").await;
    let (status, _, body) = post_json(
        &format!("{}/v1/embeddings", sc.url),
        &json!({"model": "m-embed", "input": ["What is the meaning of life?", "How much wood would a woodchuck chuck?"], "dimensions": 4}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "m-embed");
    assert_eq!(body["data"][1]["index"], 1);
    assert_eq!(
        body["data"][1]["embedding"],
        json!([0.0131, -0.0402, 0.0217, 0.0093])
    );
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 0, "total_tokens": 0})
    );
    let seen = gemini.last_accepted();
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(seen.body, fixture("batch_embed_contents_request.json"));
}

#[tokio::test]
async fn a_cut_stream_and_a_midstream_error_end_with_an_error_event() {
    let events = sse_fixture("stream_text.sse");
    let gemini = FakeGemini::start(GeminiReply::CutSse(events[..2].to_vec())).await;
    let sc = sidecar(&gemini, "      retry: {attempts: 0}\n").await;
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "story")).await;
    assert_eq!(s.status, 200);
    assert_eq!(s.content(), "Once upon a time, a little cat named Neko");
    let chunks = parse_chunks(&s);
    assert!(chunks.last().unwrap().get("error").is_some(), "{chunks:?}");
    assert!(!s.data().contains(&"[DONE]".to_string()));
    assert!(
        !chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"].is_string())
    );

    gemini.script([GeminiReply::Sse(sse_fixture("stream_midstream_error.sse"))]);
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "story")).await;
    assert_eq!(s.content(), "Partial");
    let chunks = parse_chunks(&s);
    let last = chunks.last().unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("overloaded"),
        "{last}"
    );
    assert!(!s.data().contains(&"[DONE]".to_string()));
}

#[tokio::test]
async fn an_openai_failure_falls_back_to_gemini() {
    let primary = FakeUpstream::start(Reply::Error {
        status: 503,
        message: "primary down".into(),
        retry_after_ms: None,
    })
    .await;
    let gemini = FakeGemini::start(GeminiReply::Json(fixture("text_response.json"))).await;
    let yaml = route_yaml(
        &format!(
            "    - {{name: primary, kind: openai, baseUrl: \"{}\"}}\n{}",
            primary.base_url(),
            provider(&gemini)
        ),
        &format!(
            "    - model: m\n      targets: [{{provider: primary, model: gpt-x}}]\n      fallbacks: [{{provider: g, model: {MODEL}}}]\n      retry: {{attempts: 0}}"
        ),
    );
    let sc = Sidecar::start(&yaml).await;
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Meow! Hello there, I'm Neko."
    );
    assert_eq!(primary.hits(), 1);
    assert_eq!(gemini.hits(), 1);
    gemini.last_accepted();

    // Streams fall back the same way.
    gemini.script([GeminiReply::Sse(sse_fixture("stream_text.sse"))]);
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "story")).await;
    assert!(s.content().starts_with("Once upon a time"));
    assert_eq!(primary.hits(), 2);
}

#[tokio::test]
async fn a_429_retry_waits_for_the_retry_delay() {
    let mut quota = fixture("error_429_resource_exhausted.json");
    quota["error"]["details"][2]["retryDelay"] = json!("1.2s");
    let gemini = FakeGemini::start(GeminiReply::Json(fixture("text_response.json"))).await;
    gemini.script([GeminiReply::Status(429, quota)]);
    let sc = sidecar(
        &gemini,
        "      retry: {attempts: 1, backoffBase: 10ms, backoffMax: 20ms, maxRetryAfter: 5s}\n      circuitBreaker: {consecutiveFailures: 0}\n",
    )
    .await;
    let started = Instant::now();
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    let waited = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(gemini.hits(), 2);
    assert!(
        waited >= Duration::from_millis(1200),
        "retried after {waited:?}"
    );
}

// ---- the OpenAI Python SDK through the sidecar to the fake Gemini ----

#[tokio::test]
async fn the_openai_python_sdk_works_against_gemini() {
    let Some(python) = python() else { return };
    let gemini = FakeGemini::start(GeminiReply::Json(fixture("text_response.json"))).await;
    let sc = sidecar(&gemini, "").await;
    let base = format!("{}/v1", sc.url);

    gemini.script([GeminiReply::Json(fixture("function_call_response.json"))]);
    let tools = sdk(&python, &base, "tools").await;
    assert_eq!(tools["finish"], "tool_calls", "{tools}");
    assert_eq!(
        tools["tool_calls"],
        json!([{"id": "call_4162774", "name": "get_current_temperature", "arguments": {"location": "London"}}])
    );
    assert_eq!(tools["completion_tokens"], 118);
    let params = &gemini.last_accepted().body["tools"][0]["functionDeclarations"][0]["parameters"];
    assert_eq!(params["properties"]["unit"]["nullable"], true);

    gemini.script([GeminiReply::Sse(sse_fixture(
        "stream_parallel_function_calls.sse",
    ))]);
    let streamed = sdk(&python, &base, "stream_tools").await;
    assert_eq!(streamed["finish"], json!(["tool_calls"]), "{streamed}");
    assert_eq!(
        streamed["tool_calls"],
        json!([
            {"index": 0, "id": "call_1", "name": "get_current_temperature", "arguments": {"location": "Paris"}},
            {"index": 1, "id": "call_2", "name": "get_current_temperature", "arguments": {"location": "London"}}
        ])
    );
    gemini.last_accepted();

    let image = sdk(&python, &base, "image").await;
    assert_eq!(image["content"], "Meow! Hello there, I'm Neko.", "{image}");
    let parts = &gemini.last_accepted().body["contents"][0]["parts"];
    assert_eq!(parts[1]["inlineData"]["mimeType"], "image/png");
    assert_eq!(
        parts[2]["fileData"]["fileUri"],
        "https://example.com/images/cat.png"
    );

    gemini.script([GeminiReply::Json(fixture("json_mode_response.json"))]);
    let json_mode = sdk(&python, &base, "json_mode").await;
    assert_eq!(
        json_mode["parsed"][0]["ingredients"],
        json!(["1 cup butter", "2 cups flour"]),
        "{json_mode}"
    );
    let config = &gemini.last_accepted().body["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(config["responseSchema"]["type"], "ARRAY");

    gemini.script([GeminiReply::Sse(sse_fixture("stream_text.sse"))]);
    let stream = sdk(&python, &base, "stream_usage").await;
    assert_eq!(stream["usage"], json!([17]), "{stream}");
}
