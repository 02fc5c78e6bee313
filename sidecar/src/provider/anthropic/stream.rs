//! Anthropic stream events -> OpenAI `chat.completion.chunk`s.
//!
//! Anthropic names every event and repeats the name as the JSON `"type"`; only the JSON
//! is read. Content blocks are numbered across all kinds, so a tool call's OpenAI
//! `index` is its ordinal among `tool_use` blocks, never the block index (a text block
//! before it would otherwise make the first call index 1).

use bytes::Bytes;
use serde_json::{Value, json};

use super::{JSON_TOOL, TokenCounts, finish_reason};
use crate::api::chunk::{ChunkWriter, DONE, error_event};
use crate::stream::sse::Event;

/// Anthropic stream events -> OpenAI chunks (see `Wire`'s stream contract).
#[derive(Debug)]
pub struct ChatStream {
    /// Chunks carry the client's alias as `model`, and the message id from
    /// `message_start`.
    writer: ChunkWriter,
    /// The role chunk is out.
    started: bool,
    /// Open content blocks by Anthropic index (rarely more than one).
    blocks: Vec<(u64, Block)>,
    next_tool: u64,
    /// A client tool was called (the json_object tool does not count).
    called_tools: bool,
    json_answer: bool,
    usage: TokenCounts,
    finish_sent: bool,
    /// The mapped `finish_reason` once `message_delta` gave one.
    finish: Option<&'static str>,
    done: bool,
}

#[derive(Debug)]
enum Block {
    Text,
    Tool {
        ordinal: u64,
        has_args: bool,
    },
    /// The `json_response` tool: its input is the answer's content.
    JsonAnswer {
        has_args: bool,
    },
    Thinking {
        text: String,
        signature: String,
    },
    Other,
}

// === impl ChatStream ===

impl ChatStream {
    pub fn new(model: &str) -> Self {
        Self {
            writer: ChunkWriter::new("msg_unknown", model),
            started: false,
            blocks: Vec::new(),
            next_tool: 0,
            called_tools: false,
            json_answer: false,
            usage: TokenCounts::default(),
            finish_sent: false,
            finish: None,
            done: false,
        }
    }

