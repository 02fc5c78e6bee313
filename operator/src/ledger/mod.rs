//! The budget ledger the leader keeps (docs/budgets.md): spend reported by sidecars,
//! allowance outstanding at each, how much to grant next, and the rate-limit shares.
//!
//! [`Book`] is the state (pure); [`Ledger`] shares it between the discovery sessions (which
//! apply reports and answer them at once) and the [`run`] task, which restores it when this
//! replica starts leading, persists it about once a second ([`store`]), announces crossed
//! thresholds ([`events`]) and keeps the metrics.

pub mod account;
pub mod book;
pub mod events;
pub mod key;
pub mod rates;
mod reporter;
pub mod run;
pub mod saved;
pub mod store;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use modelroute_crds::BudgetStatus;
use modelroute_proto::{Grant, Usage};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::index::ObjectKey;
use crate::metrics::Metrics;
pub use account::{Account, grant_size};
pub use book::{Answer, Book};
pub use key::{AccountKey, BudgetRef};
pub use run::run;
pub use store::Store;

/// The ledger of this replica, shared by sessions, the admin port and the [`run`] task.
#[derive(Debug)]
pub struct Ledger {
    book: Mutex<Book>,
    persistent: bool,
    /// Bumped when acknowledgements advance or sidecars have notices waiting.
    changes: watch::Sender<u64>,
    /// True while the ledger is restored and current: only then may sessions be served.
    ready: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

// === impl Ledger ===

impl Ledger {
    /// A ledger whose spend `persistent`ly outlives the process (or not: then reports are
    /// acknowledged as soon as they are applied).
    pub fn new(persistent: bool, metrics: Arc<Metrics>) -> Self {
        Self {
            book: Mutex::new(Book::new(persistent)),
            persistent,
            changes: watch::Sender::new(0),
            ready: watch::Sender::new(false),
            metrics,
        }
    }

    /// Applies a report of sidecar `pod` and answers it (see [`Book::report`]).
    pub fn report(&self, pod: &ObjectKey, usage: &Usage) -> Answer {
        let (answer, notices) = {
            let mut book = self.book();
            let answer = book.report(pod, usage, Instant::now(), SystemTime::now());
            (answer, book.has_notices())
        };
        self.metrics.usage_report(answer.duplicate);
        for e in &answer.ignored {
            self.metrics.usage_key_ignored(e.label());
        }
        if notices {
            self.changed();
        }
        answer
    }

    /// The highest seq of `pod`'s `incarnation` whose spend is durable.
    pub fn acked(&self, pod: &ObjectKey, incarnation: &str) -> u64 {
        self.book().acked(pod, incarnation)
    }

    /// Keys `pod` was told are exhausted and that are not any more.
    pub fn take_notices(&self, pod: &ObjectKey) -> Vec<Grant> {
        self.book().take_notices(pod)
    }

    /// Changes when acknowledgements advance or notices wait.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// True while sessions may be served.
    pub fn ready(&self) -> watch::Receiver<bool> {
        self.ready.subscribe()
    }

    /// `status.budgets` of `route` as the ledger has it now.
    pub fn statuses(&self, route: &ObjectKey) -> Vec<BudgetStatus> {
        self.book().statuses(route, SystemTime::now())
    }

    /// Runs `f` on the book (the [`run`] task and tests).
    pub fn with<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        f(&mut self.book())
    }

    /// Starts over empty and not ready (leadership lost, or about to restore).
    pub fn reset(&self) {
        self.ready.send_replace(false);
        *self.book() = Book::new(self.persistent);
        self.changed();
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.send_replace(ready);
    }

    /// Wakes the sessions: acknowledgements or notices may be waiting.
    pub fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the book half-updated in a way that
        // matters more than stopping to serve: keep going with what is there.
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
