//! A fake OpenAI-compatible upstream: a real HTTP server on loopback that answers from a
//! script (normally, slowly, with errors and `retry-after`, hanging, or cutting a stream),
//! records what it received, and notices when the sidecar gives up on a request.

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

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A chat completion whose content is this text.
    Text(String),
    /// A status with an OpenAI error body and optional `retry-after-ms`.
    Error {
        status: u16,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// A stream of these content pieces, `delay` apart, then finish, usage (if asked), [DONE].
    Stream {
        pieces: Vec<String>,
        delay: Duration,
    },
    /// Stream headers and `sent` content pieces, then the connection is cut.
    CutStream {
        pieces: Vec<String>,
        sent: usize,
        delay: Duration,
    },
    /// Wait, then answer the next reply.
    Delay(Duration, Box<Reply>),
    /// Never answer.
    Hang,
    /// These raw SSE events (any provider's format), `delay` apart.
    Events {
        events: Vec<String>,
        delay: Duration,
    },
    /// Exactly these bytes with this status and content type.
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
    },
}

/// What the upstream saw of one request.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<Reply>>,
    fallback: Mutex<Option<Reply>>,
    seen: Mutex<Vec<Seen>>,
    hits: AtomicUsize,
    /// Requests whose response the sidecar abandoned before it was complete.
    cancelled: AtomicUsize,
}

/// The fake upstream; dropped with the test.
#[derive(Clone)]
pub struct FakeUpstream {
    pub addr: SocketAddr,
    state: Arc<State>,
}

/// Counts a cancellation when dropped before `done` is set.
struct CancelGuard {
    state: Arc<State>,
    done: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.state.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl FakeUpstream {
    /// Starts an upstream that answers `always` once its script is used up.
    pub async fn start(always: Reply) -> Self {
        let state = Arc::new(State::default());
        *state.fallback.lock().unwrap() = Some(always);
        let st = state.clone();
        let addr = super::serve::loopback(move |req| handle(st.clone(), req)).await;
        Self { addr, state }
    }

    /// Base URL for a provider's `baseUrl`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues replies for the next requests, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    /// Replaces the answer given once the script is used up.
    pub fn always(&self, reply: Reply) {
        *self.state.fallback.lock().unwrap() = Some(reply);
    }

    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn cancelled(&self) -> usize {
        self.state.cancelled.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// Waits (up to 5 s) until `cancelled()` reaches `n`.
    pub async fn wait_cancelled(&self, n: usize) -> bool {
        for _ in 0..500 {
            if self.cancelled() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.hits.fetch_add(1, Ordering::SeqCst);
    state.seen.lock().unwrap().push(Seen {
        path,
        headers,
        body: body.clone(),
    });
    let reply = state.script.lock().unwrap().pop_front();
    let reply = reply
        .or_else(|| state.fallback.lock().unwrap().clone())
        .unwrap_or(Reply::Hang);
    let mut guard = CancelGuard {
        state: state.clone(),
        done: false,
    };
    let resp = answer(&state, reply, &body).await;
    guard.done = true;
    Ok(resp)
}

fn answer<'a>(
    state: &'a Arc<State>,
    reply: Reply,
    req: &'a Value,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<Body>> + Send + 'a>> {
    Box::pin(async move {
        let model = req["model"].as_str().unwrap_or("fake").to_string();
        match reply {
            Reply::Text(text) => json_resp(200, completion(&model, &text)),
            Reply::Error {
                status,
                message,
                retry_after_ms,
            } => {
                let mut r = json_resp(
                    status,
                    json!({"error": {"message": message, "type": "server_error", "param": null, "code": "fake_code"}}),
                );
                if let Some(ms) = retry_after_ms {
                    r.headers_mut()
                        .insert("retry-after-ms", ms.to_string().parse().unwrap());
                }
                r
            }
            Reply::Delay(d, next) => {
                tokio::time::sleep(d).await;
                answer(state, *next, req).await
            }
            Reply::Hang => std::future::pending().await,
            Reply::Raw {
                status,
                content_type,
                body,
            } => {
                let mut r = Response::new(full(body));
                *r.status_mut() = StatusCode::from_u16(status).unwrap();
                r.headers_mut()
                    .insert("content-type", content_type.parse().unwrap());
                r
            }
            Reply::Stream { pieces, delay } => {
                let usage = req["stream_options"]["include_usage"].as_bool() == Some(true);
                let mut events: Vec<Bytes> = stream_events(&model, &pieces);
                events.push(event(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})));
                if usage {
                    events.push(event(&json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1, "model": model,
                        "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": pieces.len(), "total_tokens": 11 + pieces.len()}})));
                }
                events.push(Bytes::from_static(b"data: [DONE]\n\n"));
                sse_resp(state.clone(), events, delay, false)
            }
            Reply::Events { events, delay } => {
                let events = events.into_iter().map(Bytes::from).collect();
                sse_resp(state.clone(), events, delay, false)
            }
            Reply::CutStream {
                pieces,
                sent,
                delay,
            } => {
                let events = stream_events(&model, &pieces)
                    .into_iter()
                    .take(sent)
                    .collect();
                sse_resp(state.clone(), events, delay, true)
            }
        }
    })
}

fn stream_events(model: &str, pieces: &[String]) -> Vec<Bytes> {
    pieces
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut delta = json!({"content": p});
            if i == 0 {
                delta["role"] = json!("assistant");
            }
            event(
                &json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1,
                "model": model, "choices": [{"index": 0, "delta": delta, "finish_reason": null}]}),
            )
        })
        .collect()
}

/// An SSE response whose events a task sends `delay` apart. A send failing means the
/// sidecar dropped the response: counted as a cancellation. `cut` ends with an error.
fn sse_resp(state: Arc<State>, events: Vec<Bytes>, delay: Duration, cut: bool) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
    tokio::spawn(async move {
        for (i, e) in events.into_iter().enumerate() {
            if i > 0 && !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(Frame::data(e))).await.is_err() {
                state.cancelled.fetch_add(1, Ordering::SeqCst);
                return;
            }
        }
        if cut {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Err(std::io::Error::other("cut on purpose"))).await;
            return;
        }
        // Hold the stream open until the client is done, to see an early drop.
        let _ = tokio::time::timeout(Duration::from_millis(50), tx.closed()).await;
    });
    let stream = tokio_stream_from(rx);
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    r.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    r
}

fn tokio_stream_from(
    mut rx: mpsc::Receiver<Result<Frame<Bytes>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, std::io::Error>> + Send + Sync {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

pub fn completion(model: &str, text: &str) -> Value {
    json!({"id": "chatcmpl-fake", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}})
}

fn event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn full(s: String) -> Body {
    http_body_util::Full::new(Bytes::from(s))
        .map_err(|never| match never {})
        .boxed()
}

fn json_resp(status: u16, v: Value) -> Response<Body> {
    let mut r = Response::new(full(v.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
