//! Golden tests on `testdata/` (see its README) and a chunk-boundary property test.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::api::params::ChatParams;
use crate::error::ProxyError;
use crate::provider::classify::{Disposition, disposition, error_body};
use crate::stream::sse::Splitter;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/src/provider/anthropic/testdata"
);

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A JSON file with every `_`-prefixed key (provenance notes) removed, at any depth.
fn load(name: &str) -> Value {
    let v: Value = serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    strip(v)
}

fn strip(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k, strip(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip).collect()),
        other => other,
    }
}

fn params(v: &Value) -> ChatParams {
    ChatParams::deserialize(v).expect("a valid OpenAI request")
}

fn anthropic(openai: &Value, stream: bool) -> Result<Value, ProxyError> {
    let model = openai["model"].as_str().expect("model");
    let bytes = chat_request(&params(openai), model, stream)?;
    Ok(serde_json::from_slice(&bytes).expect("JSON out"))
}

fn bad_request(openai: &Value) -> String {
    match anthropic(openai, false) {
        Err(ProxyError::BadRequest(m)) => m,
        other => panic!("expected a 400, got {other:?}"),
    }
}

/// A chat.completion or chunk with `created` (a clock reading) and null choice
/// `logprobs` (always sent, absent from the fixtures) removed; tool arguments parsed, as
/// the fixtures say to compare them semantically.
fn normalize(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("created");
    }
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            if c.get("logprobs").is_some_and(Value::is_null)
                && let Some(o) = c.as_object_mut()
            {
                o.remove("logprobs");
            }
            if let Some(calls) = c
                .pointer_mut("/message/tool_calls")
                .and_then(Value::as_array_mut)
            {
                for call in calls {
                    let args = call["function"]["arguments"].as_str().unwrap_or("");
                    call["function"]["arguments"] = serde_json::from_str(args).expect("JSON args");
                }
            }
        }
    }
    v
}

fn response(name: &str, model: &str) -> Value {
    let body = serde_json::to_vec(&load(name)).expect("json");
    let out = chat_response(&body, model).expect("translates");
    normalize(serde_json::from_slice(&out).expect("JSON out"))
}

/// Runs `sse` through the splitter, cut at `cuts`, and a translator; the OpenAI events
/// out, parsed (`[DONE]` as a string) and normalized.
fn translate(sse: &[u8], cuts: &[usize]) -> Vec<Value> {
    let mut splitter = Splitter::default();
    let mut stream = ChatStream::new("claude-opus-5");
    let mut out = Vec::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([sse.len()].iter()) {
        splitter
            .push(Bytes::copy_from_slice(&sse[from..cut]))
            .expect("push");
        from = cut;
        while let Some(e) = splitter.pop() {
            stream.event(&e, &mut out);
        }
    }
    splitter.finish();
    while let Some(e) = splitter.pop() {
        stream.event(&e, &mut out);
    }
    stream.end(&mut out);
    out.iter().map(|b| parse_event(b)).collect()
}

fn parse_event(raw: &[u8]) -> Value {
    let text = std::str::from_utf8(raw).expect("utf-8");
    assert!(text.ends_with("\n\n"), "one complete event: {text:?}");
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("a data line");
    if data == "[DONE]" {
        return json!("[DONE]");
    }
    normalize(serde_json::from_str(data).expect("JSON chunk"))
}

/// The expected chunk stream of a `openai_expected/*.chunks.sse` file.
fn expected_chunks(name: &str) -> Vec<Value> {
    read(&format!("openai_expected/{name}.chunks.sse"))
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| {
            if d == "[DONE]" {
                json!("[DONE]")
            } else {
                normalize(serde_json::from_str(d).expect("JSON"))
            }
        })
        .collect()
}

const STREAMS: &[&str] = &[
    "stream_text",
    "stream_tool_use",
    "stream_parallel_tool_use",
    "stream_no_arg_tool_use",
    "stream_thinking",
    "stream_thinking_omitted",
    "stream_cache_usage",
    "stream_error_overloaded",
];

