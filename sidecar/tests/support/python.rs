//! Running the Python SDK checks in `e2e/python/` against a sidecar.
//!
//! They need a Python with the SDKs: `$MODELROUTE_PYTHON`, or `.venv/bin/python` at the
//! workspace root (`scripts/test` creates it). Without one a test fails in CI (`CI` set)
//! and is skipped loudly elsewhere.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

/// The Python to run the checks with, or `None` (after saying so) when there is none.
pub fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("MODELROUTE_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if venv.exists() {
        return Some(venv);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no Python with the provider SDKs: run scripts/test, or set MODELROUTE_PYTHON"
    );
    eprintln!("SKIPPED: no Python with the provider SDKs (run scripts/test to set one up)");
    None
}

/// `sdk_check.py`: the OpenAI SDK against `base_url` (which ends in `/v1`).
pub async fn sdk(python: &Path, base_url: &str, case: &str) -> Value {
    run(python, "sdk_check.py", base_url, case).await
}

/// `native_check.py`: the Anthropic or Google GenAI SDK against the sidecar's root URL.
pub async fn native_sdk(python: &Path, base_url: &str, case: &str) -> Value {
    run(python, "native_check.py", base_url, case).await
}

/// Runs one case and parses the JSON the script prints.
async fn run(python: &Path, script: &str, base_url: &str, case: &str) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../e2e/python")
        .join(script);
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python)
            .arg(script)
            .arg(base_url)
            .arg(case)
            .output(),
    )
    .await
    .expect("the SDK script hung")
    .expect("cannot run python");
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{case}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}
