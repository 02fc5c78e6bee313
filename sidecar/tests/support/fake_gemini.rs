//! A strict fake Gemini API (`/v1beta`) on loopback: every request is checked against
//! the documented wire format the way Google's proto JSON parser checks it (unknown
//! member -> 400 `Invalid JSON payload received. Unknown name ...`), then answered from a
//! script in Gemini's native JSON or SSE.

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
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// The key the tests configure; anything else is refused like a bad key.
pub const TEST_KEY: &str = "fake-gemini-test-key";

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum GeminiReply {
    /// 200 with this JSON body.
    Json(Value),
    /// 200 `text/event-stream`: each value as one `data:` event.
    Sse(Vec<Value>),
    /// Like `Sse`, then the connection is cut (no clean end).
    CutSse(Vec<Value>),
    /// This status with this (Google error) body.
    Status(u16, Value),
}

/// What the fake saw of one request (whether it was accepted or not).
#[derive(Clone, Debug)]
pub struct GeminiSeen {
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Value,
    /// The 400 message when the request broke the documented format.
    pub rejected: Option<String>,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<GeminiReply>>,
    fallback: Mutex<Option<GeminiReply>>,
    seen: Mutex<Vec<GeminiSeen>>,
    hits: AtomicUsize,
}

#[derive(Clone)]
pub struct FakeGemini {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl FakeGemini {
    pub async fn start(always: GeminiReply) -> Self {
        let state = Arc::new(State::default());
        *state.fallback.lock().unwrap() = Some(always);
        let st = state.clone();
        let addr = super::serve::loopback(move |req| handle(st.clone(), req)).await;
        Self { addr, state }
    }

    /// The provider's `baseUrl`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1beta", self.addr)
    }