/// Tool arguments per OpenAI index, concatenated from the deltas.
fn streamed_arguments(chunks: &[Value]) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    for c in chunks {
        for call in c
            .pointer("/choices/0/delta/tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = call["index"].as_u64().expect("index") as usize;
            if args.len() <= i {
                args.resize(i + 1, String::new());
            }
            args[i].push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    args
}

// --- requests ---

#[test]
fn request_goldens_from_the_mapping_pairs() {
    for case in [
        "req_params_images",
        "req_tool_roundtrip",
        "req_thinking_replay",
    ] {
        let openai = load(&format!("mapping/{case}.openai.json"));
        let expected = load(&format!("mapping/{case}.anthropic.json"));
        assert_eq!(anthropic(&openai, false).expect(case), expected, "{case}");
    }
    let openai = load("mapping/req_response_format.openai.json");
    let expected = load("mapping/req_response_format.anthropic.json");
    for case in ["json_schema", "json_object"] {
        assert_eq!(
            anthropic(&openai["cases"][case], false).expect(case),
            expected["cases"][case],
            "{case}"
        );
    }
}

#[test]
fn request_goldens_from_the_documented_examples() {
    let mut text = load("text_request.json");
    text.as_object_mut().expect("object").remove("_http");
    let openai = json!({"model": "claude-opus-5", "max_tokens": 1024,
        "messages": [{"role": "user", "content": "Hello, Claude"}]});
    assert_eq!(anthropic(&openai, false).expect("text"), text);

    let openai = json!({"model": "claude-opus-5", "max_completion_tokens": 1024, "messages": [
        {"role": "system", "content": "Today's date is 2024-06-01."},
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": "Hi, I'm Claude. How can I help you?"},
        {"role": "user", "content": "Can you explain LLMs in plain English?"},
    ]});
    assert_eq!(
        anthropic(&openai, false).expect("multi-turn"),
        load("system_multiturn_request.json")
    );

    let openai = json!({"model": "claude-sonnet-4-5", "max_tokens": 1024, "messages": [
        {"role": "user", "content": "What's the Greek name for Sun? (A) Sol (B) Helios (C) Sun"},
        {"role": "assistant", "content": "The best answer is ("},
    ]});
    assert_eq!(
        anthropic(&openai, false).expect("prefill passes through"),
        load("prefill_request.json")
    );

    for (file, url) in [
        (
            "image_url_request.json",
            "https://platform.claude.com/docs/images/vision-example.jpg",
        ),
        (
            "image_base64_request.json",
            "data:image/jpeg;base64,$BASE64_IMAGE_DATA",
        ),
    ] {
        let openai = json!({"model": "claude-opus-5", "max_tokens": 1024, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}},
            {"type": "text", "text": "Describe this image."},
        ]}]});
        assert_eq!(anthropic(&openai, false).expect(file), load(file), "{file}");
    }

    let weather = json!({"type": "function", "function": {"name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {"type": "object", "properties": {"location": {"type": "string",
            "description": "The city and state, e.g. San Francisco, CA"}}, "required": ["location"]}}});
    let openai = json!({"model": "claude-opus-5", "max_tokens": 1024, "tools": [weather], "messages": [
        {"role": "user", "content": "What's the weather like in San Francisco?"},
        {"role": "assistant", "content": "I'll check the current weather in San Francisco for you.", "tool_calls": [
            {"id": "toolu_01A09q90qw90lq917835lq9", "type": "function", "function": {"name": "get_weather",
             "arguments": "{\"location\": \"San Francisco, CA\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees"},
    ]});
    assert_eq!(
        anthropic(&openai, false).expect("tool follow-up"),
        load("tool_result_followup_request.json")
    );

    // Four parallel results: four `tool` messages, ONE user message.
    let expected = load("parallel_tool_results_request.json");
    let mut messages = vec![json!({"role": "user", "content": expected["messages"][0]["content"]})];
    let calls: Vec<Value> = expected["messages"][1]["content"].as_array().expect("calls").iter().map(|b| {
        json!({"id": b["id"], "type": "function", "function": {"name": b["name"], "arguments": b["input"].to_string()}})
    }).collect();
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": calls}));
    for r in expected["messages"][2]["content"]
        .as_array()
        .expect("results")
    {
        messages.push(
            json!({"role": "tool", "tool_call_id": r["tool_use_id"], "content": r["content"]}),
        );
    }
    let tools: Vec<Value> = expected["tools"].as_array().expect("tools").iter().map(|t| {
        json!({"type": "function", "function": {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]}})
    }).collect();
    let openai = json!({"model": "claude-opus-4-6", "max_tokens": 1024, "tools": tools, "messages": messages});
    assert_eq!(anthropic(&openai, false).expect("parallel"), expected);
}

#[test]
fn rejections_name_the_parameter() {
    let file = load("mapping/req_rejections.openai.json");
    for case in file["cases"].as_array().expect("cases") {
        let param = case["param"].as_str().expect("param");
        let message = bad_request(&case["body"]);
        assert!(message.starts_with(param), "{param}: {message}");
    }
    let base =
        || json!({"model": "claude-opus-5", "messages": [{"role": "user", "content": "hi"}]});
    for (field, value, param) in [
        ("temperature", json!(-0.1), "temperature"),
        ("presence_penalty", json!(0.5), "presence_penalty"),
        ("top_logprobs", json!(3), "logprobs"),
        ("stop", json!(["  "]), "stop"),
        ("response_format", json!({"type": "json_object"}), ""),
    ] {
        let mut body = base();
        body[field] = value;
        if field == "response_format" {
            body["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
        }
        assert!(bad_request(&body).starts_with(param), "{field}");
    }
    let mut body = base();
    body["tools"] = json!([{"type": "function", "function": {"name": "json_response"}}]);
    assert!(bad_request(&body).contains("reserved"));
    let mut body = base();
    body["messages"] = json!([{"role": "user", "content": " "}]);
    assert!(bad_request(&body).starts_with("messages[0].content"));
}

#[test]
fn sampling_passes_unchanged_and_nothing_is_invented() {
    let body = json!({"model": "claude-opus-5", "temperature": 0.7, "top_k": 40, "seed": 1, "n": 1,
        "logprobs": false, "messages": [{"role": "user", "content": "hi"}]});
    let out = anthropic(&body, true).expect("ok");
    assert_eq!(out["temperature"], 0.7);
    assert_eq!(out["top_k"], 40);
    assert_eq!(out["stream"], true);
    for absent in [
        "thinking",
        "seed",
        "n",
        "logprobs",
        "top_p",
        "tool_choice",
        "system",
    ] {
        assert!(out.get(absent).is_none(), "{absent}: {out}");
    }
    let out = anthropic(
        &json!({"model": "claude-opus-5", "messages": [{"role": "user", "content": "hi"}]}),
        false,
    )
    .expect("ok");
    assert_eq!(out["max_tokens"], 128_000);
    assert!(out.get("temperature").is_none() && out.get("stream").is_none());
}

#[test]
fn max_tokens_defaults_per_model_family() {
    for (model, max) in [
        ("claude-opus-5", 128_000),
        ("claude-sonnet-4-6", 128_000),
        ("claude-haiku-4-5-20251001", 64_000),
        ("claude-sonnet-4-5", 64_000),
        ("claude-sonnet-4-20250514", 64_000),
        ("claude-opus-4-1-20250805", 32_000),
        ("claude-3-5-haiku-latest", 8_192),
        ("some-proxy-model", 4_096),
    ] {
        let out = anthropic(
            &json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
            false,
        )
        .expect(model);
        assert_eq!(out["max_tokens"], max, "{model}");
    }
}

#[test]
fn reasoning_effort_per_model_and_explicit_thinking() {
    let req = |model: &str, extra: Value| {
        let mut body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        body
    };
    let out = anthropic(
        &req("claude-opus-5", json!({"reasoning_effort": "low"})),
        false,
    )
    .expect("adaptive");
    assert_eq!(
        out["thinking"],
        json!({"type": "adaptive", "display": "summarized"})
    );
    assert_eq!(out["output_config"], json!({"effort": "low"}));

    let out = anthropic(
        &req("claude-sonnet-4-5", json!({"reasoning_effort": "high"})),
        false,
    )
    .expect("enabled");
    assert_eq!(
        out["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert!(out.get("output_config").is_none());

    let m = bad_request(&req(
        "claude-sonnet-4-5",
        json!({"reasoning_effort": "high", "max_tokens": 4000}),
    ));
    assert!(m.starts_with("max_tokens"), "{m}");
    let m = bad_request(&req(
        "claude-sonnet-4-5",
        json!({"reasoning_effort": "low", "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "f"}}]}),
    ));
    assert!(m.starts_with("tool_choice"), "{m}");

    let explicit = json!({"type": "enabled", "budget_tokens": 10000});
    let out = anthropic(
        &req(
            "claude-sonnet-4-6",
            json!({"thinking": explicit, "max_tokens": 16000}),
        ),
        false,
    )
    .expect("explicit");
    assert_eq!(out["thinking"], explicit);
    let out = anthropic(
        &req("claude-opus-5", json!({"reasoning_effort": "none"})),
        false,
    )
    .expect("none");
    assert_eq!(out["thinking"], json!({"type": "disabled"}));
}

#[test]
fn tool_choice_modes() {
    let with = |choice: Value, parallel: Option<bool>| {
        let mut body = json!({"model": "claude-opus-5", "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function", "function": {"name": "f", "strict": true}}]});
        if !choice.is_null() {
            body["tool_choice"] = choice;
        }
        if let Some(p) = parallel {
            body["parallel_tool_calls"] = json!(p);
        }
        anthropic(&body, false).expect("ok")
    };
    assert_eq!(
        with(json!("auto"), None)["tool_choice"],
        json!({"type": "auto"})
    );
    assert_eq!(
        with(json!("none"), Some(false))["tool_choice"],
        json!({"type": "none"})
    );
    assert_eq!(
        with(json!("required"), Some(false))["tool_choice"],
        json!({"type": "any", "disable_parallel_tool_use": true})
    );
    let named = with(json!({"type": "function", "function": {"name": "f"}}), None);
    assert_eq!(named["tool_choice"], json!({"type": "tool", "name": "f"}));
    assert_eq!(
        named["tools"],
        json!([{"name": "f", "input_schema": {"type": "object", "properties": {}}, "strict": true}])
    );
    assert!(with(Value::Null, None).get("tool_choice").is_none());
}

#[test]
fn thinking_blocks_replay_verbatim_first_and_unsigned_ones_are_dropped() {
    let omitted =
        json!({"type": "thinking", "thinking": "", "signature": "EosnCkYICxIMMb3LzNrMu..."});
    let body = json!({"model": "claude-opus-5", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "answer", "thinking_blocks": [
            omitted, {"type": "thinking", "thinking": "no signature"}]},
        {"role": "user", "content": "more"},
    ]});
    let out = anthropic(&body, false).expect("ok");
    assert_eq!(
        out["messages"][1]["content"],
        json!([omitted, {"type": "text", "text": "answer"}])
    );
}

// --- responses ---

#[test]
fn response_goldens() {
    for (name, model) in [
        ("text_response", "claude-opus-5"),
        ("tool_use_response", "claude-opus-5"),
        ("thinking_response", "claude-sonnet-4-6"),
        ("usage_cache_response", "claude-opus-5"),
        ("refusal_response", "claude-opus-5"),
    ] {
        let expected = normalize(load(&format!(
            "openai_expected/{name}.chat_completion.json"
        )));
        assert_eq!(response(&format!("{name}.json"), model), expected, "{name}");
    }
}

#[test]
fn response_uses_the_alias_and_full_usage() {
    let out = response("usage_full_shape_response.json", "my-alias");
    assert_eq!(out["model"], "my-alias");
    assert_eq!(
        out["usage"],
        json!({"prompt_tokens": 2095 + 2051 + 2051, "completion_tokens": 503,
            "total_tokens": 2095 + 2051 + 2051 + 503, "prompt_tokens_details": {"cached_tokens": 2051},
            "completion_tokens_details": {"reasoning_tokens": 0},
            "cache_creation_input_tokens": 2051, "cache_read_input_tokens": 2051})
    );
    // stop_details is set but stop_reason is end_turn: no refusal.
    assert_eq!(out["choices"][0]["message"]["refusal"], Value::Null);
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "Hi! My name is Claude."
    );
}

#[test]
fn json_object_answers_come_back_as_content() {
    let body = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-opus-5",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "json_response",
            "input": {"city": "Paris", "country": "France"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 10, "output_tokens": 5}});
    let out = chat_response(body.to_string().as_bytes(), "m").expect("ok");
    let out: Value = serde_json::from_slice(&out).expect("json");
    let choice = &out["choices"][0];
    assert_eq!(choice["finish_reason"], "stop");
    assert!(choice["message"].get("tool_calls").is_none());
    let content: Value =
        serde_json::from_str(choice["message"]["content"].as_str().expect("text")).expect("JSON");
    assert_eq!(content, json!({"city": "Paris", "country": "France"}));
}

