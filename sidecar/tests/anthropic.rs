//! The sidecar in front of a strict fake Anthropic API: OpenAI requests in, valid
//! Messages requests out, OpenAI answers back; failover across providers; and the real
//! OpenAI Python SDK through all of it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure should stop the test"
)]

mod support;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use support::fake_anthropic::{AnthropicReply, FakeAnthropic, KEY, message};
use support::harness::route_yaml;
use support::*;

const NO_RETRY: &str =
    "      retry: {attempts: 0}\n      circuitBreaker: {consecutiveFailures: 0}\n";

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/provider/anthropic/testdata")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A sidecar with alias `m` -> the fake Anthropic (`claude-sonnet-4-5`).
async fn anthropic_only() -> (FakeAnthropic, Sidecar) {
    let fake = FakeAnthropic::start().await;
    let routes = format!(
        "    - model: m\n      targets: [{{provider: claude, model: claude-sonnet-4-5}}]\n{NO_RETRY}"
    );
    let sc = Sidecar::start(&route_yaml(&fake.provider("claude"), &routes)).await;
    (fake, sc)
}

fn tool_use(id: &str, name: &str, input: Value) -> Value {
    json!({"type": "tool_use", "id": id, "name": name, "input": input})
}

fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}})
}

/// Tool arguments per index, from streamed chunks.
fn streamed_arguments(data: &[String]) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    for d in data {
        let Ok(v) = serde_json::from_str::<Value>(d) else {
            continue;
        };
        for call in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().unwrap() as usize;
            if args.len() <= i {
                args.resize(i + 1, String::new());
            }
            args[i].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    args
}

fn finish_reasons(data: &[String]) -> Vec<String> {
    data.iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["finish_reason"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn the_strict_fake_refuses_what_anthropic_refuses() {
    let fake = FakeAnthropic::start().await;
    let url = format!("{}/messages", fake.base_url());
    let ok = json!({"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let headers = [("x-api-key", KEY), ("anthropic-version", "2023-06-01")];
    let (status, _, _) = post_json_with(&url, &ok, &headers).await;
    assert_eq!(status, 200);
    for (bad, why) in [
        (
            json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "claude-x", "max_tokens": 10, "n": 1, "messages": [{"role": "user", "content": "hi"}]}),
            "n: Extra",
        ),
        (
            json!({"model": "claude-x", "max_tokens": 10, "messages": [{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]}),
            "role",
        ),
        (
            json!({"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
            "alternate",
        ),
        (
            json!({"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": "{}"}]}]}),
            "object",
        ),
    ] {
        let (status, _, body) = post_json_with(&url, &bad, &headers).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(why),
            "{body}"
        );
    }
    let (status, _, _) = post_json_with(&url, &ok, &[("anthropic-version", "2023-06-01")]).await;
    assert_eq!(status, 401);
    let (status, _, _) = post_json_with(&url, &ok, &[("x-api-key", KEY)]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_plain_chat_round_trips_with_usage() {
    let (fake, sc) = anthropic_only().await;
    let mut req = chat("m", "Hello, Claude");
    req["messages"] = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello, Claude"},
        {"role": "assistant", "content": "Hi!"}, {"role": "user", "content": "Again"}]);
    req["stop"] = json!("END");
    req["user"] = json!("u-1");
    let (status, headers, body) = post_json(&sc.chat_url(), &req).await;
    assert_eq!(status, 200, "{body}");
    fake.assert_all_valid();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "m");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the fake Anthropic"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 21);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
    assert_eq!(body["usage"]["completion_tokens"], 9);
    assert_eq!(headers["x-modelroute-target"], "claude/claude-sonnet-4-5");

    let seen = &fake.seen()[0];
    assert_eq!(seen.headers["x-api-key"], KEY);
    assert_eq!(seen.headers["anthropic-version"], "2023-06-01");
    assert!(seen.headers.get("authorization").is_none());
    assert_eq!(seen.body["model"], "claude-sonnet-4-5");
    assert_eq!(seen.body["max_tokens"], 64_000);
    assert_eq!(
        seen.body["system"],
        json!([{"type": "text", "text": "Be brief."}])
    );
    assert_eq!(seen.body["stop_sequences"], json!(["END"]));
    assert_eq!(seen.body["metadata"], json!({"user_id": "u-1"}));
    assert!(seen.body.get("stream").is_none());
}

