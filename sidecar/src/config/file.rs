//! The file source: ModelRoute YAML from a file or a directory, watched for changes.
//!
//! A directory is read whole (`*.yaml`, `*.yml`, hidden entries skipped, which also skips
//! the `..data` links of a mounted ConfigMap). Changes are noticed with inotify; SIGHUP
//! forces a reload, which also re-reads key files.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use modelroute_crds::ModelRoute;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::App;

/// Editors and ConfigMap updates write in several steps; wait for them to settle.
const SETTLE: Duration = Duration::from_millis(150);

/// Reads every ModelRoute under `path`. Errors name the file.
pub fn read(path: &Path) -> Result<Vec<ModelRoute>, String> {
    let files = if path.is_dir() {
        modelroute_crds::yaml_files(path).map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        vec![path.to_path_buf()]
    };
    let mut docs = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let parsed = modelroute_crds::from_yaml_documents(&text)
            .map_err(|e| format!("{}: {e}", file.display()))?;
        docs.extend(parsed);
    }
    if docs.is_empty() {
        return Err(format!("{}: no ModelRoute found", path.display()));
    }
    Ok(docs)
}

/// A registered watch on the config; [`Watch::run`] reloads on every change.
pub struct Watch {
    path: PathBuf,
    changes: mpsc::Receiver<()>,
    // Held for its side effect: dropping it ends the watch.
    _watcher: Option<notify::RecommendedWatcher>,
}

// === impl Watch ===

impl Watch {
    /// Starts watching `path` now, so no change after this call is missed. A watch that
    /// cannot be set up is logged; SIGHUP still reloads.
    pub fn new(path: PathBuf) -> Self {
        let (tx, changes) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Opening and reading files are events too: reacting to them would make every
            // reload trigger the next one.
            if event.is_ok_and(|e| !e.kind.is_access()) {
                // Full means a reload is already due.
                let _ = tx.try_send(());
            }
        });
        let mut watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                warn!(error = %e, "cannot watch the config for changes; send SIGHUP to reload");
                None
            }
        };
        // Watch the directory, not the file: editors and ConfigMaps replace files by rename.
        let dir = if path.is_dir() {
            path.clone()
        } else {
            let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
            parent.unwrap_or(Path::new(".")).to_path_buf()
        };
        if let Some(w) = watcher.as_mut()
            && let Err(e) = w.watch(&dir, RecursiveMode::Recursive)
        {
            warn!(dir = %dir.display(), error = %e, "cannot watch the config; send SIGHUP to reload");
        }
        Self {
            path,
            changes,
            _watcher: watcher,
        }
    }

    /// Reloads whenever the config changes or on SIGHUP, until `shutdown`. A config that
    /// does not load is logged and counted; the active one keeps serving.
    pub async fn run(mut self, app: Arc<App>, shutdown: CancellationToken) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        loop {
            let hup = async {
                match hangup.as_mut() {
                    Some(h) => {
                        h.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(()) = self.changes.recv() => {}
                () = hup => info!("SIGHUP: reloading the config"),
            }
            tokio::time::sleep(SETTLE).await;
            while self.changes.try_recv().is_ok() {}
            reload(&self.path, &app);
        }
    }
}

/// Loads and applies the config at `path` once.
pub fn reload(path: &Path, app: &App) {
    let source = format!("file:{}", path.display());
    let result = read(path).and_then(|docs| app.apply(&docs, &source).map_err(|e| e.to_string()));
    if let Err(error) = result {
        let active = app.table().map_or(0, |t| t.version);
        app.metrics.config_rejected();
        warn!(%error, active_version = active, "config rejected; the active config keeps serving");
    }
}
