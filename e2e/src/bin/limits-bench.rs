//! `limits-bench`: what budgets and rate limits cost on the request path.
//!
//! Two release sidecars in front of the same fake upstream, one worker thread each: one
//! with the plain bench route, one with the same route under a budget (reservation and
//! settlement on every request, cost from usage and price), a per-tenant budget and a
//! rate limit with requests and tokens per minute (limits far above the load, so nothing
//! is refused: the bookkeeping is what is measured). Open-loop load at 1000 req/s, then
//! closed-loop at concurrency 1 and 64, the two sidecars alternating for several rounds so
//! drift on a shared machine hits both; medians of the rounds are reported, with each
//! sidecar's CPU time per request (from `/proc`).
//!
//! With `--traces` the second sidecar has no limits but exports a span per request and one
//! per try (every trace sampled) over OTLP/HTTP to a sink in this process: what tracing
//! costs on the request path.
//!
//! With `--routing latency-cache` the second sidecar has no limits but routes by latency
//! between two providers and has a response cache (the bench's requests are not
//! deterministic, so each one is checked and goes upstream); `--routing all` adds three
//! match rules that do not match and prompt-cache affinity: what smart routing costs on the
//! request path.
//!
//! ```text
//! cargo run --release -p modelroute-e2e --bin limits-bench -- [--rounds 5] [--seconds 5] [--limits all|budgets|rates] [--traces [--collector-delay-ms N]] [--routing latency-cache|all]
//! ```

#![expect(
    clippy::print_stdout,
    reason = "benchmark binary: the report goes to stdout"
)]

use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use modelroute_e2e::fake_upstream;
use modelroute_e2e::load::{self, Target};
use modelroute_e2e::otlp_sink;
use modelroute_e2e::process::{self, ChildGuard};
use modelroute_e2e::sidecar;

#[derive(Parser)]
#[command(name = "limits-bench")]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Rounds of (plain, limited) runs.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// What the limited sidecar enforces.
    #[arg(long, value_enum, default_value_t = Enforced::All)]
    limits: Enforced,
    /// Compare against a sidecar that exports traces instead of one that enforces limits.
    #[arg(long)]
    traces: bool,
    /// With --traces: the collector answers each export only after this many milliseconds
    /// (a slow or overloaded collector).
    #[arg(long, default_value_t = 0)]
    collector_delay_ms: u64,
    /// Compare against a sidecar with smart routing instead of one that enforces limits.
    #[arg(long, value_enum, conflicts_with = "traces")]
    routing: Option<Routing>,
}

/// The bench route with smart routing: the latency strategy between two providers of the
/// same upstream, and a response cache (the bench's requests are not deterministic, so
/// each is checked and goes upstream). With `all`, also three match rules that do not
/// match and prompt-cache affinity.
fn routed_config(upstream: std::net::SocketAddr, all: bool) -> String {
    let extra = if all {
        r#"      rules:
        - {name: acme, match: {headers: {x-tenant: {exact: acme}}}, targets: [{provider: fake-b, model: fake-model}]}
        - {name: secure, match: {headers: {x-security-level: {oneOf: [high, secret]}}}, targets: [{provider: fake-b, model: fake-model}]}
        - {name: long, match: {promptTokens: {atLeast: 100000}}, targets: [{provider: fake-b, model: fake-model}]}
      promptAffinity: {minTokens: 1024}
"#
    } else {
        ""
    };
    format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata:
  name: bench
spec:
  providers:
    - {{name: fake, kind: openai, baseUrl: "http://{upstream}/v1"}}
    - {{name: fake-b, kind: openai, baseUrl: "http://{upstream}/v1"}}
  routes:
    - model: gpt-4o-mini
      strategy: {{type: latency}}
      targets: [{{provider: fake, model: fake-model}}, {{provider: fake-b, model: fake-model}}]
      cache: {{ttl: 5m}}
{extra}"#
    )
}

