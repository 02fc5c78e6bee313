//! Anthropic Message -> OpenAI `chat.completion`.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{JSON_TOOL, TokenCounts, finish_reason};
use crate::api::chunk::unix_now;

/// An Anthropic message as an OpenAI `chat.completion`; `model` is the client's alias.
///
/// Text blocks are joined into `content`; `tool_use` blocks become `tool_calls` (input as
/// JSON text); thinking becomes `reasoning_content` plus the verbatim `thinking_blocks`
/// a client sends back on its next turn. The `json_response` tool that emulates
/// `response_format: json_object` is turned back into content with `finish_reason: stop`.
pub fn chat_response(body: &[u8], model: &str) -> Result<Bytes, String> {
    let message: Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON message: {e}"))?;
    if message.get("type").and_then(Value::as_str) == Some("error") {
        let text = message["error"]["message"]
            .as_str()
            .unwrap_or("unknown error");
        return Err(format!("error instead of a message: {text}"));
    }
    let Some(blocks) = message.get("content").and_then(Value::as_array) else {
        return Err("the message has no content array".into());
    };

    let mut text: Option<String> = None;
    let mut reasoning: Option<String> = None;
    let mut thinking_blocks = Vec::new();
    let mut tool_calls = Vec::new();
    let mut json_answer = false;
    for block in blocks {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => {
                let t = block.get("text").and_then(Value::as_str).unwrap_or("");
                text.get_or_insert_with(String::new).push_str(t);
            }
            Some("tool_use") => {
                let name = block.get("name").and_then(Value::as_str).unwrap_or("");
                let input = block.get("input").cloned().unwrap_or_else(|| json!({}));
                let arguments = input.to_string();
                if name == JSON_TOOL {
                    json_answer = true;
                    text.get_or_insert_with(String::new).push_str(&arguments);
                    continue;
                }
                tool_calls.push(json!({
                    "id": block.get("id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                }));
            }
            Some("thinking") => {
                let t = block.get("thinking").and_then(Value::as_str).unwrap_or("");
                reasoning.get_or_insert_with(String::new).push_str(t);
                thinking_blocks.push(json!({
                    "type": "thinking",
                    "thinking": t,
                    "signature": block.get("signature").cloned().unwrap_or(Value::Null),
                }));
            }
            Some("redacted_thinking") => {
                thinking_blocks.push(json!({
                    "type": "redacted_thinking",
                    "data": block.get("data").cloned().unwrap_or(Value::Null),
                }));
            }
            // Server-tool and other blocks this translation never asks for.
            _ => {}
        }
    }

    let stop_reason = message.get("stop_reason").and_then(Value::as_str);
    let mut finish = finish_reason(stop_reason);
    if finish == "tool_calls" && json_answer && tool_calls.is_empty() {
        finish = "stop";
    }
    let refusal = if stop_reason == Some("refusal") {
        message
            .get("stop_details")
            .and_then(|d| d.get("explanation"))
            .cloned()
            .filter(|e| !e.is_null())
            .unwrap_or_else(|| json!("The model declined to answer."))
    } else {
        Value::Null
    };

    let mut out_message = Map::new();
    out_message.insert("role".into(), json!("assistant"));
    out_message.insert("content".into(), json!(text));
    out_message.insert("refusal".into(), refusal);
    if !tool_calls.is_empty() {
        out_message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if let Some(reasoning) = reasoning {
        out_message.insert("reasoning_content".into(), json!(reasoning));
    }
    if !thinking_blocks.is_empty() {
        out_message.insert("thinking_blocks".into(), Value::Array(thinking_blocks));
    }

    let mut usage = TokenCounts::default();
    if let Some(u) = message.get("usage") {
        usage.update(u);
    }
    let completion = json!({
        "id": message.get("id").cloned().unwrap_or_else(|| json!("msg_unknown")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": [{
            "index": 0,
            "message": out_message,
            "finish_reason": finish,
            "logprobs": null,
        }],
        "usage": usage.openai(),
    });
    serde_json::to_vec(&completion)
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}
