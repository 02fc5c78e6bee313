//! A plain hyper client for the tests: requests, whole answers, and streams with the
//! time each chunk arrived.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::Instant;

fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub async fn post_raw(
    url: &str,
    body: impl Into<Bytes>,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client()
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

/// POSTs JSON and parses the JSON answer.
pub async fn post_json(url: &str, body: &Value) -> (StatusCode, HeaderMap, Value) {
    post_json_with(url, body, &[]).await
}

pub async fn post_json_with(
    url: &str,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, Value) {
    let (status, headers, bytes) = post_raw(url, body.to_string(), headers).await;
    let v = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, v)
}

pub async fn get_json(url: &str) -> (StatusCode, HeaderMap, Value) {
    let resp = client().get(url.parse().unwrap()).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub async fn get_text(url: &str) -> String {
    let resp = client().get(url.parse().unwrap()).await.unwrap();
    String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

/// A streamed answer: status, headers, and each body chunk with its arrival time.
pub struct Streamed {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub chunks: Vec<(Instant, Bytes)>,
    pub started: Instant,
}

impl Streamed {
    pub fn text(&self) -> String {
        self.chunks
            .iter()
            .map(|(_, b)| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    /// The `data:` payloads, in order (comments left out).
    pub fn data(&self) -> Vec<String> {
        self.text()
            .replace("\r\n", "\n")
            .split("\n\n")
            .filter_map(|e| {
                e.lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .map(str::to_string)
            })
            .collect()
    }

    /// The content the deltas spell out.
    pub fn content(&self) -> String {
        self.data()
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_string)
            })
            .collect()
    }
}

/// POSTs and reads the streamed answer to its end (at most 30 s).
pub async fn post_stream(url: &str, body: &Value) -> Streamed {
    post_stream_with(url, body, &[]).await
}

/// [`post_stream`] with extra request headers.
pub async fn post_stream_with(url: &str, body: &Value, headers: &[(&str, &str)]) -> Streamed {
    let started = Instant::now();
    let mut req = Request::post(url).header("content-type", "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_string()))).unwrap();
    let resp = client().request(req).await.unwrap();
    let (parts, mut body) = resp.into_parts();
    let mut chunks = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Ok(Some(frame)) = tokio::time::timeout_at(deadline, body.frame()).await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            chunks.push((Instant::now(), data));
        }
    }
    Streamed {
        status: parts.status,
        headers: parts.headers,
        chunks,
        started,
    }
}

pub fn chat(model: &str, text: &str) -> Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

pub fn chat_stream(model: &str, text: &str) -> Value {
    let mut v = chat(model, text);
    v["stream"] = Value::Bool(true);
    v
}
