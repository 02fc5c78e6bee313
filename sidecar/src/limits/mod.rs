//! Budgets and rate limits, enforced in the sidecar with no round trip on the request path
//! (docs/budgets.md).
//!
//! - [`policy`]: what a route's ModelRoute asks for, compiled with the config.
//! - [`admission`]: before a request goes upstream: rate limits, then budget reservations
//!   (clamping `max_tokens`, rejecting or downgrading); after: settle the real cost.
//! - [`ledger`]: budget accounts (standalone: the whole budget; fleet: the allowance the
//!   operator granted); [`store`] keeps a standalone ledger in a file across restarts.
//! - [`rate`], [`bucket`]: token buckets for requests and tokens per minute.

pub mod admission;
pub mod bucket;
pub mod fleet;
pub mod headers;
pub mod ledger;
pub mod policy;
pub mod provider;
pub mod rate;
pub mod store;

use std::path::PathBuf;

/// The maps of the request path: keyed by what clients send (tenant headers, `user`), so
/// seeded per process, and hashed with foldhash rather than SipHash (measured: SipHash of
/// the account keys was a visible part of the cost of a budget).
pub type FastMap<K, V> = hashbrown::HashMap<K, V, foldhash::quality::RandomState>;

use tokio::sync::Notify;

pub use admission::{Admission, Admitted};
pub use bucket::{Denied, TokenBucket};
pub use ledger::{AccountKey, Ledger, Mode};
pub use policy::{BudgetRule, Exhausted, LimitId, RateRule, RouteLimits, ScopeRule};
pub use rate::RateBook;

/// The sidecar's limit state: it outlives config reloads (spend is not forgotten when a
/// ModelRoute is edited).
#[derive(Debug)]
pub struct Limits {
    pub ledger: Ledger,
    pub rates: RateBook,
    /// This pod's name: the value of `scope: pod`.
    pub pod: String,
    /// Standalone: where the ledger is kept across restarts.
    pub ledger_file: Option<PathBuf>,
    /// Fleet: an account needs allowance (the reporter sends at once).
    pub want: Notify,
    /// Fleet: grants arrived (requests waiting for a first grant look again).
    pub granted: Notify,
}

// === impl Limits ===

impl Limits {
    pub fn new(mode: Mode, pod: String, ledger_file: Option<PathBuf>) -> Self {
        Self {
            ledger: Ledger::new(mode),
            rates: RateBook::default(),
            pod,
            ledger_file,
            want: Notify::new(),
            granted: Notify::new(),
        }
    }

    pub fn unreachable(&self) -> bool {
        self.ledger.unreachable()
    }

    pub fn set_unreachable(&self, unreachable: bool) {
        self.ledger.set_unreachable(unreachable);
    }

    /// The budget accounts as `/config` shows them (USD as exact decimal strings).
    pub fn view(&self) -> serde_json::Value {
        let now = std::time::SystemTime::now();
        let accounts: Vec<_> = self
            .ledger
            .accounts()
            .into_iter()
            .filter(|(k, _)| k.window.contains(now))
            .map(|(key, a)| {
                let remaining = self.ledger.remaining(&key);
                let mut v = serde_json::json!({
                    "budget": key.budget.to_string(),
                    "scope": key.scope,
                    "window": key.window.to_string(),
                    "limitUsd": headers::usd(a.limit),
                    "spentUsd": headers::usd(a.spent),
                    "reservedUsd": headers::usd(a.reserved),
                    "remainingUsd": headers::usd(remaining),
                });
                if self.ledger.mode() == Mode::Fleet {
                    v["allowanceUsd"] = headers::usd(a.held).into();
                    v["unreportedUsd"] = headers::usd(a.unreported).into();
                    v["exhausted"] = a.exhausted.into();
                }
                v
            })
            .collect();
        serde_json::json!({
            "mode": self.ledger.mode(),
            "operatorReachable": self.ledger.mode() == Mode::Standalone || !self.unreachable(),
            "accounts": accounts,
        })
    }

    /// Per budget (`ns/modelroute/name`) in its current window, all scope values: spent
    /// and what may still be spent here, nano-USD.
    pub fn totals(&self) -> Vec<(String, u64, u64)> {
        let now = std::time::SystemTime::now();
        let mut totals: Vec<(String, u64, u64)> = Vec::new();
        for (key, account) in self.ledger.accounts() {
            if !key.window.contains(now) {
                continue;
            }
            let remaining = self.ledger.remaining(&key);
            let name = key.budget.to_string();
            match totals.last_mut() {
                Some(last) if last.0 == name => {
                    last.1 += account.spent;
                    last.2 += remaining;
                }
                _ => totals.push((name, account.spent, remaining)),
            }
        }
        totals
    }
}
