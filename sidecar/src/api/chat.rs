//! Chat completion and embedding requests, usage, and the peek at streamed chunks.

use std::borrow::Cow;

use bytes::Bytes;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::ProxyError;

/// An OpenAI-style request body: the model alias, the streaming flags, and every other
/// field exactly as the client sent it.
#[derive(Debug)]
pub struct ModelRequest {
    pub model: String,
    pub stream: bool,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    fields: Map<String, Value>,
}

/// Token counts as OpenAI reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

/// The few fields of a `chat.completion.chunk` (or a whole completion) the relay acts on.
#[derive(Debug, Default, Deserialize)]
pub struct ChunkPeek<'a> {
    #[serde(default, borrow)]
    pub choices: Vec<ChoicePeek<'a>>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub error: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ChoicePeek<'a> {
    #[serde(default, borrow)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct UsageOnly {
    #[serde(default)]
    usage: Option<Usage>,
}

/// The request body as sent upstream: the client's fields with the model replaced and,
/// for streams, usage requested.
struct Upstream<'a> {
    request: &'a ModelRequest,
    model: &'a str,
    stream_usage: bool,
}

// === impl ModelRequest ===

impl ModelRequest {
    /// Reads a request body. Errors are the 400s OpenAI itself would give.
    pub fn parse(body: &[u8]) -> Result<Self, ProxyError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ProxyError::BadRequest(format!("request body is not valid JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(ProxyError::BadRequest(
                "request body must be a JSON object".into(),
            ));
        };
        let model = match fields.get("model") {
            Some(Value::String(m)) if !m.is_empty() => m.clone(),
            Some(_) => return Err(ProxyError::BadRequest("`model` must be a string".into())),
            None => return Err(ProxyError::BadRequest("you must provide a `model`".into())),
        };
        let stream = match fields.get("stream") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ProxyError::BadRequest("`stream` must be a boolean".into())),
        };
        let include_usage = fields
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(Self {
            model,
            stream,
            include_usage,
            fields,
        })
    }

    /// The typed view translators read. Errors are the client's: 400.
    pub fn chat(&self) -> Result<super::params::ChatParams, ProxyError> {
        use serde::Deserialize;
        let body = Value::Object(self.fields.clone());
        super::params::ChatParams::deserialize(&body)
            .map_err(|e| ProxyError::BadRequest(format!("invalid chat request: {e}")))
    }

    /// A native request whose model is in the URL (Gemini): the body is any JSON object
    /// and is passed on unchanged.
    pub fn native(body: &[u8], model: &str, stream: bool) -> Result<Self, ProxyError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ProxyError::BadRequest(format!("request body is not valid JSON: {e}")))?;
        let Value::Object(fields) = value else {
            return Err(ProxyError::BadRequest(
                "request body must be a JSON object".into(),
            ));
        };
        Ok(Self {
            model: model.to_string(),
            stream,
            include_usage: false,
            fields,
        })
    }

    /// Checks the shape of a chat request beyond `model`.
    pub fn require_messages(&self) -> Result<(), ProxyError> {
        match self.fields.get("messages") {
            Some(Value::Array(m)) if !m.is_empty() => Ok(()),
            Some(Value::Array(_)) => Err(ProxyError::BadRequest(
                "`messages` must not be empty".into(),
            )),
            Some(_) => Err(ProxyError::BadRequest("`messages` must be an array".into())),
            None => Err(ProxyError::BadRequest("you must provide `messages`".into())),
        }
    }

    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    /// The body for one upstream: `model` replaced by the target's model; for a stream
    /// with `stream_usage`, `stream_options.include_usage` set so usage can be counted.
    pub fn upstream_body(&self, model: &str, stream_usage: bool) -> Bytes {
        let view = Upstream {
            request: self,
            model,
            stream_usage: stream_usage && self.stream,
        };
        serde_json::to_vec(&view)
            .map(Bytes::from)
            .unwrap_or_default()
    }
}