/// What the `routed` sidecar does beyond the plain route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Routing {
    /// The latency strategy and the response cache.
    LatencyCache,
    /// Those, plus three match rules and prompt-cache affinity.
    All,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Enforced {
    /// Two budgets (route-wide monthly, per-`x-tenant` daily) and a rate limit.
    All,
    /// The two budgets.
    Budgets,
    /// The rate limit (requests and tokens per minute).
    Rates,
}

impl Enforced {
    /// The ModelRoute fields appended to the bench route. Every limit is far above the
    /// load: nothing is refused, the bookkeeping is what is measured.
    fn yaml(self) -> String {
        const PRICING: &str =
            "  pricing:\n    - {provider: fake, model: \"*\", input: 0.15, output: 0.6}\n";
        const BUDGETS: &str = "  budgets:\n    - {name: monthly, amountUsd: 1000000, window: monthly, thresholds: [50, 80]}\n    - {name: per-tenant, amountUsd: 100000, window: daily, scope: header, header: x-tenant}\n";
        const RATES: &str = "  rateLimits:\n    - {name: rpm, requestsPerMinute: 100000000, tokensPerMinute: 4000000000}\n";
        match self {
            Self::All => format!("{PRICING}{BUDGETS}{RATES}"),
            Self::Budgets => format!("{PRICING}{BUDGETS}"),
            Self::Rates => RATES.to_string(),
        }
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Internal: run the fake upstream (the bench starts itself with this).
    FakeUpstream(fake_upstream::Args),
}

/// One run's numbers: p50 and p99 latency (µs), throughput (req/s) and the sidecar's CPU
/// time per request (µs, from `/proc`: far steadier than latency on a shared machine).
#[derive(Clone, Copy, Debug, Default)]
struct Numbers {
    p50: f64,
    p99: f64,
    rps: f64,
    cpu: f64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Cmd::FakeUpstream(args)) = &cli.cmd {
        return match fake_upstream::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fake-upstream: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    process::install_panic_cleanup();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("limits-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("limits-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> anyhow::Result<()> {
    let workspace = modelroute_e2e::binaries::workspace();
    let bin = tokio::task::spawn_blocking(move || sidecar::build(&workspace)).await??;
    let (_upstream, upstream) = start_upstream()?;
    let plain_config = sidecar::config(upstream);
    let mut plain = sidecar::start_with_config(&bin, &plain_config, Some(1))?;
    let sink = otlp_sink::start(Duration::from_millis(cli.collector_delay_ms)).await?;
    let (name, mut limited) = if cli.traces {
        let endpoint = format!("http://{}", sink.addr);
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            // Room for a second of spans at saturation, so drops stay the exception.
            ("OTEL_BSP_MAX_QUEUE_SIZE", "131072"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ];
        let traced = sidecar::start_with_env(&bin, &plain_config, Some(1), &env)?;
        ("traced", traced)
    } else if let Some(routing) = cli.routing {
        let config = routed_config(upstream, routing == Routing::All);
        let routed = sidecar::start_with_config(&bin, &config, Some(1))?;
        ("routed", routed)
    } else {
        let limited_config = format!("{plain_config}{}", cli.limits.yaml());
        let limited = sidecar::start_with_config(&bin, &limited_config, Some(1))?;
        ("limited", limited)
    };
    let targets = [
        Target {
            name: "plain",
            addr: plain.addr,
        },
        Target {
            name,
            addr: limited.addr,
        },
    ];
    for t in &targets {
        let stats = load::closed_loop(t, 1, Some(200), None).await?;
        anyhow::ensure!(stats.errors == 0, "{}: {:?}", t.name, stats.first_error);
    }
    let duration = Duration::from_secs(cli.seconds);
    let pids = [plain.guard.pid(), limited.guard.pid()];
    #[expect(clippy::cast_precision_loss, reason = "ticks per second is 100")]
    let tick_hz = process::ticks_per_second() as f64;
    let mut runs: Vec<[Vec<Numbers>; 2]> = LOADS.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for round in 0..cli.rounds {
        for (l, load) in LOADS.iter().enumerate() {
            for (i, t) in targets.iter().enumerate() {
                let pid = pids[i];
                let before = process::cpu_ticks(pid).unwrap_or(0);
                let stats = match *load {
                    Load::Open(rate) => load::open_loop(t, rate, duration).await?,
                    Load::Closed(conns) => {
                        load::closed_loop(t, conns, None, Some(duration)).await?
                    }
                };
                let ticks = process::cpu_ticks(pid).unwrap_or(0).saturating_sub(before);
                anyhow::ensure!(stats.errors == 0, "{}: {:?}", t.name, stats.first_error);
                #[expect(clippy::cast_precision_loss, reason = "a reported figure")]
                let cpu = ticks as f64 * 1e6 / tick_hz / stats.ok.max(1) as f64;
                let n = Numbers {
                    p50: stats.us(0.5),
                    p99: stats.us(0.99),
                    rps: stats.throughput(),
                    cpu,
                };
                eprintln!(
                    "limits-bench: round {round} {load} {}: p50 {:.1} µs, p99 {:.1} µs, {:.0} req/s, {:.1} µs CPU/request",
                    t.name, n.p50, n.p99, n.rps, n.cpu
                );
                runs[l][i].push(n);
            }
        }
    }
    plain.guard.check_alive()?;
    limited.guard.check_alive()?;
    if cli.traces {
        let metrics = load::get_text(limited.admin, "/metrics").await?;
        let dropped = metrics
            .lines()
            .find_map(|l| l.strip_prefix("modelroute_spans_dropped_total "))
            .unwrap_or("?");
        println!(
            "spans exported: {} in {} OTLP requests; dropped (queue full): {dropped}",
            sink.spans_bytes(),
            sink.requests()
        );
    }
    println!(
        "| load | sidecar | p50 µs | p99 µs | req/s | CPU µs/request |\n|---|---|---|---|---|---|"
    );
    for (l, load) in LOADS.iter().enumerate() {
        for (i, t) in targets.iter().enumerate() {
            let m = median(&runs[l][i]);
            println!(
                "| {load} | {} | {:.1} | {:.1} | {:.0} | {:.1} |",
                t.name, m.p50, m.p99, m.rps, m.cpu
            );
        }
    }
    Ok(())
}

/// The loads each sidecar gets: a realistic rate (the proxy benchmark's open loop), one
/// request at a time, and saturation.
const LOADS: [Load; 3] = [Load::Open(1000), Load::Closed(1), Load::Closed(64)];

#[derive(Clone, Copy, Debug)]
enum Load {
    /// A request every 1/rate s, whatever happened to the previous ones.
    Open(u32),
    /// This many connections, each sending its next request when the last is answered.
    Closed(usize),
}

impl std::fmt::Display for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open(rate) => write!(f, "open {rate}/s"),
            Self::Closed(conns) => write!(f, "closed c={conns}"),
        }
    }
}

/// The median of each number across rounds.
fn median(runs: &[Numbers]) -> Numbers {
    let pick = |f: fn(&Numbers) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    };
    Numbers {
        p50: pick(|n| n.p50),
        p99: pick(|n| n.p99),
        rps: pick(|n| n.rps),
        cpu: pick(|n| n.cpu),
    }
}

fn start_upstream() -> anyhow::Result<(ChildGuard, std::net::SocketAddr)> {
    let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "fake-upstream",
        "--listen",
        "127.0.0.1:0",
        "--exit-on-stdin-eof",
    ]);
    let (guard, line) = ChildGuard::spawn(
        "fake-upstream",
        cmd,
        "fake-upstream listening",
        Duration::from_secs(10),
    )?;
    let addr = line
        .split("addr=")
        .nth(1)
        .and_then(|a| a.trim().parse().ok())
        .with_context(|| format!("no address in `{line}`"))?;
    Ok((guard, addr))
}
