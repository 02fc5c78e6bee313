//! The ledger's life on a replica: restored when the replica starts leading (and the source
//! has its first full state), kept in step with the served budgets, persisted about once a
//! second while it changes, emptied when leadership is lost.
//!
//! Nothing is written after leadership is lost or at shutdown: spend not yet persisted was
//! not acknowledged either, so the sidecars send it again to the next leader (writing it
//! here as well would count it twice).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Ledger;
use super::events::Announcer;
use super::store::Store;
use crate::index::World;
use crate::metrics::Metrics;

/// How often the ledger is persisted while it changes (and windows are looked at).
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Retry delays of a failed restore: doubling from the first, capped at the second.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What the ledger task works with.
#[derive(Debug)]
pub struct Parts {
    pub ledger: Arc<Ledger>,
    pub store: Store,
    pub announcer: Announcer,
    pub metrics: Arc<Metrics>,
    pub world: watch::Receiver<Arc<World>>,
    pub synced: watch::Receiver<bool>,
    pub leader: watch::Receiver<bool>,
    /// Pods come from the Kubernetes API: a pod gone from the world is gone, and what its
    /// sidecar held is released.
    pub pods_known: bool,
}

/// Runs the ledger until shutdown.
pub async fn run(mut parts: Parts, shutdown: CancellationToken) {
    loop {
        let (synced, leader) = (&mut parts.synced, &mut parts.leader);
        let up = async {
            loop {
                if *synced.borrow_and_update() && *leader.borrow_and_update() {
                    return true;
                }
                tokio::select! {
                    r = synced.changed() => if r.is_err() { return false },
                    r = leader.changed() => if r.is_err() { return false },
                }
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            up = up => if !up { return },
        }
        if !restore(&mut parts, &shutdown).await {
            parts.ledger.reset();
            if shutdown.is_cancelled() {
                return;
            }
            continue;
        }
        keep(&mut parts, &shutdown).await;
        parts.ledger.reset();
        parts.metrics.clear_budgets();
        if shutdown.is_cancelled() {
            return;
        }
        info!("no longer leading: ledger emptied");
    }
}

/// Reads the persisted ledger (retrying) and makes it ready. False when leadership was lost
/// or the process is stopping first.
async fn restore(parts: &mut Parts, shutdown: &CancellationToken) -> bool {
    parts.ledger.reset();
    let mut delay = RETRY_FIRST;
    let saved = loop {
        match parts.store.restore().await {
            Ok(saved) => break saved,
            Err(e) => warn!(error = %e, retry_in = ?delay, "cannot read the ledger back"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return false,
            () = tokio::time::sleep(delay) => {}
        }
        if !*parts.leader.borrow() {
            return false;
        }
        delay = (delay * 2).min(RETRY_MAX);
    };
    let accounts = saved.accounts.len();
    let world = parts.world.borrow_and_update().clone();
    parts.ledger.with(|book| {
        sync(book, &world, parts.pods_known);
        book.restore(saved, Instant::now());
    });
    parts.ledger.set_ready(true);
    info!(accounts, "ledger restored; serving sidecars");
    true
}

/// Keeps the ledger current and persisted while leading.
async fn keep(parts: &mut Parts, shutdown: &CancellationToken) {
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => Next::Stop,
            // Lost the Lease (or the election task is gone: the process is stopping).
            _ = parts.leader.wait_for(|l| !*l) => Next::Stop,
            changed = parts.world.changed() => match changed {
                Ok(()) => Next::Sync,
                Err(_) => Next::Stop,
            },
            _ = tick.tick() => Next::Flush,
        };
        match next {
            Next::Stop => return,
            Next::Sync => {
                let world = parts.world.borrow_and_update().clone();
                parts
                    .ledger
                    .with(|book| sync(book, &world, parts.pods_known));
                parts.ledger.changed();
            }
            Next::Flush => flush(parts).await,
        }
    }
}

/// What the keeping loop does next.
enum Next {
    Stop,
    Sync,
    Flush,
}

/// One pass: time moves on, changes are persisted, crossings announced, metrics set.
async fn flush(parts: &mut Parts) {
    let whole = parts.store.whole();
    let (batch, crossings) = parts.ledger.with(|book| {
        book.tick(Instant::now(), SystemTime::now());
        (
            book.begin_flush(whole, SystemTime::now()),
            book.take_crossings(),
        )
    });
    parts.announcer.announce(crossings);
    if let Some(batch) = batch {
        // Written only while leading; a write that straddles a lost Lease is bounded by
        // the store's timeout.
        let result = if *parts.leader.borrow() {
            parts.store.write(&batch).await
        } else {
            Err(batch.routes.iter().map(|(k, _, _)| k.clone()).collect())
        };
        parts.metrics.ledger_write(result.is_ok());
        let advanced = parts.ledger.with(|book| book.flushed(batch.epoch, result));
        if advanced {
            parts.ledger.changed();
        }
    }
    let totals = parts.ledger.with(|book| book.totals());
    parts.metrics.budgets(&totals);
}

/// The book follows the served budgets (and, with pods from the API, releases what sidecars
/// of deleted pods held).
fn sync(book: &mut super::Book, world: &World, pods_known: bool) {
    let served = world
        .routes
        .values()
        .map(|p| (&p.key, p.uid.as_deref(), &p.spec));
    book.sync(served, SystemTime::now());
    if pods_known {
        let live: HashSet<String> = world.pods.keys().map(ToString::to_string).collect();
        book.release_gone(&live);
    }
}

#[cfg(test)]
mod tests;
