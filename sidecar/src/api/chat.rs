//! Chat completion and embedding requests, usage, and the peek at streamed chunks.

use std::borrow::Cow;
use std::ops::Range;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::error::ProxyError;

/// An OpenAI-style request body: the model alias, the streaming flags, and every other
/// field exactly as the client sent it.
///
/// Only the top level is split into fields; their values stay raw JSON text, so a large
/// body (long histories, data-URL images) is scanned once and copied, never built into a
/// tree and re-escaped, and numbers and strings reach the upstream byte for byte.
#[derive(Debug)]
pub struct ModelRequest {
    pub model: String,
    pub stream: bool,
    /// The client asked for a final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The body as received (shared, not copied), for translators that read it whole.
    body: Bytes,
    /// Each top-level field: its name and where its value lies in `body`.
    fields: Vec<(String, Range<usize>)>,
}

/// The top-level fields of a JSON object, in order, values borrowed unparsed.
struct Fields<'a>(Vec<(String, &'a RawValue)>);

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

// === impl ModelRequest ===

impl ModelRequest {
    /// Reads a request body. Errors are the 400s OpenAI itself would give.
    pub fn parse(body: impl Into<Bytes>) -> Result<Self, ProxyError> {
        let body = body.into();
        let fields = Self::fields(&body)?;
        let raw = |name: &str| find(&body, &fields, name);
        let model = match raw("model") {
            Some(raw) => match serde_json::from_str::<String>(raw) {
                Ok(m) if !m.is_empty() => m,
                _ => return Err(ProxyError::BadRequest("`model` must be a string".into())),
            },
            None => return Err(ProxyError::BadRequest("you must provide a `model`".into())),
        };
        let stream = match raw("stream") {
            None | Some("null") | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(ProxyError::BadRequest("`stream` must be a boolean".into())),
        };
        let include_usage = raw("stream_options")
            .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
            .and_then(|o| o.get("include_usage").and_then(Value::as_bool))
            .unwrap_or(false);
        Ok(Self {
            model,
            stream,
            include_usage,
            body,
            fields,
        })
    }

    /// A native request whose model is in the URL (Gemini): the body is any JSON object
    /// and is passed on unchanged.
    pub fn native(body: Bytes, model: &str, stream: bool) -> Result<Self, ProxyError> {
        let fields = Self::fields(&body)?;
        Ok(Self {
            model: model.to_string(),
            stream,
            include_usage: false,
            body,
            fields,
        })
    }

    /// The top-level fields and where their values lie: no value is copied.
    fn fields(body: &[u8]) -> Result<Vec<(String, Range<usize>)>, ProxyError> {
        let base = body.as_ptr() as usize;
        match serde_json::from_slice::<Fields>(body) {
            Ok(Fields(fields)) => Ok(fields
                .into_iter()
                .map(|(key, raw)| {
                    // The raw value is a slice of `body`: its address gives its offset.
                    let start = raw.get().as_ptr() as usize - base;
                    (key, start..start + raw.get().len())
                })
                .collect()),
            Err(e) if e.is_data() => Err(ProxyError::BadRequest(
                "request body must be a JSON object".into(),
            )),
            Err(e) => Err(ProxyError::BadRequest(format!(
                "request body is not valid JSON: {e}"
            ))),
        }
    }

