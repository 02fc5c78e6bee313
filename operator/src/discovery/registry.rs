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
    /// Per ModelRoute, the connected sidecars it is sent to (what rate-limit shares divide
    /// by).
    receivers: Mutex<HashMap<ObjectKey, usize>>,
    next_id: AtomicU64,
    /// Bumped on every change, so readers can wait for one.
    changes: watch::Sender<u64>,
    /// Bumped when `receivers` changes.
    membership: watch::Sender<u64>,
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
    /// The ModelRoutes of the snapshot last sent.
    receives: Contents,
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
            receivers: Mutex::default(),
            next_id: AtomicU64::new(1),
            changes: watch::Sender::new(0),
            membership: watch::Sender::new(0),
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
                    receives: Contents::default(),
                },
            );
        });
        id
    }

    pub fn disconnect(&self, id: SessionId) {
        let mut gone = None;
        self.with(|s| gone = s.remove(&id));
        if let Some(session) = gone {
            self.count(&session.receives, &[]);
        }
    }

    /// Session `id` was sent a snapshot of `routes`.
    pub fn receives(&self, id: SessionId, routes: Contents) {
        let old = {
            let Ok(mut sessions) = self.sessions.lock() else {
                return;
            };
            let Some(session) = sessions.get_mut(&id) else {
                return;
            };
            std::mem::replace(&mut session.receives, routes.clone())
        };
        self.count(&old, &routes);
    }

    /// Connected sidecars that were sent `route` (whatever generation).
    pub fn receivers(&self, route: &ObjectKey) -> usize {
        self.receivers
            .lock()
            .map_or(0, |r| r.get(route).copied().unwrap_or(0))
    }

    /// Changes when [`Registry::receivers`] does.
    pub fn subscribe_membership(&self) -> watch::Receiver<u64> {
        self.membership.subscribe()
    }

    /// Moves one session's count from the ModelRoutes of `old` to those of `new`.
    fn count(&self, old: &[(ObjectKey, i64)], new: &[(ObjectKey, i64)]) {
        let keys = |c: &[(ObjectKey, i64)]| -> std::collections::BTreeSet<ObjectKey> {
            c.iter().map(|(k, _)| k.clone()).collect()
        };
        let (old, new) = (keys(old), keys(new));
        if old == new {
            return;
        }
        if let Ok(mut receivers) = self.receivers.lock() {
            for k in old.difference(&new) {
                if let Some(n) = receivers.get_mut(k) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        receivers.remove(k);
                    }
                }
            }
            for k in new.difference(&old) {
                *receivers.entry(k.clone()).or_default() += 1;
            }
        }
        self.membership.send_modify(|n| *n = n.wrapping_add(1));
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
