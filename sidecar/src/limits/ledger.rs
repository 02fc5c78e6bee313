//! The sidecar's side of the budget ledger (docs/budgets.md): per budget account (budget,
//! scope value, window) what may still be spent here, what requests in flight have
//! reserved, and what was spent.
//!
//! Standalone (`--config`), the sidecar is the whole ledger: it may spend `limit − spent`.
//! Under the operator it may spend only the allowance the leader granted it (`held`), and
//! reports what it spent; see [`super::fleet`]. Either way a request first **reserves** its
//! worst case and **settles** its real cost when it ends, so concurrent requests can never
//! together promise more than there is.
//!
//! All amounts are nano-USD. One mutex guards every account: the critical sections are a
//! few integer operations, never held across an await.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use modelroute_crds::WindowId;
use serde::Serialize;

use super::FastMap;
use super::policy::{BudgetRule, LimitId};

/// One budget account: a budget, a scope value, a window.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountKey {
    pub budget: Arc<LimitId>,
    pub scope: String,
    pub window: WindowId,
}

/// Cloned only when a request opens a new account.
impl From<&AccountKey> for AccountKey {
    fn from(key: &AccountKey) -> Self {
        key.clone()
    }
}

/// Where the allowance comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// This sidecar alone spends the budget.
    Standalone,
    /// The operator grants allowances; this sidecar spends its own.
    Fleet,
}

/// What a reservation got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserved {
    /// All that was asked.
    Full(u64),
    /// Less than asked but at least the minimum: the caller shrinks the request to fit.
    Partial(u64),
    /// Not even the minimum is left in this window.
    Exhausted,
    /// The minimum is there but reserved by requests in flight: wait for them to settle
    /// (most give most of their reservation back) and ask again.
    Busy,
    /// (Fleet) less than wanted is held here, and the leader may have more: ask, wait for
    /// its answer, then reserve again without asking.
    AskFirst,
}

/// Where an account's ask for more allowance is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Awaiting {
    /// Not reported yet.
    Unsent,
    /// Reported; the leader has not answered.
    Sent,
    /// Answered (or nothing to ask: exhausted, or no such account).
    Answered,
}

/// The sidecar's budget accounts.
#[derive(Debug)]
pub struct Ledger {
    mode: Mode,
    accounts: Mutex<FastMap<AccountKey, Account>>,
    /// Woken by every settlement, for requests waiting on a busy account.
    pub settled: tokio::sync::Notify,
    /// Fleet: the operator cannot be reached now (the loss cap applies).
    unreachable: std::sync::atomic::AtomicBool,
}

/// One account as this sidecar knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    /// The budget's amount for the window.
    pub limit: u64,
    /// Spend in the window as known here: standalone, all of it; fleet, the fleet's spend
    /// at the last grant plus this sidecar's since.
    pub spent: u64,
    /// Fleet: allowance granted and not yet spent. Standalone: unused (`limit − spent`).
    pub held: u64,
    /// Worst cases of the requests in flight, out of what may be spent.
    pub reserved: u64,
    /// Fleet: spend settled and not yet reported.
    pub unreported: u64,
    /// Fleet: the operator has nothing more to grant in this window.
    pub exhausted: bool,
    /// Fleet: spent beyond the allowance while the operator was unreachable.
    pub beyond_allowance: u64,
    /// The highest threshold (percent) already announced.
    #[serde(skip)]
    pub warned: u32,
    /// Fleet: a grant was asked for and not answered yet.
    #[serde(skip)]
    pub asked: bool,
    /// Fleet: the largest reservation that found too little since the last report (0:
    /// none did).
    #[serde(skip)]
    pub need: u64,
    /// Fleet: the size of the last grant (asking for more starts below half of it).
    #[serde(skip)]
    pub last_grant: u64,
    /// When a request last reserved on this account.
    #[serde(skip)]
    pub last_used: Option<tokio::time::Instant>,
    /// Fleet: a request was refused while this sidecar held a remainder too small for it:
    /// give it back, so the leader can put the fleet's remainders together.
    #[serde(skip)]
    pub release: bool,
}