    pub fn script(&self, replies: impl IntoIterator<Item = GeminiReply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<GeminiSeen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The last request, which must have been accepted.
    pub fn last_accepted(&self) -> GeminiSeen {
        let seen = self
            .seen()
            .pop()
            .expect("a request reached the fake Gemini");
        assert!(seen.rejected.is_none(), "refused: {:?}", seen.rejected);
        seen
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let headers = req.headers().clone();
    let bytes = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let verdict = check(&path, query.as_deref(), &headers, &body);
    state.seen.lock().unwrap().push(GeminiSeen {
        path,
        query,
        headers,
        body,
        rejected: verdict.as_ref().err().map(|(_, m)| m.clone()),
    });
    if let Err((status, message)) = verdict {
        let status_name = match status {
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "NOT_FOUND",
            _ => "INVALID_ARGUMENT",
        };
        return Ok(json_resp(
            status,
            &json!({"error": {"code": status, "message": message, "status": status_name}}),
        ));
    }
    let reply = state.script.lock().unwrap().pop_front();
    let reply = reply
        .or_else(|| state.fallback.lock().unwrap().clone())
        .unwrap_or(GeminiReply::Status(500, json!({"error": {"code": 500}})));
    Ok(match reply {
        GeminiReply::Json(v) => json_resp(200, &v),
        GeminiReply::Status(status, v) => json_resp(status, &v),
        GeminiReply::Sse(events) => sse_resp(events, false),
        GeminiReply::CutSse(events) => sse_resp(events, true),
    })
}

type Refusal = (u16, String);

fn unknown(name: &str, at: &str) -> Refusal {
    (
        400,
        format!(
            "Invalid JSON payload received. Unknown name \"{name}\" at '{at}': Cannot find field."
        ),
    )
}

fn invalid(at: &str, why: &str) -> Refusal {
    (400, format!("* GenerateContentRequest.{at}: {why}"))
}

/// The request against the documented REST surface.
fn check(
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    body: &Value,
) -> Result<(), Refusal> {
    let pairs: Vec<(&str, &str)> = query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    if pairs.iter().any(|(k, _)| *k == "key") {
        return Err((
            400,
            "the API key must not be sent in the URL (`key` query parameter)".into(),
        ));
    }
    match headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
        Some(TEST_KEY) => {}
        _ => {
            return Err((
                400,
                "API key not valid. Please pass a valid API key.".into(),
            ));
        }
    }
    if headers.get("authorization").is_some() {
        return Err((401, "unexpected Authorization header".into()));
    }
    let Some(rest) = path.strip_prefix("/v1beta/models/") else {
        return Err((404, format!("unknown path {path}")));
    };
    let Some((model, method)) = rest.split_once(':') else {
        return Err((404, format!("unknown path {path}")));
    };
    if model.is_empty() || model.contains('/') {
        return Err((404, format!("bad model in {path}")));
    }
    match method {
        "generateContent" => {
            if !pairs.is_empty() {
                return Err((400, format!("unexpected query {query:?}")));
            }
            generate_request(body)
        }
        "streamGenerateContent" => {
            if pairs != [("alt", "sse")] {
                return Err((400, format!("streams must use ?alt=sse, got {query:?}")));
            }
            generate_request(body)
        }
        "batchEmbedContents" => embed_request(body, model),
        other => Err((404, format!("unknown method {other}"))),
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, Refusal> {
    v.as_object()
        .ok_or_else(|| invalid(at, "expected an object"))
}

fn only(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), Refusal> {
    for k in obj.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(unknown(k, at));
        }
    }
    Ok(())
}

fn generate_request(body: &Value) -> Result<(), Refusal> {
    let top = object(body, "")?;
    only(
        top,
        &[
            "contents",
            "systemInstruction",
            "tools",
            "toolConfig",
            "safetySettings",
            "generationConfig",
            "cachedContent",
        ],
        "",
    )?;
    let contents = top
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("contents", "contents is not specified"))?;
    for (i, c) in contents.iter().enumerate() {
        content(c, &format!("contents[{i}]"), true)?;
    }
    if let Some(s) = top.get("systemInstruction") {
        content(s, "system_instruction", false)?;
    }
    if let Some(tools) = top.get("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| invalid("tools", "expected a list"))?;
        for (i, t) in tools.iter().enumerate() {
            let at = format!("tools[{i}]");
            let t = object(t, &at)?;
            only(t, &["functionDeclarations"], &at)?;
            for (j, d) in t
                .get("functionDeclarations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("tools[{i}].function_declarations[{j}]");
                let d = object(d, &at)?;
                only(d, &["name", "description", "parameters"], &at)?;
                if !d.get("name").is_some_and(Value::is_string) {
                    return Err(invalid(&at, "name is required"));
                }
                if let Some(p) = d.get("parameters") {
                    schema(p, &format!("{at}.parameters"))?;
                    if p["type"] != "OBJECT" {
                        return Err(invalid(&at, "parameters must be of type OBJECT"));
                    }
                }
            }
        }
    }
    if let Some(tc) = top.get("toolConfig") {
        let tc = object(tc, "tool_config")?;
        only(tc, &["functionCallingConfig"], "tool_config")?;
        if let Some(fc) = tc.get("functionCallingConfig") {
            let fc = object(fc, "tool_config.function_calling_config")?;
            only(
                fc,
                &["mode", "allowedFunctionNames"],
                "tool_config.function_calling_config",
            )?;
            let mode = fc.get("mode").and_then(Value::as_str).unwrap_or("AUTO");
            if !["AUTO", "ANY", "NONE", "VALIDATED"].contains(&mode) {
                return Err(invalid("tool_config", "bad mode"));
            }
            if fc.contains_key("allowedFunctionNames") && mode != "ANY" {
                return Err(invalid(
                    "tool_config",
                    "allowed_function_names needs mode ANY",
                ));
            }
        }
    }
    if let Some(g) = top.get("generationConfig") {
        let at = "generation_config";
        let g = object(g, at)?;
        only(
            g,
            &[
                "stopSequences",
                "responseMimeType",
                "responseSchema",
                "responseJsonSchema",
                "candidateCount",
                "maxOutputTokens",
                "temperature",
                "topP",
                "topK",
                "seed",
                "presencePenalty",
                "frequencyPenalty",
                "responseLogprobs",
                "logprobs",
                "thinkingConfig",
            ],
            at,
        )?;
        if let Some(s) = g.get("responseSchema") {
            schema(s, "generation_config.response_schema")?;
            if g.get("responseMimeType").and_then(Value::as_str) != Some("application/json") {
                return Err(invalid(
                    at,
                    "response_schema needs response_mime_type application/json",
                ));
            }
        }
        if g.get("stopSequences")
            .and_then(Value::as_array)
            .is_some_and(|s| s.len() > 5)
        {
            return Err(invalid(at, "at most 5 stop sequences"));
        }
    }
    Ok(())
}

