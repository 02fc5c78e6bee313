//! The built-in mock provider: deterministic OpenAI-format answers with configurable
//! latency, chunking and failures, so the quickstart and demos need no key.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use modelroute_crds::v1alpha1::{MockFailureMode, MockSpec};
use serde_json::{Value, json};
use tokio::time::Sleep;

use super::{BoxError, Call, Operation, UpstreamBody};

/// The mock's settings and its request counter (which makes `failure.every` deterministic).
#[derive(Debug)]
pub struct MockProvider {
    spec: MockSpec,
    served: AtomicU64,
}

/// Chunks released one at a time with a delay between them; optionally cut at the end.
struct ScriptedBody {
    chunks: VecDeque<Bytes>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    cut: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("mock stream cut on purpose")]
struct Cut;

// === impl MockProvider ===

impl MockProvider {
    pub fn new(spec: MockSpec) -> Self {
        Self {
            spec,
            served: AtomicU64::new(0),
        }
    }

    pub async fn answer(&self, call: Call<'_>) -> Response<UpstreamBody> {
        let n = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(latency) = self.spec.latency {
            tokio::time::sleep(latency.into()).await;
        }
        let request: Value = serde_json::from_slice(&call.body).unwrap_or(Value::Null);
        let failure = self
            .spec
            .failure
            .as_ref()
            .filter(|f| n.is_multiple_of(u64::from(f.every.unwrap_or(1).max(1))));
        let mut cut = false;
        if let Some(f) = failure {
            match f.mode {
                MockFailureMode::Status => {
                    let status = f.status.unwrap_or(503);
                    let body = json!({"error": {
                        "message": format!("mock provider failure ({status}) on request {n}"),
                        "type": "server_error", "param": null, "code": null}});
                    let mut resp = json_response(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                        &body,
                    );
                    if let Some(after) = f.retry_after {
                        let secs = after.0.as_secs_f64().to_string();
                        if let Ok(v) = HeaderValue::from_str(&secs) {
                            resp.headers_mut().insert(header::RETRY_AFTER, v);
                        }
                    }
                    return resp;
                }
                MockFailureMode::Hang => std::future::pending::<()>().await,
                MockFailureMode::CutStream => cut = true,
            }
        }
        match call.operation {
            Operation::Chat => self.chat(&request, n, cut),
            Operation::Embeddings => embeddings(&request),
        }
    }

    fn chat(&self, request: &Value, n: u64, cut: bool) -> Response<UpstreamBody> {
        let model = request["model"].as_str().unwrap_or("mock");
        let said = last_user_text(request);
        let reply = match &self.spec.reply {
            Some(r) => r.clone(),
            None => format!("Hello from the modelroute mock provider ({model}). You said: {said}"),
        };
        let usage = json!({
            "prompt_tokens": prompt_words(request),
            "completion_tokens": words(&reply),
            "total_tokens": prompt_words(request) + words(&reply),
        });
        let id = format!("chatcmpl-mock-{n}");
        let created = unix_now();
        if request["stream"].as_bool() != Some(true) {
            let body = json!({
                "id": id, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                             "logprobs": null, "finish_reason": "stop"}],
                "usage": usage,
            });
            return json_response(StatusCode::OK, &body);
        }
        let chunk = |delta: Value, finish: Value| {
            let c = json!({"id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null,
                "finish_reason": finish}]});
            sse(&c)
        };
        let per_chunk = self.spec.words_per_chunk.unwrap_or(1).max(1) as usize;
        let mut chunks = VecDeque::new();
        chunks.push_back(chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        ));
        let pieces: Vec<&str> = reply.split_inclusive(' ').collect();
        for group in pieces.chunks(per_chunk) {
            chunks.push_back(chunk(json!({"content": group.concat()}), Value::Null));
        }
        chunks.push_back(chunk(json!({}), json!("stop")));
        if request["stream_options"]["include_usage"].as_bool() == Some(true) {
            let c = json!({"id": id, "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [], "usage": usage});
            chunks.push_back(sse(&c));
        }
        chunks.push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        if cut {
            // Keep the role chunk and half the content, then break off.
            chunks.truncate((chunks.len() / 2).max(2));
        }
        let delay = self
            .spec
            .chunk_delay
            .map(Into::into)
            .unwrap_or(Duration::ZERO);
        let body = ScriptedBody {
            chunks,
            delay,
            sleep: None,
            cut,
        };
        let mut resp = Response::new(body.boxed_unsync());
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        resp
    }
}