#[test]
fn every_stop_reason_maps() {
    for (stop, finish) in [
        (Some("end_turn"), "stop"),
        (Some("stop_sequence"), "stop"),
        (Some("max_tokens"), "length"),
        (Some("model_context_window_exceeded"), "length"),
        (Some("tool_use"), "tool_calls"),
        (Some("refusal"), "content_filter"),
        (Some("pause_turn"), "stop"),
        (Some("something_new"), "stop"),
        (None, "stop"),
    ] {
        assert_eq!(finish_reason(stop), finish, "{stop:?}");
    }
}

#[test]
fn error_bodies_are_not_messages() {
    let body = serde_json::to_vec(&load("error_529_overloaded.json")["body"]).expect("json");
    assert!(chat_response(&body, "m").is_err());
    assert!(chat_response(b"not json", "m").is_err());
}

#[test]
fn anthropic_error_bodies_classify() {
    for (file, status, kind, message, retry) in [
        (
            "error_529_overloaded.json",
            529,
            "overloaded_error",
            "Overloaded",
            Disposition::Retry,
        ),
        (
            "error_429_rate_limit.json",
            429,
            "rate_limit_error",
            "This request would exceed",
            Disposition::Retry,
        ),
        (
            "error_400_invalid_request.json",
            400,
            "invalid_request_error",
            "tool_use",
            Disposition::Final,
        ),
        (
            "error_404_not_found.json",
            404,
            "not_found_error",
            "could not be found",
            Disposition::FailOver,
        ),
    ] {
        let f = load(file);
        assert_eq!(f["_http"], Value::Null, "stripped");
        let raw = read(file);
        let full: Value = serde_json::from_str(&raw).expect("json");
        assert_eq!(full["_http"]["status"], status, "{file}");
        let body = serde_json::to_vec(&f["body"]).expect("json");
        let (e, delay) = crate::provider::Wire::Anthropic.error(&body);
        assert_eq!(e.kind.as_deref(), Some(kind), "{file}");
        assert_eq!(e.code.as_deref(), Some(kind), "{file}: code = type");
        assert!(e.message.contains(message), "{file}: {}", e.message);
        assert_eq!(delay, None);
        assert_eq!(error_body(&body).kind.as_deref(), Some(kind));
        let status = http::StatusCode::from_u16(status as u16).expect("status");
        assert_eq!(disposition(status), retry, "{file}");
    }
}

