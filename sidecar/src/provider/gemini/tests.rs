//! Golden tests on Google's documented examples (testdata/, see its README), plus the
//! request rules and the stream's chunk-boundary property.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;
use crate::api::params::ChatParams;
use crate::stream::sse::Splitter;

const ALIAS: &str = "my-alias";

fn testdata(name: &str) -> String {
    let path = format!(
        "{}/src/provider/gemini/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture without its provenance keys (`_source`, `_note`, ...).
fn fixture(name: &str) -> Value {
    let mut v: Value = serde_json::from_str(&testdata(name)).expect("fixture is JSON");
    v.as_object_mut()
        .expect("fixture is an object")
        .retain(|k, _| !k.starts_with('_'));
    v
}

fn params(v: Value) -> ChatParams {
    ChatParams::deserialize(&v).expect("valid OpenAI request")
}

fn gemini_request(openai: Value, model: &str) -> Value {
    let bytes = chat_request(&params(openai), model).expect("translates");
    serde_json::from_slice(&bytes).expect("JSON")
}

fn request_error(openai: Value) -> String {
    let err = chat_request(&params(openai), "gemini-2.5-flash").expect_err("refused");
    assert_eq!(err.status(), 400, "{err}");
    err.to_string()
}

/// The OpenAI answer for a Gemini fixture, without `created`.
fn openai_response(name: &str) -> Value {
    let bytes = chat_response(testdata(name).as_bytes(), ALIAS).expect("translates");
    let mut v: Value = serde_json::from_slice(&bytes).expect("JSON");
    assert!(v["created"].as_u64().is_some_and(|c| c > 0));
    v.as_object_mut().expect("object").remove("created");
    v
}

/// The translated stream of `raw` fed in `pieces`: each event's data, `created` removed.
fn translate_stream(pieces: &[&[u8]]) -> Vec<Value> {
    let mut splitter = Splitter::default();
    let mut stream = ChatStream::new(ALIAS);
    let mut out = Vec::new();
    for piece in pieces {
        splitter
            .push(Bytes::copy_from_slice(piece))
            .expect("within limits");
        while let Some(event) = splitter.pop() {
            stream.event(&event, &mut out);
        }
    }
    splitter.finish();
    while let Some(event) = splitter.pop() {
        stream.event(&event, &mut out);
    }
    stream.end(&mut out);
    out.iter()
        .map(|b| {
            let text = std::str::from_utf8(b).expect("utf-8");
            let data = text
                .strip_prefix("data: ")
                .and_then(|t| t.strip_suffix("\n\n"))
                .unwrap_or_else(|| panic!("not one data event: {text:?}"));
            if data == "[DONE]" {
                return json!("[DONE]");
            }
            let mut v: Value = serde_json::from_str(data).expect("JSON chunk");
            if let Some(o) = v.as_object_mut() {
                o.remove("created");
            }
            v
        })
        .collect()
}

fn stream_of(name: &str) -> Vec<Value> {
    translate_stream(&[testdata(name).as_bytes()])
}

fn chunk(id: &str, delta: Value, finish: Option<&str>) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "model": ALIAS,
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
}

fn usage(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning}})
}

fn usage_chunk(id: &str, usage: Value) -> Value {
    json!({"id": id, "object": "chat.completion.chunk", "model": ALIAS, "choices": [], "usage": usage})
}

fn weather_tool(extra_schema: Value) -> Value {
    let mut parameters = json!({
        "type": "object",
        "properties": {"location": {"type": "string", "description": "The city name, e.g. San Francisco"}},
        "required": ["location"],
    });
    if let (Some(p), Value::Object(extra)) = (parameters.as_object_mut(), extra_schema) {
        p.extend(extra);
    }
    json!({"type": "function", "function": {
        "name": "get_current_temperature",
        "description": "Gets the current temperature for a given location.",
        "parameters": parameters,
    }})
}

// ---- requests ----

#[test]
fn text_request_golden() {
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [
            {"role": "system", "content": "You are a cat. Your name is Neko."},
            {"role": "user", "content": "Hello there"}
        ], "temperature": 0.7, "top_p": 0.95, "max_tokens": 256, "stop": ["END"], "seed": 42, "n": 1,
           "user": "u-1", "logit_bias": {}}),
        "gemini-2.5-flash",
    );
    assert_eq!(got, fixture("text_request.json"));
}