#[tokio::test]
async fn a_stream_round_trips_with_usage_when_asked() {
    let (fake, sc) = anthropic_only().await;
    let mut req = chat_stream("m", "Hello");
    req["stream_options"] = json!({"include_usage": true});
    let s = post_stream(&sc.chat_url(), &req).await;
    assert_eq!(s.status, 200);
    fake.assert_all_valid();
    assert_eq!(fake.seen()[0].body["stream"], true);
    assert_eq!(s.content(), "Hello from the fake Anthropic");
    let data = s.data();
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert_eq!(finish_reasons(&data), ["stop"]);
    let first: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(first["choices"][0]["delta"]["role"], "assistant");
    let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], 21);
    assert_eq!(usage["usage"]["completion_tokens"], 9);

    // Not asked: no usage chunk.
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "Hello")).await;
    assert!(!s.text().contains("\"usage\""), "{}", s.text());
    assert!(s.text().ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn tools_round_trip_over_two_turns() {
    let (fake, sc) = anthropic_only().await;
    fake.script([
        AnthropicReply::Message(message(
            vec![
                text("Checking."),
                tool_use("toolu_a", "get_weather", json!({"location": "Paris"})),
                tool_use("toolu_b", "get_weather", json!({"location": "Rome"})),
            ],
            "tool_use",
        )),
        AnthropicReply::Message(message(vec![text("Sunny in both.")], "end_turn")),
    ]);
    let mut req = chat("m", "Weather in Paris and Rome?");
    req["tools"] = json!([weather_tool()]);
    req["tool_choice"] = json!("auto");
    let (status, _, body) = post_json(&sc.chat_url(), &req).await;
    assert_eq!(status, 200, "{body}");
    let msg = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(msg["content"], "Checking.");
    let calls = msg["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1]["id"], "toolu_b");
    let args: Value =
        serde_json::from_str(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"location": "Rome"}));

    // Second turn: the client replays the calls and answers each in its own message.
    let mut messages = req["messages"].as_array().unwrap().clone();
    messages.push(msg.clone());
    messages.push(json!({"role": "tool", "tool_call_id": "toolu_a", "content": "sunny"}));
    messages.push(json!({"role": "tool", "tool_call_id": "toolu_b", "content": "sunny too"}));
    req["messages"] = json!(messages);
    let (status, _, body) = post_json(&sc.chat_url(), &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "Sunny in both.");
    fake.assert_all_valid();
    let sent = &fake.seen()[1].body;
    assert_eq!(sent["messages"].as_array().unwrap().len(), 3);
    assert_eq!(sent["messages"][2]["content"][1]["tool_use_id"], "toolu_b");
    assert_eq!(sent["tool_choice"], json!({"type": "auto"}));
}

#[tokio::test]
async fn streamed_tool_calls_accumulate_to_the_same_arguments() {
    let (fake, sc) = anthropic_only().await;
    let input_a = json!({"location": "San Francisco, CA", "unit": "celsius", "days": [1, 2, 3]});
    let input_b = json!({"location": "New York, NY"});
    fake.script([
        AnthropicReply::Message(message(
            vec![
                text("Both."),
                tool_use("toolu_a", "get_weather", input_a.clone()),
                tool_use("toolu_b", "get_weather", input_b.clone()),
            ],
            "tool_use",
        )),
        AnthropicReply::Sse(fixture("stream_parallel_tool_use.sse")),
    ]);
    let mut req = chat_stream("m", "Weather?");
    req["tools"] = json!([weather_tool()]);
    let s = post_stream(&sc.chat_url(), &req).await;
    let data = s.data();
    let args = streamed_arguments(&data);
    let parsed: Vec<Value> = args
        .iter()
        .map(|a| serde_json::from_str(a).unwrap())
        .collect();
    assert_eq!(parsed, [input_a, input_b]);
    assert_eq!(finish_reasons(&data), ["tool_calls"]);
    assert_eq!(s.content(), "Both.");

    let s = post_stream(&sc.chat_url(), &req).await;
    let args = streamed_arguments(&s.data());
    assert_eq!(
        serde_json::from_str::<Value>(&args[0]).unwrap(),
        json!({"location": "San Francisco, CA", "unit": "celsius"})
    );
    fake.assert_all_valid();
}

