//! The workspace's binaries, built by cargo on demand (a no-op when they are current).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Which cargo profile to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// What `cargo test` builds: fast to compile, for functional tests.
    Dev,
    /// What users run: for benchmarks.
    Release,
}

/// The root of this workspace.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds binary `package` in `workspace` (honouring `CARGO_TARGET_DIR`) and returns
/// the executable's path.
///
/// Dev builds build every binary of the workspace at once: that unifies features exactly as
/// `cargo test --workspace` does, so after a test build this is a no-op (building one
/// package alone would pick other features and relink the binaries on every call).
pub fn build(workspace: &Path, package: &str, profile: Profile) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // Not the variables cargo sets for a test or `cargo run` process: build scripts that
    // watch them (ring's watches CARGO_MANIFEST_DIR) would rebuild their crate, here and
    // again in the next `cargo test` from a shell.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cmd.env_remove(name.as_ref());
        }
    }
    cmd.current_dir(workspace)
        .args(["build", "--message-format=json-render-diagnostics"]);
    match profile {
        Profile::Dev => cmd.args(["--workspace", "--bins"]),
        Profile::Release => cmd.args(["--release", "-p", package, "--bin", package]),
    };
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot run cargo")?;
    let mut executable = None;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines() {
            let line = line?;
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if msg["reason"] == "compiler-artifact"
                && msg["target"]["name"] == package
                && let Some(exe) = msg["executable"].as_str()
            {
                executable = Some(PathBuf::from(exe));
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building {package} failed ({status})");
    }
    executable.with_context(|| format!("cargo built {package} but named no executable"))
}
