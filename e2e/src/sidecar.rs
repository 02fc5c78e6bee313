//! The sidecar under test: built in release mode, started with a generated ModelRoute
//! config whose one route goes to the fake upstream through an `openai` provider.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::process::ChildGuard;

/// What the sidecar logs once both listeners are bound.
const READY: &str = "modelroute sidecar listening";

/// A running sidecar; dropping it stops it.
#[derive(Debug)]
pub struct Sidecar {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    _dir: TempDir,
}

/// Builds the release sidecar (see [`crate::binaries::build`]).
pub fn build(workspace: &Path) -> anyhow::Result<PathBuf> {
    crate::binaries::build(
        workspace,
        "modelroute-sidecar",
        crate::binaries::Profile::Release,
    )
}

/// The ModelRoute config: `gpt-4o-mini` -> the fake upstream as an OpenAI provider.
pub fn config(upstream: SocketAddr) -> String {
    format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata:
  name: bench
spec:
  providers:
    - name: fake
      kind: openai
      baseUrl: http://{upstream}/v1
  routes:
    - model: gpt-4o-mini
      targets:
        - provider: fake
          model: fake-model
"#
    )
}

/// Starts the sidecar on loopback ports chosen by the OS and reads them from its log.
pub fn start(
    bin: &Path,
    upstream: SocketAddr,
    worker_threads: Option<usize>,
) -> anyhow::Result<Sidecar> {
    start_with_config(bin, &self::config(upstream), worker_threads)
}

/// [`start`] with another ModelRoute config.
pub fn start_with_config(
    bin: &Path,
    config_yaml: &str,
    worker_threads: Option<usize>,
) -> anyhow::Result<Sidecar> {
    start_with_env(bin, config_yaml, worker_threads, &[])
}

/// [`start_with_config`] with extra environment variables (`OTEL_*`, say).
pub fn start_with_env(
    bin: &Path,
    config_yaml: &str,
    worker_threads: Option<usize>,
    env: &[(&str, &str)],
) -> anyhow::Result<Sidecar> {
    let dir = tempfile::Builder::new()
        .prefix("modelroute-bench-sidecar")
        .tempdir()?;
    let config = dir.path().join("bench.yaml");
    std::fs::write(&config, config_yaml)?;
    let mut cmd = Command::new(bin);
    cmd.arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .args(["--drain-timeout", "1s", "--log", "info"])
        .env_remove("RUST_LOG")
        .envs(env.iter().copied());
    if let Some(n) = worker_threads {
        cmd.arg("--worker-threads").arg(n.to_string());
    }
    let (guard, line) =
        ChildGuard::spawn("modelroute-sidecar", cmd, READY, Duration::from_secs(20))?;
    let addr = field(&line, "proxy=").context("no proxy= in the sidecar's listening line")?;
    let admin = field(&line, "admin=").context("no admin= in the sidecar's listening line")?;
    Ok(Sidecar {
        guard,
        addr,
        admin,
        _dir: dir,
    })
}

/// `key=ADDR` out of a log line.
pub fn field(line: &str, key: &str) -> Option<SocketAddr> {
    let at = line.find(key)? + key.len();
    line[at..]
        .split_whitespace()
        .next()?
        .trim_matches('"')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_addresses_from_the_listening_line() {
        let line = "2026-01-01T00:00:00Z  INFO modelroute_sidecar: modelroute sidecar listening \
                    proxy=127.0.0.1:4000 admin=127.0.0.1:4001";
        assert_eq!(
            field(line, "proxy="),
            Some("127.0.0.1:4000".parse().unwrap())
        );
        assert_eq!(
            field(line, "admin="),
            Some("127.0.0.1:4001".parse().unwrap())
        );
    }
}
