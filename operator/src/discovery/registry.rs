//! The sidecars connected to this operator and what each has acknowledged.
//!
//! Sessions write here on every send, ACK and NACK; the controller reads it for
//! `status.sidecars` and `Degraded`, and the admin port for `/status`. Not on any hot
//! path: one short lock per event.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use crate::index::ObjectKey;

/// Connected sidecars.
#[derive(Debug)]
pub struct Registry {
    sessions: Mutex<HashMap<u64, Session>>,
    next_id: AtomicU64,
    /// Bumped on every change, so readers can wait for one.
    changes: watch::Sender<u64>,
}

/// A session's id in the registry.
pub type SessionId = u64;

/// The ModelRoutes of a snapshot, with the generation of each.
pub type Contents = Arc<[(ObjectKey, i64)]>;

#[derive(Clone, Debug)]
struct Session {
    pod: ObjectKey,
    /// The last snapshot the sidecar acknowledged: its hash and ModelRoutes.
    acked: Option<(String, Contents)>,
    /// The last refusal: the ModelRoutes of the refused snapshot and the reason.
    nacked: Option<(Contents, String)>,
}

/// How the sidecars of one ModelRoute are doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sync {
    /// Connected sidecars whose last acknowledged snapshot has this generation.
    pub in_sync: usize,
    /// Connected sidecars that last refused a snapshot holding this generation.
    pub refusing: usize,
    /// One of their reasons.
    pub last_nack: Option<String>,
}

// === impl Registry ===

impl Default for Registry {
    fn default() -> Self {
        Self {
            sessions: Mutex::default(),
            next_id: AtomicU64::new(1),
            changes: watch::Sender::new(0),
        }
    }
}

impl Registry {
    pub fn connect(&self, pod: ObjectKey) -> SessionId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.with(|s| {
            s.insert(
                id,
                Session {
                    pod,
                    acked: None,
                    nacked: None,
                },
            );
        });
        id
    }

    pub fn disconnect(&self, id: SessionId) {
        self.with(|s| {
            s.remove(&id);
        });
    }

    pub fn acked(&self, id: SessionId, hash: String, routes: Contents) {
        self.with(|s| {
            if let Some(session) = s.get_mut(&id) {
                session.acked = Some((hash, routes));
                session.nacked = None;
            }
        });
    }

    pub fn nacked(&self, id: SessionId, routes: Contents, reason: String) {
        self.with(|s| {
            if let Some(session) = s.get_mut(&id) {
                session.nacked = Some((routes, reason));
            }
        });
    }

    /// Connected sidecars.
    pub fn len(&self) -> usize {
        self.sessions.lock().map_or(0, |s| s.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pods with a connected sidecar.
    pub fn pods(&self) -> Vec<ObjectKey> {
        self.sessions
            .lock()
            .map(|s| s.values().map(|s| s.pod.clone()).collect())
            .unwrap_or_default()
    }

    /// How the sidecars are doing with generation `generation` of `route`.
    pub fn sync_of(&self, route: &ObjectKey, generation: i64) -> Sync {
        let Ok(sessions) = self.sessions.lock() else {
            return Sync::default();
        };
        let holds = |routes: &[(ObjectKey, i64)]| {
            routes.iter().any(|(k, g)| k == route && *g == generation)
        };
        let mut sync = Sync::default();
        for session in sessions.values() {
            if let Some((routes, reason)) = &session.nacked
                && holds(routes)
            {
                sync.refusing += 1;
                sync.last_nack = Some(reason.clone());
            } else if session.acked.as_ref().is_some_and(|(_, r)| holds(r)) {
                sync.in_sync += 1;
            }
        }
        sync
    }

    /// Resolves after the next change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn with(&self, f: impl FnOnce(&mut HashMap<u64, Session>)) {
        if let Ok(mut sessions) = self.sessions.lock() {
            f(&mut sessions);
        }
        self.changes.send_modify(|n| *n += 1);
    }
}
