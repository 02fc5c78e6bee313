//! Child processes the benchmark starts, and what `/proc` says about them.
//!
//! Every child runs in its own process group and is held by a [`ChildGuard`] that ends
//! the whole group when dropped (SIGTERM, then SIGKILL). The workspace's release profile
//! aborts on panic, so drops do not run then: [`install_panic_cleanup`] adds a panic hook
//! that kills every registered group first.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail};

/// Process groups still alive, for the panic hook.
static GROUPS: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A started child; dropping it ends its process group.
#[derive(Debug)]
pub struct ChildGuard {
    pub name: String,
    child: Child,
    /// The last lines the child wrote (stdout and stderr), for error messages.
    output: std::sync::Arc<Mutex<Vec<String>>>,
}

/// CPU time a set of processes used, in clock ticks (`utime + stime`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTicks(pub u64);

// === impl ChildGuard ===

impl ChildGuard {
    /// Starts `cmd` in a new process group with stdout and stderr piped, and waits (up
    /// to `timeout`) for a line containing `ready`; returns the guard and that line.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        ready: &str,
        timeout: Duration,
    ) -> anyhow::Result<(Self, String)> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        lock(&GROUPS).push(child.id());
        let output = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            drain(out, output.clone(), ready.to_string(), tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, output.clone(), ready.to_string(), tx);
        }
        let guard = Self {
            name: name.to_string(),
            child,
            output,
        };
        match rx.recv_timeout(timeout) {
            Ok(line) => Ok((guard, line)),
            Err(mpsc::RecvTimeoutError::Disconnected) => bail!(
                "{name} closed its output without logging `{ready}` (exited?); its output:\n{}",
                guard.output()
            ),
            Err(mpsc::RecvTimeoutError::Timeout) => bail!(
                "{name} did not log `{ready}` within {timeout:?}; its output:\n{}",
                guard.output()
            ),
        }
    }

    /// Starts `cmd` (in a new process group) without waiting for anything.
    pub fn spawn_quiet(name: &str, mut cmd: Command) -> anyhow::Result<Self> {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        lock(&GROUPS).push(child.id());
        let output = std::sync::Arc::new(Mutex::new(Vec::new()));
        let (tx, _rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            drain(out, output.clone(), String::new(), tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            drain(err, output.clone(), String::new(), tx);
        }
        Ok(Self {
            name: name.to_string(),
            child,
            output,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child and its direct children (nginx's workers).
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.pid()];
        pids.extend(children(self.pid()));
        pids
    }

    /// Fails when the child has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "{} exited ({status}); its output:\n{}",
                self.name,
                self.output()
            ),
            Err(e) => bail!("cannot check on {}: {e}", self.name),
        }
    }

    /// The last lines the child wrote.
    /// Kills the whole group at once (SIGKILL: no shutdown path runs) and reaps it.
    pub fn kill(&mut self) {
        signal_group(self.child.id(), "KILL");
        let _ = self.child.wait();
    }

    pub fn output(&self) -> String {
        lock(&self.output).join("\n")
    }

    /// Sum of VmRSS over the child and its direct children, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|&p| status_kib(p, "VmRSS:"))
            .sum()
    }

    /// Sum of VmHWM (peak RSS since start) over the child and its direct children, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.pids()
            .iter()
            .filter_map(|&p| status_kib(p, "VmHWM:"))
            .sum()
    }

    pub fn cpu(&self) -> CpuTicks {
        CpuTicks(self.pids().iter().filter_map(|&p| cpu_ticks(p)).sum())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let pgid = self.child.id();
        if matches!(self.child.try_wait(), Ok(None)) {
            signal_group(pgid, "TERM");
            let mut exited = false;
            for _ in 0..60 {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    exited = true;
                    break;
                }
                // Not on a runtime worker: drops happen as `main` unwinds its locals.
                wait_briefly(Duration::from_millis(50));
            }
            if !exited {
                let _ = self.child.kill();
            }
        }
        // nginx's workers may outlive a master killed hard; end the group either way.
        signal_group(pgid, "KILL");
        let _ = self.child.wait();
        lock(&GROUPS).retain(|&g| g != pgid);
    }
}

/// Kills every still-registered child group when the process panics (the release
/// profile aborts on panic, so no `Drop` would run).
pub fn install_panic_cleanup() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        kill_all();
        previous(info);
    }));
}

/// Kills every registered child group at once.
pub fn kill_all() {
    let groups = match GROUPS.try_lock() {
        Ok(g) => g.clone(),
        Err(_) => return,
    };
    for g in groups {
        signal_group(g, "KILL");
    }
}

fn signal_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{pgid}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn wait_briefly(d: Duration) {
    // `std::thread::sleep` is banned workspace-wide (it blocks runtime workers); this runs
    // only while tearing down, outside the runtime, so a timed channel wait does the same.
    let (_tx, rx) = mpsc::channel::<()>();
    let _ = rx.recv_timeout(d);
}

/// Reads `from` line by line on a thread: keeps the last lines, and sends the first line
/// containing `ready` on `tx`.
fn drain<R: Read + Send + 'static>(
    from: R,
    keep: std::sync::Arc<Mutex<Vec<String>>>,
    ready: String,
    tx: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        let mut sent = ready.is_empty();
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if !sent && line.contains(&ready) {
                sent = true;
                let _ = tx.send(line.clone());
            }
            let mut keep = lock(&keep);
            keep.push(line);
            if keep.len() > 50 {
                keep.remove(0);
            }
        }
    });
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Direct children of `pid` (from `/proc/PID/task/*/children`).
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("children")) else {
            continue;
        };
        out.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    out
}

/// A `kB` field of `/proc/PID/status` (`VmRSS:`, `VmHWM:`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// `utime + stime` of `/proc/PID/stat`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields count from after its closing ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
pub fn ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// The output of a shell command, trimmed (for the report's machine description).
pub fn command_output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.trim_end().trim_start_matches('\n').to_string()
        }
        Err(e) => format!("({program} failed: {e})"),
    }
}

/// Restricts every thread of `pid` to `cpus` (a `taskset` list such as `0` or `1-3`).
pub fn pin(pid: u32, cpus: &str) -> anyhow::Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .context("running taskset")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} {pid} failed ({status})");
    }
    Ok(())
}
