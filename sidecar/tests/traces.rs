//! Traces through the real binary: an OTLP gRPC receiver on loopback (built on the
//! OpenTelemetry protobuf definitions) gets the spans of a streamed request that failed
//! over, continuing the app's `traceparent` and passed on to each upstream; and a
//! collector that never answers costs the requests nothing but counted drops.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure should stop the test"
)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::json;
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const APP_SPAN: &str = "00f067aa0ba902b7";
const KEY: &str = "sk-test-trace-secret-0000";
const PROMPT: &str = "a private prompt";

/// What the receiver got: every export request, whole.
#[derive(Clone, Default)]
struct Collector {
    exports: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.exports.lock().unwrap().push(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    async fn start() -> (Self, SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let collector = Self::default();
        let service = TraceServiceServer::new(collector.clone());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (collector, addr)
    }

    /// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf) on loopback.
    async fn start_http() -> (Self, SocketAddr) {
        use http_body_util::BodyExt;
        use prost::Message;
        let collector = Self::default();
        let exports = collector.exports.clone();
        let addr = support::serve::loopback(move |req: http::Request<hyper::body::Incoming>| {
            let exports = exports.clone();
            async move {
                assert_eq!(req.uri().path(), "/v1/traces");
                let body = req.into_body().collect().await.unwrap().to_bytes();
                let export = ExportTraceServiceRequest::decode(body).unwrap();
                exports.lock().unwrap().push(export);
                let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/x-protobuf"),
                );
                Ok::<_, std::convert::Infallible>(resp)
            }
        })
        .await;
        (collector, addr)
    }

    /// The spans received so far, each with its resource's attributes.
    fn spans(&self) -> Vec<(HashMap<String, String>, Span)> {
        let exports = self.exports.lock().unwrap();
        let mut out = Vec::new();
        for export in exports.iter() {
            for rs in &export.resource_spans {
                let resource = rs
                    .resource
                    .as_ref()
                    .map_or_else(HashMap::new, |r| attributes(&r.attributes));
                for ss in &rs.scope_spans {
                    for span in &ss.spans {
                        out.push((resource.clone(), span.clone()));
                    }
                }
            }
        }
        out
    }

    /// Waits (up to 10 s) for `n` spans.
    async fn wait_spans(&self, n: usize) -> Vec<(HashMap<String, String>, Span)> {
        for _ in 0..200 {
            let spans = self.spans();
            if spans.len() >= n {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("only {} spans arrived", self.spans().len());
    }
}

fn attributes(kvs: &[KeyValue]) -> HashMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), value(kv.value.as_ref())))
        .collect()
}

fn value(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| value(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        other => format!("{other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sidecar binary, with these `OTEL_*` variables; killed when dropped.
struct Process {
    _child: Child,
    url: String,
    admin: String,
    _dir: tempfile::TempDir,
}

async fn sidecar(config: &str, env: &[(&str, &str)]) -> Process {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("route.yaml");
    std::fs::write(&path, config).unwrap();
    let source = vec!["--config".to_string(), path.display().to_string()];
    spawn(dir, &source, env).await
}

/// The sidecar binary with `source` (its config flags) and `env`, on loopback ports.
async fn spawn(dir: tempfile::TempDir, source: &[String], env: &[(&str, &str)]) -> Process {
    let mut child = Command::new(env!("CARGO_BIN_EXE_modelroute-sidecar"))
        .args(source)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--pod-name", "web-1", "--pod-namespace", "team-a"])
        .envs(env.iter().copied())
        .env("NODE_NAME", "node-1")
        .env("POD_SERVICE_ACCOUNT", "shop")
        .env("OTEL_RESOURCE_ATTRIBUTES", "k8s.deployment.name=web")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("modelroute sidecar listening") {
                return line;
            }
        }
        panic!("the sidecar exited before it listened");
    })
    .await
    .expect("the sidecar did not start within 20 s");
    // Keep draining its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let field = |name: &str| {
        let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        line[at..].split_whitespace().next().unwrap().to_string()
    };
    Process {
        _child: child,
        url: format!("http://{}/v1/chat/completions", field("proxy")),
        admin: format!("http://{}", field("admin")),
        _dir: dir,
    }
}

