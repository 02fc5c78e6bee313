//! Dialects: the API a client speaks, which decides how errors look to it and how its
//! streams end.
//!
//! Most clients speak OpenAI's. Native pass-through clients (the Anthropic and Gemini
//! SDKs pointed at the sidecar) get errors and stream endings in their provider's own
//! shape, so their SDKs raise the errors they know.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{ChunkPeek, Usage};
use crate::cost::{TokenUsage, UsageFormat, estimate_tokens};
use crate::error::ProxyError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    OpenAi,
    Anthropic,
    Gemini,
}

/// What one relayed event means for the stream.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reading {
    pub usage: Option<Usage>,
    /// The answer is complete: the finish reason given (the provider's own word, or
    /// `other` for one not known here, so it never allocates).
    pub finish: Option<&'static str>,
    /// The stream's last event: forward it, then stop.
    pub last: bool,
    /// An error event from upstream: forward it, then stop, counted as failed.
    pub error: bool,
    /// A usage-only chunk the client did not ask for (OpenAI dialect only).
    pub unrequested_usage: bool,
}

// === impl Dialect ===

impl Dialect {
    /// An error response body in this dialect.
    pub fn error_body(self, err: &ProxyError) -> Bytes {
        match self {
            Dialect::OpenAi => err.body(),
            Dialect::Anthropic => to_bytes(&anthropic_error(err)),
            Dialect::Gemini => to_bytes(&gemini_error(err)),
        }
    }

    /// A final error event for a stream whose head was already sent.
    pub fn error_event(self, err: &ProxyError) -> Bytes {
        match self {
            Dialect::OpenAi => err.sse_event(),
            Dialect::Anthropic => {
                let mut out = b"event: error\ndata: ".to_vec();
                out.extend_from_slice(&to_bytes(&anthropic_error(err)));
                out.extend_from_slice(b"\n\n");
                Bytes::from(out)
            }
            Dialect::Gemini => {
                let mut out = b"data: ".to_vec();
                out.extend_from_slice(&to_bytes(&gemini_error(err)));
                out.extend_from_slice(b"\n\n");
                Bytes::from(out)
            }
        }
    }

    /// The terminator to add when an upstream finished its answer but closed without one.
    pub fn done(self) -> Option<&'static [u8]> {
        match self {
            Dialect::OpenAi => Some(b"data: [DONE]\n\n"),
            // Anthropic streams end with message_stop, which is content; Gemini's just end.
            Dialect::Anthropic | Dialect::Gemini => None,
        }
    }

    /// Reads one event's data (already translated to this dialect).
    pub fn read(self, data: &[u8]) -> Reading {
        match self {
            Dialect::OpenAi => read_openai(data),
            Dialect::Anthropic => read_anthropic(data),
            Dialect::Gemini => read_gemini(data),
        }
    }

    /// Usage of a whole (non-streamed) answer in this dialect.
    pub fn usage(self, body: &[u8]) -> Option<Usage> {
        match self {
            Dialect::OpenAi => Usage::of_body(body),
            Dialect::Anthropic => {
                let v: Value = serde_json::from_slice(body).ok()?;
                anthropic_usage(&v["usage"], &v["usage"])
            }
            Dialect::Gemini => {
                let v: Value = serde_json::from_slice(body).ok()?;
                gemini_usage(&v["usageMetadata"])
            }
        }
    }
}

// === impl Dialect: cost ===

impl Dialect {
    /// The provider's usage in a whole answer or one stream event (already in this
    /// dialect), for its cost. `None` when it carries none.
    pub fn token_usage(self, v: &Value) -> Option<TokenUsage> {
        let (format, usage) = match self {
            Dialect::OpenAi => (UsageFormat::OpenAiChat, &v["usage"]),
            Dialect::Anthropic if v["type"] == "message_start" => {
                (UsageFormat::Anthropic, &v["message"]["usage"])
            }
            Dialect::Anthropic => (UsageFormat::Anthropic, &v["usage"]),
            Dialect::Gemini => (UsageFormat::Gemini, &v["usageMetadata"]),
        };
        TokenUsage::from_json(format, usage).ok()
    }

    /// The provider's usage in a whole (non-streamed) answer, read without building the
    /// rest of the answer.
    pub fn body_token_usage(self, body: &[u8]) -> Option<TokenUsage> {
        #[derive(serde::Deserialize)]
        struct UsageOf {
            #[serde(default)]
            usage: Option<Value>,
            #[serde(default, rename = "usageMetadata")]
            usage_metadata: Option<Value>,
        }
        let of: UsageOf = serde_json::from_slice(body).ok()?;
        let (format, usage) = match self {
            Dialect::OpenAi => (UsageFormat::OpenAiChat, of.usage?),
            Dialect::Anthropic => (UsageFormat::Anthropic, of.usage?),
            Dialect::Gemini => (UsageFormat::Gemini, of.usage_metadata?),
        };
        TokenUsage::from_json(format, &usage).ok()
    }

