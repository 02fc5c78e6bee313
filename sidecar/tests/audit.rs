//! The audit log through the real server: one JSON line per model call, bodies redacted,
//! the client's trace id, and nothing of the provider's key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests: a failure should stop the test"
)]

mod support;

use std::time::Duration;

use modelroute_sidecar::Options;
use modelroute_sidecar::telemetry::AuditOptions;
use modelroute_sidecar::telemetry::audit::Sink;
use serde_json::Value;
use support::*;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const KEY: &str = "sk-test-audit-secret-0000";

/// Reads the audit file until it holds `n` lines (the writer runs on its own task).
async fn lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            !text.contains(KEY),
            "the provider key reached the audit log"
        );
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
            .collect();
        if lines.len() >= n || tokio::time::Instant::now() > deadline {
            assert_eq!(lines.len(), n, "{text}");
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_call_is_one_json_line_with_who_what_and_cost() {
    let text = FakeUpstream::start(Reply::Text("ok".into())).await;
    let streamed = FakeUpstream::start(Reply::Stream {
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
    - {{name: main, kind: openai, baseUrl: "{}", apiKey: {{value: {KEY}}}}}
    - {{name: streamer, kind: openai, baseUrl: "{}", apiKey: {{value: {KEY}}}}}
  pricing:
    - {{provider: main, model: "*", input: 1000, output: 2000}}
  routes:
    - model: m
      targets: [{{provider: main, model: big}}]
    - model: s
      targets: [{{provider: streamer, model: fast}}]
"#,
        text.base_url(),
        streamed.base_url(),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("route.yaml"), config).unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let sc = Sidecar::start_options(
        dir,
        Options {
            pod_name: "web-1".into(),
            pod_namespace: "team-a".into(),
            audit: AuditOptions {
                sink: Some(Sink::File(audit_file.clone())),
                bodies: true,
                redact: vec![r"[\w.]+@[\w.]+".into()],
            },
            ..Options::default()
        },
    )
    .await;

    let (status, _, _) = post_json_with(
        &sc.chat_url(),
        &chat("m", "mail ann@example.com the answer"),
        &[
            ("traceparent", TRACEPARENT),
            ("authorization", "Bearer sk-app-1"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let stream = post_stream(&sc.chat_url(), &chat_stream("s", "hi")).await;
    assert_eq!(stream.status, 200);
    assert_eq!(stream.content(), "Hello");
    let (status, _, _) = post_json(&sc.chat_url(), &chat("nope", "hi")).await;
    assert_eq!(status, 404);

    let records = lines(&audit_file, 3).await;
    // A stream's record is written when its task ends, which may be after the next call.
    let of = |route: &str| records.iter().find(|r| r["route"] == route).unwrap();
    let unary = of("m");
    assert_eq!(unary["namespace"], "team-a");
    assert_eq!(unary["pod"], "web-1");
    assert_eq!(unary["route"], "m");
    assert_eq!(unary["target"], "main/big");
    assert_eq!(unary["provider"], "main");
    assert_eq!(unary["model"], "big");
    assert_eq!(unary["status"], 200);
    assert_eq!(unary["stream"], false);
    // The fake upstream reports 5 prompt and 7 completion tokens: 5 × $0.001 + 7 × $0.002.
    assert_eq!(unary["input_tokens"], 5);
    assert_eq!(unary["output_tokens"], 7);
    assert_eq!(unary["cost_usd"], "0.019");
    assert!(unary.get("cost_estimated").is_none());
    assert_eq!(unary["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert!(unary["latency_ms"].as_f64().unwrap() > 0.0);
    assert!(unary.get("ttft_ms").is_none());
    let request_body = unary["request_body"].as_str().unwrap();
    assert!(
        request_body.contains("mail [REDACTED] the answer"),
        "{request_body}"
    );
    assert!(!request_body.contains("ann@example.com"));
    assert!(unary["response_body"].as_str().unwrap().contains("\"ok\""));
    let time = unary["time"].as_str().unwrap();
    assert!(
        time.parse::<jiff::Timestamp>().is_ok() && time.ends_with('Z'),
        "{time}"
    );

    let streamed = of("s");
    assert_eq!(streamed["route"], "s");
    assert_eq!(streamed["target"], "streamer/fast");
    assert_eq!(streamed["stream"], true);
    assert_eq!(streamed["status"], 200);
    assert!(streamed.get("error").is_none());
    assert!(streamed.get("cost_usd").is_none(), "no price for streamer");
    let ttft = streamed["ttft_ms"].as_f64().unwrap();
    assert!(ttft > 0.0 && ttft <= streamed["latency_ms"].as_f64().unwrap());
    let sent = streamed["response_body"].as_str().unwrap();
    assert!(sent.contains("data: ") && sent.contains("[DONE]"), "{sent}");
    assert!(streamed.get("trace_id").is_none());

    let unknown = of("nope");
    assert_eq!(unknown["status"], 404);
    assert_eq!(unknown["error"], "unknown_model");
    assert!(unknown.get("target").is_none());
}

#[tokio::test]
async fn without_the_switch_bodies_stay_out() {
    let text = FakeUpstream::start(Reply::Text("secret answer".into())).await;
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
        text.base_url(),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("route.yaml"), config).unwrap();
    let audit_file = dir.path().join("audit.jsonl");
    let sc = Sidecar::start_options(
        dir,
        Options {
            audit: AuditOptions {
                sink: Some(Sink::File(audit_file.clone())),
                ..AuditOptions::default()
            },
            ..Options::default()
        },
    )
    .await;
    let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "private prompt")).await;
    assert_eq!(status, 200);
    let records = lines(&audit_file, 1).await;
    assert!(records[0].get("request_body").is_none());
    assert!(records[0].get("response_body").is_none());
    let text = std::fs::read_to_string(&audit_file).unwrap();
    assert!(!text.contains("private prompt") && !text.contains("secret answer"));
}