// --- streams ---

#[test]
fn stream_goldens() {
    for name in STREAMS {
        let got = translate(read(&format!("{name}.sse")).as_bytes(), &[]);
        assert_eq!(got, expected_chunks(name), "{name}");
    }
}

#[test]
fn streamed_arguments_equal_the_non_streamed_input() {
    let got = translate(read("stream_parallel_tool_use.sse").as_bytes(), &[]);
    let args = streamed_arguments(&got);
    let parsed: Vec<Value> = args
        .iter()
        .map(|a| serde_json::from_str(a).expect("arguments parse"))
        .collect();
    assert_eq!(
        parsed,
        [
            json!({"location": "San Francisco, CA", "unit": "celsius"}),
            json!({"location": "New York, NY"})
        ]
    );
    // ids and names only in the first delta of each call.
    let firsts = got
        .iter()
        .filter_map(|c| c.pointer("/choices/0/delta/tool_calls/0"))
        .filter(|c| c.get("id").is_some())
        .count();
    assert_eq!(firsts, 2);

    let got = translate(read("stream_tool_use.sse").as_bytes(), &[]);
    let args = streamed_arguments(&got);
    assert_eq!(args.len(), 1, "tool_use is block 1 but call index 0");
    assert_eq!(
        serde_json::from_str::<Value>(&args[0]).expect("parse"),
        json!({"location": "San Francisco, CA"})
    );
    let got = translate(read("stream_no_arg_tool_use.sse").as_bytes(), &[]);
    assert_eq!(streamed_arguments(&got), ["{}"]);
}

