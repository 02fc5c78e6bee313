//! The file source (`--routes-dir`): ModelRoute YAML files and Secrets as files, watched.
//!
//! Every change re-reads the directory whole. A file that does not parse keeps its last
//! good content (and says why in the log); a ModelRoute that does not validate is judged
//! by the index like any other, so sidecars keep its last good version too.
//! Files carry no `metadata.generation`: the source numbers each ModelRoute's spec
//! changes itself, so sync status works the same as in Kubernetes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use modelroute_crds::ModelRoute;
use notify::{RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::index::{Index, ObjectKey, SecretMissing, SecretStore, Verdict};

/// Editors and ConfigMap updates write in several steps; wait for them to settle.
const SETTLE: Duration = Duration::from_millis(50);

/// Watches `routes` (and `secrets`) and keeps `index` up to date.
#[derive(Debug)]
pub struct FileSource {
    routes: PathBuf,
    secrets: Option<PathBuf>,
    /// The last content of each file that parsed.
    last_good: BTreeMap<PathBuf, Vec<ModelRoute>>,
    /// Per ModelRoute: the digest of its spec and the generation that digest got.
    generations: HashMap<ObjectKey, ([u8; 32], i64)>,
    changes: mpsc::Receiver<()>,
    // Held for its side effect: dropping it ends the watch.
    _watcher: Option<notify::RecommendedWatcher>,
}

/// Secrets as files: `dir/<namespace>/<name>/<key>`.
#[derive(Debug)]
pub struct SecretFiles<'a>(pub Option<&'a Path>);

// === impl FileSource ===

impl FileSource {
    /// Starts watching now, so no change after this call is missed.
    pub fn new(routes: PathBuf, secrets: Option<PathBuf>) -> Self {
        let (tx, changes) = mpsc::channel::<()>(1);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            // Opening and reading files are events too: reacting to them would make every
            // reload trigger the next one.
            if event.is_ok_and(|e| !e.kind.is_access()) {
                // Full means a reload is already due.
                let _ = tx.try_send(());
            }
        });
        let watcher = match watcher {
            Ok(mut w) => {
                for dir in std::iter::once(&routes).chain(secrets.as_ref()) {
                    if let Err(e) = w.watch(dir, RecursiveMode::Recursive) {
                        warn!(dir = %dir.display(), error = %e, "cannot watch for changes");
                    }
                }
                Some(w)
            }
            Err(e) => {
                warn!(error = %e, "cannot watch for changes; restart to reload");
                None
            }
        };
        Self {
            routes,
            secrets,
            last_good: BTreeMap::new(),
            generations: HashMap::new(),
            changes,
            _watcher: watcher,
        }
    }

    /// Reads everything once and updates `index`.
    pub fn load(&mut self, index: &Index) {
        self.read_files();
        let mut docs: Vec<ModelRoute> = self.last_good.values().flatten().cloned().collect();
        for doc in &mut docs {
            doc.metadata.generation = Some(self.generation_of(doc));
        }
        let before = index.current();
        index.update(
            &docs,
            &SecretFiles(self.secrets.as_deref()),
            BTreeMap::new(),
        );
        log_verdicts(&before.verdicts, &index.current().verdicts);
    }

    /// Reloads on every change until `shutdown`.
    pub async fn run(mut self, index: &Index, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(()) = self.changes.recv() => {}
            }
            tokio::time::sleep(SETTLE).await;
            while self.changes.try_recv().is_ok() {}
            self.load(index);
        }
    }

    fn read_files(&mut self) {
        let files = match modelroute_crds::yaml_files(&self.routes) {
            Ok(files) => files,
            Err(e) => {
                warn!(dir = %self.routes.display(), error = %e, "cannot list the routes directory");
                return;
            }
        };
        self.last_good.retain(|path, _| files.contains(path));
        for file in files {
            let parsed = std::fs::read_to_string(&file)
                .map_err(|e| e.to_string())
                .and_then(|text| modelroute_crds::from_yaml_documents(&text));
            match parsed {
                Ok(docs) => {
                    self.last_good.insert(file, docs);
                }
                Err(error) => warn!(
                    file = %file.display(),
                    %error,
                    "routes file rejected; its last good content keeps serving"
                ),
            }
        }
    }

    fn generation_of(&mut self, doc: &ModelRoute) -> i64 {
        let digest: [u8; 32] =
            Sha256::digest(serde_json::to_vec(&doc.spec).unwrap_or_default()).into();
        let entry = self
            .generations
            .entry(ObjectKey::of(doc))
            .or_insert((digest, 1));
        if entry.0 != digest {
            *entry = (digest, entry.1 + 1);
        }
        entry.1
    }
}

