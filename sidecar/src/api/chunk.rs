//! Writing OpenAI responses: whole completions and `chat.completion.chunk` events, for
//! translators that turn another provider's answer into OpenAI's.

use bytes::Bytes;
use serde_json::{Value, json};

/// The stream's constant parts: every chunk of one stream has the same id, created and model.
#[derive(Clone, Debug)]
pub struct ChunkWriter {
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// `data: [DONE]`, the last event of every OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

// === impl ChunkWriter ===

impl ChunkWriter {
    pub fn new(id: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            created: unix_now(),
            model: model.into(),
        }
    }

    /// A chunk with one choice (index 0) carrying `delta` and `finish_reason`.
    pub fn delta(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        self.choice(0, delta, finish_reason)
    }

    /// A chunk for choice `index` (for `n > 1`).
    pub fn choice(&self, index: u32, delta: Value, finish_reason: Option<&str>) -> Bytes {
        event(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        }))
    }

    /// The usage chunk: no choices, only usage (what `stream_options.include_usage` adds).
    /// Translators always emit it; the relay removes it unless the client asked.
    pub fn usage(&self, usage: &Value) -> Bytes {
        event(&json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [], "usage": usage,
        }))
    }
}

/// An error event that ends a stream; the OpenAI SDKs raise `APIError` on it.
pub fn error_event(kind: &str, code: Option<&str>, message: &str) -> Bytes {
    event(&json!({"error": {"message": message, "type": kind, "param": null, "code": code}}))
}

/// One SSE data event.
pub fn event(v: &Value) -> Bytes {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"data: ");
    // Serializing a Value cannot fail.
    let _ = serde_json::to_writer(&mut out, v);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Seconds since the epoch, for `created`.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
