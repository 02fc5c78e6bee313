//! A standalone sidecar's ledger file (`--ledger-file`): the spend of every budget account
//! of the current windows, so a restart does not forget what was spent.
//!
//! Written within a second of a change and at shutdown, atomically (a temporary file
//! renamed over the old one), so a crash leaves the previous version whole. At most the
//! spend of the last second is lost to a crash (`kill -9`); documented in docs/budgets.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Limits;
use super::ledger::AccountKey;
use super::policy::LimitId;

const FORMAT_VERSION: u32 = 1;
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    version: u32,
    accounts: Vec<Entry>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    namespace: String,
    model_route: String,
    budget: String,
    scope: String,
    window: modelroute_crds::WindowId,
    spent_nano_usd: u64,
}

/// Why the ledger file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the ledger file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the ledger file {path} is not a modelroute ledger: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "the ledger file {path} has format version {found}; this sidecar reads {FORMAT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
}

/// Reads the spend kept in `path`; a missing file is an empty ledger.
pub fn load(path: &Path) -> Result<Vec<(AccountKey, u64)>, StoreError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Read {
                path: path.into(),
                source,
            });
        }
    };
    let file: File = serde_json::from_slice(&bytes).map_err(|source| StoreError::Parse {
        path: path.into(),
        source,
    })?;
    if file.version != FORMAT_VERSION {
        return Err(StoreError::Version {
            path: path.into(),
            found: file.version,
        });
    }
    Ok(file
        .accounts
        .into_iter()
        .map(|e| {
            let key = AccountKey {
                budget: Arc::new(LimitId {
                    namespace: e.namespace,
                    model_route: e.model_route,
                    name: e.budget,
                }),
                scope: e.scope,
                window: e.window,
            };
            (key, e.spent_nano_usd)
        })
        .collect())
}

/// The ledger as the file holds it.
fn render(limits: &Limits) -> Vec<u8> {
    let accounts = limits
        .ledger
        .accounts()
        .into_iter()
        .filter(|(_, a)| a.spent > 0)
        .map(|(k, a)| Entry {
            namespace: k.budget.namespace.clone(),
            model_route: k.budget.model_route.clone(),
            budget: k.budget.name.clone(),
            scope: k.scope,
            window: k.window,
            spent_nano_usd: a.spent,
        })
        .collect();
    let file = File {
        version: FORMAT_VERSION,
        accounts,
    };
    serde_json::to_vec_pretty(&file).unwrap_or_default()
}

/// Writes `bytes` to `path` atomically.
fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Keeps `path` up to date until `stop`, then writes it a last time.
pub async fn run(limits: Arc<Limits>, path: PathBuf, stop: CancellationToken) {
    let mut written = render(&limits);
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(INTERVAL) => false,
        };
        limits.ledger.prune(SystemTime::now());
        limits.rates.prune(tokio::time::Instant::now());
        let now = render(&limits);
        if now != written {
            match write(&path, &now) {
                Ok(()) => written = now,
                Err(e) => warn!(path = %path.display(), error = %e, "cannot write the ledger file"),
            }
        }
        if stopping {
            info!(path = %path.display(), "ledger saved");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Mode;
    use crate::limits::policy::{BudgetRule, Exhausted, ScopeRule};
    use modelroute_crds::Window;

    #[test]
    fn spend_survives_a_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        assert!(load(&path).unwrap().is_empty(), "no file: empty");
        let limits = Limits::new(Mode::Standalone, "pod".into(), None);
        let rule = BudgetRule {
            id: Arc::new(LimitId {
                namespace: "ns".into(),
                model_route: "mr".into(),
                name: "daily".into(),
            }),
            amount: 10_000,
            window: Window::Daily,
            scope: ScopeRule::Header(http::HeaderName::from_static("x-tenant")),
            thresholds: vec![],
            exhausted: Exhausted::Reject,
            loss_cap: 0,
        };
        let now = SystemTime::now();
        let key = crate::limits::Ledger::key(&rule, "acme".into(), now);
        limits.ledger.settle(&rule, &key, 0, 1234);
        write(&path, &render(&limits)).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, vec![(key.clone(), 1234)]);
        let restarted = Limits::new(Mode::Standalone, "pod".into(), None);
        restarted.ledger.restore(back, now);
        assert_eq!(
            restarted.ledger.reserve(&rule, &key, 10_000, 1, false),
            crate::limits::ledger::Reserved::Partial(10_000 - 1234)
        );
    }

    #[test]
    fn a_bad_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.json");
        std::fs::write(&path, "{\"version\":1,\"accounts\":[{\"budget\":3}]}").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(
            err.contains("ledger.json") && err.contains("not a modelroute ledger"),
            "{err}"
        );
        std::fs::write(&path, "{\"version\":9,\"accounts\":[]}").unwrap();
        assert!(
            load(&path)
                .unwrap_err()
                .to_string()
                .contains("format version 9")
        );
    }
}