#[test]
fn function_call_request_golden_with_a_strict_schema() {
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "What's the temperature in London?"}],
            "tools": [weather_tool(json!({"additionalProperties": false, "$schema": "http://json-schema.org/draft-07/schema#"}))],
            "tool_choice": "auto", "parallel_tool_calls": true}),
        "gemini-2.5-flash",
    );
    assert_eq!(got, fixture("function_call_request.json"));
}

#[test]
fn function_call_round_trip_keeps_ids_and_signatures() {
    // T-G6: Gemini's call -> OpenAI message -> back, signature byte-identical.
    let answer = openai_response("function_call_response.json");
    let assistant = answer["choices"][0]["message"].clone();
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [
            {"role": "user", "content": "What's the temperature in London?"},
            assistant,
            {"role": "tool", "tool_call_id": "call_4162774", "content": "{\"result\":{\"temperature\":15,\"unit\":\"celsius\"}}"}
        ], "tools": [weather_tool(json!({}))]}),
        "gemini-2.5-flash",
    );
    assert_eq!(got, fixture("function_response_followup_request.json"));
}

#[test]
fn parallel_results_go_in_one_content_signature_on_first_call_only() {
    let answer = openai_response("parallel_function_call_response.json");
    let assistant = answer["choices"][0]["message"].clone();
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [
            {"role": "user", "content": "Temperature in Paris and London?"},
            assistant,
            {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\":18}"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "{\"temperature\":15}"}]}
        ], "tools": [weather_tool(json!({}))]}),
        "gemini-3-flash-preview",
    );
    assert_eq!(
        got,
        fixture("parallel_function_response_followup_request.json")
    );
}

#[test]
fn image_requests_golden() {
    let data =
        fixture("image_inline_request.json")["contents"][0]["parts"][0]["inlineData"]["data"]
            .as_str()
            .expect("data")
            .to_string();
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/jpeg;base64,{data}"), "detail": "high"}},
            {"type": "text", "text": "Caption this image."}
        ]}]}),
        "gemini-2.5-flash",
    );
    assert_eq!(got, fixture("image_inline_request.json"));
    // http(s) URLs are handed to Gemini to fetch (fileData), never downloaded here.
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/images/cat.png"}},
            {"type": "text", "text": "What is in this picture?"}
        ]}]}),
        "gemini-2.5-flash",
    );
    assert_eq!(got, fixture("image_filedata_url_request.json"));
    for url in [
        "data:image/png,notbase64",
        "data:image/png;base64,***",
        "ftp://x/y.png",
    ] {
        let msg = request_error(
            json!({"model": ALIAS, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}]}),
        );
        assert!(msg.contains("messages[0].content[0]"), "{url}: {msg}");
    }
}

#[test]
fn json_schema_response_format_golden() {
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "List a few popular cookie recipes, and include the amounts of ingredients."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "recipes", "strict": true, "schema": {
            "type": "array",
            "items": {
                "type": "object", "title": "Recipe", "additionalProperties": false,
                "properties": {
                    "recipeName": {"type": "string"},
                    "ingredients": {"type": "array", "items": {"type": "string"}},
                    "rating": {"type": ["integer", "null"]}
                },
                "required": ["recipeName", "ingredients"],
                "propertyOrdering": ["recipeName", "ingredients", "rating"]
            }
        }}}}),
        "gemini-2.5-flash",
    );
    assert_eq!(got, fixture("json_mode_request.json"));
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
        "gemini-2.5-flash",
    );
    assert_eq!(
        got["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
}

#[test]
fn thinking_request_golden() {
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "What is 17*23?"}],
            "reasoning_effort": "low", "max_completion_tokens": 4096, "max_tokens": 10,
            "extra_body": {"google": {"thinking_config": {"include_thoughts": true}}}}),
        "gemini-2.5-flash",
    );
    assert_eq!(got, fixture("thinking_request.json"));
    // Gemini 3 takes a level, never both (T-G18).
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}], "reasoning_effort": "high"}),
        "gemini-3-pro-preview",
    );
    assert_eq!(
        got["generationConfig"],
        json!({"thinkingConfig": {"thinkingLevel": "high"}})
    );
}