fn sse(events: &[Value]) -> Vec<u8> {
    events
        .iter()
        .map(|e| {
            format!(
                "event: {}\ndata: {e}\n\n",
                e["type"].as_str().unwrap_or("x")
            )
        })
        .collect::<String>()
        .into_bytes()
}

#[test]
fn streamed_json_object_becomes_content_with_finish_stop() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_j", "usage": {"input_tokens": 9, "output_tokens": 1}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "toolu_j", "name": "json_response", "input": {}}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"a\":"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": " 1}"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 7}}),
        json!({"type": "message_stop"}),
    ];
    let got = translate(&sse(&events), &[]);
    let content: String = got
        .iter()
        .filter_map(|c| {
            c.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
        })
        .collect();
    assert_eq!(content, "{\"a\": 1}");
    assert!(streamed_arguments(&got).is_empty());
    let finishes: Vec<&Value> = got
        .iter()
        .filter_map(|c| c.pointer("/choices/0/finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
}

#[test]
fn redacted_thinking_and_truncated_tool_input_pass_through() {
    let events = [
        json!({"type": "message_start", "message": {"id": "msg_r"}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "redacted_thinking", "data": "EmwKAhgB"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "f", "input": {}}}),
        json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"x\": \"abc"}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "max_tokens"}}),
        json!({"type": "message_stop"}),
    ];
    let got = translate(&sse(&events), &[]);
    assert_eq!(
        got[1]["choices"][0]["delta"],
        json!({"thinking_blocks": [{"type": "redacted_thinking", "data": "EmwKAhgB"}]})
    );
    assert_eq!(streamed_arguments(&got), ["{\"x\": \"abc"]);
    assert!(
        got.iter()
            .any(|c| c["choices"][0]["finish_reason"] == "length")
    );
}