#[tokio::test]
async fn images_go_as_base64_and_url_sources() {
    let (fake, sc) = anthropic_only().await;
    let req = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Compare."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]}]});
    let (status, _, body) = post_json(&sc.chat_url(), &req).await;
    assert_eq!(status, 200, "{body}");
    fake.assert_all_valid();
    let content = &fake.seen()[0].body["messages"][0]["content"];
    assert_eq!(
        content[1]["source"],
        json!({"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="})
    );
    assert_eq!(
        content[2]["source"],
        json!({"type": "url", "url": "https://example.com/cat.jpg"})
    );

    let bmp = json!({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/bmp;base64,Qk0="}}]}]});
    let (status, _, body) = post_json(&sc.chat_url(), &bmp).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("image_url")
    );
    assert_eq!(fake.hits(), 1, "refused before any upstream call");
}

#[tokio::test]
async fn json_modes_map_and_come_back_as_content() {
    let (fake, sc) = anthropic_only().await;
    let answer = json!({"city": "Paris", "population": 2_100_000});
    let forced = || {
        AnthropicReply::Message(message(
            vec![tool_use("toolu_j", "json_response", answer.clone())],
            "tool_use",
        ))
    };
    fake.script([
        forced(),
        forced(),
        AnthropicReply::Message(message(vec![text("{\"name\":\"John\"}")], "end_turn")),
    ]);
    let mut req = chat("m", "Describe Paris as JSON.");
    req["response_format"] = json!({"type": "json_object"});
    let (status, _, body) = post_json(&sc.chat_url(), &req).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["message"].get("tool_calls").is_none());
    let content: Value =
        serde_json::from_str(choice["message"]["content"].as_str().unwrap()).unwrap();
    assert_eq!(content, answer);
    assert_eq!(
        fake.seen()[0].body["tool_choice"],
        json!({"type": "tool", "name": "json_response"})
    );

    req["stream"] = json!(true);
    let s = post_stream(&sc.chat_url(), &req).await;
    let content: Value = serde_json::from_str(&s.content()).unwrap();
    assert_eq!(content, answer);
    assert_eq!(finish_reasons(&s.data()), ["stop"]);
    assert!(streamed_arguments(&s.data()).is_empty());

    let schema = json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"], "additionalProperties": false});
    let mut req = chat("m", "Extract.");
    req["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": schema}});
    let (status, _, body) = post_json(&sc.chat_url(), &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "{\"name\":\"John\"}"
    );
    assert_eq!(
        fake.seen()[2].body["output_config"],
        json!({"format": {"type": "json_schema", "schema": schema}})
    );
    fake.assert_all_valid();
}

#[tokio::test]
async fn stream_breaks_surface_as_one_error_event() {
    let (fake, sc) = anthropic_only().await;
    let text_sse = fixture("stream_text.sse");
    let cut = text_sse.find("event: content_block_stop").unwrap();
    fake.script([
        AnthropicReply::CutSse(text_sse, cut),
        AnthropicReply::Sse(fixture("stream_error_overloaded.sse")),
    ]);
    for expected in ["", "overloaded_error"] {
        let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
        assert_eq!(s.status, 200);
        let data = s.data();
        let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
        assert!(last["error"].is_object(), "{}", s.text());
        assert!(
            last["error"]["type"].as_str().unwrap().contains(expected),
            "{last}"
        );
        assert!(!s.text().contains("[DONE]"));
        assert!(finish_reasons(&data).is_empty());
        assert!(!s.content().is_empty(), "the partial answer was relayed");
    }
}

#[tokio::test]
async fn refused_parameters_never_reach_anthropic() {
    let (fake, sc) = anthropic_only().await;
    for (field, value) in [
        ("n", json!(2)),
        ("temperature", json!(1.5)),
        ("logprobs", json!(true)),
    ] {
        let mut req = chat("m", "hi");
        req[field] = value;
        let (status, _, body) = post_json(&sc.chat_url(), &req).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(field),
            "{body}"
        );
    }
    assert_eq!(fake.hits(), 0);
}

#[tokio::test]
async fn an_overloaded_anthropic_fails_over_to_the_next_target() {
    let fake = FakeAnthropic::start().await;
    let backup = FakeUpstream::start(Reply::Text("from openai".into())).await;
    let providers = format!(
        "{}\n    - {{name: backup, kind: openai, baseUrl: \"{}\"}}",
        fake.provider("claude"),
        backup.base_url()
    );
    let routes = format!(
        "    - model: m\n      targets: [{{provider: claude, model: claude-opus-5}}]\n      fallbacks: [{{provider: backup, model: gpt-x}}]\n{NO_RETRY}"
    );
    let sc = Sidecar::start(&route_yaml(&providers, &routes)).await;
    let overloaded = || AnthropicReply::Error {
        status: 529,
        kind: "overloaded_error",
        message: "Overloaded",
    };
    fake.script([overloaded(), overloaded()]);
    let (status, headers, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "from openai");
    assert_eq!(headers["x-modelroute-target"], "backup/gpt-x");
    backup.always(Reply::Stream {
        pieces: vec!["from ".into(), "openai".into()],
        delay: Duration::ZERO,
    });
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "hi")).await;
    assert!(s.text().ends_with("data: [DONE]\n\n"), "{}", s.text());
    assert_eq!(s.content(), "from openai");
    assert_eq!(fake.hits(), 2);
    assert_eq!(backup.hits(), 2);
    fake.assert_all_valid();
}