/// One line per ModelRoute whose verdict changed.
fn log_verdicts(before: &BTreeMap<ObjectKey, Verdict>, after: &BTreeMap<ObjectKey, Verdict>) {
    for (key, verdict) in after {
        if before.get(key) == Some(verdict) {
            continue;
        }
        match &verdict.problem {
            None => {
                info!(modelroute = %key, generation = verdict.generation, "ModelRoute accepted")
            }
            Some(p) => warn!(
                modelroute = %key,
                generation = verdict.generation,
                serving = ?verdict.serving,
                reason = %p.reason,
                problems = %p.message,
                "ModelRoute refused; sidecars keep its last good version"
            ),
        }
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        info!(modelroute = %key, "ModelRoute removed");
    }
}

// === impl SecretFiles ===

impl SecretStore for SecretFiles<'_> {
    fn get(&self, namespace: &str, name: &str, key: &str) -> Result<Bytes, SecretMissing> {
        let Some(dir) = self.0 else {
            return Err(SecretMissing::Secret);
        };
        // Names come from ModelRoutes: never let one walk out of the directory.
        let plain = |part: &str| {
            !part.is_empty() && part != "." && part != ".." && !part.contains(['/', '\\', '\0'])
        };
        if !(plain(namespace) && plain(name)) {
            return Err(SecretMissing::Secret);
        }
        if !plain(key) {
            return Err(SecretMissing::Key);
        }
        let secret = dir.join(namespace).join(name);
        if !secret.is_dir() {
            return Err(SecretMissing::Secret);
        }
        // A key file written by hand usually ends with a newline that is not the key's.
        let mut value = std::fs::read(secret.join(key)).map_err(|_| SecretMissing::Key)?;
        while value.last().is_some_and(|b| b.is_ascii_whitespace()) {
            value.pop();
        }
        Ok(value.into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::index::ObjectKey;

    fn route(reply: &str) -> String {
        format!(
            "apiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: r, namespace: shop}}\nspec:\n  providers: [{{name: m, kind: mock, mock: {{reply: {reply}}}}}]\n  routes: [{{model: chat, targets: [{{provider: m, model: x}}]}}]\n"
        )
    }

    #[test]
    fn secret_files_stay_inside_their_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("shop/keys")).unwrap();
        std::fs::write(dir.path().join("shop/keys/openai"), "sk-file\n").unwrap();
        std::fs::write(dir.path().join("outside"), "not a key").unwrap();
        let store = SecretFiles(Some(dir.path()));
        assert_eq!(
            &store.get("shop", "keys", "openai").unwrap()[..],
            b"sk-file"
        );
        assert_eq!(store.get("shop", "keys", "nope"), Err(SecretMissing::Key));
        assert_eq!(
            store.get("shop", "nope", "openai"),
            Err(SecretMissing::Secret)
        );
        assert_eq!(
            store.get("shop", "..", "outside"),
            Err(SecretMissing::Secret)
        );
        assert_eq!(
            store.get("shop", "keys", "../../outside"),
            Err(SecretMissing::Key)
        );
        assert_eq!(
            SecretFiles(None).get("shop", "keys", "openai"),
            Err(SecretMissing::Secret)
        );
    }

    #[test]
    fn an_unparsable_file_keeps_its_last_good_content_and_generations_count_spec_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.yaml");
        std::fs::write(&file, route("one")).unwrap();
        let (index, rx) = Index::new();
        let mut source = FileSource::new(dir.path().to_path_buf(), None);
        let key = ObjectKey::new("shop", "r");
        source.load(&index);
        assert_eq!(rx.borrow().verdicts[&key].generation, 1);

        std::fs::write(&file, "kind: [unclosed").unwrap();
        source.load(&index);
        let world = rx.borrow().clone();
        assert_eq!(world.verdicts[&key].generation, 1, "last good content kept");
        assert!(world.routes.contains_key(&key));

        // Same spec again: same generation, nothing new published.
        std::fs::write(&file, route("one")).unwrap();
        let version = rx.borrow().version;
        source.load(&index);
        assert_eq!(rx.borrow().version, version);

        std::fs::write(&file, route("two")).unwrap();
        source.load(&index);
        assert_eq!(rx.borrow().verdicts[&key].generation, 2);

        std::fs::remove_file(&file).unwrap();
        source.load(&index);
        assert!(
            rx.borrow().verdicts.is_empty(),
            "a removed file removes its routes"
        );
    }
}