/// A primary that answers 503 and a streaming fallback, one try each.
async fn failover_config() -> (String, FakeUpstream, FakeUpstream) {
    let down = FakeUpstream::start(Reply::Error {
        status: 503,
        message: "overloaded".into(),
        retry_after_ms: None,
    })
    .await;
    let up = FakeUpstream::start(Reply::Stream {
        pieces: vec!["Hel".into(), "lo".into()],
        delay: Duration::from_millis(5),
    })
    .await;
    let config = format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {{name: shop, namespace: team-a}}
spec:
  providers:
    - {{name: down, kind: openai, baseUrl: "{}", apiKey: {{value: {KEY}}}}}
    - {{name: up, kind: openai, baseUrl: "{}", apiKey: {{value: {KEY}}}}}
  pricing:
    - {{provider: up, model: "*", input: 1000, output: 2000}}
  routes:
    - model: m
      targets: [{{provider: down, model: big}}]
      fallbacks: [{{provider: up, model: fast}}]
      retry: {{attempts: 0}}
"#,
        down.base_url(),
        up.base_url(),
    );
    (config, down, up)
}

#[tokio::test]
async fn a_failed_over_stream_is_one_trace_from_the_app_through_each_upstream() {
    let (collector, otlp) = Collector::start().await;
    let (config, down, up) = failover_config().await;
    let endpoint = format!("http://{otlp}");
    let sc = sidecar(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ],
    )
    .await;

    let traceparent = format!("00-{TRACE_ID}-{APP_SPAN}-01");
    let mut body = chat_stream("m", PROMPT);
    body["max_tokens"] = json!(50);
    body["temperature"] = json!(0.25);
    let streamed = post_stream_with(&sc.url, &body, &[("traceparent", &traceparent)]).await;
    assert_eq!(streamed.status, 200);
    assert_eq!(streamed.content(), "Hello");

    let spans = collector.wait_spans(3).await;
    assert_eq!(spans.len(), 3, "one server span and two attempts");
    let (resource, _) = &spans[0];
    for (key, want) in [
        ("service.name", "modelroute-sidecar"),
        ("k8s.pod.name", "web-1"),
        ("k8s.namespace.name", "team-a"),
        ("k8s.node.name", "node-1"),
        ("k8s.serviceaccount.name", "shop"),
        ("k8s.deployment.name", "web"),
    ] {
        assert_eq!(resource.get(key).map(String::as_str), Some(want), "{key}");
    }

    let server = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a server span");
    assert_eq!(server.name, "chat m");
    assert_eq!(hex(&server.trace_id), TRACE_ID, "the app's trace continues");
    assert_eq!(hex(&server.parent_span_id), APP_SPAN);
    let attrs = attributes(&server.attributes);
    let want = [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "m"),
        ("gen_ai.request.max_tokens", "50"),
        ("gen_ai.request.temperature", "0.25"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.response.model", "fast"),
        ("gen_ai.usage.input_tokens", "11"),
        ("gen_ai.usage.output_tokens", "2"),
        ("modelroute.route", "m"),
        ("modelroute.modelroute", "team-a/shop"),
        ("modelroute.target", "up/fast"),
        ("modelroute.attempts", "2"),
        ("modelroute.ordered_by", "weighted"),
        // 11 × $0.001 + 2 × $0.002
        ("modelroute.cost_usd", "0.015"),
        ("gen_ai.response.finish_reasons", "[stop]"),
        ("http.response.status_code", "200"),
    ];
    for (key, value) in want {
        assert_eq!(
            attrs.get(key).map(String::as_str),
            Some(value),
            "{key}: {attrs:?}"
        );
    }
    assert!(
        server.events.iter().any(|e| e.name == "gen_ai.first_token"),
        "time to first token is an event"
    );

    let mut attempts: Vec<&Span> = spans
        .iter()
        .map(|(_, s)| s)
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| s.start_time_unix_nano);
    let [first, second] = attempts[..] else {
        panic!("two attempts, got {}", attempts.len());
    };
    for attempt in [first, second] {
        assert_eq!(hex(&attempt.trace_id), TRACE_ID);
        assert_eq!(
            attempt.parent_span_id, server.span_id,
            "attempts are children"
        );
    }
    let first_attrs = attributes(&first.attributes);
    assert_eq!(first.name, "chat big");
    assert_eq!(first_attrs["modelroute.target"], "down/big");
    assert_eq!(first_attrs["modelroute.attempt"], "1");
    assert_eq!(first_attrs["http.response.status_code"], "503");
    assert_eq!(first_attrs["error.type"], "status_5xx");
    let second_attrs = attributes(&second.attributes);
    assert_eq!(second.name, "chat fast");
    assert_eq!(second_attrs["modelroute.attempt"], "2");
    assert_eq!(second_attrs["modelroute.fallback_reason"], "status_5xx");
    assert_eq!(second_attrs["gen_ai.request.model"], "fast");
    assert!(!second_attrs.contains_key("error.type"));

    // Each upstream got the trace with its own attempt as the parent.
    for (upstream, attempt) in [(&down, first), (&up, second)] {
        let seen = upstream.seen();
        let got = seen[0].headers["traceparent"].to_str().unwrap();
        assert_eq!(
            got,
            format!("00-{TRACE_ID}-{}-01", hex(&attempt.span_id)),
            "the upstream's parent is its attempt"
        );
    }

    // Nothing secret anywhere in what was exported.
    let everything = format!("{:?}", collector.exports.lock().unwrap());
    assert!(!everything.contains(KEY), "the provider key was exported");
    assert!(!everything.contains(PROMPT), "the prompt was exported");
    drop(sc);
}

