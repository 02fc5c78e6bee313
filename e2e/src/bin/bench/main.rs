//! `bench`: the load benchmark. Starts a fake OpenAI upstream, nginx in front of it (the
//! baseline) and the sidecar in front of it, drives all three with the same load, and
//! prints a markdown report (also written into docs/performance.md).
//!
//! ```text
//! cargo run --release -p modelroute-e2e --bin bench -- [--quick]
//! ```
//!
//! It builds the sidecar itself (`cargo build --release -p modelroute-sidecar`, same
//! target dir) unless `--sidecar-bin` names one, and installs nginx with apt-get when
//! `/usr/sbin/nginx` is missing.

#![expect(
    clippy::print_stdout,
    reason = "benchmark binary: the report goes to stdout"
)]

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, ensure};
use clap::{Parser, Subcommand};
use modelroute_e2e::load::{self, RunStats, StreamSpec, StreamStats, Target};
use modelroute_e2e::process::{self, ChildGuard, command_output};
use modelroute_e2e::report::{self, Memory, Pinned, Report, TargetResult};
use modelroute_e2e::{fake_upstream, nginx, sidecar};
use tokio::time::Instant;

/// The doc created when docs/performance.md does not exist yet (or lost its markers).
const DOC_TEMPLATE: &str = include_str!("doc_template.md");

#[derive(Parser)]
#[command(
    name = "bench",
    about = "Load benchmark: direct vs nginx vs modelroute sidecar",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    opts: Opts,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs the fake upstream (the bench starts itself this way, as a separate process).
    #[command(hide = true)]
    FakeUpstream(fake_upstream::Args),
    /// Closed-loop unary load against one address, for investigations (e.g. under
    /// `perf stat` or `strace -c` attached to a proxy).
    Load(LoadArgs),
}