#[test]
fn tool_messages_rules() {
    let call = |id: &str, args: &str| json!({"id": id, "type": "function", "function": {"name": "f", "arguments": args}});
    // Non-object results are wrapped; three results after one turn share one Content,
    // and a following user text joins it after them.
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": "calling", "tool_calls": [call("a", "{}"), call("b", ""), call("call_mrgen_x", "{\"k\":[1]}")]},
            {"role": "tool", "tool_call_id": "a", "content": "15 degrees"},
            {"role": "tool", "tool_call_id": "b", "content": "[1,2]"},
            {"role": "tool", "tool_call_id": "call_mrgen_x", "content": "{\"ok\":true}"},
            {"role": "user", "content": "thanks"}
        ]}),
        "gemini-2.5-flash",
    );
    assert_eq!(
        got["contents"],
        json!([
            {"role": "user", "parts": [{"text": "go"}]},
            {"role": "model", "parts": [
                {"text": "calling"},
                {"functionCall": {"id": "a", "name": "f", "args": {}}},
                {"functionCall": {"id": "b", "name": "f", "args": {}}},
                // A gateway-made id is never sent to Gemini (T-G19).
                {"functionCall": {"name": "f", "args": {"k": [1]}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"id": "a", "name": "f", "response": {"result": "15 degrees"}}},
                {"functionResponse": {"id": "b", "name": "f", "response": {"result": [1, 2]}}},
                {"functionResponse": {"name": "f", "response": {"ok": true}}},
                {"text": "thanks"}
            ]}
        ])
    );
    let msg = request_error(json!({"model": ALIAS, "messages": [
        {"role": "user", "content": "go"},
        {"role": "tool", "tool_call_id": "nope", "content": "x"}
    ]}));
    assert!(msg.contains("tool_call_id `nope`"), "{msg}");
    let msg = request_error(json!({"model": ALIAS, "messages": [
        {"role": "assistant", "tool_calls": [call("a", "{not json")]}
    ]}));
    assert!(
        msg.contains("messages[0].tool_calls[0].function.arguments"),
        "{msg}"
    );
    let msg = request_error(json!({"model": ALIAS, "messages": [
        {"role": "assistant", "tool_calls": [call("a", "[1]")]}
    ]}));
    assert!(msg.contains("JSON object"), "{msg}");
}

#[test]
fn tool_declarations_and_choice() {
    let base = |tool_choice: Value| {
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}],
            "tools": [weather_tool(json!({})), {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}],
            "tool_choice": tool_choice})
    };
    let got = gemini_request(base(json!("required")), "gemini-2.5-flash");
    assert_eq!(
        got["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    // Empty-object parameters are left out (T-G5).
    assert_eq!(
        got["tools"][0]["functionDeclarations"][1],
        json!({"name": "noop"})
    );
    let got = gemini_request(base(json!("none")), "gemini-2.5-flash");
    assert_eq!(got["toolConfig"]["functionCallingConfig"]["mode"], "NONE");
    let got = gemini_request(
        base(json!({"type": "function", "function": {"name": "noop"}})),
        "gemini-2.5-flash",
    );
    assert_eq!(
        got["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["noop"]}})
    );
    assert!(
        request_error(base(
            json!({"type": "function", "function": {"name": "other"}})
        ))
        .contains("not in `tools`")
    );
    assert!(request_error(base(json!("sometimes"))).contains("unknown mode"));
    let msg = request_error(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]}),
    );
    assert!(msg.contains("type object"), "{msg}");
    let msg = request_error(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "a".repeat(64)}}]}),
    );
    assert!(msg.contains("function names"), "{msg}");
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}], "tools": []}),
        "gemini-2.5-flash",
    );
    assert!(got.get("tools").is_none());
}