    /// The typed view translators read. Errors are the client's: 400.
    pub fn chat(&self) -> Result<super::params::ChatParams, ProxyError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ProxyError::BadRequest(format!("invalid chat request: {e}")))
    }

    /// Checks the shape of a chat request beyond `model`, without parsing the messages.
    pub fn require_messages(&self) -> Result<(), ProxyError> {
        let Some(raw) = self.raw("messages") else {
            return Err(ProxyError::BadRequest("you must provide `messages`".into()));
        };
        let text = raw.trim();
        let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) else {
            return Err(ProxyError::BadRequest("`messages` must be an array".into()));
        };
        if inner.trim().is_empty() {
            return Err(ProxyError::BadRequest(
                "`messages` must not be empty".into(),
            ));
        }
        Ok(())
    }

    /// One top-level field, parsed.
    pub fn field(&self, name: &str) -> Option<Value> {
        self.raw(name)
            .and_then(|raw| serde_json::from_str(raw).ok())
    }

    pub fn has_field(&self, name: &str) -> bool {
        self.raw(name).is_some()
    }

    /// The body as the client sent it.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The client's output limit: `max_completion_tokens`, `max_tokens`, or Gemini's
    /// `generationConfig.maxOutputTokens`.
    pub fn max_tokens(&self) -> Option<u64> {
        let top = |name| {
            self.raw(name)
                .and_then(|raw| raw.trim().parse::<u64>().ok())
        };
        top("max_completion_tokens")
            .or_else(|| top("max_tokens"))
            .or_else(|| {
                self.field("generationConfig")
                    .and_then(|c| c.get("maxOutputTokens").and_then(Value::as_u64))
            })
    }

    /// The tokens a provider counts against its rate limit before answering: the prompt's
    /// estimate plus the output limit (as OpenAI counts them).
    pub fn rate_limit_tokens(&self) -> u64 {
        crate::cost::estimate_request_tokens(&self.body) + self.max_tokens().unwrap_or(0)
    }

    /// The OpenAI `user` field.
    pub fn user(&self) -> Option<String> {
        match self.field("user") {
            Some(Value::String(u)) => Some(u),
            _ => None,
        }
    }

    /// This request with its output limit set to `n`: the field the client used
    /// (`max_completion_tokens`, `max_tokens`), else `max_tokens` (the most widely read),
    /// or Gemini's `generationConfig.maxOutputTokens` for a native Gemini call.
    pub fn with_max_tokens(&self, n: u64, gemini: bool) -> Result<ModelRequest, ProxyError> {
        let (name, value) = if gemini {
            let mut config = match self.field("generationConfig") {
                Some(Value::Object(o)) => o,
                _ => Map::new(),
            };
            config.insert("maxOutputTokens".into(), Value::from(n));
            ("generationConfig", Value::Object(config).to_string())
        } else if self.has_field("max_completion_tokens") {
            ("max_completion_tokens", n.to_string())
        } else {
            ("max_tokens", n.to_string())
        };
        let mut out = Vec::with_capacity(self.body.len() + 32);
        out.push(b'{');
        let mut put = |key: &str, value: &[u8]| {
            if out.len() > 1 {
                out.push(b',');
            }
            let _ = serde_json::to_writer(&mut out, key);
            out.push(b':');
            out.extend_from_slice(value);
        };
        for (key, range) in &self.fields {
            if key != name {
                put(key, &self.body[range.clone()]);
            }
        }
        put(name, value.as_bytes());
        out.push(b'}');
        let mut request = Self {
            body: Bytes::from(out),
            fields: Vec::new(),
            model: self.model.clone(),
            stream: self.stream,
            include_usage: self.include_usage,
        };
        request.fields = Self::fields(&request.body)?;
        Ok(request)
    }

    /// One top-level field's JSON text, as the client wrote it.
    pub fn raw_field(&self, name: &str) -> Option<&str> {
        find(&self.body, &self.fields, name)
    }

    fn raw(&self, name: &str) -> Option<&str> {
        self.raw_field(name)
    }

    /// The body for one upstream: `model` replaced by the target's model; for a stream
    /// with `stream_usage`, `stream_options.include_usage` set so usage can be counted.
    /// Every other field is copied as the client wrote it.
    pub fn upstream_body(&self, model: &str, stream_usage: bool) -> Bytes {
        let stream_usage = stream_usage && self.stream;
        let mut out = Vec::with_capacity(self.body.len() + 64);
        out.push(b'{');
        let put = |out: &mut Vec<u8>, key: &str, value: &[u8]| {
            if out.len() > 1 {
                out.push(b',');
            }
            // Writing a string into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, key);
            out.push(b':');
            out.extend_from_slice(value);
        };
        for (key, range) in &self.fields {
            match key.as_str() {
                "model" => put(
                    &mut out,
                    key,
                    &serde_json::to_vec(model).unwrap_or_default(),
                ),
                "stream_options" if stream_usage => {}
                _ => put(&mut out, key, &self.body[range.clone()]),
            }
        }
        if stream_usage {
            let mut options = match self.field("stream_options") {
                Some(Value::Object(o)) => o,
                _ => Map::new(),
            };
            options.insert("include_usage".into(), Value::Bool(true));
            put(
                &mut out,
                "stream_options",
                &serde_json::to_vec(&options).unwrap_or_default(),
            );
        }
        out.push(b'}');
        Bytes::from(out)
    }
}