/// A threshold crossed by a settlement, to announce once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossed {
    pub key: AccountKey,
    pub percent: u32,
}

// === impl Ledger ===

impl Ledger {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            accounts: Mutex::new(FastMap::default()),
            settled: tokio::sync::Notify::new(),
            // Until the first session is up, nothing can be asked for.
            unreachable: std::sync::atomic::AtomicBool::new(mode == Mode::Fleet),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Standalone: spend read back from the ledger file. Past windows are dropped.
    pub fn restore(&self, spent: impl IntoIterator<Item = (AccountKey, u64)>, now: SystemTime) {
        let mut accounts = self.lock();
        for (key, spent) in spent {
            if key.window.contains(now) {
                accounts.entry(key).or_default().spent = spent;
            }
        }
    }

    /// The account key of `rule` for `scope` at `now`.
    pub fn key(rule: &BudgetRule, scope: String, now: SystemTime) -> AccountKey {
        AccountKey {
            budget: rule.id.clone(),
            scope,
            window: rule.window.id(now),
        }
    }

    pub fn unreachable(&self) -> bool {
        self.unreachable.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_unreachable(&self, unreachable: bool) {
        self.unreachable
            .store(unreachable, std::sync::atomic::Ordering::Relaxed);
    }

    /// Where `key`'s ask for more allowance is.
    pub fn awaiting_grant(&self, key: &AccountKey) -> Awaiting {
        let accounts = self.lock();
        match accounts.get(key) {
            Some(a) if a.asked => Awaiting::Sent,
            Some(a) if a.need > 0 && !a.exhausted => Awaiting::Unsent,
            _ => Awaiting::Answered,
        }
    }

    /// Reserves `want` on `key`, or at least `min` when `want` is not there. Under the
    /// operator, `may_ask` first returns [`Reserved::AskFirst`] when the leader might grant
    /// more; while it is unreachable the rule's `loss_cap` may be spent beyond what is held.
    pub fn reserve(
        &self,
        rule: &BudgetRule,
        key: &AccountKey,
        want: u64,
        min: u64,
        may_ask: bool,
    ) -> Reserved {
        let unreachable = self.unreachable();
        let mut accounts = self.lock();
        let account = accounts.entry_ref(key).or_default();
        account.limit = rule.amount;
        account.last_used = Some(tokio::time::Instant::now());
        let mut available = self.available(account);
        if self.mode == Mode::Fleet && available < want && unreachable && !account.exhausted {
            available += rule.loss_cap.saturating_sub(account.beyond_allowance);
        }
        if available >= want {
            account.reserved += want;
            return Reserved::Full(want);
        }
        if self.mode == Mode::Fleet && !account.exhausted && !unreachable {
            account.need = account.need.max(want);
            if may_ask {
                return Reserved::AskFirst;
            }
        }
        if available >= min.max(1) {
            account.reserved += available;
            return Reserved::Partial(available);
        }
        if account.reserved > 0 && available + account.reserved >= min.max(1) {
            return Reserved::Busy;
        }
        if self.mode == Mode::Fleet && account.held > 0 && account.reserved == 0 {
            account.release = true;
        }
        Reserved::Exhausted
    }

    /// Reserves `more` on top of a reservation (a stream that needs more than it
    /// reserved); false when it is not there.
    pub fn extend(&self, key: &AccountKey, more: u64) -> bool {
        let mut accounts = self.lock();
        let Some(account) = accounts.get_mut(key) else {
            return false;
        };
        if self.available(account) >= more {
            account.reserved += more;
            true
        } else {
            false
        }
    }

    /// Ends a reservation: `reserved` is released and `cost` spent. Returns the threshold
    /// this settlement crossed, if any.
    pub fn settle(
        &self,
        rule: &BudgetRule,
        key: &AccountKey,
        reserved: u64,
        cost: u64,
    ) -> Option<Crossed> {
        let mut accounts = self.lock();
        let account = accounts.entry_ref(key).or_default();
        account.limit = rule.amount;
        account.reserved = account.reserved.saturating_sub(reserved);
        account.spent = account.spent.saturating_add(cost);
        if reserved > 0 {
            self.settled.notify_waiters();
        }
        if self.mode == Mode::Fleet {
            let from_held = cost.min(account.held);
            account.held -= from_held;
            account.beyond_allowance += cost - from_held;
            account.unreported = account.unreported.saturating_add(cost);
        }
        let percent = percent_of(account.spent, account.limit);
        let crossed = rule
            .thresholds
            .iter()
            .copied()
            .filter(|t| *t <= percent && *t > account.warned)
            .max()?;
        account.warned = crossed;
        Some(Crossed {
            key: key.clone(),
            percent: crossed,
        })
    }

    /// What may still be reserved on `key` (for headers and `/config`).
    pub fn remaining(&self, key: &AccountKey) -> u64 {
        let accounts = self.lock();
        accounts.get(key).map_or(0, |a| self.available(a))
    }

    /// Every account, sorted, for `/config`, metrics and the ledger file.
    pub fn accounts(&self) -> Vec<(AccountKey, Account)> {
        let accounts = self.lock();
        let mut all: Vec<_> = accounts
            .iter()
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        drop(accounts);
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Forgets accounts of windows that ended with nothing in flight or unreported.
    pub fn prune(&self, now: SystemTime) {
        self.lock()
            .retain(|key, a| key.window.contains(now) || a.reserved > 0 || a.unreported > 0);
    }

    /// Runs `f` on every account under the lock (the fleet reporter's read-and-reset).
    pub fn with_accounts<R>(&self, f: impl FnOnce(&mut FastMap<AccountKey, Account>) -> R) -> R {
        f(&mut self.lock())
    }

    fn available(&self, account: &Account) -> u64 {
        let spendable = match self.mode {
            Mode::Standalone => account.limit.saturating_sub(account.spent),
            Mode::Fleet => account.held,
        };
        spendable.saturating_sub(account.reserved)
    }

    fn lock(&self) -> MutexGuard<'_, FastMap<AccountKey, Account>> {
        self.accounts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `spent` in whole percent of `limit` (rounded down; 100+ once spent).
fn percent_of(spent: u64, limit: u64) -> u32 {
    if limit == 0 {
        return 100;
    }
    let p = u128::from(spent) * 100 / u128::from(limit);
    u32::try_from(p).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::{Exhausted, ScopeRule};
    use modelroute_crds::Window;

    fn rule(amount: u64, thresholds: Vec<u32>) -> BudgetRule {
        BudgetRule {
            id: Arc::new(LimitId {
                namespace: "ns".into(),
                model_route: "mr".into(),
                name: "monthly".into(),
            }),
            amount,
            window: Window::Monthly,
            scope: ScopeRule::Route,
            thresholds,
            exhausted: Exhausted::Reject,
            loss_cap: 0,
        }
    }

    fn key(rule: &BudgetRule) -> AccountKey {
        Ledger::key(rule, String::new(), SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn reservations_never_promise_more_than_the_limit() {
        let ledger = Ledger::new(Mode::Standalone);
        let rule = rule(1000, vec![]);
        let k = key(&rule);
        assert_eq!(
            ledger.reserve(&rule, &k, 600, 10, false),
            Reserved::Full(600)
        );
        assert_eq!(
            ledger.reserve(&rule, &k, 600, 10, false),
            Reserved::Partial(400)
        );
        assert_eq!(
            ledger.reserve(&rule, &k, 600, 10, false),
            Reserved::Busy,
            "all reserved"
        );
        // The first costs less than reserved: the difference comes back.
        ledger.settle(&rule, &k, 600, 250);
        assert_eq!(ledger.remaining(&k), 1000 - 250 - 400);
        ledger.settle(&rule, &k, 400, 400);
        assert_eq!(ledger.remaining(&k), 350);
        assert_eq!(
            ledger.reserve(&rule, &k, 100, 10, false),
            Reserved::Full(100)
        );
        assert!(ledger.extend(&k, 250));
        assert!(!ledger.extend(&k, 1));
    }

    #[test]
    fn the_minimum_decides_between_a_smaller_request_and_a_refusal() {
        let ledger = Ledger::new(Mode::Standalone);
        let rule = rule(100, vec![]);
        let k = key(&rule);
        ledger.settle(&rule, &k, 0, 95);
        assert_eq!(
            ledger.reserve(&rule, &k, 50, 10, false),
            Reserved::Exhausted
        );
        assert_eq!(
            ledger.reserve(&rule, &k, 50, 5, false),
            Reserved::Partial(5)
        );
    }

    #[test]
    fn thresholds_are_announced_once_each_and_the_highest_crossed_wins() {
        let ledger = Ledger::new(Mode::Standalone);
        let rule = rule(1000, vec![50, 80, 100]);
        let k = key(&rule);
        assert_eq!(ledger.settle(&rule, &k, 0, 400), None);
        assert_eq!(
            ledger.settle(&rule, &k, 0, 100).map(|c| c.percent),
            Some(50)
        );
        assert_eq!(ledger.settle(&rule, &k, 0, 10), None, "50 was said");
        // One jump over 80 and 100 announces 100 only.
        assert_eq!(
            ledger.settle(&rule, &k, 0, 600).map(|c| c.percent),
            Some(100)
        );
        assert_eq!(ledger.settle(&rule, &k, 0, 600), None);
    }

    #[test]
    fn restored_spend_counts_only_in_its_window() {
        let ledger = Ledger::new(Mode::Standalone);
        let rule = rule(1000, vec![]);
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_601_600); // 2026-12-07
        let current = Ledger::key(&rule, String::new(), now);
        let mut old = current.clone();
        old.window = "2026-11".parse().unwrap();
        ledger.restore([(current.clone(), 700), (old.clone(), 900)], now);
        assert_eq!(
            ledger.reserve(&rule, &current, 500, 1, false),
            Reserved::Partial(300)
        );
        assert!(ledger.accounts().iter().all(|(k, _)| *k != old));
    }

    #[test]
    fn a_fleet_sidecar_spends_only_what_it_was_granted() {
        let ledger = Ledger::new(Mode::Fleet);
        ledger.set_unreachable(false);
        let mut rule = rule(1_000_000, vec![]);
        rule.loss_cap = 50;
        let k = key(&rule);
        // Too little held: ask first, then (after the answer) take what is there.
        assert_eq!(ledger.reserve(&rule, &k, 100, 10, true), Reserved::AskFirst);
        assert_eq!(ledger.accounts()[0].1.need, 100);
        assert_eq!(
            ledger.reserve(&rule, &k, 100, 10, false),
            Reserved::Exhausted
        );
        ledger.with_accounts(|a| a.get_mut(&k).unwrap().held = 150);
        assert_eq!(
            ledger.reserve(&rule, &k, 100, 10, true),
            Reserved::Full(100)
        );
        ledger.settle(&rule, &k, 100, 120);
        let acc = ledger.accounts()[0].1.clone();
        assert_eq!((acc.held, acc.unreported, acc.spent), (30, 120, 120));
        // Unreachable: the loss cap comes on top, once; nothing to ask.
        ledger.set_unreachable(true);
        assert_eq!(ledger.reserve(&rule, &k, 70, 10, true), Reserved::Full(70));
        ledger.settle(&rule, &k, 70, 70);
        let acc = ledger.accounts()[0].1.clone();
        assert_eq!((acc.held, acc.beyond_allowance), (0, 40));
        assert_eq!(ledger.reserve(&rule, &k, 20, 20, true), Reserved::Exhausted);
        assert_eq!(ledger.reserve(&rule, &k, 10, 10, true), Reserved::Full(10));
    }
}
