//! What enforcing budgets and rate limits costs one request, in process: the prompt
//! estimate, admission (rate limits, budget reservations), settlement (cost from usage and
//! price, booked against every budget) and the response headers — everything the request
//! path does for a limited route and not for a plain one — timed over many requests, with
//! no network or scheduler noise. `limits-bench` (e2e) measures the same end to end.
//!
//! ```text
//! cargo bench -p modelroute-sidecar --bench limits
//! ```

#![expect(
    clippy::print_stdout,
    clippy::unwrap_used,
    reason = "benchmark binary: the report goes to stdout, setup failures end it"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use http::HeaderMap;
use modelroute_sidecar::api::chat::ModelRequest;
use modelroute_sidecar::config::{self, SecretKeys};
use modelroute_sidecar::cost::{TokenUsage, estimate_request_tokens};
use modelroute_sidecar::limits::admission::{self, RequestFacts};
use modelroute_sidecar::limits::rate::{RateHeaders, Remaining};
use modelroute_sidecar::limits::{Ledger, Limits, Mode, headers};
use modelroute_sidecar::telemetry::Metrics;

/// The bench route of `limits-bench` with its limits: a route-wide monthly budget, a
/// per-tenant daily budget and a rate limit, all far above the load.
const CONFIG: &str = r#"
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: bench, namespace: default}
spec:
  providers:
    - {name: fake, kind: openai, baseUrl: "http://127.0.0.1:9/v1"}
  routes:
    - model: gpt-4o-mini
      targets: [{provider: fake, model: fake-model}]
  pricing:
    - {provider: fake, model: "*", input: 0.15, output: 0.6}
  budgets:
    - {name: monthly, amountUsd: 1000000000, window: monthly, thresholds: [50, 80]}
    - {name: per-tenant, amountUsd: 100000000, window: daily, scope: header, header: x-tenant}
  rateLimits:
    - {name: rpm, requestsPerMinute: 2000000000, tokensPerMinute: 2000000000}
"#;

const BODY: &str = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}]}"#;

/// Requests per timed batch, and batches (the median batch is reported).
const PER_BATCH: u32 = 20_000;
const BATCHES: usize = 15;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.yaml");
    std::fs::write(&path, CONFIG).unwrap();
    let docs = config::file::read(&path).unwrap();
    let metrics = Metrics::new();
    let table = config::compile(&docs, "bench", &SecretKeys::none(), None, &metrics).unwrap();
    let route = table.route("gpt-4o-mini").unwrap().clone();
    let target = route.targets[0].clone();
    let limits = Arc::new(Limits::new(Mode::Standalone, "bench-pod".into(), None));
    let request = ModelRequest::parse(BODY.as_bytes().to_vec()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "acme".parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let one = || async {
        let user = request.user();
        let facts = RequestFacts {
            headers: &headers,
            user: user.as_deref(),
            input_tokens: estimate_request_tokens(request.body()),
            max_tokens: request.max_tokens(),
        };
        let admission = admission::admit(
            &limits,
            &route.limits,
            route.ceiling,
            &route.alias,
            facts,
            &metrics,
        )
        .await
        .unwrap();
        let admitted = headers::Admitted::of(&admission);
        let usage = TokenUsage::estimated(12, 9);
        let cost = admission.settle(Some(&target), Some(usage), 0, &route.alias, &metrics);
        let mut response = HeaderMap::new();
        admitted.write(&mut response);
        headers::cost(&mut response, cost.unwrap());
        response
    };

    let time = |batch: &dyn Fn() -> Duration| {
        let mut runs: Vec<Duration> = (0..BATCHES).map(|_| batch()).collect();
        runs.sort();
        runs[BATCHES / 2].as_nanos() as f64 / f64::from(PER_BATCH)
    };
    let limited = time(&|| {
        runtime.block_on(async {
            let t0 = Instant::now();
            for _ in 0..PER_BATCH {
                std::hint::black_box(one().await);
            }
            t0.elapsed()
        })
    });
    // The same loop with nothing to enforce: what the request path does for a plain route
    // (an empty header map for the response).
    let plain = time(&|| {
        runtime.block_on(async {
            let t0 = Instant::now();
            for _ in 0..PER_BATCH {
                std::hint::black_box(HeaderMap::new());
            }
            t0.elapsed()
        })
    });
    // Where it goes: the pieces alone, same batches.
    let loop_of = |step: &dyn Fn()| {
        time(&|| {
            let t0 = Instant::now();
            for _ in 0..PER_BATCH {
                step();
            }
            t0.elapsed()
        })
    };
    let estimate = loop_of(&|| {
        std::hint::black_box(estimate_request_tokens(std::hint::black_box(
            request.body(),
        )));
    });
    let rate_rule = &route.limits.rates[0];
    let rate = loop_of(&|| {
        let now = Instant::now();
        let (_, taken) = limits
            .rates
            .take(rate_rule, String::new(), 100, now)
            .unwrap();
        limits.rates.settle(&taken.unwrap(), 20, now);
    });
    let budget = &route.limits.budgets[1];
    let one_budget = loop_of(&|| {
        let key = Ledger::key(budget, "acme".into(), SystemTime::now());
        limits.ledger.reserve(budget, &key, 1000, 10, true);
        std::hint::black_box(limits.ledger.settle(budget, &key, 1000, 10));
    });
    let left = Remaining {
        limit: 100_000,
        remaining: 99_999,
        reset: Duration::from_millis(20),
    };
    let rate_headers = RateHeaders {
        requests: Some(left),
        tokens: Some(left),
    };
    let six_headers = loop_of(&|| {
        let mut response = HeaderMap::new();
        headers::ratelimit(&mut response, &rate_headers);
        std::hint::black_box(response);
    });
    println!(
        "enforcement per request: {:.0} ns (empty loop {plain:.0} ns)",
        limited - plain
    );
    println!(
        "of which: prompt estimate {estimate:.0} ns, a rate limit (take + settle) {rate:.0} ns, \
         a budget (reserve + settle) {one_budget:.0} ns, six x-ratelimit headers {six_headers:.0} ns"
    );
}
