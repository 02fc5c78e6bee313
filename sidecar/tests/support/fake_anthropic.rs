//! A strict fake Anthropic Messages API on loopback.
//!
//! Every request is checked against the documented schema (research/anthropic/spec.md
//! §1-2): `POST /v1/messages`, `x-api-key`, `anthropic-version`, the required fields, no
//! unknown or misplaced fields, alternating roles, valid blocks, `tool_result`s first and
//! answering the preceding `tool_use`s. A violation gets Anthropic's 400 error body, so a
//! translation bug fails the test. Answers are native: a Message as JSON, or named SSE
//! events when the request streams.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::sync::mpsc;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The key the fake accepts (obviously fake).
pub const KEY: &str = "sk-ant-test-fake";

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum AnthropicReply {
    /// This Message: as JSON, or as a generated event stream when the request streams
    /// (text in small deltas, tool input split into 5-byte `input_json_delta`s).
    Message(Value),
    /// This SSE text verbatim (e.g. a fixture file), status 200.
    Sse(String),
    /// The first `bytes` bytes of this SSE text, then the connection breaks.
    CutSse(String, usize),
    /// An Anthropic error body with this status and error type.
    Error {
        status: u16,
        kind: &'static str,
        message: &'static str,
    },
}

/// What the fake saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    /// Why the request was refused, if it was.
    pub rejected: Option<String>,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<AnthropicReply>>,
    seen: Mutex<Vec<Seen>>,
    hits: AtomicUsize,
}

#[derive(Clone)]
pub struct FakeAnthropic {
    pub addr: SocketAddr,
    state: Arc<State>,
}

const TOP_LEVEL: &[&str] = &[
    "model",
    "max_tokens",
    "messages",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "metadata",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "cache_control",
    "service_tier",
];

impl FakeAnthropic {
    pub async fn start() -> Self {
        let state = Arc::new(State::default());
        let st = state.clone();
        let addr = super::serve::loopback(move |req| handle(st.clone(), req)).await;
        Self { addr, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// A provider entry for `route_yaml`.
    pub fn provider(&self, name: &str) -> String {
        format!(
            "    - {{name: {name}, kind: anthropic, baseUrl: \"{}\", apiKey: {{value: {KEY}}}}}",
            self.base_url()
        )
    }

    pub fn script(&self, replies: impl IntoIterator<Item = AnthropicReply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Panics if any request broke the schema.
    pub fn assert_all_valid(&self) {
        for s in self.seen() {
            assert!(s.rejected.is_none(), "{:?}: {}", s.rejected, s.body);
        }
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let headers = req.headers().clone();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let checked = if method != http::Method::POST || path != "/v1/messages" {
        Err((
            404,
            "not_found_error",
            format!("{method} {path}: not found"),
        ))
    } else if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        Err((401, "authentication_error", "invalid x-api-key".to_string()))
    } else {
        validate(&headers, &body).map_err(|m| (400, "invalid_request_error", m))
    };
    state.seen.lock().unwrap().push(Seen {
        path,
        headers,
        body: body.clone(),
        rejected: checked.as_ref().err().map(|(_, _, m)| m.clone()),
    });
    if let Err((status, kind, message)) = checked {
        return Ok(error(status, kind, &message));
    }
    let stream = body["stream"] == true;
    let reply = state.script.lock().unwrap().pop_front();
    let reply = reply.unwrap_or_else(|| {
        AnthropicReply::Message(message(
            vec![json!({"type": "text", "text": "Hello from the fake Anthropic"})],
            "end_turn",
        ))
    });
    Ok(match reply {
        AnthropicReply::Message(m) if stream => sse(events_of(&m), None),
        AnthropicReply::Message(m) => json_resp(200, &m),
        AnthropicReply::Sse(text) => sse(text, None),
        AnthropicReply::CutSse(text, n) => sse(text, Some(n)),
        AnthropicReply::Error {
            status,
            kind,
            message,
        } => error(status, kind, message),
    })
}

/// A Message with these blocks and stop reason, and usage 21 in (10 cached) / 9 out.
pub fn message(content: Vec<Value>, stop_reason: &str) -> Value {
    json!({"id": "msg_fake_01", "type": "message", "role": "assistant", "model": "claude-fake",
        "content": content, "stop_reason": stop_reason, "stop_sequence": null,
        "usage": {"input_tokens": 11, "cache_read_input_tokens": 10, "cache_creation_input_tokens": 0, "output_tokens": 9}})
}

/// The documented event sequence for a Message.
pub fn events_of(m: &Value) -> String {
    let mut out = String::new();
    let mut push = |v: Value| {
        out.push_str(&format!(
            "event: {}\ndata: {v}\n\n",
            v["type"].as_str().unwrap()
        ));
    };
    let mut start = m.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["usage"]["output_tokens"] = json!(1);
    push(json!({"type": "message_start", "message": start}));
    push(json!({"type": "ping"}));
    for (i, block) in m["content"].as_array().unwrap().iter().enumerate() {
        match block["type"].as_str().unwrap() {
            "text" => {
                push(
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}}),
                );
                let text: Vec<char> = block["text"].as_str().unwrap().chars().collect();
                for piece in text.chunks(4) {
                    let piece: String = piece.iter().collect();
                    push(
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": piece}}),
                    );
                }
            }
            "tool_use" => {
                let mut b = block.clone();
                b["input"] = json!({});
                push(json!({"type": "content_block_start", "index": i, "content_block": b}));
                push(
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": ""}}),
                );
                let input = block["input"].to_string().into_bytes();
                for piece in input.chunks(5) {
                    let piece = String::from_utf8_lossy(piece).into_owned();
                    push(
                        json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                    );
                }
            }
            other => panic!("events_of: unsupported block {other}"),
        }
        push(json!({"type": "content_block_stop", "index": i}));
    }
    push(
        json!({"type": "message_delta", "delta": {"stop_reason": m["stop_reason"], "stop_sequence": null},
        "usage": {"output_tokens": m["usage"]["output_tokens"]}}),
    );
    push(json!({"type": "message_stop"}));
    out
}