fn embeddings(request: &Value) -> Response<UpstreamBody> {
    let inputs: Vec<String> = match &request["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(items) => items.iter().map(|i| i.to_string()).collect(),
        other => vec![other.to_string()],
    };
    let dims = request["dimensions"].as_u64().unwrap_or(8).clamp(1, 4096) as usize;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(
            |(i, text)| json!({"object": "embedding", "index": i, "embedding": vector(text, dims)}),
        )
        .collect();
    let tokens: u64 = inputs.iter().map(|t| words(t)).sum();
    let body = json!({
        "object": "list", "data": data, "model": request["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    json_response(StatusCode::OK, &body)
}

/// A unit vector derived from the text: equal texts embed equally.
fn vector(text: &str, dims: usize) -> Vec<f64> {
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let raw: Vec<f64> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2000) as f64 / 1000.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt()
        .max(f64::EPSILON);
    raw.iter().map(|x| x / norm).collect()
}

fn last_user_text(request: &Value) -> String {
    let Some(messages) = request["messages"].as_array() else {
        return String::new();
    };
    messages
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| content_text(&m["content"]))
        .unwrap_or_default()
}

fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

fn prompt_words(request: &Value) -> u64 {
    let Some(messages) = request["messages"].as_array() else {
        return 0;
    };
    messages
        .iter()
        .map(|m| words(&content_text(&m["content"])).max(1))
        .sum()
}

fn words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sse(v: &Value) -> Bytes {
    let mut out = b"data: ".to_vec();
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

fn json_response(status: StatusCode, body: &Value) -> Response<UpstreamBody> {
    let bytes = Bytes::from(body.to_string());
    let body = ScriptedBody {
        chunks: VecDeque::from([bytes]),
        delay: Duration::ZERO,
        sleep: None,
        cut: false,
    };
    let mut resp = Response::new(body.boxed_unsync());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

// === impl ScriptedBody ===

impl Body for ScriptedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(sleep) = this.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        match this.chunks.pop_front() {
            Some(chunk) => {
                if !this.delay.is_zero() && !this.chunks.is_empty() {
                    this.sleep = Some(Box::pin(tokio::time::sleep(this.delay)));
                }
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            None if this.cut => {
                this.cut = false;
                Poll::Ready(Some(Err(Box::new(Cut))))
            }
            None => Poll::Ready(None),
        }
    }
}

use std::future::Future;

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    async fn call(mock: &MockProvider, body: Value) -> (StatusCode, Vec<u8>) {
        let headers = HeaderMap::new();
        let resp = mock
            .answer(Call {
                operation: Operation::Chat,
                model: "m",
                stream: false,
                body: Bytes::from(body.to_string()),
                client_headers: &headers,
            })
            .await;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes().to_vec());
        (status, bytes.unwrap_or_else(|_| b"<cut>".to_vec()))
    }

    #[tokio::test]
    async fn answers_deterministically_in_openai_format() {
        let mock = MockProvider::new(MockSpec::default());
        let req = json!({"model": "m1", "messages": [{"role": "user", "content": "ping"}]});
        let (status, body) = call(&mock, req.clone()).await;
        assert_eq!(status, 200);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Hello from the modelroute mock provider (m1). You said: ping"
        );
        assert_eq!(v["usage"]["prompt_tokens"], 1);
        let (_, again) = call(&mock, req).await;
        let w: Value = serde_json::from_slice(&again).unwrap();
        assert_eq!(w["choices"], v["choices"]);
    }

    #[tokio::test]
    async fn streams_words_then_done() {
        let spec = MockSpec {
            reply: Some("a b c".into()),
            ..Default::default()
        };
        let mock = MockProvider::new(spec);
        let req = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "x"}]});
        let (_, body) = call(&mock, req).await;
        let text = String::from_utf8(body).unwrap();
        let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
        // role, 3 words, finish, usage, [DONE]
        assert_eq!(events.len(), 7, "{text}");
        assert!(events[1].contains(r#""content":"a ""#));
        assert!(events[4].contains(r#""finish_reason":"stop""#));
        assert!(events[5].contains(r#""completion_tokens":3"#));
        assert_eq!(events[6], "data: [DONE]");
    }

    #[tokio::test]
    async fn fails_every_nth_request() {
        let spec: MockSpec = serde_json::from_value(
            json!({"failure": {"mode": "status", "status": 429, "every": 2, "retryAfter": "1s"}}),
        )
        .unwrap();
        let mock = MockProvider::new(spec);
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "x"}]});
        let statuses: Vec<u16> = [
            call(&mock, req.clone()).await.0,
            call(&mock, req.clone()).await.0,
            call(&mock, req.clone()).await.0,
            call(&mock, req).await.0,
        ]
        .iter()
        .map(|s| s.as_u16())
        .collect();
        assert_eq!(statuses, [200, 429, 200, 429]);
    }

    #[tokio::test]
    async fn cut_streams_end_in_an_error() {
        let spec: MockSpec =
            serde_json::from_value(json!({"failure": {"mode": "cutStream"}})).unwrap();
        let mock = MockProvider::new(spec);
        let req =
            json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]});
        let (_, body) = call(&mock, req).await;
        assert_eq!(body, b"<cut>");
    }

    #[test]
    fn embeddings_are_unit_vectors_and_stable() {
        let a = vector("hello", 16);
        let b = vector("hello", 16);
        let c = vector("world", 16);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let norm: f64 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-9);
    }
}
