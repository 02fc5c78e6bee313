//! Observability through the real server: the audit log (one JSON line per model call,
//! bodies redacted, the client's trace id, nothing of the provider's key) and the GenAI
//! metrics, scraped and parsed as Prometheus text.

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

/// Route `m` (unary, priced) on `text` and route `s` (streamed) on `streamed`.
fn shop(text: &FakeUpstream, streamed: &FakeUpstream) -> String {
    format!(
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
    )
}

#[tokio::test]
async fn every_call_is_one_json_line_with_who_what_and_cost() {
    let text = FakeUpstream::start(Reply::Text("ok".into())).await;
    let streamed = FakeUpstream::start(Reply::Stream {
        pieces: vec!["Hel".into(), "lo".into()],
        delay: Duration::from_millis(5),
    })
    .await;
    let config = shop(&text, &streamed);
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

#[tokio::test]
async fn gen_ai_metrics_count_what_was_asked_of_whom() {
    let text = FakeUpstream::start(Reply::Text("ok".into())).await;
    let streamed = FakeUpstream::start(Reply::Stream {
        pieces: vec!["Hel".into(), "lo".into()],
        delay: Duration::from_millis(5),
    })
    .await;
    let sc = Sidecar::start(&shop(&text, &streamed)).await;
    for _ in 0..2 {
        let (status, _, _) = post_json(&sc.chat_url(), &chat("m", "hi")).await;
        assert_eq!(status, 200);
    }
    let stream = post_stream(&sc.chat_url(), &chat_stream("s", "hi")).await;
    assert_eq!(stream.content(), "Hello");
    let (status, _, _) = post_json(&sc.chat_url(), &chat("no-such-model", "hi")).await;
    assert_eq!(status, 404);
    // The stream's call is reported when its task ends.
    let streamed_labels = [
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "s"),
        ("gen_ai_response_model", "fast"),
    ];
    for _ in 0..100 {
        let n = sc
            .metric(
                "gen_ai_client_operation_duration_seconds_count",
                &streamed_labels,
            )
            .await;
        if n >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let unary = [
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_request_model", "m"),
        ("gen_ai_response_model", "big"),
    ];
    let with = |extra: (&'static str, &'static str)| {
        let mut labels = unary.to_vec();
        labels.push(extra);
        labels
    };
    let duration = "gen_ai_client_operation_duration_seconds_count";
    assert_eq!(sc.metric(duration, &with(("error_type", ""))).await, 2.0);
    // The fake answers 5 prompt and 7 completion tokens.
    let tokens = "gen_ai_client_token_usage_sum";
    assert_eq!(
        sc.metric(tokens, &with(("gen_ai_token_type", "input")))
            .await,
        10.0
    );
    assert_eq!(
        sc.metric(tokens, &with(("gen_ai_token_type", "output")))
            .await,
        14.0
    );
    let count = "gen_ai_client_token_usage_count";
    assert_eq!(
        sc.metric(count, &with(("gen_ai_token_type", "output")))
            .await,
        2.0
    );

    // The stream: 11 prompt tokens, one completion token per piece, and its first token.
    assert_eq!(sc.metric(duration, &streamed_labels).await, 1.0);
    let mut input = streamed_labels.to_vec();
    input.push(("gen_ai_token_type", "input"));
    assert_eq!(sc.metric(tokens, &input).await, 11.0);
    // Every byte the client got of the stream is counted.
    let streamed_bytes: usize = stream.chunks.iter().map(|(_, b)| b.len()).sum();
    let counted = sc
        .metric(
            "modelroute_stream_bytes_total",
            &[("route", "s"), ("target", "streamer/fast")],
        )
        .await;
    assert_eq!(counted, streamed_bytes as f64);
    let ttft = "gen_ai_server_time_to_first_token_seconds_count";
    assert_eq!(sc.metric(ttft, &streamed_labels).await, 1.0);
    assert_eq!(
        sc.metric(ttft, &unary).await,
        0.0,
        "unary calls have no first token"
    );

    // Both upstreams (on 127.0.0.1) were reached over pooled connections that stay open.
    let host = [("host", "127.0.0.1")];
    let opened = sc
        .metric("modelroute_upstream_connections_opened_total", &host)
        .await;
    let open = sc
        .metric("modelroute_upstream_connections_open", &host)
        .await;
    assert!(opened >= 2.0, "{opened} connections opened");
    assert!(open >= 1.0 && open <= opened, "{open} open of {opened}");

    // The unknown model is counted, under no model label: names from requests never
    // become labels.
    let unknown = [
        ("gen_ai_request_model", ""),
        ("gen_ai_provider_name", ""),
        ("error_type", "unknown_model"),
    ];
    assert_eq!(sc.metric(duration, &unknown).await, 1.0);
    let text = get_text(&format!("{}/metrics", sc.admin)).await;
    assert!(
        !text.contains("no-such-model"),
        "a request's model became a label"
    );
}