#[tokio::test]
async fn a_collector_that_never_answers_costs_requests_nothing_but_counted_drops() {
    // Accepts connections (the kernel does) and never says a word.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let (config, _down, _up) = failover_config().await;
    let sc = sidecar(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "2"),
        ],
    )
    .await;
    let requests = 30;
    for _ in 0..requests {
        let streamed = post_stream(&sc.url, &chat_stream("m", "hi")).await;
        assert_eq!(streamed.status, 200);
        assert_eq!(streamed.content(), "Hello");
    }
    // At least two spans a request (the server span and one try: once the primary's
    // circuit opens it is skipped); at most 4 queued and one batch of 2 in the stuck export.
    let metrics = get_text(&format!("{}/metrics", sc.admin)).await;
    let dropped: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("modelroute_spans_dropped_total "))
        .expect("the drop counter is exported")
        .parse()
        .unwrap();
    assert!(
        dropped >= f64::from(requests * 2 - 4 - 2),
        "{dropped} spans counted as dropped"
    );
    drop(silent);
}

#[tokio::test]
async fn traces_also_go_over_otlp_http() {
    let (collector, otlp) = Collector::start_http().await;
    let upstream = FakeUpstream::start(Reply::Text("ok".into())).await;
    let config = format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {{name: shop}}
spec:
  providers:
    - {{name: main, kind: openai, baseUrl: "{}"}}
  routes:
    - model: m
      targets: [{{provider: main, model: big}}]
"#,
        upstream.base_url(),
    );
    let endpoint = format!("http://{otlp}");
    let sc = sidecar(
        &config,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ],
    )
    .await;
    let (status, _, _) = post_json(&sc.url, &chat("m", "hi")).await;
    assert_eq!(status, 200);
    let spans = collector.wait_spans(2).await;
    let server = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.kind == SpanKind::Server as i32)
        .expect("a server span");
    let attrs = attributes(&server.attributes);
    assert_eq!(server.name, "chat m");
    assert_eq!(attrs["gen_ai.response.model"], "big");
    assert_eq!(attrs["gen_ai.usage.output_tokens"], "7");
    assert_eq!(attrs["gen_ai.response.finish_reasons"], "[stop]");
    // A new trace (the app sent no traceparent), and the upstream got its attempt's.
    assert!(server.parent_span_id.is_empty());
    let seen = upstream.seen();
    let got = seen[0].headers["traceparent"].to_str().unwrap();
    assert!(
        got.starts_with(&format!("00-{}-", hex(&server.trace_id))),
        "{got}"
    );
    // Still serving after the exports (an export off the runtime used to abort it).
    let (status, _, _) = post_json(&sc.url, &chat("m", "again")).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_pushed_snapshot_is_applied_in_the_operators_trace() {
    use support::fake_operator::{Answer, FakeOperator, resource, snapshot};
    let (collector, otlp) = Collector::start().await;
    let op = FakeOperator::start().await;
    let route = support::harness::route_yaml(
        "    - {name: mock, kind: mock}",
        "    - model: m\n      targets: [{provider: mock, model: small}]",
    );
    let mut pushed = snapshot(1, vec![resource("team-a", &route, &[])]);
    // What the operator's push span puts in the snapshot when it exports traces.
    pushed.traceparent = format!("00-{TRACE_ID}-{APP_SPAN}-01");
    op.push(pushed);

    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tok-1\n").unwrap();
    let source = [
        "--operator".to_string(),
        op.url(),
        "--token-file".to_string(),
        token.display().to_string(),
    ];
    let endpoint = format!("http://{otlp}");
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    let _sc = spawn(dir, &source, &otel).await;
    assert!(matches!(op.answer_to(1).await, Answer::Ack(_)));

    let spans = collector.wait_spans(1).await;
    let apply = spans
        .iter()
        .map(|(_, s)| s)
        .find(|s| s.name == "apply snapshot")
        .expect("an apply span");
    assert_eq!(apply.kind, SpanKind::Consumer as i32);
    assert_eq!(hex(&apply.trace_id), TRACE_ID, "the push's trace continues");
    assert_eq!(
        hex(&apply.parent_span_id),
        APP_SPAN,
        "the push is its parent"
    );
    let attrs = attributes(&apply.attributes);
    assert_eq!(attrs["modelroute.snapshot.version"], "1");
    assert_eq!(attrs["modelroute.snapshot.result"], "ack");
}