    /// An estimate of the tokens generated in one stream event (text, reasoning, tool-call
    /// arguments), to hold a stream to what its budget reserved.
    pub fn generated_tokens(self, v: &Value) -> u64 {
        let mut n = 0;
        let mut count = |t: &Value| {
            if let Some(text) = t.as_str() {
                n += estimate_tokens(text);
            }
        };
        match self {
            Dialect::OpenAi => {
                for choice in v["choices"].as_array().into_iter().flatten() {
                    let delta = &choice["delta"];
                    for field in ["content", "reasoning_content", "reasoning", "refusal"] {
                        count(&delta[field]);
                    }
                    for call in delta["tool_calls"].as_array().into_iter().flatten() {
                        count(&call["function"]["arguments"]);
                    }
                }
            }
            Dialect::Anthropic => {
                let delta = &v["delta"];
                for field in ["text", "partial_json", "thinking"] {
                    count(&delta[field]);
                }
            }
            Dialect::Gemini => {
                for candidate in v["candidates"].as_array().into_iter().flatten() {
                    for part in candidate["content"]["parts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        count(&part["text"]);
                        if let Some(call) = part.get("functionCall") {
                            count(&Value::String(call.to_string()));
                        }
                    }
                }
            }
        }
        n
    }

    /// The events that end a stream cut short because its budget reserved no more: a
    /// finish reason meaning "length", then the dialect's end.
    pub fn budget_stop(self, id: &str, model: &str) -> Vec<Bytes> {
        match self {
            Dialect::OpenAi => {
                let chunk = json!({
                    "id": id, "object": "chat.completion.chunk", "created": super::chunk::unix_now(),
                    "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
                    "modelroute": {"stopped": "budget"},
                });
                vec![
                    super::chunk::event(&chunk),
                    Bytes::from_static(b"data: [DONE]\n\n"),
                ]
            }
            Dialect::Anthropic => {
                let delta = json!({"type": "message_delta",
                    "delta": {"stop_reason": "max_tokens", "stop_sequence": null},
                    "modelroute": {"stopped": "budget"}});
                let mut first = b"event: message_delta\ndata: ".to_vec();
                first.extend_from_slice(&to_bytes(&delta));
                first.extend_from_slice(b"\n\n");
                vec![
                    Bytes::from(first),
                    Bytes::from_static(
                        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                    ),
                ]
            }
            Dialect::Gemini => {
                let chunk = json!({"candidates": [{"content": {"role": "model", "parts": []},
                    "finishReason": "MAX_TOKENS", "index": 0}], "modelroute": {"stopped": "budget"}});
                let mut out = b"data: ".to_vec();
                out.extend_from_slice(&to_bytes(&chunk));
                out.extend_from_slice(b"\n\n");
                vec![Bytes::from(out)]
            }
        }
    }
}

fn read_openai(data: &[u8]) -> Reading {
    if data.trim_ascii() == b"[DONE]" {
        return Reading {
            last: true,
            ..Reading::default()
        };
    }
    let Ok(peek) = serde_json::from_slice::<ChunkPeek>(data) else {
        return Reading::default();
    };
    Reading {
        usage: peek.usage,
        finish: peek
            .choices
            .iter()
            .find_map(|c| c.finish_reason.as_deref())
            .map(finish_reason),
        last: peek.error.is_some(),
        error: peek.error.is_some(),
        unrequested_usage: peek.usage.is_some() && peek.choices.is_empty(),
    }
}

fn read_anthropic(data: &[u8]) -> Reading {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return Reading::default();
    };
    match v["type"].as_str() {
        Some("message_start") => Reading {
            usage: anthropic_usage(&v["message"]["usage"], &Value::Null),
            ..Reading::default()
        },
        // Counts are cumulative; the relay keeps the largest it has seen of each.
        Some("message_delta") => Reading {
            usage: anthropic_usage(&v["usage"], &v["usage"]),
            finish: v["delta"]["stop_reason"].as_str().map(finish_reason),
            ..Reading::default()
        },
        Some("message_stop") => Reading {
            last: true,
            ..Reading::default()
        },
        Some("error") => Reading {
            last: true,
            error: true,
            ..Reading::default()
        },
        _ => Reading::default(),
    }
}

