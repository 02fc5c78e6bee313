//! Budgets and rate limits across a fleet, with real binaries: an operator serving
//! ModelRoute files (its ledger in `--ledger-file`) and three sidecar processes spending
//! allowances it grants.
//!
//! The upstream is the built-in mock with a fixed reply, priced by `spec.pricing` so every
//! answer costs the same known amount: 1 prompt word at $1000/M and 5 reply words at
//! $2000/M = $0.011.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use modelroute_e2e::binaries::{self, Profile};
use modelroute_e2e::operator::{Operator, OperatorFiles, SidecarProcess};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

/// nano-USD of one answer.
const ANSWER: u64 = 11_000_000;

fn route(budgets: &str) -> String {
    format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata:
  name: app
  namespace: shop
spec:
  providers:
    - name: mock
      kind: mock
      mock: {{reply: "one two three four five"}}
    - name: cheap
      kind: mock
      mock: {{reply: "cheap"}}
  pricing:
    - {{provider: mock, model: "*", input: 1000, output: 2000}}
    - {{provider: cheap, model: "*", input: 1, output: 1}}
  routes:
    - model: chat
      targets: [{{provider: mock, model: mock-1}}]
{budgets}
"#
    )
}

struct Fleet {
    files: OperatorFiles,
    operator_bin: PathBuf,
    ledger: PathBuf,
    op: Operator,
    sidecars: Vec<Sidecar>,
}

type Sidecar = SidecarProcess;

struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Value,
}

impl Fleet {
    async fn start(budgets: &str) -> Fleet {
        let workspace = binaries::workspace();
        let operator_bin =
            binaries::build(&workspace, "modelroute-operator", Profile::Dev).unwrap();
        let sidecar_bin = binaries::build(&workspace, "modelroute-sidecar", Profile::Dev).unwrap();
        let files = OperatorFiles::new().unwrap();
        files.write_route("app.yaml", &route(budgets)).unwrap();
        let ledger = files.dir.path().join("ledger.json");
        let op = start_operator(
            &files,
            &operator_bin,
            &ledger,
            "127.0.0.1:0".parse().unwrap(),
        );
        let sidecars = ["web-1", "web-2", "web-3"]
            .into_iter()
            .map(|pod| start_sidecar(&sidecar_bin, &files, &op, pod))
            .collect();
        let fleet = Fleet {
            files,
            operator_bin,
            ledger,
            op,
            sidecars,
        };
        fleet.until_in_sync().await;
        fleet
    }