/// API versions the fake accepts: the documented one the sidecar sends by default, and
/// the newer one the Anthropic Python SDK 2.12 sends (passed through as the client sent it).
const VERSIONS: &[&str] = &["2023-06-01", "2026-10-21"];

fn validate(headers: &HeaderMap, body: &Value) -> Result<(), String> {
    let version = headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok());
    if !version.is_some_and(|v| VERSIONS.contains(&v)) {
        return Err(format!(
            "anthropic-version: header is required, one of {VERSIONS:?}"
        ));
    }
    if !headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
    {
        return Err("content-type must be application/json".into());
    }
    let Some(obj) = body.as_object() else {
        return Err("body must be a JSON object".into());
    };
    for key in obj.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            return Err(format!("{key}: Extra inputs are not permitted"));
        }
    }
    if !body["model"].is_string() {
        return Err("model: Field required".into());
    }
    if !body["max_tokens"].is_u64() {
        return Err("max_tokens: Field required".into());
    }
    if let Some(t) = body.get("temperature")
        && !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t))
    {
        return Err("temperature: range: 0..1".into());
    }
    if let Some(s) = body.get("system") {
        let ok = s.is_string()
            || s.as_array().is_some_and(|a| {
                a.iter().all(|b| {
                    b["type"] == "text" && b["text"].as_str().is_some_and(|t| !t.trim().is_empty())
                })
            });
        if !ok {
            return Err("system: must be a string or non-empty text blocks".into());
        }
    }
    if let Some(s) = body.get("stop_sequences")
        && !s.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        return Err("stop_sequences: must be an array of strings".into());
    }
    if let Some(m) = body.get("metadata")
        && !m
            .as_object()
            .is_some_and(|o| o.keys().all(|k| k == "user_id"))
    {
        return Err("metadata: only user_id is allowed".into());
    }
    if let Some(o) = body.get("output_config") {
        let Some(o) = o.as_object() else {
            return Err("output_config: must be an object".into());
        };
        for (k, v) in o {
            match k.as_str() {
                "effort" => {}
                "format" => {
                    if v["type"] != "json_schema"
                        || !v["schema"].is_object()
                        || v.as_object().unwrap().len() != 2
                    {
                        return Err(
                            "output_config.format: {type: json_schema, schema} expected".into()
                        );
                    }
                }
                other => {
                    return Err(format!(
                        "output_config.{other}: Extra inputs are not permitted"
                    ));
                }
            }
        }
    }
    let mut tool_names = Vec::new();
    if let Some(tools) = body.get("tools") {
        for (i, t) in tools
            .as_array()
            .ok_or("tools: must be an array")?
            .iter()
            .enumerate()
        {
            let o = t.as_object().ok_or(format!("tools.{i}: object expected"))?;
            for k in o.keys() {
                if ![
                    "name",
                    "description",
                    "input_schema",
                    "strict",
                    "cache_control",
                ]
                .contains(&k.as_str())
                {
                    return Err(format!("tools.{i}.{k}: Extra inputs are not permitted"));
                }
            }
            if o.get("input_schema").and_then(|s| s.get("type")) != Some(&json!("object")) {
                return Err(format!("tools.{i}.input_schema: type object required"));
            }
            tool_names.push(
                o.get("name")
                    .and_then(Value::as_str)
                    .ok_or(format!("tools.{i}.name: Field required"))?,
            );
        }
    }
    if let Some(c) = body.get("tool_choice") {
        match c["type"].as_str() {
            Some("auto" | "any" | "none") => {}
            Some("tool") if c["name"].as_str().is_some_and(|n| tool_names.contains(&n)) => {}
            _ => return Err(format!("tool_choice: invalid {c}")),
        }
    }
    let messages = body["messages"]
        .as_array()
        .filter(|m| !m.is_empty())
        .ok_or("messages: Field required")?;
    let mut prev_tool_uses: Vec<String> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let o = m
            .as_object()
            .ok_or(format!("messages.{i}: object expected"))?;
        for k in o.keys() {
            if k != "role" && k != "content" {
                return Err(format!("messages.{i}.{k}: Extra inputs are not permitted"));
            }
        }
        let role = m["role"].as_str().unwrap_or("");
        let expected = if i % 2 == 0 { "user" } else { "assistant" };
        if role != expected {
            return Err(format!(
                "messages.{i}.role: roles must alternate starting with user, got {role}"
            ));
        }
        let blocks: Vec<Value> = match &m["content"] {
            Value::String(s) if !s.trim().is_empty() => vec![json!({"type": "text", "text": s})],
            Value::Array(a) if !a.is_empty() => a.clone(),
            _ => return Err(format!("messages.{i}.content: must be non-empty")),
        };
        let mut answered = Vec::new();
        let mut tool_uses = Vec::new();
        let mut seen_other = false;
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match (role, b["type"].as_str().unwrap_or("")) {
                (_, "text") => {
                    if b["text"].as_str().is_none_or(str::is_empty) {
                        return Err(format!("{at}: text content blocks must be non-empty"));
                    }
                    seen_other = true;
                }
                ("user", "image") => {
                    let s = &b["source"];
                    let ok = match s["type"].as_str() {
                        Some("base64") => {
                            ["image/jpeg", "image/png", "image/gif", "image/webp"]
                                .contains(&s["media_type"].as_str().unwrap_or(""))
                                && s["data"].is_string()
                        }
                        Some("url") => s["url"].as_str().is_some_and(|u| u.starts_with("http")),
                        _ => false,
                    };
                    if !ok {
                        return Err(format!("{at}.source: invalid image source {s}"));
                    }
                    seen_other = true;
                }
                ("user", "document") => seen_other = true,
                ("user", "tool_result") => {
                    if seen_other {
                        return Err(format!("{at}: tool_result blocks must come first"));
                    }
                    let id = b["tool_use_id"].as_str().unwrap_or("").to_string();
                    if !prev_tool_uses.contains(&id) {
                        return Err(format!("{at}: unexpected tool_use_id {id}"));
                    }
                    answered.push(id);
                }
                ("assistant", "tool_use") => {
                    if !b["input"].is_object() {
                        return Err(format!("{at}.input: Input should be an object"));
                    }
                    tool_uses.push(b["id"].as_str().unwrap_or("").to_string());
                }
                ("assistant", "thinking") => {
                    if !b["signature"].is_string() {
                        return Err(format!("{at}.signature: Field required"));
                    }
                }
                ("assistant", "redacted_thinking") => {}
                (_, other) => {
                    return Err(format!("{at}: block type {other} not allowed for {role}"));
                }
            }
        }
        if role == "user" {
            if let Some(missing) = prev_tool_uses.iter().find(|id| !answered.contains(id)) {
                return Err(format!(
                    "messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}"
                ));
            }
            prev_tool_uses.clear();
        } else {
            prev_tool_uses = tool_uses;
        }
    }
    Ok(())
}

fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

fn json_resp(status: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("request-id", "req_fake_0001".parse().unwrap());
    r
}

fn error(status: u16, kind: &str, message: &str) -> Response<Body> {
    json_resp(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_fake_0001"}),
    )
}

/// An SSE answer in a few network writes; with `cut`, only that many bytes, then an error.
fn sse(text: String, cut: Option<usize>) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(4);
    tokio::spawn(async move {
        let bytes = Bytes::from(text);
        let bytes = match cut {
            Some(n) => bytes.slice(..n.min(bytes.len())),
            None => bytes,
        };
        // Odd-sized writes so events straddle reads.
        for piece in bytes.chunks(97) {
            if tx
                .send(Ok(Frame::data(Bytes::copy_from_slice(piece))))
                .await
                .is_err()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if cut.is_some() {
            let _ = tx.send(Err(std::io::Error::other("cut on purpose"))).await;
        }
    });
    let mut rx = rx;
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r.headers_mut()
        .insert("request-id", "req_fake_0001".parse().unwrap());
    r
}