fn read_gemini(data: &[u8]) -> Reading {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return Reading::default();
    };
    if v.get("error").is_some() {
        return Reading {
            last: true,
            error: true,
            ..Reading::default()
        };
    }
    let finish = v["candidates"]
        .as_array()
        .and_then(|c| c.iter().find_map(|c| c["finishReason"].as_str()))
        .map(finish_reason);
    Reading {
        usage: gemini_usage(&v["usageMetadata"]),
        finish,
        ..Reading::default()
    }
}

/// A finish reason as a static string: the known values of OpenAI, Anthropic and Gemini,
/// else `other`.
fn finish_reason(raw: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        // OpenAI
        "stop",
        "length",
        "tool_calls",
        "content_filter",
        "function_call",
        // Anthropic
        "end_turn",
        "max_tokens",
        "stop_sequence",
        "tool_use",
        "pause_turn",
        "refusal",
        // Gemini
        "STOP",
        "MAX_TOKENS",
        "SAFETY",
        "RECITATION",
        "LANGUAGE",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "MALFORMED_FUNCTION_CALL",
        "OTHER",
    ];
    KNOWN.iter().copied().find(|k| *k == raw).unwrap_or("other")
}

/// Anthropic usage: input counts the cache reads and writes too, as OpenAI's prompt
/// tokens do.
fn anthropic_usage(input: &Value, output: &Value) -> Option<Usage> {
    if !input.is_object() {
        return None;
    }
    let n = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    Some(Usage {
        prompt_tokens: n(input, "input_tokens")
            + n(input, "cache_creation_input_tokens")
            + n(input, "cache_read_input_tokens"),
        completion_tokens: n(output, "output_tokens"),
    })
}

fn gemini_usage(meta: &Value) -> Option<Usage> {
    if !meta.is_object() {
        return None;
    }
    let n = |k: &str| meta[k].as_u64().unwrap_or(0);
    Some(Usage {
        prompt_tokens: n("promptTokenCount") + n("toolUsePromptTokenCount"),
        completion_tokens: n("candidatesTokenCount") + n("thoughtsTokenCount"),
    })
}

/// Anthropic's error shape: `{"type":"error","error":{"type","message"}}`.
fn anthropic_error(err: &ProxyError) -> Value {
    let kind = match err.status().as_u16() {
        400 => "invalid_request_error",
        404 => "not_found_error",
        413 => "request_too_large",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": err.to_string()}})
}

/// Google's error shape: `{"error":{"code","message","status"}}`.
fn gemini_error(err: &ProxyError) -> Value {
    let status = err.status().as_u16();
    let name = match status {
        400 | 413 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        429 => "RESOURCE_EXHAUSTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    };
    json!({"error": {"code": status, "message": err.to_string(), "status": name}})
}

fn to_bytes(v: &Value) -> Bytes {
    serde_json::to_vec(v).map(Bytes::from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_streams_end_at_message_stop_with_usage_from_start_and_delta() {
        let start = br#"{"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}"#;
        assert_eq!(
            Dialect::Anthropic.read(start).usage,
            Some(Usage {
                prompt_tokens: 15,
                completion_tokens: 0
            })
        );
        let delta = br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":7}}"#;
        let read = Dialect::Anthropic.read(delta);
        assert_eq!(read.finish, Some("end_turn"));
        assert_eq!(
            read.usage,
            Some(Usage {
                prompt_tokens: 0,
                completion_tokens: 7
            })
        );
        assert!(Dialect::Anthropic.read(br#"{"type":"message_stop"}"#).last);
        let error =
            Dialect::Anthropic.read(br#"{"type":"error","error":{"type":"overloaded_error"}}"#);
        assert!(error.error && error.last);
    }

    #[test]
    fn gemini_chunks_carry_finish_and_usage() {
        let chunk = br#"{"candidates":[{"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":6,"thoughtsTokenCount":2}}"#;
        let r = Dialect::Gemini.read(chunk);
        assert!(r.finish == Some("STOP") && !r.last);
        assert_eq!(
            r.usage,
            Some(Usage {
                prompt_tokens: 4,
                completion_tokens: 8
            })
        );
        assert!(Dialect::Gemini.read(br#"{"error":{"code":500}}"#).error);
    }

    #[test]
    fn errors_take_each_dialects_shape() {
        let err = ProxyError::UnknownModel {
            model: "x".into(),
            known: "y".into(),
        };
        let a: Value = serde_json::from_slice(&Dialect::Anthropic.error_body(&err)).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "not_found_error");
        let g: Value = serde_json::from_slice(&Dialect::Gemini.error_body(&err)).unwrap();
        assert_eq!(g["error"]["code"], 404);
        assert_eq!(g["error"]["status"], "NOT_FOUND");
        assert!(
            Dialect::Anthropic
                .error_event(&err)
                .starts_with(b"event: error\ndata: {")
        );
    }
}
