//! Anthropic Messages API <-> OpenAI Chat Completions.
//!
//! `request` turns an OpenAI chat request into a Messages request, `response` a whole
//! Message into a `chat.completion`, and `stream` Anthropic's named SSE events into
//! `chat.completion.chunk`s. The mapping, field by field, is in
//! `docs/providers-anthropic.md`; every function here is pure so golden files test it
//! (`testdata/`, see its README for where each file comes from).

use serde_json::{Map, Value, json};

mod request;
mod response;
mod stream;

pub use request::chat_request;
pub use response::chat_response;
pub use stream::ChatStream;

/// The tool that carries `response_format: {"type":"json_object"}`: the model is forced
/// to call it with a bare object schema, and its input comes back as the message content.
/// The name is reserved: a client tool with this name is refused (400), so an answer that
/// calls it is always ours to rewrite.
pub(crate) const JSON_TOOL: &str = "json_response";

/// Token counts from an Anthropic `usage` object (a Message's, or a stream's
/// `message_start` / `message_delta`, whose counts are cumulative: later values replace
/// earlier ones, never add).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TokenCounts {
    input: u64,
    output: u64,
    cache_creation: u64,
    cache_read: u64,
    thinking: Option<u64>,
}

// === impl TokenCounts ===

impl TokenCounts {
    /// Overwrites the counts `usage` gives; absent or null fields keep their value.
    pub(crate) fn update(&mut self, usage: &Value) {
        let count = |key: &str| usage.get(key).and_then(Value::as_u64);
        if let Some(v) = count("input_tokens") {
            self.input = v;
        }
        if let Some(v) = count("output_tokens") {
            self.output = v;
        }
        if let Some(v) = count("cache_creation_input_tokens") {
            self.cache_creation = v;
        }
        if let Some(v) = count("cache_read_input_tokens") {
            self.cache_read = v;
        }
        if let Some(v) = usage
            .get("output_tokens_details")
            .and_then(|d| d.get("thinking_tokens"))
            .and_then(Value::as_u64)
        {
            self.thinking = Some(v);
        }
    }

    /// OpenAI's `usage`. Anthropic's `input_tokens` counts only what follows the last
    /// cache breakpoint, so the prompt is input + cache writes + cache reads; the reads
    /// are OpenAI's `cached_tokens`. The two cache counts are also given under their
    /// Anthropic names (as LiteLLM does) when either is non-zero.
    pub(crate) fn openai(&self) -> Value {
        let prompt = self
            .input
            .saturating_add(self.cache_creation)
            .saturating_add(self.cache_read);
        let mut usage = Map::new();
        usage.insert("prompt_tokens".into(), json!(prompt));
        usage.insert("completion_tokens".into(), json!(self.output));
        usage.insert(
            "total_tokens".into(),
            json!(prompt.saturating_add(self.output)),
        );
        usage.insert(
            "prompt_tokens_details".into(),
            json!({"cached_tokens": self.cache_read}),
        );
        if let Some(thinking) = self.thinking {
            usage.insert(
                "completion_tokens_details".into(),
                json!({"reasoning_tokens": thinking}),
            );
        }
        if self.cache_creation > 0 || self.cache_read > 0 {
            usage.insert(
                "cache_creation_input_tokens".into(),
                json!(self.cache_creation),
            );
            usage.insert("cache_read_input_tokens".into(), json!(self.cache_read));
        }
        Value::Object(usage)
    }
}

/// OpenAI's `finish_reason` for an Anthropic `stop_reason`.
///
/// `pause_turn` only happens with server tools, which this translation never sends;
/// unknown reasons (the API may add some) read as a normal stop.
pub(crate) fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        Some("end_turn" | "stop_sequence" | "pause_turn") | None => "stop",
        Some(other) => {
            tracing::debug!(stop_reason = other, "unknown Anthropic stop_reason");
            "stop"
        }
    }
}

#[cfg(test)]
mod tests;
