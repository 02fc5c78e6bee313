//! What smart routing costs one request, in process: ordering the targets with each
//! strategy (weighted, latency, cost), match rules, prompt-cache affinity, and the
//! response cache's key, lookup and answer — timed over many requests, with no network or
//! scheduler noise. `limits-bench --routing` (e2e) measures a routed sidecar end to end.
//!
//! ```text
//! cargo bench -p modelroute-sidecar --bench routing
//! ```

#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "benchmark binary: the report goes to stdout, setup failures end it"
)]

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::HeaderMap;
use modelroute_sidecar::api::chat::ModelRequest;
use modelroute_sidecar::cache::{Answer, Entry, ResponseCache, deterministic, key_of};
use modelroute_sidecar::config::{self, SecretKeys};
use modelroute_sidecar::route::ask::Ask;
use modelroute_sidecar::telemetry::Metrics;
use tokio::time::Instant;

const CONFIG: &str = r#"
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: bench, namespace: default}
spec:
  providers:
    - {name: a, kind: openai, baseUrl: "http://127.0.0.1:9/v1"}
    - {name: b, kind: openai, baseUrl: "http://127.0.0.1:9/v1"}
    - {name: c, kind: openai, baseUrl: "http://127.0.0.1:9/v1"}
  pricing:
    - {provider: a, model: "*", input: 0.15, output: 0.6}
    - {provider: b, model: "*", input: 2.5, output: 10}
    - {provider: c, model: "*", input: 0.27, output: 1.1}
  routes:
    - model: weighted
      targets: [{provider: a, model: m, weight: 3}, {provider: b, model: m}, {provider: c, model: m}]
    - model: latency
      strategy: {type: latency}
      targets: [{provider: a, model: m}, {provider: b, model: m}, {provider: c, model: m}]
    - model: cost
      strategy: {type: cost, maxLatency: 2s}
      targets: [{provider: a, model: m}, {provider: b, model: m}, {provider: c, model: m}]
    - model: rules
      targets: [{provider: a, model: m}]
      rules:
        - {name: acme, match: {headers: {x-tenant: {exact: acme}}}, targets: [{provider: b, model: m}]}
        - {name: secure, match: {headers: {x-security-level: {oneOf: [high, secret]}}}, targets: [{provider: c, model: m}]}
        - {name: long, match: {promptTokens: {atLeast: 100000}}, targets: [{provider: b, model: m}]}
    - model: affinity
      promptAffinity: {minTokens: 100}
      targets: [{provider: a, model: m}, {provider: b, model: m}, {provider: c, model: m}]
"#;

/// A typical chat request (about 1 KB: a system prompt and a question).
fn body(model: &str) -> String {
    let system = "You are a helpful assistant for an online shop. ".repeat(16);
    format!(
        r#"{{"model":"{model}","temperature":0,"messages":[{{"role":"system","content":"{system}"}},{{"role":"user","content":"Where is my order 12345?"}}]}}"#
    )
}

const PER_BATCH: u32 = 20_000;
const BATCHES: usize = 15;

/// Median nanoseconds per call of `step` over the batches.
fn time(step: &dyn Fn()) -> f64 {
    let mut runs: Vec<Duration> = (0..BATCHES)
        .map(|_| {
            let t0 = Instant::now();
            for _ in 0..PER_BATCH {
                step();
            }
            t0.elapsed()
        })
        .collect();
    runs.sort();
    runs[BATCHES / 2].as_nanos() as f64 / f64::from(PER_BATCH)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    let docs = config::file::read(&path).unwrap();
    let table =
        config::compile(&docs, "bench", &SecretKeys::none(), None, &Metrics::new()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "other".parse().unwrap());

    // Latency statistics as after some traffic: every target measured recently.
    let now = Instant::now();
    for (i, target) in table.route("latency").unwrap().targets.iter().enumerate() {
        for n in 0..50u64 {
            let ms = 200 + 100 * i as u64 + n % 7;
            target.latency.first_token(Duration::from_millis(ms), now);
        }
    }

    let plan_of = |alias: &str| {
        let route = table.route(alias).unwrap().clone();
        let request = ModelRequest::parse(body(alias).into_bytes()).unwrap();
        time(&|| {
            let ask = Ask::new(&headers, &request);
            black_box(route.plan(black_box(&ask)));
        })
    };
    let sample = ModelRequest::parse(body("weighted").into_bytes()).unwrap();
    let estimate = time(&|| {
        black_box(modelroute_sidecar::cost::estimate_request_tokens(
            black_box(sample.body()),
        ));
    });
    println!(
        "prompt estimate of the {} B request (rules on promptTokens, cost, affinity): {estimate:.0} ns",
        sample.body().len()
    );
    println!("ordering the targets of one request (3 targets), ns:");
    for alias in ["weighted", "latency", "cost", "rules", "affinity"] {
        println!("  {alias:<9} {:>6.0}", plan_of(alias));
    }

    let request = body("cached");
    let bytes = request.as_bytes();
    let cache = ResponseCache::new(64 * 1024 * 1024);
    let key = key_of("chat", "cached", false, bytes).unwrap();
    let answer = Bytes::from(vec![b'x'; 800]);
    cache.insert(
        key,
        Entry {
            answer: Answer::Unary {
                status: 200,
                body: answer.clone(),
            },
            target: "a/m".into(),
            stored_at: SystemTime::now(),
        },
        Duration::from_secs(600),
    );
    let other = key_of("chat", "other", false, bytes).unwrap();
    let check = time(&|| {
        black_box(deterministic(black_box(bytes)));
    });
    let keying = time(&|| {
        black_box(key_of("chat", "cached", false, black_box(bytes)).unwrap());
    });
    let hit = time(&|| {
        black_box(cache.get(black_box(&key)));
    });
    let miss = time(&|| {
        black_box(cache.get(black_box(&other)));
    });
    println!(
        "response cache ({} B request), ns: deterministic check {check:.0}, key {keying:.0}, \
         lookup hit {hit:.0}, lookup miss {miss:.0}",
        bytes.len()
    );
    let long = format!(
        r#"{{"model":"cached","temperature":0,"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "word ".repeat(20_000)
    );
    let long_key = time(&|| {
        black_box(key_of("chat", "cached", false, black_box(long.as_bytes())).unwrap());
    });
    println!(
        "  key of a {} KB request: {:.1} µs",
        long.len() / 1024,
        long_key / 1000.0
    );
}
