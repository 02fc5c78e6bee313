//! Azure OpenAI through the real sidecar, before a small fake Azure server that checks
//! the deployment path, the `api-version` query and the `api-key` header, and answers
//! with Azure's content-filter annotations (testdata/azure, from Microsoft's docs).

#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    reason = "test helpers: a failure should stop the test"
)]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use support::harness::route_yaml;
use support::*;

const KEY: &str = "fake-azure-test-key";
const DEPLOYMENT: &str = "my-gpt-4o";

fn testdata(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/testdata/azure")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A JSON fixture without its provenance keys.
fn fixture(name: &str) -> Value {
    let mut v: Value = serde_json::from_str(&testdata(name)).unwrap();
    v.as_object_mut()
        .unwrap()
        .retain(|k, _| !k.starts_with('_'));
    v
}

#[derive(Clone)]
enum AzureReply {
    Json(u16, Value),
    Sse(String),
}

#[derive(Default)]
struct State {
    script: Mutex<VecDeque<AzureReply>>,
    hits: AtomicUsize,
    refused: Mutex<Vec<String>>,
    bodies: Mutex<Vec<Value>>,
}

struct FakeAzure {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FakeAzure {
    async fn start(api_version: &'static str) -> Self {
        let state = Arc::new(State::default());
        let st = state.clone();
        let addr = support::serve::loopback(move |req| handle(st.clone(), api_version, req)).await;
        Self { addr, state }
    }

    fn script(&self, replies: impl IntoIterator<Item = AzureReply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    fn refused(&self) -> Vec<String> {
        self.state.refused.lock().unwrap().clone()
    }

    fn last_body(&self) -> Value {
        self.state.bodies.lock().unwrap().last().cloned().unwrap()
    }
}

async fn handle(
    state: Arc<State>,
    api_version: &str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let expected_path = format!("/openai/deployments/{DEPLOYMENT}/chat/completions");
    let expected_query = format!("api-version={api_version}");
    let problem = if req.uri().path() != expected_path {
        Some((404, format!("unknown path {}", req.uri().path())))
    } else if req.uri().query() != Some(expected_query.as_str()) {
        Some((404, format!("bad query {:?}", req.uri().query())))
    } else if req.headers().get("api-key").and_then(|v| v.to_str().ok()) != Some(KEY) {
        Some((
            401,
            "Access denied due to invalid subscription key".to_string(),
        ))
    } else if req.headers().contains_key("authorization") {
        Some((401, "unexpected Authorization header".to_string()))
    } else {
        None
    };
    let body = req.into_body().collect().await.unwrap().to_bytes();
    state
        .bodies
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
    if let Some((status, message)) = problem {
        state.refused.lock().unwrap().push(message.clone());
        return Ok(resp(
            status,
            "application/json",
            json!({"error": {"code": status.to_string(), "message": message}}).to_string(),
        ));
    }
    let reply = state.script.lock().unwrap().pop_front();
    Ok(match reply {
        Some(AzureReply::Json(status, v)) => resp(status, "application/json", v.to_string()),
        Some(AzureReply::Sse(text)) => resp(200, "text/event-stream", text),
        None => resp(500, "application/json", "{}".into()),
    })
}

fn resp(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", content_type.parse().unwrap());
    r.headers_mut()
        .insert("apim-request-id", "fake-request-id".parse().unwrap());
    r
}

async fn sidecar(azure: &FakeAzure, api_version: Option<&str>) -> Sidecar {
    let version = api_version
        .map(|v| format!(", apiVersion: \"{v}\""))
        .unwrap_or_default();
    let yaml = route_yaml(
        &format!(
            "    - {{name: az, kind: azure-openai, baseUrl: \"http://{}\", apiKey: {{value: {KEY}}}{version}}}",
            azure.addr
        ),
        &format!(
            "    - model: m\n      targets: [{{provider: az, model: {DEPLOYMENT}}}]\n      retry: {{attempts: 2, backoffBase: 10ms}}\n      circuitBreaker: {{consecutiveFailures: 0}}"
        ),
    );
    Sidecar::start(&yaml).await
}

#[tokio::test]
async fn content_filter_annotations_pass_through() {
    let azure = FakeAzure::start("2024-10-21").await;
    let sc = sidecar(&azure, None).await;
    azure.script([AzureReply::Json(
        200,
        fixture("chat_completion_response.json"),
    )]);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200, "{body} {:?}", azure.refused());
    assert_eq!(
        body["prompt_filter_results"],
        fixture("chat_completion_response.json")["prompt_filter_results"]
    );
    assert_eq!(
        body["choices"][0]["content_filter_results"]["protected_material_code"],
        json!({"filtered": false, "detected": false})
    );
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello! How can I help?"
    );
    // The deployment picks the model; the body's model is the deployment name.
    assert_eq!(azure.last_body()["model"], DEPLOYMENT);

    azure.script([AzureReply::Json(
        200,
        fixture("chat_completion_output_filtered.json"),
    )]);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(
        body["choices"][0]["content_filter_results"]["violence"],
        json!({"filtered": true, "severity": "medium"})
    );
}

#[tokio::test]
async fn streams_with_empty_choice_chunks_pass_through() {
    let azure = FakeAzure::start("2024-06-01").await;
    let sc = sidecar(&azure, Some("2024-06-01")).await;
    azure.script([AzureReply::Sse(testdata("chat_stream_default.sse"))]);
    let mut req = chat_stream("m", "hi");
    req["stream_options"] = json!({"include_usage": true});
    let s = post_stream(&sc.chat_url(), &req).await;
    assert_eq!(s.status, 200, "{:?}", azure.refused());
    assert_eq!(s.content(), "Hello! How can I help?");
    let chunks: Vec<Value> = s
        .data()
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"], json!([]));
    assert!(chunks[0]["prompt_filter_results"].is_array());
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 7);
    assert_eq!(s.data().last().map(String::as_str), Some("[DONE]"));

    // Async filter: the annotation-only chunk neither adds text nor ends the stream.
    azure.script([AzureReply::Sse(testdata("chat_stream_async_filter.sse"))]);
    let s = post_stream(&sc.chat_url(), &chat_stream("m", "story")).await;
    assert_eq!(s.content(), "Once upon a time");
    assert!(s.text().contains("content_filter_offsets"));
    assert_eq!(s.data().last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_content_filter_400_is_not_retried() {
    let azure = FakeAzure::start("2024-10-21").await;
    let sc = sidecar(&azure, None).await;
    azure.script([
        AzureReply::Json(400, fixture("error_400_content_filter_prompt.json")),
        AzureReply::Json(200, fixture("chat_completion_response.json")),
    ]);
    let (status, _, body) = post_json(&sc.chat_url(), &chat("m", "bad")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "content_filter");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("content management policy")
    );
    assert_eq!(azure.hits(), 1);
}

#[tokio::test]
async fn a_wrong_api_version_is_refused_by_the_fake() {
    // The fake checks what it claims to: a different version is a 404 there.
    let azure = FakeAzure::start("2099-01-01").await;
    let sc = sidecar(&azure, None).await;
    let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
    assert_eq!(status, 404);
    assert!(azure.refused()[0].contains("api-version=2024-10-21"));
}

// ---- the OpenAI Python SDK ----

#[tokio::test]
async fn the_openai_python_sdk_reads_azure_answers() {
    let Some(python) = python() else { return };
    let azure = FakeAzure::start("2024-10-21").await;
    let sc = sidecar(&azure, None).await;
    let base = format!("{}/v1", sc.url);

    azure.script([AzureReply::Json(
        200,
        fixture("chat_completion_response.json"),
    )]);
    let plain = sdk(&python, &base, "azure_plain").await;
    assert_eq!(plain["content"], "Hello! How can I help?", "{plain}");
    assert_eq!(plain["prompt_tokens"], 12);
    assert_eq!(
        plain["prompt_filter_results"][0]["content_filter_results"]["jailbreak"],
        json!({"filtered": false, "detected": false})
    );
    assert_eq!(
        plain["content_filter_results"]["hate"],
        json!({"filtered": false, "severity": "safe"})
    );

    azure.script([AzureReply::Sse(testdata("chat_stream_default.sse"))]);
    let stream = sdk(&python, &base, "azure_stream").await;
    assert_eq!(stream["content"], "Hello! How can I help?", "{stream}");
    assert_eq!(stream["finish"], json!(["stop"]));
    assert_eq!(stream["empty_choice_chunks"], 2);
    assert_eq!(stream["usage"], json!([7]));
    assert_eq!(
        stream["prompt_filter_results"][0][0]["prompt_index"],
        json!(0)
    );

    azure.script([AzureReply::Json(
        400,
        fixture("error_400_content_filter_prompt.json"),
    )]);
    let hits = azure.hits();
    let filtered = sdk(&python, &base, "upstream_down").await;
    assert_eq!(filtered["error"], "BadRequestError", "{filtered}");
    assert_eq!(filtered["status"], 400);
    assert_eq!(filtered["code"], "content_filter");
    assert_eq!(azure.hits(), hits + 1);
}