// === impl Usage ===

impl Usage {
    /// Each count the larger of the two: streams report cumulative counts, some in pieces
    /// (Anthropic: input at the start, output at the end).
    pub fn merge(self, other: Usage) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens.max(other.prompt_tokens),
            completion_tokens: self.completion_tokens.max(other.completion_tokens),
        }
    }

    /// The `usage` of a whole (non-streamed) response body, if it has one.
    pub fn of_body(body: &[u8]) -> Option<Self> {
        serde_json::from_slice::<UsageOnly>(body)
            .ok()
            .and_then(|u| u.usage)
    }
}

// === impl Upstream ===

impl Serialize for Upstream<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = &self.request.fields;
        let mut map = s.serialize_map(Some(fields.len() + 1))?;
        for (k, v) in fields {
            match k.as_str() {
                "model" => map.serialize_entry(k, self.model)?,
                "stream_options" if self.stream_usage => {}
                _ => map.serialize_entry(k, v)?,
            }
        }
        if self.stream_usage {
            let mut options = match fields.get("stream_options") {
                Some(Value::Object(o)) => o.clone(),
                _ => Map::new(),
            };
            options.insert("include_usage".into(), Value::Bool(true));
            map.serialize_entry("stream_options", &options)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ModelRequest, ProxyError> {
        ModelRequest::parse(s.as_bytes())
    }

    #[test]
    fn reads_model_and_stream_flags() {
        let r = parse(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(r.model, "m");
        assert!(r.stream && r.include_usage);
        r.require_messages().unwrap();
    }

    #[test]
    fn malformed_requests_get_clear_errors() {
        for (body, needle) in [
            ("{", "not valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"messages":[]}"#, "provide a `model`"),
            (r#"{"model":3}"#, "must be a string"),
            (r#"{"model":"m","stream":"yes"}"#, "boolean"),
        ] {
            let err = parse(body).unwrap_err();
            assert_eq!(err.status(), 400);
            assert!(err.to_string().contains(needle), "{body}: {err}");
        }
        let no_messages = parse(r#"{"model":"m","messages":[]}"#).unwrap();
        assert!(no_messages.require_messages().is_err());
    }

    #[test]
    fn upstream_body_replaces_model_and_keeps_every_other_field() {
        let r = parse(r#"{"model":"alias","temperature":0.2,"tools":[{"type":"function"}],"messages":[],"x_new_field":{"a":1}}"#).unwrap();
        let v: Value = serde_json::from_slice(&r.upstream_body("gpt-4o", true)).unwrap();
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["temperature"], 0.2);
        assert_eq!(v["x_new_field"]["a"], 1);
        assert_eq!(v["tools"][0]["type"], "function");
        // Not a stream: no stream_options added.
        assert!(v.get("stream_options").is_none());
    }

    #[test]
    fn streams_ask_for_usage_and_keep_other_stream_options() {
        let r = parse(r#"{"model":"a","stream":true,"stream_options":{"x":1}}"#).unwrap();
        let v: Value = serde_json::from_slice(&r.upstream_body("b", true)).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["x"], 1);
        assert!(!r.include_usage);
        let v: Value = serde_json::from_slice(&r.upstream_body("b", false)).unwrap();
        assert!(v["stream_options"].get("include_usage").is_none());
    }

    #[test]
    fn peeks_at_chunks() {
        let chunk = br#"{"id":"c","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}],"usage":null}"#;
        let p: ChunkPeek = serde_json::from_slice(chunk).unwrap();
        assert_eq!(p.choices[0].finish_reason.as_deref(), Some("stop"));
        assert!(p.usage.is_none());
        let usage = br#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#;
        let p: ChunkPeek = serde_json::from_slice(usage).unwrap();
        assert_eq!(
            p.usage,
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 5
            })
        );
        let err: ChunkPeek = serde_json::from_slice(br#"{"error":{"message":"x"}}"#).unwrap();
        assert!(err.error.is_some());
    }
}
