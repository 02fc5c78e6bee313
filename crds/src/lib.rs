//! The `ModelRoute` custom resource (`modelroute.dev/v1alpha1`).
//!
//! One set of types serves every consumer: the operator reads them from the Kubernetes API,
//! the sidecar reads the same YAML from files with `--config`, and `crdgen` turns them into
//! the CRD manifest. [`validate`] holds the checks the OpenAPI schema cannot express, so a
//! ModelRoute is judged the same way wherever it is loaded.

mod duration;
mod money;
pub mod v1alpha1;
pub mod validate;
mod window;

pub use duration::Duration;
pub use money::{MoneyError, NanoUsd, TokenPrice, Usd};
pub use v1alpha1::{BudgetStatus, ModelRoute, ModelRouteSpec, ModelRouteStatus, SidecarCounts};
pub use validate::{CREDENTIAL_HEADERS, Invalid, LIMITS_ENFORCED, validate};
pub use window::{Window, WindowId, WindowIdError};

/// The ModelRoute files of a directory, sorted: `*.yaml` and `*.yml`, hidden entries
/// skipped (which also skips the `..data` links of a mounted ConfigMap). Shared by the
/// sidecar's `--config DIR` and the operator's `--routes-dir`.
pub fn yaml_files(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if is_yaml && !name.starts_with('.') && entry.path().is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

/// Parses a stream of YAML documents (separated by `---`) into ModelRoutes.
///
/// Empty documents are skipped; documents of any other kind are an error, because a file
/// given to `--config` that holds something else is almost certainly a mistake.
pub fn from_yaml_documents(text: &str) -> Result<Vec<ModelRoute>, String> {
    // First an untyped look, to name a wrong kind clearly...
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    for (i, doc) in docs.iter().enumerate() {
        let kind = doc.get("kind").and_then(|k| k.as_str()).unwrap_or("<none>");
        let api_version = doc
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("<none>");
        if kind != "ModelRoute" || api_version != "modelroute.dev/v1alpha1" {
            return Err(format!(
                "document {}: expected apiVersion modelroute.dev/v1alpha1, kind ModelRoute; \
                 found apiVersion {api_version}, kind {kind}",
                i + 1
            ));
        }
    }
    // ...then typed, so a scalar is read as the type its field wants: `model: n` or
    // `model: 1.5` stay strings instead of turning into a YAML 1.1 boolean or a number.
    serde_saphyr::from_multiple(text).map_err(|e| e.to_string())
}
