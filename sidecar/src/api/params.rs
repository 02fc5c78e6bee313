//! The typed view of an OpenAI chat request, for translators to other wire formats.
//!
//! OpenAI-compatible upstreams get the client's JSON untouched; only translators read it
//! through these types, so a field they do not know is never lost on the OpenAI path.
//! Field names and shapes follow OpenAI's Chat Completions reference.

use serde::Deserialize;
use serde_json::{Map, Value};

/// A chat completion request.
#[derive(Debug, Default, Deserialize)]
pub struct ChatParams {
    pub messages: Vec<Message>,
    #[serde(default)]
    pub max_tokens: Option<u64>,
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    #[serde(default)]
    pub temperature: Option<f64>,
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Not OpenAI's, but sent by many clients for providers that have it.
    #[serde(default)]
    pub top_k: Option<u64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    #[serde(default)]
    pub n: Option<u32>,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub tools: Option<Vec<Tool>>,
    #[serde(default)]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default)]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default)]
    pub response_format: Option<ResponseFormat>,
    #[serde(default)]
    pub reasoning_effort: Option<String>,
    #[serde(default)]
    pub logprobs: Option<bool>,
    #[serde(default)]
    pub top_logprobs: Option<u32>,
    #[serde(default)]
    pub presence_penalty: Option<f64>,
    #[serde(default)]
    pub frequency_penalty: Option<f64>,
    #[serde(default)]
    pub logit_bias: Option<Map<String, Value>>,
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Every other field, for translators that pass some through (e.g. `thinking`).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// One message, by role.
#[derive(Debug, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    System {
        content: Content,
    },
    Developer {
        content: Content,
    },
    User {
        content: Content,
    },
    Assistant {
        #[serde(default)]
        content: Option<Content>,
        #[serde(default)]
        tool_calls: Vec<ToolCall>,
        #[serde(default)]
        refusal: Option<String>,
        /// Reasoning text as DeepSeek and LiteLLM return it.
        #[serde(default)]
        reasoning_content: Option<String>,
        /// Provider reasoning blocks returned earlier, replayed verbatim (LiteLLM's shape).
        #[serde(default)]
        thinking_blocks: Vec<Value>,
        /// Provider data attached to the message (Google's `extra_content.google`).
        #[serde(default)]
        extra_content: Option<Value>,
    },
    Tool {
        tool_call_id: String,
        content: Content,
    },
}

/// Message content: a string, or typed parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    Text { text: String },
    ImageUrl { image_url: ImageUrl },
    InputAudio { input_audio: Value },
    File { file: Value },
    Refusal { refusal: String },
}

#[derive(Debug, Deserialize)]
pub struct ImageUrl {
    pub url: String,
    #[serde(default)]
    pub detail: Option<String>,
}

/// A tool call made by the assistant earlier in the conversation.
#[derive(Debug, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub function: FunctionCall,
    /// Provider data on the call (Google's `extra_content.google.thought_signature`).
    #[serde(default)]
    pub extra_content: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    /// JSON text, as OpenAI sends it.
    #[serde(default)]
    pub arguments: String,
}

#[derive(Debug, Deserialize)]
pub struct Tool {
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDef,
}

#[derive(Debug, Deserialize)]
pub struct FunctionDef {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub parameters: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `"auto" | "none" | "required"` or a named function.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    Mode(String),
    Named { function: NamedFunction },
}

#[derive(Debug, Deserialize)]
pub struct NamedFunction {
    pub name: String,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Debug, Deserialize)]
pub struct JsonSchemaFormat {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schema: Option<Value>,
    #[serde(default)]
    pub strict: Option<bool>,
}

/// `stop`: one string or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// A parsed `data:` URL.
#[derive(Debug, PartialEq, Eq)]
pub struct DataUrl<'a> {
    pub media_type: &'a str,
    pub base64: &'a str,
}

// === impl ChatParams ===

impl ChatParams {
    /// `max_completion_tokens`, else `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        }
    }
}

// === impl Content ===

impl Content {
    /// The text parts joined (images and other parts left out).
    pub fn text(&self) -> String {
        match self {
            Content::Text(t) => t.clone(),
            Content::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

// === impl DataUrl ===

impl<'a> DataUrl<'a> {
    /// Parses `data:<media type>;base64,<data>`; `None` for anything else.
    pub fn parse(url: &'a str) -> Option<Self> {
        let rest = url.strip_prefix("data:")?;
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?;
        if media_type.is_empty() {
            return None;
        }
        Some(Self {
            media_type,
            base64: data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_message_shape_openai_documents() {
        let body = serde_json::json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "developer", "content": [{"type": "text", "text": "dev"}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "low"}}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
            "stop": "END",
            "thinking": {"type": "enabled", "budget_tokens": 1024}
        });
        let p = ChatParams::deserialize(&body).unwrap();
        assert_eq!(p.messages.len(), 5);
        assert!(
            matches!(&p.messages[3], Message::Assistant { tool_calls, .. } if tool_calls[0].function.name == "get_weather")
        );
        assert!(
            matches!(&p.tool_choice, Some(ToolChoice::Named { function }) if function.name == "get_weather")
        );
        assert!(matches!(
            &p.response_format,
            Some(ResponseFormat::JsonSchema { .. })
        ));
        assert_eq!(p.stop_sequences(), ["END"]);
        assert!(p.extra.contains_key("thinking"));
        let Message::User { content } = &p.messages[2] else {
            panic!()
        };
        let Content::Parts(parts) = content else {
            panic!()
        };
        let ContentPart::ImageUrl { image_url } = &parts[1] else {
            panic!()
        };
        assert_eq!(
            DataUrl::parse(&image_url.url),
            Some(DataUrl {
                media_type: "image/png",
                base64: "iVBORw0KGgo="
            })
        );
    }

    #[test]
    fn data_urls_must_be_base64() {
        assert_eq!(DataUrl::parse("https://x/y.png"), None);
        assert_eq!(DataUrl::parse("data:image/png,raw"), None);
        assert_eq!(DataUrl::parse("data:;base64,xx"), None);
    }
}