fn content(c: &Value, at: &str, needs_role: bool) -> Result<(), Refusal> {
    let obj = object(c, at)?;
    only(obj, &["role", "parts"], at)?;
    match obj.get("role").and_then(Value::as_str) {
        Some("user" | "model") => {}
        None if !needs_role => {}
        other => return Err(invalid(at, &format!("bad role {other:?}"))),
    }
    let parts = obj
        .get("parts")
        .and_then(Value::as_array)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid(at, "must include at least one parts field"))?;
    for (i, p) in parts.iter().enumerate() {
        let at = format!("{at}.parts[{i}]");
        let p = object(p, &at)?;
        only(
            p,
            &[
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
                "thought",
                "thoughtSignature",
            ],
            &at,
        )?;
        let data: Vec<&String> = p
            .keys()
            .filter(|k| !matches!(k.as_str(), "thought" | "thoughtSignature"))
            .collect();
        if data.len() != 1 {
            return Err(invalid(&at, "a part must have exactly one data field"));
        }
        if let Some(d) = p.get("inlineData") {
            let d = object(d, &at)?;
            only(d, &["mimeType", "data"], &at)?;
            if d.get("data")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err(invalid(&at, "inline_data.data is required"));
            }
        }
        if let Some(d) = p.get("fileData") {
            let d = object(d, &at)?;
            only(d, &["mimeType", "fileUri"], &at)?;
        }
        if let Some(f) = p.get("functionCall") {
            let f = object(f, &at)?;
            only(f, &["id", "name", "args"], &at)?;
            if f.get("args").is_some_and(|a| !a.is_object()) {
                return Err(invalid(&at, "function_call.args must be an object"));
            }
        }
        if let Some(f) = p.get("functionResponse") {
            let f = object(f, &at)?;
            only(f, &["id", "name", "response"], &at)?;
            if !f.get("response").is_some_and(Value::is_object) {
                return Err(invalid(&at, "function_response.response must be an object"));
            }
        }
    }
    Ok(())
}

/// The OpenAPI-subset `Schema`: every other member (additionalProperties, $ref, $defs,
/// const, ...) and `type` arrays are refused as by the real API.
fn schema(s: &Value, at: &str) -> Result<(), Refusal> {
    let obj = object(s, at)?;
    only(
        obj,
        &[
            "type",
            "format",
            "title",
            "description",
            "nullable",
            "enum",
            "items",
            "minItems",
            "maxItems",
            "properties",
            "required",
            "minProperties",
            "maxProperties",
            "minLength",
            "maxLength",
            "pattern",
            "minimum",
            "maximum",
            "anyOf",
            "propertyOrdering",
            "default",
            "example",
        ],
        at,
    )?;
    if let Some(t) = obj.get("type") {
        let ok = t.as_str().is_some_and(|t| {
            [
                "STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL", "string",
                "number", "integer", "boolean", "array", "object",
            ]
            .contains(&t)
        });
        if !ok {
            return Err(invalid(at, &format!("Invalid value at '{at}.type': {t}")));
        }
    }
    if let Some(e) = obj.get("enum")
        && !e.as_array().is_some_and(|e| e.iter().all(Value::is_string))
    {
        return Err(invalid(at, "enum values must be strings"));
    }
    if let Some(props) = obj.get("properties") {
        for (k, v) in object(props, at)? {
            schema(v, &format!("{at}.properties[{k}].value"))?;
        }
    }
    if let Some(items) = obj.get("items") {
        schema(items, &format!("{at}.items"))?;
    }
    for (i, b) in obj
        .get("anyOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        schema(b, &format!("{at}.any_of[{i}]"))?;
    }
    Ok(())
}

fn embed_request(body: &Value, model: &str) -> Result<(), Refusal> {
    let top = object(body, "")?;
    only(top, &["requests"], "")?;
    let requests = top
        .get("requests")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| invalid("requests", "requests is required"))?;
    for (i, r) in requests.iter().enumerate() {
        let at = format!("requests[{i}]");
        let r = object(r, &at)?;
        only(
            r,
            &[
                "model",
                "content",
                "taskType",
                "title",
                "outputDimensionality",
            ],
            &at,
        )?;
        if r.get("model").and_then(Value::as_str) != Some(&format!("models/{model}")) {
            return Err(invalid(&at, "model must match the model in the path"));
        }
        let c = r
            .get("content")
            .ok_or_else(|| invalid(&at, "content is required"))?;
        content(c, &format!("{at}.content"), false)?;
    }
    Ok(())
}

fn json_resp(status: u16, v: &Value) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(v.to_string()))
        .map_err(|never| match never {})
        .boxed();
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(
        "content-type",
        "application/json; charset=UTF-8".parse().unwrap(),
    );
    r
}

fn sse_resp(events: Vec<Value>, cut: bool) -> Response<Body> {
    let (tx, mut rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    tokio::spawn(async move {
        for e in events {
            // Google ends events with CRLF pairs on some paths; use them here.
            let frame = Frame::data(Bytes::from(format!("data: {e}\r\n\r\n")));
            if tx.send(Ok(frame)).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if cut {
            let _ = tx.send(Err(std::io::Error::other("cut on purpose"))).await;
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r
}
