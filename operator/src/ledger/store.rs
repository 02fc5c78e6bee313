//! Where the ledger's spend outlives the process.
//!
//! - Kubernetes: each ModelRoute's `status.budgets`, written by server-side apply under its
//!   own field manager ([`FIELD_MANAGER`]; the status controller owns the rest of status),
//!   read back from every ModelRoute when a replica starts leading.
//! - `--ledger-file`: one JSON file with every account, replaced atomically (written to a
//!   temporary file beside it, synced, renamed over it, directory synced).
//! - Nothing (the file source without `--ledger-file`): spend lives in memory and a restart
//!   starts from zero.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Api, Resource};
use modelroute_crds::{BudgetStatus, ModelRoute};
use serde_json::json;
use tracing::{debug, warn};

use super::book::Flush;
use super::saved::{FILE_VERSION, LedgerFile, Saved};
use crate::index::ObjectKey;

/// The field manager of `status.budgets`.
pub const FIELD_MANAGER: &str = "modelroute-operator-ledger";

/// A write that takes longer is given up (and retried with the next flush): a leader that
/// lost its Lease must not land a write after the next leader read status.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where spend is persisted.
#[derive(Clone)]
pub enum Store {
    Memory,
    File(PathBuf),
    Status(kube::Client),
}

/// Why the ledger could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("listing ModelRoutes: {0}")]
    List(#[source] kube::Error),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a ledger file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: ledger file version {found}, this operator reads version {FILE_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the ledger file task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

// === impl Store ===

impl Store {
    /// Whether spend outlives the process (acknowledgements then wait for a write).
    pub fn persistent(&self) -> bool {
        !matches!(self, Self::Memory)
    }

    /// Whether a write takes every account (rather than the changed ModelRoutes).
    pub fn whole(&self) -> bool {
        matches!(self, Self::File(_))
    }

    /// What was persisted.
    pub async fn restore(&self) -> Result<Saved, StoreError> {
        match self {
            Self::Memory => Ok(Saved::default()),
            Self::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || read_file(&path)).await?
            }
            Self::Status(client) => read_statuses(client).await,
        }
    }

    /// Writes `flush`; `Err` holds the ModelRoutes that must be written again.
    pub async fn write(&self, flush: &Flush) -> Result<(), Vec<ObjectKey>> {
        let all = || flush.routes.iter().map(|(k, _, _)| k.clone()).collect();
        match self {
            Self::Memory => Ok(()),
            Self::File(path) => {
                let path = path.clone();
                let file = LedgerFile {
                    version: FILE_VERSION,
                    accounts: flush.accounts.clone(),
                };
                let written = tokio::task::spawn_blocking(move || write_file(&path, &file)).await;
                match written {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => {
                        warn!(error = %e, "cannot write the ledger file; retrying");
                        Err(all())
                    }
                    Err(e) => {
                        warn!(error = %e, "the ledger file task failed; retrying");
                        Err(all())
                    }
                }
            }
            Self::Status(client) => {
                let mut failed = Vec::new();
                for (route, _, budgets) in &flush.routes {
                    let write = write_status(client, route, budgets);
                    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            warn!(modelroute = %route, error = %e, "cannot write status.budgets; retrying");
                            failed.push(route.clone());
                        }
                        Err(_) => {
                            warn!(modelroute = %route, "writing status.budgets timed out; retrying");
                            failed.push(route.clone());
                        }
                    }
                }
                if failed.is_empty() {
                    Ok(())
                } else {
                    Err(failed)
                }
            }
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Status(_) => f.write_str("Status"),
        }
    }
}

fn resource() -> ApiResource {
    ApiResource::erase::<ModelRoute>(&())
}

/// `status.budgets` of every ModelRoute. Entries that do not parse are skipped (and
/// logged): one bad entry must not keep the ledger from starting.
async fn read_statuses(client: &kube::Client) -> Result<Saved, StoreError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(StoreError::List)?;
    let mut saved = Saved::default();
    for object in list {
        let key = ObjectKey::new(
            object.metadata.namespace.clone().unwrap_or_default(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        let Some(entries) = object
            .data
            .get("status")
            .and_then(|s| s.get("budgets"))
            .and_then(|b| b.as_array())
        else {
            continue;
        };
        let mut parsed = Vec::with_capacity(entries.len());
        for entry in entries {
            match serde_json::from_value::<BudgetStatus>(entry.clone()) {
                Ok(e) => parsed.push(e),
                Err(e) => warn!(modelroute = %key, error = %e, "skipping a status.budgets entry"),
            }
        }
        saved.add_status(&key, &parsed);
    }
    Ok(saved)
}

/// Server-side applies `budgets` as `route`'s `status.budgets`. A ModelRoute that is gone
/// has nothing left to persist.
async fn write_status(
    client: &kube::Client,
    route: &ObjectKey,
    budgets: &[BudgetStatus],
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), &route.namespace, &resource());
    // An empty list is left out: the apply then owns nothing, which removes the field.
    let status = if budgets.is_empty() {
        json!({})
    } else {
        json!({ "budgets": budgets })
    };
    let patch = json!({
        "apiVersion": ModelRoute::api_version(&()),
        "kind": ModelRoute::kind(&()),
        "status": status,
    });
    match api
        .patch_status(
            &route.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => {
            debug!(modelroute = %route, "ModelRoute gone; its spend is not written");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// The ledger file; nothing when it does not exist yet.
fn read_file(path: &Path) -> Result<Saved, StoreError> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.to_owned(),
                source,
            });
        }
    };
    let file: LedgerFile = serde_json::from_slice(&text).map_err(|source| StoreError::Parse {
        path: path.to_owned(),
        source,
    })?;
    if file.version != FILE_VERSION {
        return Err(StoreError::Version {
            path: path.to_owned(),
            found: file.version,
        });
    }
    Ok(Saved {
        accounts: file.accounts,
        ..Saved::default()
    })
}

/// Replaces the ledger file atomically: a crash leaves the old file or the new one, never
/// half of either.
fn write_file(path: &Path, file: &LedgerFile) -> Result<(), StoreError> {
    use std::io::Write;
    let err = |source| StoreError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ledger".into());
    let tmp = dir.join(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec(file).map_err(|e| err(std::io::Error::other(e)))?;
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    f.write_all(&bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    // The rename itself must survive a crash.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests;