    /// Translates one event; events that are not JSON, unknown types and `ping` say
    /// nothing. After the end (`message_stop` or `error`) everything is ignored.
    pub fn event(&mut self, event: &Event, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        let Some(data) = event.data() else { return };
        let Ok(v) = serde_json::from_slice::<Value>(&data) else {
            return;
        };
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => self.message_start(&v["message"], out),
            Some("content_block_start") => self.block_start(&v, out),
            Some("content_block_delta") => self.block_delta(&v, out),
            Some("content_block_stop") => self.block_stop(&v, out),
            Some("message_delta") => self.message_delta(&v, out),
            Some("message_stop") => self.message_stop(out),
            Some("error") => {
                let kind = v["error"]["type"].as_str().unwrap_or("api_error");
                let message = v["error"]["message"]
                    .as_str()
                    .unwrap_or("the upstream stream failed");
                out.push(error_event(kind, Some(kind), message));
                self.done = true;
            }
            _ => {}
        }
    }

    /// The upstream stream ended; an answer without `message_stop` is incomplete.
    pub fn end(&mut self, out: &mut Vec<Bytes>) {
        if self.done {
            return;
        }
        self.done = true;
        out.push(error_event(
            "api_error",
            Some("api_error"),
            "upstream stream ended prematurely",
        ));
    }

    /// The writer, after the role chunk (sent first if `message_start` never came).
    fn writer(&mut self, out: &mut Vec<Bytes>) -> &ChunkWriter {
        if !self.started {
            self.started = true;
            out.push(
                self.writer
                    .delta(json!({"role": "assistant", "content": ""}), None),
            );
        }
        &self.writer
    }

    fn delta(&mut self, delta: Value, out: &mut Vec<Bytes>) {
        let chunk = self.writer(out).delta(delta, None);
        out.push(chunk);
    }

    fn message_start(&mut self, message: &Value, out: &mut Vec<Bytes>) {
        if let Some(u) = message.get("usage") {
            self.usage.update(u);
        }
        if self.started {
            return;
        }
        if let Some(id) = message.get("id").and_then(Value::as_str) {
            self.writer.id = id.to_string();
        }
        self.writer(out);
    }

    fn block_start(&mut self, v: &Value, out: &mut Vec<Bytes>) {
        let Some(index) = v.get("index").and_then(Value::as_u64) else {
            return;
        };
        let block = &v["content_block"];
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        let state = match kind {
            "text" => {
                if let Some(t) = block.get("text").and_then(Value::as_str)
                    && !t.is_empty()
                {
                    self.delta(json!({"content": t}), out);
                }
                Block::Text
            }
            "tool_use" if block.get("name").and_then(Value::as_str) == Some(JSON_TOOL) => {
                self.json_answer = true;
                Block::JsonAnswer { has_args: false }
            }
            "tool_use" => {
                let ordinal = self.next_tool;
                self.next_tool += 1;
                self.called_tools = true;
                self.delta(
                    json!({"tool_calls": [{
                        "index": ordinal,
                        "id": block.get("id").cloned().unwrap_or(Value::Null),
                        "type": "function",
                        "function": {"name": block.get("name").cloned().unwrap_or(Value::Null), "arguments": ""},
                    }]}),
                    out,
                );
                Block::Tool {
                    ordinal,
                    has_args: false,
                }
            }
            "thinking" => Block::Thinking {
                text: block
                    .get("thinking")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                signature: block
                    .get("signature")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            },
            "redacted_thinking" => {
                let data = block.get("data").cloned().unwrap_or(Value::Null);
                self.delta(
                    json!({"thinking_blocks": [{"type": "redacted_thinking", "data": data}]}),
                    out,
                );
                Block::Other
            }
            _ => Block::Other,
        };
        self.blocks.retain(|(i, _)| *i != index);
        self.blocks.push((index, state));
    }

    fn block_delta(&mut self, v: &Value, out: &mut Vec<Bytes>) {
        let Some(index) = v.get("index").and_then(Value::as_u64) else {
            return;
        };
        let delta = &v["delta"];
        let text = |key: &str| delta.get(key).and_then(Value::as_str).unwrap_or("");
        let chunk = match (delta.get("type").and_then(Value::as_str), self.block(index)) {
            (Some("text_delta"), Some(Block::Text)) => {
                let t = text("text");
                (!t.is_empty()).then(|| json!({"content": t}))
            }
            (Some("input_json_delta"), Some(Block::Tool { ordinal, has_args })) => {
                let part = text("partial_json");
                if part.is_empty() {
                    None
                } else {
                    *has_args = true;
                    Some(
                        json!({"tool_calls": [{"index": *ordinal, "function": {"arguments": part}}]}),
                    )
                }
            }
            (Some("input_json_delta"), Some(Block::JsonAnswer { has_args })) => {
                let part = text("partial_json");
                if part.is_empty() {
                    None
                } else {
                    *has_args = true;
                    Some(json!({"content": part}))
                }
            }
            (Some("thinking_delta"), Some(Block::Thinking { text: buf, .. })) => {
                let t = text("thinking");
                buf.push_str(t);
                (!t.is_empty()).then(|| json!({"reasoning_content": t}))
            }
            (Some("signature_delta"), Some(Block::Thinking { signature, .. })) => {
                signature.push_str(text("signature"));
                None
            }
            _ => None,
        };
        if let Some(delta) = chunk {
            self.delta(delta, out);
        }
    }

    fn block_stop(&mut self, v: &Value, out: &mut Vec<Bytes>) {
        let Some(index) = v.get("index").and_then(Value::as_u64) else {
            return;
        };
        let position = self.blocks.iter().position(|(i, _)| *i == index);
        let chunk = match position.map(|p| self.blocks.swap_remove(p).1) {
            // A call without input may stream no delta at all; clients must see "{}".
            Some(Block::Tool {
                ordinal,
                has_args: false,
            }) => {
                Some(json!({"tool_calls": [{"index": ordinal, "function": {"arguments": "{}"}}]}))
            }
            Some(Block::JsonAnswer { has_args: false }) => Some(json!({"content": "{}"})),
            Some(Block::Thinking { text, signature }) => Some(json!({"thinking_blocks": [
                {"type": "thinking", "thinking": text, "signature": signature}
            ]})),
            _ => None,
        };
        if let Some(delta) = chunk {
            self.delta(delta, out);
        }
    }

    fn block(&mut self, index: u64) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    fn message_delta(&mut self, v: &Value, out: &mut Vec<Bytes>) {
        if let Some(u) = v.get("usage") {
            self.usage.update(u);
        }
        if let Some(reason) = v["delta"].get("stop_reason").and_then(Value::as_str) {
            self.finish = Some(finish_reason(Some(reason)));
            self.send_finish(out);
        }
    }

    fn message_stop(&mut self, out: &mut Vec<Bytes>) {
        self.send_finish(out);
        let usage = self.usage.openai();
        let chunk = self.writer(out).usage(&usage);
        out.push(chunk);
        out.push(Bytes::from_static(DONE));
        self.done = true;
    }

    fn send_finish(&mut self, out: &mut Vec<Bytes>) {
        if self.finish_sent {
            return;
        }
        self.finish_sent = true;
        let mut finish = self.finish.unwrap_or("stop");
        if finish == "tool_calls" && self.json_answer && !self.called_tools {
            finish = "stop";
        }
        let chunk = self.writer(out).delta(json!({}), Some(finish));
        out.push(chunk);
    }
}
