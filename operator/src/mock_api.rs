//! A scripted Kubernetes API server for tests: a `kube::Client` over
//! `tower_test::mock::pair()`, and the calls it receives, one at a time, for the test to
//! check and answer (kube-rs controller-rs's `fixtures.rs` style).

use std::collections::BTreeMap;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, SendResponse};

/// The test's end of the mocked API server.
pub struct ApiServer(mock::Handle<Request<Body>, Response<Body>>);

/// One request the client made.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    /// The JSON body (`Null` when there is none).
    pub body: Value,
    respond: SendResponse<Response<Body>>,
}

/// A client and the server it talks to.
pub fn pair() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

// === impl ApiServer ===

impl ApiServer {
    /// The next request; fails the test when none comes within 10 s (of paused or real
    /// time).
    pub async fn next(&mut self) -> Call {
        self.try_next(Duration::from_secs(10))
            .await
            .expect("the client made no request within 10 s")
    }

    /// The next request, if one comes within `within`.
    pub async fn try_next(&mut self, within: Duration) -> Option<Call> {
        let (request, respond) = tokio::time::timeout(within, self.0.next_request())
            .await
            .ok()?
            .expect("the client is gone");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.expect("request body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("request body is JSON")
        };
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_string(), v.to_string())
            })
            .collect();
        Some(Call {
            method: parts.method,
            path: parts.uri.path().to_string(),
            query,
            body,
            respond,
        })
    }
}

// === impl Call ===

impl Call {
    /// Asserts method and path.
    pub fn expect(&self, method: Method, path: &str) {
        assert_eq!(
            (&self.method, self.path.as_str()),
            (&method, path),
            "unexpected request (query {:?}, body {})",
            self.query,
            self.body
        );
    }

    pub fn respond(self, status: StatusCode, body: &Value) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap();
        self.respond.send_response(response);
    }

    pub fn ok(self, body: &Value) {
        self.respond(StatusCode::OK, body);
    }

    /// Answers with a `Status` failure, as the API server does.
    pub fn fail(self, code: u16, reason: &str) {
        let status = StatusCode::from_u16(code).unwrap();
        self.respond(
            status,
            &json!({
                "apiVersion": "v1", "kind": "Status", "status": "Failure",
                "message": format!("scripted {reason}"), "reason": reason, "code": code,
            }),
        );
    }
}
