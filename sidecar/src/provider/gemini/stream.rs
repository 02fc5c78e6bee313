//! `streamGenerateContent?alt=sse` events -> OpenAI `chat.completion.chunk` events.
//!
//! Every Gemini event is a whole `GenerateContentResponse` holding only the new parts.
//! Text and thought parts become `content` / `reasoning_content` deltas; a
//! `functionCall` arrives whole and becomes one `tool_calls` delta whose `index` counts
//! the calls of its choice across the whole stream (parallel calls come in separate
//! events, each at `parts[0]`). The usage chunk uses the last `usageMetadata` (running
//! totals, never summed).

use bytes::Bytes;
use serde_json::{Value, json};

use super::response::{
    block_reason, candidate_index, completion_id, error_message, finish_reason, google_signature,
    is_thought, parts, tool_call, usage,
};
use crate::api::chunk::{ChunkWriter, DONE, error_event};
use crate::stream::sse::Event;

/// Gemini stream events -> OpenAI chunks (see `Wire`'s stream contract).
#[derive(Debug)]
pub struct ChatStream {
    model: String,
    /// Set from the first event's `responseId`.
    writer: Option<ChunkWriter>,
    choices: Vec<ChoiceState>,
    usage: Option<Value>,
    /// `[DONE]` or an error event was written: nothing more.
    closed: bool,
}

#[derive(Debug)]
struct ChoiceState {
    index: u32,
    tool_calls: usize,
    finished: bool,
}

// === impl ChatStream ===

impl ChatStream {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            writer: None,
            choices: Vec::new(),
            usage: None,
            closed: false,
        }
    }

    pub fn event(&mut self, event: &Event, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        let Some(data) = event.data() else { return };
        let answer: Value = match serde_json::from_slice(&data) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                self.fail(
                    out,
                    None,
                    "Gemini sent a stream event that is not a JSON object",
                );
                return;
            }
        };
        if let Some(error) = answer.get("error") {
            let code = error.get("status").and_then(Value::as_str);
            self.fail(
                out,
                code,
                &format!("Gemini stream failed: {}", error_message(error)),
            );
            return;
        }
        let writer = self
            .writer
            .get_or_insert_with(|| ChunkWriter::new(completion_id(&answer), self.model.clone()))
            .clone();
        if let Some(meta) = answer.get("usageMetadata") {
            self.usage = Some(meta.clone());
        }
        let candidates = answer
            .get("candidates")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if candidates.is_empty() && block_reason(&answer).is_some() {
            // The prompt was blocked: an empty answer ending in `content_filter`.
            let choice = self.choice(0, &writer, out);
            choice.finished = true;
            out.push(writer.delta(json!({}), Some("content_filter")));
        }
        for candidate in candidates {
            let index = candidate_index(candidate);
            let choice = self.choice(index, &writer, out);
            if choice.finished {
                continue;
            }
            for part in parts(candidate) {
                let sig = part.get("thoughtSignature").and_then(Value::as_str);
                let delta = if let Some(call) = part.get("functionCall") {
                    let call = tool_call(call, sig, Some(choice.tool_calls));
                    choice.tool_calls += 1;
                    json!({"tool_calls": [call]})
                } else {
                    let text = part.get("text").and_then(Value::as_str).unwrap_or_default();
                    let key = if is_thought(part) {
                        "reasoning_content"
                    } else {
                        "content"
                    };
                    let mut delta = json!({key: text});
                    if let Some(sig) = sig {
                        delta["extra_content"] = google_signature(sig);
                    } else if text.is_empty() {
                        continue;
                    }
                    delta
                };
                out.push(writer.choice(index, delta, None));
            }
            if let Some(reason) = candidate.get("finishReason").and_then(Value::as_str) {
                choice.finished = true;
                let reason = finish_reason(Some(reason), choice.tool_calls > 0);
                out.push(writer.choice(index, json!({}), Some(reason)));
            }
        }
        if !self.choices.is_empty() && self.choices.iter().all(|c| c.finished) {
            self.close(out);
        }
    }

    /// The upstream ended: close a finished answer, or say it was cut short.
    pub fn end(&mut self, out: &mut Vec<Bytes>) {
        if self.closed {
            return;
        }
        if self.choices.iter().any(|c| c.finished) {
            self.close(out);
        } else {
            self.fail(
                out,
                None,
                "the Gemini stream ended before the answer was complete",
            );
        }
    }

    /// The state of choice `index`, writing its role chunk the first time.
    fn choice(
        &mut self,
        index: u32,
        writer: &ChunkWriter,
        out: &mut Vec<Bytes>,
    ) -> &mut ChoiceState {
        let pos = match self.choices.iter().position(|c| c.index == index) {
            Some(pos) => pos,
            None => {
                out.push(writer.choice(index, json!({"role": "assistant", "content": ""}), None));
                self.choices.push(ChoiceState {
                    index,
                    tool_calls: 0,
                    finished: false,
                });
                self.choices.len() - 1
            }
        };
        &mut self.choices[pos]
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        let writer = self.writer.get_or_insert_with(|| {
            ChunkWriter::new(completion_id(&Value::Null), self.model.clone())
        });
        out.push(writer.usage(&usage(self.usage.as_ref())));
        out.push(Bytes::from_static(DONE));
        self.closed = true;
    }

    fn fail(&mut self, out: &mut Vec<Bytes>, code: Option<&str>, message: &str) {
        out.push(error_event("upstream_error", code, message));
        self.closed = true;
    }
}