#[test]
fn unsupported_fields_are_refused() {
    let msg = request_error(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}], "logit_bias": {"50256": -100}}),
    );
    assert!(msg.contains("logit_bias"), "{msg}");
    let msg = request_error(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}], "seed": 5_000_000_000_i64}),
    );
    assert!(msg.contains("seed"), "{msg}");
    let msg = request_error(
        json!({"model": ALIAS, "messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]}),
    );
    assert!(msg.contains("text only"), "{msg}");
    let msg = request_error(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"not": {}}}}}}]}),
    );
    assert!(
        msg.contains("`not`") && msg.contains("tools[0].function.parameters.properties.a.not"),
        "{msg}"
    );
}

#[test]
fn text_signature_round_trips_on_the_message() {
    let answer = openai_response("usage_cached_thoughts_response.json");
    let assistant = answer["choices"][0]["message"].clone();
    let got = gemini_request(
        json!({"model": ALIAS, "messages": [{"role": "user", "content": "sum"}, assistant, {"role": "user", "content": "again"}]}),
        "gemini-2.5-pro",
    );
    assert_eq!(
        got["contents"][1],
        json!({"role": "model", "parts": [{"text": "The answer is 42.", "thoughtSignature": "EpUCCpICAcu98PA..."}]})
    );
}

// ---- answers ----

#[test]
fn text_response_golden() {
    assert_eq!(
        openai_response("text_response.json"),
        json!({"id": "chatcmpl-Xk3aZ_abc123", "object": "chat.completion", "model": ALIAS,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Meow! Hello there, I'm Neko."},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": usage(14, 10, 0, 0)})
    );
}

#[test]
fn function_call_response_golden() {
    assert_eq!(
        openai_response("function_call_response.json"),
        json!({"id": "chatcmpl-qpc2afWVFJK4vr0Pq6WiyAU", "object": "chat.completion", "model": ALIAS,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_4162774", "type": "function",
                 "function": {"name": "get_current_temperature", "arguments": "{\"location\":\"London\"}"},
                 "extra_content": {"google": {"thought_signature": "CikBcsjafFK168IbtVtoxVV0Tsn8O+eU45rzJahzwuKGmMbdMdfpmNpgBwpl"}}}
            ]}, "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": usage(83, 118, 0, 104)})
    );
}

#[test]
fn parallel_function_call_response_golden() {
    let got = openai_response("parallel_function_call_response.json");
    let calls = &got["choices"][0]["message"]["tool_calls"];
    assert_eq!(calls.as_array().map(Vec::len), Some(2));
    assert_eq!(calls[0]["id"], "call_1");
    assert_eq!(calls[1]["id"], "call_2");
    assert_eq!(
        calls[1]["function"]["arguments"],
        "{\"location\":\"London\"}"
    );
    assert!(calls[0]["extra_content"].is_object());
    assert!(calls[1].get("extra_content").is_none());
    assert_eq!(got["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(got["usage"], usage(90, 90, 0, 60));
}

#[test]
fn json_mode_response_golden() {
    let got = openai_response("json_mode_response.json");
    assert_eq!(
        got["choices"][0]["message"]["content"],
        fixture("json_mode_response.json")["candidates"][0]["content"]["parts"][0]["text"]
    );
    assert_eq!(got["usage"], usage(28, 40, 0, 0));
}

#[test]
fn thinking_and_cached_usage_golden() {
    // T-G7: reasoning counted inside completion, cached tokens a subset of prompt.
    assert_eq!(
        openai_response("usage_cached_thoughts_response.json"),
        json!({"id": "chatcmpl-u1", "object": "chat.completion", "model": ALIAS,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "The answer is 42.",
                "reasoning_content": "**Working out the sum**\nI need to add the two numbers...",
                "extra_content": {"google": {"thought_signature": "EpUCCpICAcu98PA..."}}},
                "logprobs": null, "finish_reason": "stop"}],
            "usage": usage(12000, 350, 8192, 300)})
    );
}

#[test]
fn safety_blocks_golden() {
    assert_eq!(
        openai_response("safety_blocked_candidate_response.json"),
        json!({"id": "chatcmpl-sb2", "object": "chat.completion", "model": ALIAS,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null},
                "logprobs": null, "finish_reason": "content_filter"}],
            "usage": usage(20, 0, 0, 0)})
    );
    assert_eq!(
        openai_response("safety_blocked_prompt_response.json"),
        json!({"id": "chatcmpl-sb1", "object": "chat.completion", "model": ALIAS,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": null},
                "logprobs": null, "finish_reason": "content_filter"}],
            "usage": usage(12, 0, 0, 0)})
    );
}