#[tokio::test]
async fn the_529_is_passed_on_when_nothing_else_is_left() {
    let (fake, sc) = anthropic_only().await;
    fake.script([AnthropicReply::Error {
        status: 529,
        kind: "overloaded_error",
        message: "Overloaded",
    }]);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 529, "{body}");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert_eq!(body["error"]["code"], "overloaded_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded")
    );
}

#[tokio::test]
async fn an_openai_failure_falls_back_to_anthropic_in_openai_shape() {
    let primary = FakeUpstream::start(Reply::Error {
        status: 503,
        message: "down".into(),
        retry_after_ms: None,
    })
    .await;
    let fake = FakeAnthropic::start().await;
    let providers = format!(
        "    - {{name: primary, kind: openai, baseUrl: \"{}\"}}\n{}",
        primary.base_url(),
        fake.provider("claude")
    );
    let routes = format!(
        "    - model: m\n      targets: [{{provider: primary, model: gpt-x}}]\n      fallbacks: [{{provider: claude, model: claude-opus-5}}]\n{NO_RETRY}"
    );
    let sc = Sidecar::start(&route_yaml(&providers, &routes)).await;
    let (status, headers, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["x-modelroute-target"], "claude/claude-opus-5");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "m");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the fake Anthropic"
    );
    assert_eq!(body["usage"]["total_tokens"], 30);

    let mut req = chat_stream("m", "hi");
    req["stream_options"] = json!({"include_usage": true});
    let s = post_stream(&sc.chat_url(), &req).await;
    assert_eq!(s.headers["x-modelroute-target"], "claude/claude-opus-5");
    assert_eq!(s.content(), "Hello from the fake Anthropic");
    let data = s.data();
    for d in &data[..data.len() - 1] {
        let v: Value = serde_json::from_str(d).unwrap();
        assert_eq!(v["object"], "chat.completion.chunk");
        assert_eq!(v["model"], "m");
    }
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert_eq!(primary.hits(), 2);
    assert_eq!(fake.seen()[1].body["max_tokens"], 128_000);
    fake.assert_all_valid();
}

// --- the real OpenAI Python SDK ---

#[tokio::test]
async fn the_openai_python_sdk_talks_to_anthropic_through_the_sidecar() {
    let Some(python) = python() else { return };
    let (fake, sc) = anthropic_only().await;
    let base = format!("{}/v1", sc.url);
    let calls = || {
        AnthropicReply::Message(message(
            vec![
                text("Let me check."),
                tool_use(
                    "toolu_p",
                    "get_weather",
                    json!({"location": "Paris, France"}),
                ),
                tool_use(
                    "toolu_t",
                    "get_weather",
                    json!({"location": "Tokyo, Japan", "unit": "c"}),
                ),
            ],
            "tool_use",
        ))
    };
    fake.script([
        calls(),
        calls(),
        AnthropicReply::Message(message(vec![text("A cat.")], "end_turn")),
        AnthropicReply::Message(message(
            vec![tool_use(
                "toolu_j",
                "json_response",
                json!({"name": "Paris", "country": "France"}),
            )],
            "tool_use",
        )),
    ]);

    let tools = sdk(&python, &base, "anthropic_tools").await;
    assert_eq!(tools["finish"], "tool_calls", "{tools}");
    assert_eq!(tools["content"], "Let me check.");
    assert_eq!(
        tools["calls"],
        json!([["toolu_p", "get_weather", {"location": "Paris, France"}],
               ["toolu_t", "get_weather", {"location": "Tokyo, Japan", "unit": "c"}]])
    );
    assert_eq!(tools["prompt_tokens"], 21);

    let streamed = sdk(&python, &base, "anthropic_stream_tools").await;
    assert_eq!(streamed["calls"], tools["calls"], "{streamed}");
    assert_eq!(streamed["finish"], json!(["tool_calls"]));
    assert_eq!(streamed["content"], "Let me check.");
    assert_eq!(streamed["usage"], json!([9]));

    let image = sdk(&python, &base, "anthropic_image").await;
    assert_eq!(image["content"], "A cat.", "{image}");

    let json_mode = sdk(&python, &base, "anthropic_json").await;
    assert_eq!(json_mode["finish"], "stop", "{json_mode}");
    assert_eq!(
        json_mode["parsed"],
        json!({"name": "Paris", "country": "France"})
    );

    fake.assert_all_valid();
    let seen = fake.seen();
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[1].body["stream"], true);
    assert_eq!(
        seen[2].body["messages"][0]["content"][1]["source"]["type"],
        "base64"
    );
    assert_eq!(
        seen[2].body["messages"][0]["content"][2]["source"]["type"],
        "url"
    );
    assert_eq!(seen[3].body["tool_choice"]["name"], "json_response");
}
