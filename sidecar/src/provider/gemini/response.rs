//! Gemini `GenerateContentResponse` -> OpenAI `chat.completion` (spec.md §8), and the
//! pieces the stream translator shares: finish reasons, usage, tool call ids.

use serde_json::{Map, Value, json};

use super::generated_id;
use crate::api::chunk::unix_now;

/// A whole answer as an OpenAI `chat.completion`; `model` is the client's alias.
pub fn completion(body: &[u8], model: &str) -> Result<Value, String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if let Some(error) = answer.get("error") {
        return Err(format!("Gemini error: {}", error_message(error)));
    }
    let mut candidates: Vec<&Value> = answer
        .get("candidates")
        .and_then(Value::as_array)
        .map(|c| c.iter().collect())
        .unwrap_or_default();
    candidates.sort_by_key(|c| candidate_index(c));
    let mut choices = Vec::new();
    if candidates.is_empty() {
        // The prompt itself was blocked (promptFeedback.blockReason): one empty choice
        // ending in `content_filter`, the way a filtered OpenAI completion ends.
        if block_reason(&answer).is_none() {
            return Err("the answer has neither candidates nor a promptFeedback block".into());
        }
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": null},
            "logprobs": null,
            "finish_reason": "content_filter",
        }));
    }
    for candidate in candidates {
        choices.push(choice(candidate));
    }
    Ok(json!({
        "id": completion_id(&answer),
        "object": "chat.completion",
        "created": unix_now(),
        "model": model,
        "choices": choices,
        "usage": usage(answer.get("usageMetadata")),
    }))
}

fn choice(candidate: &Value) -> Value {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    // A signature not on a functionCall part goes to the next call, else the message.
    let mut pending_signature: Option<&str> = None;
    let mut message_signature: Option<&str> = None;
    for part in parts(candidate) {
        let sig = part.get("thoughtSignature").and_then(Value::as_str);
        if let Some(call) = part.get("functionCall") {
            let sig = sig.or_else(|| pending_signature.take());
            tool_calls.push(tool_call(call, sig, None));
            continue;
        }
        if let Some(t) = part.get("text").and_then(Value::as_str) {
            if is_thought(part) {
                reasoning.push_str(t);
            } else {
                text.push_str(t);
            }
        }
        if let Some(sig) = sig {
            pending_signature = Some(sig);
        }
    }
    if let Some(sig) = pending_signature {
        message_signature = Some(sig);
    }
    let mut message = Map::new();
    message.insert("role".into(), json!("assistant"));
    message.insert(
        "content".into(),
        if text.is_empty() {
            Value::Null
        } else {
            Value::String(text)
        },
    );
    if !reasoning.is_empty() {
        message.insert("reasoning_content".into(), Value::String(reasoning));
    }
    let has_calls = !tool_calls.is_empty();
    if has_calls {
        message.insert("tool_calls".into(), Value::Array(tool_calls));
    }
    if let Some(sig) = message_signature {
        message.insert("extra_content".into(), google_signature(sig));
    }
    json!({
        "index": candidate_index(candidate),
        "message": message,
        "logprobs": null,
        "finish_reason": finish_reason(candidate.get("finishReason").and_then(Value::as_str), has_calls),
    })
}

/// An OpenAI tool call from a `functionCall`; `index` is set for stream deltas.
pub fn tool_call(call: &Value, signature: Option<&str>, index: Option<usize>) -> Value {
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(generated_id, str::to_string);
    let name = call.get("name").and_then(Value::as_str).unwrap_or_default();
    let args = call.get("args").cloned().unwrap_or_else(|| json!({}));
    let mut out = json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": args.to_string()},
    });
    if let Some(i) = index {
        out["index"] = json!(i);
    }
    if let Some(sig) = signature {
        out["extra_content"] = google_signature(sig);
    }
    out
}

pub fn google_signature(sig: &str) -> Value {
    json!({"google": {"thought_signature": sig}})
}

pub fn parts(candidate: &Value) -> impl Iterator<Item = &Value> {
    candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

pub fn is_thought(part: &Value) -> bool {
    part.get("thought").and_then(Value::as_bool) == Some(true)
}

/// `index` may be left out for 0 (proto3 JSON default).
pub fn candidate_index(candidate: &Value) -> u32 {
    candidate
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(0)
}

pub fn block_reason(answer: &Value) -> Option<&str> {
    answer
        .get("promptFeedback")
        .and_then(|f| f.get("blockReason"))
        .and_then(Value::as_str)
}

pub fn completion_id(answer: &Value) -> String {
    match answer.get("responseId").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => format!("chatcmpl-{:016x}", fastrand::u64(..)),
    }
}

/// Gemini's finish reason as OpenAI's. Function calls end with `STOP`: a choice with
/// calls ends in `tool_calls`.
pub fn finish_reason(reason: Option<&str>, has_calls: bool) -> &'static str {
    match reason {
        Some("STOP") | None if has_calls => "tool_calls",
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY"
            | "RECITATION"
            | "BLOCKLIST"
            | "PROHIBITED_CONTENT"
            | "SPII"
            | "LANGUAGE"
            | "IMAGE_SAFETY"
            | "IMAGE_PROHIBITED_CONTENT"
            | "IMAGE_RECITATION",
        ) => "content_filter",
        // STOP, MALFORMED_FUNCTION_CALL, OTHER, unknown values.
        _ => "stop",
    }
}

/// `usageMetadata` as OpenAI usage; counts Gemini leaves out (zeros) are 0.
pub fn usage(meta: Option<&Value>) -> Value {
    let count = |name: &str| {
        meta.and_then(|m| m.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    let prompt = count("promptTokenCount") + count("toolUsePromptTokenCount");
    let thoughts = count("thoughtsTokenCount");
    let completion = count("candidatesTokenCount") + thoughts;
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": count("cachedContentTokenCount")},
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    })
}

pub fn error_message(error: &Value) -> String {
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("unknown error");
    match error.get("status").and_then(Value::as_str) {
        Some(status) => format!("{status}: {message}"),
        None => message.to_string(),
    }
}