#[test]
fn calls_without_ids_get_unique_generated_ones() {
    let body = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "f"}}, {"functionCall": {"name": "f", "args": {"a": 1}}}
    ]}, "finishReason": "STOP"}]});
    let bytes = chat_response(body.to_string().as_bytes(), ALIAS).expect("translates");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    let calls = &v["choices"][0]["message"]["tool_calls"];
    let (a, b) = (
        calls[0]["id"].as_str().expect("id"),
        calls[1]["id"].as_str().expect("id"),
    );
    assert!(a.starts_with("call_mrgen_") && b.starts_with("call_mrgen_") && a != b);
    assert_eq!(calls[0]["function"]["arguments"], "{}");
    // MAX_TOKENS without content (thinking ate the budget) is `length` (T-G9).
    let body = json!({"candidates": [{"finishReason": "MAX_TOKENS"}], "usageMetadata": {"promptTokenCount": 3, "thoughtsTokenCount": 9}});
    let bytes = chat_response(body.to_string().as_bytes(), ALIAS).expect("translates");
    let v: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"], usage(3, 9, 0, 9));
    assert!(chat_response(b"{\"error\":{\"message\":\"x\"}}", ALIAS).is_err());
    assert!(chat_response(b"not json", ALIAS).is_err());
}

// ---- streams ----

#[test]
fn text_stream_golden() {
    let id = "chatcmpl-s1aZ-abc";
    assert_eq!(
        stream_of("stream_text.sse"),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), None),
            chunk(id, json!({"content": "Once upon"}), None),
            chunk(
                id,
                json!({"content": " a time, a little cat named Neko"}),
                None
            ),
            chunk(id, json!({"content": " found a magic backpack."}), None),
            chunk(id, json!({}), Some("stop")),
            usage_chunk(id, usage(9, 17, 0, 0)),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn thoughts_stream_golden() {
    let id = "chatcmpl-t1";
    assert_eq!(
        stream_of("stream_thoughts_text.sse"),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), None),
            chunk(
                id,
                json!({"reasoning_content": "**Planning the answer**\nThe user wants a haiku..."}),
                None
            ),
            chunk(id, json!({"content": "Soft rain on the roof"}), None),
            chunk(
                id,
                json!({"content": ", quiet night.", "extra_content": {"google": {"thought_signature": "EpUCCpICAcu98PA..."}}}),
                None
            ),
            chunk(id, json!({}), Some("stop")),
            usage_chunk(id, usage(7, 52, 0, 40)),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn function_call_stream_golden() {
    let id = "chatcmpl-qpc2afWVFJK4vr0Pq6WiyAU";
    assert_eq!(
        stream_of("stream_function_call.sse"),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), None),
            chunk(
                id,
                json!({"tool_calls": [{"index": 0, "id": "call_4162774", "type": "function",
                "function": {"name": "get_current_temperature", "arguments": "{\"location\":\"London\"}"},
                "extra_content": {"google": {"thought_signature": "CikBcsjafFK168IbtVtoxVV0Tsn8O+eU45rzJahzwuKGmMbdMdfpmNpgBwpl"}}}]}),
                None
            ),
            chunk(id, json!({}), Some("tool_calls")),
            usage_chunk(id, usage(83, 118, 0, 104)),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn parallel_calls_stream_golden() {
    // T-G8: separate events, both at parts[0]: indices 0 and 1 from a stream counter.
    let id = "chatcmpl-p1";
    let call = |index: u32, cid: &str, city: &str| {
        json!({"index": index, "id": cid, "type": "function",
            "function": {"name": "get_current_temperature", "arguments": format!("{{\"location\":\"{city}\"}}")}})
    };
    let mut first = call(0, "call_1", "Paris");
    first["extra_content"] =
        json!({"google": {"thought_signature": "CikBcsjafFK168IbtVtoxVV0Tsn8"}});
    assert_eq!(
        stream_of("stream_parallel_function_calls.sse"),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), None),
            chunk(id, json!({"tool_calls": [first]}), None),
            chunk(
                id,
                json!({"tool_calls": [call(1, "call_2", "London")]}),
                None
            ),
            chunk(id, json!({}), Some("tool_calls")),
            usage_chunk(id, usage(90, 90, 0, 60)),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn safety_stop_stream_golden() {
    let id = "chatcmpl-x9";
    assert_eq!(
        stream_of("stream_safety_stop.sse"),
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), None),
            chunk(id, json!({"content": "Here is how"}), None),
            chunk(id, json!({}), Some("content_filter")),
            usage_chunk(id, usage(15, 3, 0, 0)),
            json!("[DONE]"),
        ]
    );
}

