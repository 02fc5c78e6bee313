//! The `ModelRoute` custom resource (`modelroute.dev/v1alpha1`).
//!
//! One set of types serves every consumer: the operator reads them from the Kubernetes API,
//! the sidecar reads the same YAML from files with `--config`, and `crdgen` turns them into
//! the CRD manifest. [`validate`] holds the checks the OpenAPI schema cannot express, so a
//! ModelRoute is judged the same way wherever it is loaded.

mod duration;
pub mod v1alpha1;
pub mod validate;

pub use duration::Duration;
pub use v1alpha1::{ModelRoute, ModelRouteSpec, ModelRouteStatus};
pub use validate::{Invalid, validate};

/// Parses a stream of YAML documents (separated by `---`) into ModelRoutes.
///
/// Empty documents are skipped; documents of any other kind are an error, because a file
/// given to `--config` that holds something else is almost certainly a mistake.
pub fn from_yaml_documents(text: &str) -> Result<Vec<ModelRoute>, String> {
    let docs: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| e.to_string())?;
    docs.into_iter()
        .enumerate()
        .map(|(i, doc)| {
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
            serde_json::from_value(doc).map_err(|e| format!("document {}: {e}", i + 1))
        })
        .collect()
}