#[test]
fn a_stream_cut_before_message_stop_ends_with_one_error() {
    let full = read("stream_text.sse");
    let cut = full.find("event: content_block_stop").expect("marker");
    let got = translate(&full.as_bytes()[..cut], &[]);
    let last = got.last().expect("events");
    assert_eq!(last["error"]["type"], "api_error");
    assert_eq!(got.iter().filter(|c| c.get("error").is_some()).count(), 1);
    assert!(!got.contains(&json!("[DONE]")));
    assert!(got.iter().all(|c| {
        c.pointer("/choices/0/finish_reason")
            .is_none_or(Value::is_null)
    }));

    // The documented mid-stream error: nothing after it, even if more arrives.
    let mut text = read("stream_error_overloaded.sse");
    text.push_str(&read("stream_text.sse"));
    let got = translate(text.as_bytes(), &[]);
    assert_eq!(got, expected_chunks("stream_error_overloaded"));
}

#[test]
fn every_split_gives_the_same_chunks() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for name in STREAMS {
        let sse = read(&format!("{name}.sse"));
        let bytes = sse.as_bytes();
        let whole = translate(bytes, &[]);
        for cut in 1..bytes.len() {
            assert_eq!(translate(bytes, &[cut]), whole, "{name} cut at {cut}");
        }
        for _ in 0..50 {
            let mut cuts: Vec<usize> = (0..rng.usize(1..20))
                .map(|_| rng.usize(0..=bytes.len()))
                .collect();
            cuts.sort_unstable();
            assert_eq!(translate(bytes, &cuts), whole, "{name} cuts {cuts:?}");
        }
    }
}

#[test]
fn garbage_does_not_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    let samples: Vec<Vec<u8>> = vec![
        b"data: {\"type\":\"content_block_delta\"}\n\n".to_vec(),
        b"data: {\"type\":\"content_block_delta\",\"index\":99,\"delta\":{\"type\":\"input_json_delta\"}}\n\n".to_vec(),
        b"data: {\"type\":\"content_block_start\",\"index\":-1,\"content_block\":7}\n\n".to_vec(),
        b"data: {\"type\":\"message_start\",\"message\":null}\n\n".to_vec(),
        b"data: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":-5}}\n\ndata: {\"type\":\"message_stop\"}\n\n".to_vec(),
        b"data: [1,2,3]\n\ndata: \"x\"\n\ndata: {\n\n".to_vec(),
        (0..4096).map(|_| rng.u8(..)).collect(),
    ];
    for sample in samples {
        let got = translate(&sample, &[]);
        let last = got.last().expect("something is said");
        assert!(last.get("error").is_some() || *last == json!("[DONE]"));
    }
    // Random bytes spliced into a real stream.
    let text = read("stream_parallel_tool_use.sse").into_bytes();
    for _ in 0..200 {
        let mut noisy = text.clone();
        for _ in 0..5 {
            let at = rng.usize(..noisy.len());
            noisy[at] = rng.u8(..);
        }
        let _ = translate(&noisy, &[]);
    }
}