#[test]
fn midstream_error_ends_with_one_error_event() {
    let id = "chatcmpl-e1";
    let got = stream_of("stream_midstream_error.sse");
    assert_eq!(
        got,
        vec![
            chunk(id, json!({"role": "assistant", "content": ""}), None),
            chunk(id, json!({"content": "Partial"}), None),
            json!({"error": {"message": "Gemini stream failed: UNAVAILABLE: The model is overloaded. Please try again later.",
                "type": "upstream_error", "param": null, "code": "UNAVAILABLE"}}),
        ]
    );
}

#[test]
fn a_stream_cut_before_its_finish_is_an_error() {
    let text = testdata("stream_text.sse");
    let cut = text.rfind("data:").expect("events");
    let got = translate_stream(&[&text.as_bytes()[..cut]]);
    assert_eq!(got.len(), 4, "{got:?}");
    assert!(
        got[3]["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("ended before"))
    );
    assert!(!got.contains(&json!("[DONE]")));
}

#[test]
fn a_usage_only_event_after_the_finish_is_not_needed() {
    // EOF after a finish closes normally (and only once).
    let mut s = ChatStream::new(ALIAS);
    let mut out = Vec::new();
    let ev = |d: &str| crate::stream::sse::Event {
        raw: Bytes::from(format!("data: {d}\n\n")),
    };
    s.event(&ev(r#"{"candidates":[{"content":{"parts":[{"text":"a"}]},"finishReason":"STOP","index":0},{"content":{"parts":[{"text":"b"}]},"index":1}]}"#), &mut out);
    assert!(
        !out.iter().any(|b| b.as_ref() == crate::api::chunk::DONE),
        "choice 1 still open"
    );
    s.end(&mut out);
    assert_eq!(out.last().map(Bytes::as_ref), Some(crate::api::chunk::DONE));
    let n = out.len();
    s.end(&mut out);
    s.event(&ev(r#"{"candidates":[]}"#), &mut out);
    assert_eq!(out.len(), n);
}

const STREAMS: &[&str] = &[
    "stream_text.sse",
    "stream_function_call.sse",
    "stream_parallel_function_calls.sse",
    "stream_thoughts_text.sse",
    "stream_safety_stop.sse",
    "stream_midstream_error.sse",
];

#[test]
fn chunk_boundaries_do_not_change_the_output() {
    let mut rng = fastrand::Rng::with_seed(0x6e6d_696e_6921);
    for name in STREAMS {
        let raw = testdata(name);
        let bytes = raw.as_bytes();
        let whole = translate_stream(&[bytes]);
        for cut in 0..=bytes.len() {
            let (a, b) = bytes.split_at(cut);
            assert_eq!(translate_stream(&[a, b]), whole, "{name} cut at {cut}");
        }
        for _ in 0..200 {
            let mut cuts: Vec<usize> = (0..rng.usize(1..12))
                .map(|_| rng.usize(0..=bytes.len()))
                .collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut at = 0;
            for c in cuts {
                pieces.push(&bytes[at..c]);
                at = c;
            }
            pieces.push(&bytes[at..]);
            assert_eq!(translate_stream(&pieces), whole, "{name} cut at {pieces:?}");
        }
        // CRLF line endings read the same (T-G13).
        let crlf = raw.replace('\n', "\r\n");
        assert_eq!(
            translate_stream(&[crlf.as_bytes()]),
            whole,
            "{name} with CRLF"
        );
    }
}

#[test]
fn garbage_does_not_panic() {
    let mut rng = fastrand::Rng::with_seed(7);
    for case in [
        "data: not json\n\n",
        "data: [1,2]\n\n",
        "data: {\"candidates\": 5}\n\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": \"x\"}, \"index\": -1}]}\n\n",
        "data: {\"candidates\": [{\"content\": {\"parts\": [{\"functionCall\": 3}, {\"text\": 7}]}, \"finishReason\": 9}]}\n\n",
        "data: {\"error\": 3}\n\n",
        "data: {\"promptFeedback\": {\"blockReason\": \"SAFETY\"}}\n\n",
        ": only a comment\n\n",
    ] {
        let out = translate_stream(&[case.as_bytes()]);
        assert!(!out.is_empty(), "{case}: something must be said");
    }
    for _ in 0..300 {
        let len = rng.usize(0..400);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
        if rng.bool() {
            bytes.splice(0..0, b"data: {\"candidates\":[".iter().copied());
        }
        let mut splitter = Splitter::default();
        let mut stream = ChatStream::new(ALIAS);
        let mut out = Vec::new();
        let _ = splitter.push(Bytes::from(bytes));
        splitter.finish();
        while let Some(event) = splitter.pop() {
            stream.event(&event, &mut out);
        }
        stream.end(&mut out);
    }
}

// ---- embeddings and errors ----

#[test]
fn embeddings_golden() {
    let req = crate::api::ModelRequest::parse(
        json!({"model": "emb", "input": ["What is the meaning of life?", "How much wood would a woodchuck chuck?"],
            "dimensions": 4, "encoding_format": "float"})
        .to_string(),
    )
    .expect("request");
    let body = embeddings_request(&req, "gemini-embedding-001").expect("translates");
    let got: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(got, fixture("batch_embed_contents_request.json"));

    let bytes = embeddings_response(
        testdata("batch_embed_contents_response.json").as_bytes(),
        "emb",
    )
    .expect("translates");
    let got: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(
        got,
        json!({"object": "list", "model": "emb", "usage": {"prompt_tokens": 0, "total_tokens": 0}, "data": [
            {"object": "embedding", "index": 0, "embedding": [-0.0222, 0.0045, 0.0088, -0.0734]},
            {"object": "embedding", "index": 1, "embedding": [0.0131, -0.0402, 0.0217, 0.0093]}
        ]})
    );

    for (input, needle) in [
        (json!([[1, 2, 3]]), "token arrays"),
        (json!([]), "non-empty"),
        (json!(5), "string"),
    ] {
        let req =
            crate::api::ModelRequest::parse(json!({"model": "emb", "input": input}).to_string())
                .expect("request");
        let err = embeddings_request(&req, "m").expect_err("refused");
        assert_eq!(err.status(), 400);
        assert!(err.to_string().contains(needle), "{err}");
    }
    let single =
        crate::api::ModelRequest::parse(&br#"{"model":"e","input":"hi"}"#[..]).expect("request");
    let got: Value =
        serde_json::from_slice(&embeddings_request(&single, "text-embedding-004").expect("ok"))
            .expect("json");
    assert_eq!(
        got,
        json!({"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "hi"}]}}]})
    );
}

#[test]
fn retry_delay_from_retry_info() {
    assert_eq!(
        retry_delay(testdata("error_429_resource_exhausted.json").as_bytes()),
        Some(Duration::from_secs(15))
    );
    assert_eq!(
        retry_delay(testdata("error_429_no_details.json").as_bytes()),
        None
    );
    assert_eq!(
        retry_delay(testdata("error_400_invalid_schema.json").as_bytes()),
        None
    );
    let fractional = json!({"error": {"code": 429, "details": [
        {"@type": "type.googleapis.com/google.rpc.Help"},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}
    ]}});
    assert_eq!(
        retry_delay(fractional.to_string().as_bytes()),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(retry_delay(b"nonsense"), None);
    let negative = json!({"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "-3s"}]}});
    assert_eq!(retry_delay(negative.to_string().as_bytes()), None);
}