#[derive(Clone, Debug, clap::Args)]
struct LoadArgs {
    /// A loopback address serving `POST /v1/chat/completions`.
    #[arg(long)]
    addr: std::net::SocketAddr,
    #[arg(long, default_value_t = 64)]
    conns: usize,
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

#[derive(Clone, Debug, clap::Args)]
struct Opts {
    /// Shorter phases (3 s instead of 10 s) and a 100k-request leak check instead of 1M.
    #[arg(long)]
    quick: bool,
    /// Use this sidecar binary instead of building one.
    #[arg(long)]
    sidecar_bin: Option<PathBuf>,
    /// nginx worker processes and sidecar worker threads (the same for both; 0 = one per
    /// core: nginx `auto`, the sidecar's default).
    #[arg(long, default_value_t = 1)]
    proxy_workers: usize,
    /// Runtime threads of the load generator.
    #[arg(long, default_value_t = 2)]
    loadgen_threads: usize,
    /// Runtime threads of the fake upstream.
    #[arg(long, default_value_t = 1)]
    upstream_threads: usize,
    /// Connections of the throughput and leak runs.
    #[arg(long, default_value_t = 64)]
    conns: usize,
    /// Requests of the leak check (default 1,000,000; 100,000 with --quick).
    #[arg(long)]
    leak_requests: Option<u64>,
    /// Concurrent slow streams.
    #[arg(long, default_value_t = 1000)]
    slow_streams: u32,
    /// Where to write the results (between the markers); default docs/performance.md.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the report only.
    #[arg(long)]
    no_write: bool,
    /// Skip the final phase that pins the proxy to its own core (CPU 1) and the load
    /// generator and fake upstream to CPU 0 (skipped anyway on a single core).
    #[arg(long)]
    no_pin: bool,
}

/// The machine, as the report describes it.
struct Machine {
    date: String,
    nproc: String,
    free: String,
    cpu_model: String,
    kernel: String,
}

/// Sizes of each phase.
struct Plan {
    rate: u32,
    open_for: Duration,
    serial: u64,
    throughput_for: Duration,
    leak: u64,
    streams: u32,
    stream_concurrency: usize,
    stream: StreamSpec,
    slow: StreamSpec,
}

/// RSS of a process set, sampled every 100 ms until stopped; keeps the highest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<u64>,
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
    if let Some(Cmd::Load(args)) = &cli.cmd {
        return load_only(args);
    }
    let opts = cli.opts;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.loadgen_threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // On Ctrl-C the `run` future is dropped, and with it every child guard.
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = run(&opts) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The `load` subcommand.
fn load_only(args: &LoadArgs) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build();
    let target = Target {
        name: "target",
        addr: args.addr,
    };
    let result = runtime.map_err(anyhow::Error::from).and_then(|rt| {
        rt.block_on(load::closed_loop(
            &target,
            args.conns,
            Some(args.requests),
            None,
        ))
    });
    match result {
        Ok(stats) => {
            log_run("target", "closed loop", &stats);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(opts: &Opts) -> anyhow::Result<()> {
    let plan = Plan::new(opts);
    let workspace = workspace_root();
    // Read before the pinned phase narrows this process to one CPU (`nproc` honours it).
    let machine = Machine::read();
    let sidecar_bin = match &opts.sidecar_bin {
        Some(p) => p.clone(),
        None => {
            let ws = workspace.clone();
            tokio::task::spawn_blocking(move || sidecar::build(&ws)).await??
        }
    };
    eprintln!("bench: sidecar binary {}", sidecar_bin.display());
    let nginx_bin = tokio::task::spawn_blocking(nginx::ensure_installed).await??;

    let (mut upstream, upstream_addr) = start_upstream(opts)?;
    let nginx_workers = (opts.proxy_workers > 0).then_some(opts.proxy_workers);
    let mut nginx = nginx::start(&nginx_bin, upstream_addr, nginx_workers).await?;
    let mut sidecar = sidecar::start(&sidecar_bin, upstream_addr, nginx_workers)?;
    eprintln!(
        "bench: upstream {upstream_addr}, nginx {} (pids {:?}), sidecar {} (pid {})",
        nginx.addr,
        nginx.guard.pids(),
        sidecar.addr,
        sidecar.guard.pid()
    );
    // Let both settle before reading idle memory.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut nginx_mem = Memory {
        idle: nginx.guard.rss_kib(),
        ..Memory::default()
    };
    let mut sidecar_mem = Memory {
        idle: sidecar.guard.rss_kib(),
        ..Memory::default()
    };

    let targets = [
        Target {
            name: "direct",
            addr: upstream_addr,
        },
        Target {
            name: "nginx",
            addr: nginx.addr,
        },
        Target {
            name: "sidecar",
            addr: sidecar.addr,
        },
    ];
    for t in &targets {
        sanity(t).await?;
    }

    let mut measured = Vec::new();
    for t in &targets {
        let proxy = match t.name {
            "nginx" => Some(&nginx.guard),
            "sidecar" => Some(&sidecar.guard),
            _ => None,
        };
        let (m, peak) = measure(t, proxy, &upstream, opts, &plan).await?;
        match t.name {
            "nginx" => nginx_mem.peak_throughput = peak,
            "sidecar" => sidecar_mem.peak_throughput = peak,
            _ => {}
        }
        measured.push(m);
    }

    sidecar_mem.leak = leak_check(&targets[2], &sidecar.guard, opts, &plan).await?;

    let mut slow = Vec::new();
    for t in &targets {
        let proxy = match t.name {
            "nginx" => Some(&nginx.guard),
            "sidecar" => Some(&sidecar.guard),
            _ => None,
        };
        eprintln!(
            "bench: {}: {} concurrent slow streams",
            t.name, opts.slow_streams
        );
        let sampler = RssSampler::start(proxy.map(ChildGuard::pids).unwrap_or_default());
        let stats =
            load::streams(t, opts.slow_streams, opts.slow_streams as usize, plan.slow).await?;
        let peak = sampler.finish().await;
        match t.name {
            "nginx" => nginx_mem.peak_slow_streams = peak,
            "sidecar" => sidecar_mem.peak_slow_streams = peak,
            _ => {}
        }
        log_streams(t.name, &stats);
        slow.push(stats);
    }
    nginx_mem.hwm = nginx.guard.peak_rss_kib();
    sidecar_mem.hwm = sidecar.guard.peak_rss_kib();

    // Last, because it changes CPU affinities for good.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut pinned = vec![None, None, None];
    if !opts.no_pin && cores >= 2 {
        process::pin(std::process::id(), "0")?;
        process::pin(upstream.pid(), "0")?;
        for pid in nginx.guard.pids() {
            process::pin(pid, "1")?;
        }
        process::pin(sidecar.guard.pid(), "1")?;
        for (i, t) in targets.iter().enumerate() {
            let proxy = match t.name {
                "nginx" => Some(&nginx.guard),
                "sidecar" => Some(&sidecar.guard),
                _ => None,
            };
            pinned[i] = Some(measure_pinned(t, proxy, &upstream, opts, &plan).await?);
        }
    }
    upstream.check_alive()?;
    nginx.guard.check_alive()?;
    sidecar.guard.check_alive()?;

    let mut results = measured
        .into_iter()
        .zip(slow)
        .zip(pinned)
        .map(|((m, slow), pinned)| m.finish(slow, pinned));
    let (Some(direct), Some(mut nginx_r), Some(mut sidecar_r)) =
        (results.next(), results.next(), results.next())
    else {
        return Err(anyhow!("missing results"));
    };
    nginx_r.memory = Some(nginx_mem);
    sidecar_r.memory = Some(sidecar_mem);

    let report = Report {
        date: machine.date,
        command: command_line(),
        nproc: machine.nproc,
        free: machine.free,
        cpu_model: machine.cpu_model,
        kernel: machine.kernel,
        nginx_version: nginx.version.replace("nginx version: ", ""),
        sidecar_revision: revision(&workspace, opts),
        quick: opts.quick,
        proxy_workers: match nginx_workers {
            Some(n) => n.to_string(),
            None => "one per core".into(),
        },
        loadgen_threads: opts.loadgen_threads,
        upstream_threads: opts.upstream_threads,
        rate: plan.rate,
        conns: opts.conns,
        serial_requests: plan.serial,
        stream_shape: format!(
            "{} streams ({} at a time) of {} chunks × {} ms",
            plan.streams,
            plan.stream_concurrency,
            plan.stream.chunks,
            plan.stream.chunk_delay.as_millis()
        ),
        slow_shape: format!(
            "{} concurrent streams of {} chunks × {} ms",
            opts.slow_streams,
            plan.slow.chunks,
            plan.slow.chunk_delay.as_millis()
        ),
        slow_streams: opts.slow_streams,
        direct,
        nginx: nginx_r,
        sidecar: sidecar_r,
    };
    let section = report.markdown();
    println!("{section}");
    if !opts.no_write {
        let out = opts
            .out
            .clone()
            .unwrap_or_else(|| workspace.join("docs").join("performance.md"));
        report::write_section(&out, DOC_TEMPLATE, &section)
            .with_context(|| format!("writing {}", out.display()))?;
        eprintln!("bench: results written to {}", out.display());
    }
    // Children are stopped as their guards drop here.
    drop((sidecar, nginx, upstream));
    Ok(())
}

/// One target's unary and fast-stream measurements (slow streams come later).
struct Measured {
    name: &'static str,
    open_loop: RunStats,
    serial: RunStats,
    throughput: RunStats,
    proxy_cores: Option<f64>,
    upstream_cores: f64,
    loadgen_cores: f64,
    stream: StreamStats,
}

impl Measured {
    fn finish(self, slow: StreamStats, pinned: Option<Pinned>) -> TargetResult {
        TargetResult {
            name: self.name,
            open_loop: self.open_loop,
            serial: self.serial,
            throughput: self.throughput,
            proxy_cores: self.proxy_cores,
            upstream_cores: self.upstream_cores,
            loadgen_cores: self.loadgen_cores,
            stream: self.stream,
            slow,
            memory: None,
            pinned,
        }
    }
}

/// Warm-up, open loop, concurrency 1, throughput (with CPU and RSS), fast streams.
async fn measure(
    t: &Target,
    proxy: Option<&ChildGuard>,
    upstream: &ChildGuard,
    opts: &Opts,
    plan: &Plan,
) -> anyhow::Result<(Measured, u64)> {
    eprintln!("bench: {}: warm-up", t.name);
    let warm = load::closed_loop(t, 16, Some(5000), None).await?;
    ensure!(
        warm.errors == 0,
        "{}: warm-up failed: {:?}",
        t.name,
        warm.first_error
    );

    eprintln!(
        "bench: {}: open loop {} req/s for {:?}",
        t.name, plan.rate, plan.open_for
    );
    let open_loop = load::open_loop(t, plan.rate, plan.open_for).await?;
    log_run(t.name, "open loop", &open_loop);

    eprintln!(
        "bench: {}: {} requests at concurrency 1",
        t.name, plan.serial
    );
    let serial = load::closed_loop(t, 1, Some(plan.serial), None).await?;
    log_run(t.name, "concurrency 1", &serial);

    eprintln!(
        "bench: {}: throughput, {} connections for {:?}",
        t.name, opts.conns, plan.throughput_for
    );
    let sampler = RssSampler::start(proxy.map(ChildGuard::pids).unwrap_or_default());
    let (throughput, cpu) = throughput_run(t, proxy, upstream, opts, plan).await?;
    let peak = sampler.finish().await;
    log_run(t.name, "throughput", &throughput);

    eprintln!("bench: {}: {} streams", t.name, plan.streams);
    let stream = load::streams(t, plan.streams, plan.stream_concurrency, plan.stream).await?;
    log_streams(t.name, &stream);
    Ok((
        Measured {
            name: t.name,
            open_loop,
            serial,
            throughput,
            proxy_cores: cpu.proxy,
            upstream_cores: cpu.upstream,
            loadgen_cores: cpu.loadgen,
            stream,
        },
        peak,
    ))
}

/// CPU used during a run, in cores.
struct CpuUse {
    proxy: Option<f64>,
    upstream: f64,
    loadgen: f64,
}

/// The closed-loop throughput run, with the CPU each process used meanwhile.
async fn throughput_run(
    t: &Target,
    proxy: Option<&ChildGuard>,
    upstream: &ChildGuard,
    opts: &Opts,
    plan: &Plan,
) -> anyhow::Result<(RunStats, CpuUse)> {
    let proxy_pids = proxy.map(ChildGuard::pids).unwrap_or_default();
    let own = vec![std::process::id()];
    let up = vec![upstream.pid()];
    let before = (ticks(&proxy_pids), ticks(&up), ticks(&own));
    let run = load::closed_loop(t, opts.conns, None, Some(plan.throughput_for)).await?;
    let after = (ticks(&proxy_pids), ticks(&up), ticks(&own));
    let hz = process::ticks_per_second() as f64;
    let secs = run.elapsed.as_secs_f64().max(1e-9);
    let cores = |a: u64, b: u64| a.saturating_sub(b) as f64 / hz / secs;
    let cpu = CpuUse {
        proxy: proxy.map(|_| cores(after.0, before.0)),
        upstream: cores(after.1, before.1),
        loadgen: cores(after.2, before.2),
    };
    Ok((run, cpu))
}

/// Concurrency 1 and throughput again, once everything is pinned.
async fn measure_pinned(
    t: &Target,
    proxy: Option<&ChildGuard>,
    upstream: &ChildGuard,
    opts: &Opts,
    plan: &Plan,
) -> anyhow::Result<Pinned> {
    let warm = load::closed_loop(t, 16, Some(5000), None).await?;
    ensure!(
        warm.errors == 0,
        "{}: pinned warm-up failed: {:?}",
        t.name,
        warm.first_error
    );
    let serial = load::closed_loop(t, 1, Some(plan.serial), None).await?;
    log_run(t.name, "pinned, concurrency 1", &serial);
    let (throughput, cpu) = throughput_run(t, proxy, upstream, opts, plan).await?;
    log_run(t.name, "pinned, throughput", &throughput);
    Ok(Pinned {
        serial,
        throughput,
        proxy_cores: cpu.proxy,
        upstream_cores: cpu.upstream,
        loadgen_cores: cpu.loadgen,
    })
}

/// `plan.leak` requests through the sidecar in ten steps; RSS after each.
async fn leak_check(
    t: &Target,
    sidecar: &ChildGuard,
    opts: &Opts,
    plan: &Plan,
) -> anyhow::Result<Vec<(u64, u64)>> {
    let steps = 10u64;
    let per = (plan.leak / steps).max(1);
    let mut series = Vec::new();
    let started = Instant::now();
    for k in 1..=steps {
        let run = load::closed_loop(t, opts.conns, Some(per), None).await?;
        ensure!(
            run.errors == 0,
            "leak check: {} errors, first: {:?}",
            run.errors,
            run.first_error
        );
        let rss = sidecar.rss_kib();
        eprintln!(
            "bench: sidecar: leak check {}k requests, RSS {:.1} MiB ({:.0} req/s)",
            k * per / 1000,
            rss as f64 / 1024.0,
            run.throughput()
        );
        series.push((k * per, rss));
    }
    eprintln!("bench: leak check took {:?}", started.elapsed());
    Ok(series)
}

/// One unary answer and one stream through `t`, checked.
async fn sanity(t: &Target) -> anyhow::Result<()> {
    let mut conn = t.connect().await?;
    let body = t.chat(&mut conn).await?;
    let text = String::from_utf8_lossy(&body);
    ensure!(
        text.contains(r#""object":"chat.completion""#),
        "{}: unexpected answer: {text}",
        t.name
    );
    let spec = StreamSpec {
        chunks: 3,
        chunk_delay: Duration::from_millis(1),
        stall: Duration::from_secs(5),
        timeout: Duration::from_secs(10),
    };
    let s = load::streams(t, 1, 1, spec).await?;
    ensure!(
        s.completed == 1,
        "{}: the test stream failed: {:?}",
        t.name,
        s.first_error
    );
    Ok(())
}

fn start_upstream(opts: &Opts) -> anyhow::Result<(ChildGuard, std::net::SocketAddr)> {
    let exe = std::env::current_exe().context("cannot find the bench's own executable")?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "fake-upstream",
        "--listen",
        "127.0.0.1:0",
        "--exit-on-stdin-eof",
    ])
    .arg("--threads")
    .arg(opts.upstream_threads.to_string());
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

fn ticks(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| process::cpu_ticks(p)).sum()
}

fn log_run(name: &str, what: &str, r: &RunStats) {
    eprintln!(
        "bench: {name}: {what}: {} ok, {} errors, {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs, max {:.0} µs{}",
        r.ok,
        r.errors,
        r.throughput(),
        r.us(0.5),
        r.us(0.99),
        r.latency.max() as f64 / 1000.0,
        r.first_error
            .as_ref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    );
}

fn log_streams(name: &str, s: &StreamStats) {
    eprintln!(
        "bench: {name}: streams: {} completed, {} failed, {} stalled, {} chunks, delivery p50 {:.0} µs p99 {:.0} µs max {:.0} µs, gap max {:.1} ms{}",
        s.completed,
        s.failed,
        s.stalled,
        s.chunks,
        s.delivery.value_at_quantile(0.5) as f64 / 1000.0,
        s.delivery.value_at_quantile(0.99) as f64 / 1000.0,
        s.delivery.max() as f64 / 1000.0,
        s.gap.max() as f64 / 1e6,
        s.first_error
            .as_ref()
            .map(|e| format!(" (first error: {e})"))
            .unwrap_or_default()
    );
}

fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The command as typed (reconstructed: `cargo run` passes only the bench's arguments).
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(|d| format!("CARGO_TARGET_DIR={d} "))
        .unwrap_or_default();
    let mut cmd = format!("{target_dir}cargo run --release -p modelroute-e2e --bin bench");
    if !args.is_empty() {
        cmd.push_str(" -- ");
        cmd.push_str(&args.join(" "));
    }
    cmd
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// Which sidecar was measured: the commit, and whether sidecar/ had local changes.
fn revision(workspace: &Path, opts: &Opts) -> String {
    if let Some(bin) = &opts.sidecar_bin {
        return format!("binary `{}`", bin.display());
    }
    let ws = workspace.display().to_string();
    let head = command_output("git", &["-C", &ws, "rev-parse", "--short", "HEAD"]);
    let dirty = command_output(
        "git",
        &["-C", &ws, "status", "--porcelain", "--", "sidecar"],
    );
    if dirty.is_empty() {
        format!("commit {head}, release build")
    } else {
        format!("commit {head} plus uncommitted changes in sidecar/, release build")
    }
}

// === impl Machine ===

impl Machine {
    fn read() -> Self {
        Self {
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            nproc: command_output("nproc", &[]),
            free: command_output("free", &["-g"]),
            cpu_model: cpu_model(),
            kernel: command_output("uname", &["-r"]),
        }
    }
}

// === impl Plan ===

impl Plan {
    fn new(opts: &Opts) -> Self {
        let (phase, serial, leak, streams) = if opts.quick {
            (Duration::from_secs(3), 2000, 100_000, 50)
        } else {
            (Duration::from_secs(10), 5000, 1_000_000, 200)
        };
        Self {
            rate: 1000,
            open_for: phase,
            serial,
            throughput_for: phase,
            leak: opts.leak_requests.unwrap_or(leak),
            streams,
            stream_concurrency: 10,
            stream: StreamSpec {
                chunks: 20,
                chunk_delay: Duration::from_millis(5),
                stall: Duration::from_millis(100),
                timeout: Duration::from_secs(30),
            },
            slow: StreamSpec {
                chunks: 20,
                chunk_delay: Duration::from_millis(50),
                stall: Duration::from_millis(500),
                timeout: Duration::from_secs(60),
            },
        }
    }
}

// === impl RssSampler ===

impl RssSampler {
    fn start(pids: Vec<u32>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut peak = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            // Bounded: the run it watches is; an hour is a backstop.
            for _ in 0..36_000 {
                tick.tick().await;
                let rss: u64 = pids
                    .iter()
                    .filter_map(|&p| process::status_kib(p, "VmRSS:"))
                    .sum();
                peak = peak.max(rss);
                if flag.load(Ordering::Relaxed) {
                    break;
                }
            }
            peak
        });
        Self { stop, task }
    }

    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or(0)
    }
}