/// The JSON text of field `name` (the last one, as JSON parsers take for duplicates).
fn find<'a>(body: &'a [u8], fields: &[(String, Range<usize>)], name: &str) -> Option<&'a str> {
    let (_, range) = fields.iter().rev().find(|(k, _)| k == name)?;
    std::str::from_utf8(body.get(range.clone())?).ok()
}

// === impl Fields ===

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A>(self, mut map: A) -> Result<Fields<'de>, A::Error>
            where
                A: serde::de::MapAccess<'de>,
            {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(Visit)
    }
}

// === impl Usage ===

impl From<crate::cost::TokenUsage> for Usage {
    fn from(u: crate::cost::TokenUsage) -> Usage {
        Usage {
            prompt_tokens: u.prompt_tokens(),
            completion_tokens: u.output_tokens(),
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ModelRequest, ProxyError> {
        ModelRequest::parse(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn reads_model_and_stream_flags() {
        let r = parse(r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#).unwrap();
        assert_eq!(r.model, "m");
        assert!(r.stream && r.include_usage);
        r.require_messages().unwrap();
    }

    #[test]
    fn the_output_limit_is_read_and_replaced_where_the_client_put_it() {
        let r = parse(r#"{"model":"m","max_tokens":900,"messages":[]}"#).unwrap();
        assert_eq!(r.max_tokens(), Some(900));
        let clamped = r.with_max_tokens(50, false).unwrap();
        assert_eq!(clamped.max_tokens(), Some(50));
        assert_eq!(clamped.field("messages"), Some(serde_json::json!([])));
        let v: Value = serde_json::from_slice(clamped.body()).unwrap();
        assert_eq!(v["max_tokens"], 50);

        let r = parse(r#"{"model":"m","max_completion_tokens":900}"#).unwrap();
        let v: Value = serde_json::from_slice(r.with_max_tokens(7, false).unwrap().body()).unwrap();
        assert_eq!(
            (v["max_completion_tokens"].as_u64(), v.get("max_tokens")),
            (Some(7), None)
        );

        let r = parse(r#"{"model":"m","user":"u-1"}"#).unwrap();
        assert_eq!((r.max_tokens(), r.user().as_deref()), (None, Some("u-1")));
        let v: Value = serde_json::from_slice(r.with_max_tokens(8, false).unwrap().body()).unwrap();
        assert_eq!(v["max_tokens"], 8);

        let g = ModelRequest::native(
            Bytes::from_static(
                br#"{"contents":[],"generationConfig":{"temperature":0.5,"maxOutputTokens":900}}"#,
            ),
            "gemini-2.5-flash",
            false,
        )
        .unwrap();
        assert_eq!(g.max_tokens(), Some(900));
        let v: Value = serde_json::from_slice(g.with_max_tokens(9, true).unwrap().body()).unwrap();
        assert_eq!(
            v["generationConfig"],
            serde_json::json!({"temperature": 0.5, "maxOutputTokens": 9})
        );
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
    fn other_fields_reach_the_upstream_byte_for_byte() {
        let body = r#"{"model":"alias","temperature":0.10,"n":1.0e0,"messages":[{"role":"user","content":"caf\u00e9 \"quoted\""}]}"#;
        let r = parse(body).unwrap();
        let up = String::from_utf8(r.upstream_body("gpt-4o", true).to_vec()).unwrap();
        assert_eq!(
            up,
            r#"{"model":"gpt-4o","temperature":0.10,"n":1.0e0,"messages":[{"role":"user","content":"caf\u00e9 \"quoted\""}]}"#
        );
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