    async fn until_in_sync(&self) {
        let start = Instant::now();
        loop {
            let s = status(&self.op).await;
            if s["modelRoutes"][0]["sidecarsInSync"] == 3 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "not in sync: {s:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILLs the operator and starts it again on the same address and ledger file.
    async fn restart_operator(&mut self) {
        let grpc = self.op.grpc;
        self.op.guard.kill();
        let op = start_operator(&self.files, &self.operator_bin, &self.ledger, grpc);
        self.op = op;
        self.until_in_sync().await;
    }

    /// The operator's recorded spend for `budget` (all scope values), nano-USD.
    async fn recorded(&self, budget: &str) -> u64 {
        let s = status(&self.op).await;
        s["modelRoutes"][0]["budgets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["name"] == budget)
            .map(|b| nano(b["spentUsd"].as_str().unwrap_or("0")))
            .sum()
    }

    /// Waits until the operator has recorded `want` for `budget` (reports flow once a
    /// second); returns what it recorded last.
    async fn until_recorded(&self, budget: &str, want: u64) -> u64 {
        let start = Instant::now();
        loop {
            let got = self.recorded(budget).await;
            if got >= want || start.elapsed() > Duration::from_secs(10) {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn start_operator(files: &OperatorFiles, bin: &Path, ledger: &Path, grpc: SocketAddr) -> Operator {
    let flags = [std::ffi::OsStr::new("--ledger-file"), ledger.as_os_str()];
    files.start_with(bin, grpc, &flags).unwrap()
}

fn start_sidecar(bin: &Path, files: &OperatorFiles, op: &Operator, pod: &str) -> Sidecar {
    SidecarProcess::start(bin, files, op, pod, &files.token_file(), &[]).unwrap()
}

/// A minimal HTTP/1.1 exchange.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let headers: String = extra.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

async fn ask(sidecar: &Sidecar, tenant: Option<&str>) -> Answer {
    ask_at(sidecar.proxy, tenant).await
}

async fn ask_at(proxy: SocketAddr, tenant: Option<&str>) -> Answer {
    let body = r#"{"model":"chat","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#;
    let extra: Vec<(&str, &str)> = tenant.map(|t| ("x-tenant", t)).into_iter().collect();
    http(proxy, "POST", "/v1/chat/completions", body, &extra).await
}

async fn status(op: &Operator) -> Value {
    let a = http(op.admin, "GET", "/status", "", &[]).await;
    assert_eq!(a.status, 200);
    a.body
}

fn nano(usd: &str) -> u64 {
    let (whole, frac) = usd.split_once('.').unwrap_or((usd, ""));
    let frac = format!("{frac:0<9}");
    whole.parse::<u64>().unwrap() * 1_000_000_000 + frac[..9].parse::<u64>().unwrap()
}

/// Drives every sidecar with `per_sidecar` concurrent clients until each client has seen
/// a refusal; returns (served, cost of what was served in nano-USD).
async fn drain(fleet: &Fleet, per_sidecar: usize, tenant: Option<&'static str>) -> (u64, u64) {
    let mut tasks = tokio::task::JoinSet::new();
    for sidecar in &fleet.sidecars {
        for _ in 0..per_sidecar {
            let proxy = sidecar.proxy;
            tasks.spawn(async move {
                let (mut served, mut cost) = (0u64, 0u64);
                for _ in 0..500 {
                    let a = ask_at(proxy, tenant).await;
                    match a.status {
                        200 => {
                            served += 1;
                            cost += nano(&a.headers["x-modelroute-cost-usd"]);
                        }
                        429 => {
                            assert_eq!(a.body["error"]["type"], "budget_exceeded", "{}", a.body);
                            return (served, cost);
                        }
                        other => panic!("{other}: {}", a.body),
                    }
                }
                panic!("the budget never ran out");
            });
        }
    }
    let (mut served, mut cost) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (s, c) = r.unwrap();
        served += s;
        cost += c;
    }
    (served, cost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_never_spends_more_than_its_budget_and_every_answer_is_counted() {
    let fleet = Fleet::start(
        "  budgets:\n    - {name: monthly, amountUsd: 1, window: monthly, thresholds: [50, 100]}",
    )
    .await;
    let (served, cost) = drain(&fleet, 4, None).await;
    assert_eq!(cost, served * ANSWER, "every answer costs the same");
    // The bound (docs/budgets.md): L + in-flight estimate errors (none here: the mock's
    // usage is below every reservation) + unreachable caps (none: the operator is up).
    assert!(
        cost <= 1_000_000_000,
        "overspent: {served} answers, {cost} nano-USD"
    );
    // Allowance held by the other sidecars can strand a few requests' worth at the end,
    // never most of the budget.
    assert!(cost >= 700_000_000, "only {cost} nano-USD of $1 was spent");
    let recorded = fleet.until_recorded("monthly", cost).await;
    assert_eq!(recorded, cost, "the ledger and the answers disagree");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_restart_loses_no_spend() {
    let mut fleet =
        Fleet::start("  budgets:\n    - {name: monthly, amountUsd: 1, window: monthly}").await;
    let mut truth = 0;
    for _ in 0..10 {
        for s in &fleet.sidecars {
            let a = ask(s, None).await;
            assert_eq!(a.status, 200, "{}", a.body);
            truth += nano(&a.headers["x-modelroute-cost-usd"]);
        }
    }
    assert_eq!(fleet.until_recorded("monthly", truth).await, truth);
    // More spend, then a crash before it could all be reported or persisted.
    for s in &fleet.sidecars {
        let a = ask(s, None).await;
        assert_eq!(a.status, 200);
        truth += ANSWER;
    }
    fleet.restart_operator().await;
    let recorded = fleet.until_recorded("monthly", truth).await;
    // At least once: nothing lost; a report applied but not acknowledged before the crash
    // may count twice (at most one per sidecar here).
    assert!(
        recorded >= truth && recorded <= truth + 3 * ANSWER,
        "recorded {recorded}, spent {truth}"
    );
    // Spending goes on from there.
    let a = ask(&fleet.sidecars[0], None).await;
    assert_eq!(a.status, 200);
    let after = fleet.until_recorded("monthly", recorded + ANSWER).await;
    assert_eq!(after, recorded + ANSWER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_have_budgets_of_their_own_across_the_fleet() {
    let fleet = Fleet::start(
        "  budgets:\n    - {name: per-tenant, amountUsd: 1, window: daily, scope: header, header: x-tenant}",
    )
    .await;
    let (served, cost) = drain(&fleet, 2, Some("acme")).await;
    assert!(
        served >= 1 && cost <= 1_000_000_000,
        "{served} answers, {cost}"
    );
    // Another tenant is untouched, on every sidecar.
    for s in &fleet.sidecars {
        let a = ask(s, Some("globex")).await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let s = status(&fleet.op).await;
    let scopes: Vec<&str> = s["modelRoutes"][0]["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|b| b["scopeValue"].as_str())
        .collect();
    assert!(
        scopes.contains(&"acme") && scopes.contains(&"globex"),
        "{s:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_budget_downgrades_on_every_sidecar() {
    let fleet = Fleet::start(
        "  budgets:\n    - {name: premium, amountUsd: \"0.2\", window: daily, onExhausted: downgrade, downgrade: {provider: cheap, model: cheap-1}}",
    )
    .await;
    // Premium first; once the budget is spent, every sidecar downgrades. (A sidecar can be
    // told "exhausted" while others still hold allowance, and be served premium again when
    // they give it back: downgrades are per request, not a one-way switch.)
    let mut premium = 0u64;
    let mut rounds = Vec::new();
    for _ in 0..40 {
        let mut round = Vec::new();
        for s in &fleet.sidecars {
            let a = ask(s, None).await;
            assert_eq!(a.status, 200, "{}", a.body);
            let target = a.headers["x-modelroute-target"].clone();
            if target == "mock/mock-1" {
                premium += 1;
            }
            round.push(target);
        }
        rounds.push(round);
    }
    assert!(premium >= 1, "never served premium");
    assert!(
        premium * ANSWER <= 200_000_000,
        "{premium} premium answers overspent $0.2"
    );
    for round in &rounds[rounds.len() - 5..] {
        assert!(round.iter().all(|t| t == "cheap/cheap-1"), "{rounds:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_across_the_fleet() {
    let fleet = Fleet::start("  rateLimits:\n    - {name: rpm, requestsPerMinute: 30}").await;
    // Shares are pushed once all three sessions are up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let mut served = 0;
    for _ in 0..30 {
        for s in &fleet.sidecars {
            let a = ask(s, None).await;
            match a.status {
                200 => served += 1,
                429 => assert_eq!(a.body["error"]["code"], "rate_limit_exceeded"),
                other => panic!("{other}: {}", a.body),
            }
        }
    }
    // 30 a minute across the fleet: each sidecar holds a third, plus what refills (one
    // every 6 s per sidecar) while the test runs.
    let refill = (started.elapsed().as_secs_f64() / 6.0).ceil() as u64 * 3;
    assert!(served >= 27 && served <= 30 + refill, "{served} served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_operator_sidecars_spend_what_they_hold_then_follow_on_control_plane_loss() {
    let mut fleet = Fleet::start(
        "  budgets:\n    - {name: monthly, amountUsd: 10, window: monthly}\n  onControlPlaneLoss: {mode: failOpen, capUsd: \"0.05\"}",
    )
    .await;
    // Allowance for each sidecar, then the operator goes away for good.
    for s in &fleet.sidecars {
        assert_eq!(ask(s, None).await.status, 200);
    }
    let held = {
        let s = status(&fleet.op).await;
        nano(
            s["modelRoutes"][0]["budgets"][0]["heldUsd"]
                .as_str()
                .unwrap(),
        )
    };
    fleet.op.guard.kill();
    // Each sidecar serves its allowance, then at most the $0.05 cap beyond it, then refuses.
    let (served, cost) = drain(&fleet, 1, None).await;
    assert!(served >= 3, "{served}");
    assert!(
        cost <= held + 3 * 50_000_000,
        "spent {cost} with {held} held and a cap of $0.05 a sidecar"
    );
}
