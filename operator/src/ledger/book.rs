//! The ledger's state (pure: no I/O, time passed in): the budgets the served ModelRoutes
//! define, one [`Account`] per budget, scope value and window, which reports were applied
//! and which of them are durable.
//!
//! Durability runs in epochs. A report that moves spend is applied at once and remembered
//! with the current epoch; [`Book::begin_flush`] closes the epoch and hands out the state
//! of every ModelRoute that changed; once the store has written all of them,
//! [`Book::flushed`] makes that epoch durable, and every report of it (and before it) can be
//! acknowledged. A failed write leaves its ModelRoutes dirty for the next epoch, which then
//! covers both.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use modelroute_crds::v1alpha1::ScopeKind;
use modelroute_crds::{BudgetStatus, ModelRouteSpec, NanoUsd, Window, WindowId};
use modelroute_proto::{Grant, Usage};
use tokio::time::Instant;

use super::account::Account;
use super::key::{AccountKey, BudgetRef, KeyError, MAX_SCOPE_VALUE_BYTES};
use super::reporter::{MAX_ANSWERS, REPORTER_IDLE, Reporter};
use super::saved::{Saved, SavedAccount, Unlisted};
use crate::index::ObjectKey;

/// After a restart, allowance the previous leader had granted counts as held until the
/// sidecar holding it reports, or this long.
pub const RESTORE_GRACE: Duration = Duration::from_secs(60);

/// The smallest grant, in thousandths of the budget's amount (and at least 1 nano-USD):
/// grants are not uselessly small when many sidecars are busy.
pub const FLOOR_PER_MILLE: u64 = 1;

/// The most scope values one budget counts separately in one window (each its own
/// account); reports for more get no account and no allowance.
pub const MAX_SCOPE_VALUES: usize = 10_000;

/// What the ledger knows of one budget from the served spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// The amount per window and scope value, nano-USD.
    pub limit: u64,
    pub window: Window,
    pub scope: ScopeKind,
    pub thresholds: Vec<u32>,
}

/// A threshold crossed, or a budget exhausted, for the first time in a window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossing {
    pub key: AccountKey,
    /// The ModelRoute's uid, when known (Events refer to it).
    pub uid: Option<String>,
    pub kind: CrossingKind,
    pub spent: u64,
    pub limit: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrossingKind {
    /// Spend reached this percentage of the amount.
    Threshold(u32),
    /// Nothing is left to grant.
    Exhausted,
}

/// The answer to one report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Answer {
    /// One per key that was booked (or, for a duplicate, that still exists).
    pub grants: Vec<Grant>,
    /// Allowance these grants add, per key (the ones that add any).
    pub added: Vec<(AccountKey, u64)>,
    /// Keys that were not booked, and why.
    pub ignored: Vec<KeyError>,
    /// The report was applied before (same incarnation, seq not above the last applied).
    pub duplicate: bool,
}

/// The state of every ModelRoute a flush writes, for the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flush {
    pub epoch: u64,
    /// Each changed ModelRoute that still exists, with its uid and its `status.budgets`.
    pub routes: Vec<(ObjectKey, Option<String>, Vec<BudgetStatus>)>,
    /// Every account (for a store that writes everything at once).
    pub accounts: Vec<SavedAccount>,
}

/// Spend and remaining of one budget in one window, over its scope values (for metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Total {
    pub budget: BudgetRef,
    pub window: WindowId,
    pub spent: u64,
    /// The smallest remaining of any scope value: how close the nearest one is.
    pub remaining: u64,
}

/// The ledger.
#[derive(Debug)]
pub struct Book {
    /// Whether anything persists spend. If not, reports are durable when applied.
    persistent: bool,
    rules: BTreeMap<BudgetRef, Rule>,
    /// Served ModelRoutes: uid and budget names in spec order.
    routes: BTreeMap<ObjectKey, (Option<String>, Vec<String>)>,
    accounts: BTreeMap<AccountKey, Account>,
    /// Accounts per budget and window.
    scope_counts: HashMap<(BudgetRef, WindowId), usize>,
    /// Scope values a restored status summed instead of listing.
    unlisted: BTreeMap<(BudgetRef, WindowId), Unlisted>,
    reporters: HashMap<(String, String), Reporter>,
    dirty: BTreeSet<ObjectKey>,
    /// The last write failed: the next flush writes even if nothing else changed.
    retry: bool,
    epoch: u64,
    durable: u64,
    grace_until: Option<Instant>,
    crossings: Vec<Crossing>,
    /// Keys whose exhaustion lifted, per sidecar to tell.
    notices: HashMap<String, BTreeSet<AccountKey>>,
}

// === impl Book ===

impl Book {
    pub fn new(persistent: bool) -> Self {
        Self {
            persistent,
            rules: BTreeMap::new(),
            routes: BTreeMap::new(),
            accounts: BTreeMap::new(),
            scope_counts: HashMap::new(),
            unlisted: BTreeMap::new(),
            reporters: HashMap::new(),
            dirty: BTreeSet::new(),
            retry: false,
            epoch: 1,
            durable: 0,
            grace_until: None,
            crossings: Vec::new(),
            notices: HashMap::new(),
        }
    }

    /// Takes the budgets of the served ModelRoutes: new amounts become the limits of their
    /// accounts, accounts of budgets that are gone (or changed their window) are dropped,
    /// and route-scoped budgets get their current window's account at once (so `/status`
    /// shows them before anything is spent; `status.budgets` from the first change on).
    pub fn sync<'a>(
        &mut self,
        served: impl IntoIterator<Item = (&'a ObjectKey, Option<&'a str>, &'a ModelRouteSpec)>,
        wall: SystemTime,
    ) {
        let mut rules = BTreeMap::new();
        let mut routes = BTreeMap::new();
        for (key, uid, spec) in served {
            for b in &spec.budgets {
                let rule = Rule {
                    limit: NanoUsd::from(b.amount_usd).nanos(),
                    window: b.window,
                    scope: b.scope,
                    thresholds: b.thresholds.clone(),
                };
                rules.insert(BudgetRef::new(key.clone(), &b.name), rule);
            }
            let names: Vec<String> = spec.budgets.iter().map(|b| b.name.clone()).collect();
            routes.insert(key.clone(), (uid.map(str::to_string), names));
        }
        // A budget gone from a ModelRoute this leader knew: its entries must go from status.
        // (A ModelRoute new to this leader is not written until something changes in it: a
        // new leader does not rewrite every status, and a status is never overwritten with
        // what was merely read.)
        for (route, (_, names)) in &routes {
            if self
                .routes
                .get(route)
                .is_some_and(|(_, old)| old.iter().any(|n| !names.contains(n)))
            {
                self.dirty.insert(route.clone());
            }
        }
        let mut dropped = Vec::new();
        for (key, account) in &mut self.accounts {
            match rules.get(&key.budget) {
                Some(rule) if rule.window == key.window.window() => {
                    if account.limit() != rule.limit {
                        account.set_limit(rule.limit);
                        self.dirty.insert(key.route().clone());
                        for sidecar in account.lift_exhaustion() {
                            self.notices.entry(sidecar).or_default().insert(key.clone());
                        }
                    }
                }
                _ => dropped.push(key.clone()),
            }
        }
        for key in dropped {
            self.remove_account(&key);
            if routes.contains_key(key.route()) {
                self.dirty.insert(key.route().clone());
            }
        }
        self.unlisted
            .retain(|(b, w), _| rules.get(b).is_some_and(|r| r.window == w.window()));
        self.rules = rules;
        self.routes = routes;
        self.open_route_scoped(wall);
    }

    /// Reads back what a previous leader (or run) persisted, before any report. Accounts of
    /// budgets not served any more are skipped. What sidecars held counts as held until
    /// each reports, or [`RESTORE_GRACE`] passes.
    pub fn restore(&mut self, saved: Saved, now: Instant) {
        let mut unclaimed = false;
        for s in saved.accounts {
            let key = s.key();
            let Some(rule) = self.rules.get(&key.budget) else {
                continue;
            };
            if rule.window != key.window.window() {
                continue;
            }
            let mut account = Account::new(rule.limit, s.spent_nano_usd, s.held_nano_usd);
            // Crossed before the restart: not news again.
            account.cross(&rule.thresholds);
            unclaimed |= s.held_nano_usd > 0;
            self.insert_account(key, account);
        }
        for ((budget, window), u) in saved.unlisted {
            if self
                .rules
                .get(&budget)
                .is_some_and(|r| r.window == window.window())
            {
                unclaimed |= u.held > 0;
                self.unlisted.insert((budget, window), u);
            }
        }
        if unclaimed {
            self.grace_until = Some(now + RESTORE_GRACE);
        }
    }

    /// Applies one report of sidecar `pod` and answers it. Allowance granted in answers the
    /// sidecar had not applied when it wrote the report (`answers_applied`; answers are
    /// numbered by the seq they answer, across reconnects) counts as held on top of what the
    /// report says.
    pub fn report(
        &mut self,
        pod: &ObjectKey,
        usage: &Usage,
        now: Instant,
        wall: SystemTime,
    ) -> Answer {
        let sidecar = pod.to_string();
        let id = (sidecar.clone(), usage.incarnation.clone());
        // Out of the map while the report is booked (put back below).
        let mut reporter = self
            .reporters
            .remove(&id)
            .unwrap_or_else(|| Reporter::new(now));
        reporter.last_seen = now;
        let duplicate = usage.seq <= reporter.last_applied;
        let mut answer = Answer {
            duplicate,
            ..Answer::default()
        };
        if !duplicate {
            // Answers it had applied when it wrote this report are in what it says it holds.
            reporter
                .answers
                .retain(|(seq, _)| *seq > usage.answers_applied);
        }
        let heard = reporter
            .first_answer
            .is_some_and(|first| usage.answers_applied >= first);
        let mut moved_spend = false;
        for au in &usage.accounts {
            let key = match self.key_of(pod, au.key.as_ref(), wall) {
                Ok(key) => key,
                Err(e) => {
                    answer.ignored.push(e);
                    continue;
                }
            };
            if duplicate {
                // Applied before: say where the account stands, change nothing.
                if let Some(account) = self.accounts.get(&key) {
                    let exhausted = account.unallocated() == 0;
                    answer.grants.push(grant(&key, account, 0, exhausted));
                }
                continue;
            }
            let in_flight = reporter.in_flight(&key);
            match self.book(&sidecar, &key, au, in_flight, heard, now, wall) {
                Ok(g) => {
                    moved_spend |= au.spent_nano_usd > 0;
                    if g.added_nano_usd > 0 {
                        answer.added.push((key, g.added_nano_usd));
                    }
                    answer.grants.push(g);
                }
                Err(e) => answer.ignored.push(e),
            }
        }
        if !duplicate {
            reporter.last_applied = usage.seq;
            reporter.first_answer.get_or_insert(usage.seq);
            if !answer.added.is_empty() {
                if reporter.answers.len() >= MAX_ANSWERS {
                    reporter.answers.pop_front();
                }
                reporter
                    .answers
                    .push_back((usage.seq, answer.added.clone()));
            }
            // Nothing to persist: durable as soon as the reports before it are.
            let needs = if moved_spend && self.persistent {
                self.epoch
            } else {
                0
            };
            reporter.pending.push_back((usage.seq, needs));
            reporter.advance(self.durable);
        }
        self.reporters.insert(id, reporter);
        answer
    }

    /// Books one key of a report; the Grant that answers it.
    #[expect(
        clippy::too_many_arguments,
        reason = "one report's context, passed down once"
    )]
    fn book(
        &mut self,
        sidecar: &str,
        key: &AccountKey,
        usage: &modelroute_proto::AccountUsage,
        in_flight: u64,
        heard: bool,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Grant, KeyError> {
        let rule = self
            .rules
            .get(&key.budget)
            .cloned()
            .ok_or(KeyError::UnknownBudget)?;
        let grantable = {
            let current = rule.window.id(wall);
            key.window == current || key.window == current.next()
        };
        let uid = self
            .routes
            .get(key.route())
            .and_then(|(uid, _)| uid.clone());
        self.open(key, &rule)?;
        let account = self.accounts.get_mut(key).ok_or(KeyError::UnknownBudget)?;
        let claims = usage.held_nano_usd.saturating_add(in_flight);
        account.report(sidecar, usage.spent_nano_usd, claims, heard, now);
        for percent in account.cross(&rule.thresholds) {
            self.crossings.push(Crossing {
                key: key.clone(),
                uid: uid.clone(),
                kind: CrossingKind::Threshold(percent),
                spent: account.spent(),
                limit: account.limit(),
            });
        }
        let added = if grantable {
            let floor = (rule.limit / 1000 * FLOOR_PER_MILLE).max(1);
            let need = usage.need_nano_usd;
            account.grant(
                sidecar,
                usage.want_nano_usd,
                need,
                account.active(now),
                floor,
            )
        } else {
            0
        };
        let exhausted = account.unallocated() == 0;
        if exhausted {
            account.told_exhausted(sidecar);
            if grantable && account.note_exhaustion() {
                self.crossings.push(Crossing {
                    key: key.clone(),
                    uid,
                    kind: CrossingKind::Exhausted,
                    spent: account.spent(),
                    limit: account.limit(),
                });
            }
        } else {
            account.told_available(sidecar);
        }
        // Allowance this report gave back may be what others were waiting for.
        for other in account.lift_exhaustion() {
            self.notices.entry(other).or_default().insert(key.clone());
        }
        let g = grant(key, account, added, exhausted);
        self.dirty.insert(key.route().clone());
        Ok(g)
    }

    /// The account of a reported key, checked against what the sidecar may report.
    fn key_of(
        &self,
        pod: &ObjectKey,
        key: Option<&modelroute_proto::AccountKey>,
        wall: SystemTime,
    ) -> Result<AccountKey, KeyError> {
        let key = key.ok_or(KeyError::Missing)?;
        if key.namespace != pod.namespace {
            return Err(KeyError::OtherNamespace);
        }
        let budget = BudgetRef::new(
            ObjectKey::new(&key.namespace, &key.model_route),
            &key.budget,
        );
        let rule = self.rules.get(&budget).ok_or(KeyError::UnknownBudget)?;
        let window: WindowId = key.window.parse().map_err(|_| KeyError::BadWindow)?;
        if !window_is_open(rule.window, window, wall) {
            return Err(KeyError::StaleWindow);
        }
        if key.scope_value.len() > MAX_SCOPE_VALUE_BYTES {
            return Err(KeyError::LongScopeValue);
        }
        match rule.scope {
            ScopeKind::Route if !key.scope_value.is_empty() => return Err(KeyError::ScopedRoute),
            ScopeKind::Pod if key.scope_value != pod.name => return Err(KeyError::OtherPod),
            _ => {}
        }
        Ok(AccountKey::new(budget, &key.scope_value, window))
    }

    /// Makes sure `key` has an account. A scope value a restored status did not list starts
    /// at the most any unlisted value had spent.
    fn open(&mut self, key: &AccountKey, rule: &Rule) -> Result<(), KeyError> {
        if self.accounts.contains_key(key) {
            return Ok(());
        }
        if self.scope_values(&key.budget, key.window) >= MAX_SCOPE_VALUES {
            return Err(KeyError::TooManyScopeValues);
        }
        let in_grace = self.grace_until.is_some();
        let (spent, unclaimed) = match self.unlisted.get_mut(&(key.budget.clone(), key.window)) {
            Some(u) if u.count > 0 => {
                u.take_one();
                (u.most_spent, if in_grace { u.held } else { 0 })
            }
            _ => (0, 0),
        };
        let mut account = Account::new(rule.limit, spent, unclaimed);
        account.cross(&rule.thresholds);
        self.insert_account(key.clone(), account);
        Ok(())
    }

    /// How many scope values `budget` counts in `window`.
    fn scope_values(&self, budget: &BudgetRef, window: WindowId) -> usize {
        self.scope_counts
            .get(&(budget.clone(), window))
            .copied()
            .unwrap_or(0)
    }

    fn insert_account(&mut self, key: AccountKey, account: Account) {
        let counted = (key.budget.clone(), key.window);
        if self.accounts.insert(key, account).is_none() {
            *self.scope_counts.entry(counted).or_default() += 1;
        }
    }

    fn remove_account(&mut self, key: &AccountKey) {
        if self.accounts.remove(key).is_some() {
            let counted = (key.budget.clone(), key.window);
            if let Some(n) = self.scope_counts.get_mut(&counted) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.scope_counts.remove(&counted);
                }
            }
        }
    }

    /// Accounts of route-scoped budgets for their current window.
    fn open_route_scoped(&mut self, wall: SystemTime) {
        let wanted: Vec<(AccountKey, Rule)> = self
            .rules
            .iter()
            .filter(|(_, r)| r.scope == ScopeKind::Route)
            .map(|(b, r)| (AccountKey::new(b.clone(), "", r.window.id(wall)), r.clone()))
            .collect();
        for (key, rule) in wanted {
            // Never refused: one scope value.
            let _ = self.open(&key, &rule);
        }
    }

    /// Time passes: the restart grace ends, windows roll over (accounts older than the
    /// previous window go), and idle sidecar incarnations are forgotten.
    pub fn tick(&mut self, now: Instant, wall: SystemTime) {
        if self.grace_until.is_some_and(|t| t <= now) {
            self.grace_until = None;
            for (key, account) in &mut self.accounts {
                if account.expire_unclaimed() {
                    self.dirty.insert(key.route().clone());
                    for sidecar in account.lift_exhaustion() {
                        self.notices.entry(sidecar).or_default().insert(key.clone());
                    }
                }
            }
            for u in self.unlisted.values_mut() {
                u.held = 0;
            }
        }
        let rules = &self.rules;
        let open = |b: &BudgetRef, w: WindowId| {
            rules
                .get(b)
                .is_some_and(|r| window_is_open(r.window, w, wall))
        };
        let closed: Vec<AccountKey> = self
            .accounts
            .keys()
            .filter(|k| !open(&k.budget, k.window))
            .cloned()
            .collect();
        self.unlisted.retain(|(b, w), _| open(b, *w));
        for key in closed {
            self.remove_account(&key);
            self.dirty.insert(key.route().clone());
        }
        self.open_route_scoped(wall);
        self.reporters.retain(|_, r| {
            !r.pending.is_empty() || now.saturating_duration_since(r.last_seen) < REPORTER_IDLE
        });
    }

    /// Forgets what sidecars of pods that are gone held (Kubernetes: the pod was deleted,
    /// its allowance cannot be spent any more).
    pub fn release_gone(&mut self, live: &HashSet<String>) {
        for (key, account) in &mut self.accounts {
            let gone: Vec<String> = account
                .sidecars()
                .filter(|s| !live.contains(*s))
                .map(str::to_string)
                .collect();
            for sidecar in gone {
                account.release(&sidecar);
                self.dirty.insert(key.route().clone());
            }
            for sidecar in account.lift_exhaustion() {
                self.notices.entry(sidecar).or_default().insert(key.clone());
            }
        }
        // Nobody will collect them.
        self.notices.retain(|sidecar, _| live.contains(sidecar));
    }

    /// Whether a flush has something to write.
    pub fn is_dirty(&self) -> bool {
        self.retry || !self.dirty.is_empty()
    }

    /// Closes the current epoch: the state to write, or `None` when nothing changed.
    /// `whole` adds every account (for a store that writes everything at once).
    pub fn begin_flush(&mut self, whole: bool, wall: SystemTime) -> Option<Flush> {
        if !self.is_dirty() {
            return None;
        }
        self.retry = false;
        let dirty = std::mem::take(&mut self.dirty);
        let routes = dirty
            .into_iter()
            .filter_map(|route| {
                let (uid, _) = self.routes.get(&route)?;
                let statuses = self.statuses(&route, wall);
                Some((route, uid.clone(), statuses))
            })
            .collect();
        let accounts = if whole { self.saved() } else { Vec::new() };
        let epoch = self.epoch;
        self.epoch += 1;
        Some(Flush {
            epoch,
            routes,
            accounts,
        })
    }

    /// The store wrote `epoch` (`Ok`), or not all of it (`Err` with the ModelRoutes to
    /// write again; the next epoch then covers this one). Returns whether acknowledgements
    /// advanced.
    pub fn flushed(&mut self, epoch: u64, written: Result<(), Vec<ObjectKey>>) -> bool {
        if let Err(failed) = written {
            self.dirty.extend(failed);
            self.retry = true;
            return false;
        }
        self.durable = self.durable.max(epoch);
        let mut advanced = false;
        for r in self.reporters.values_mut() {
            advanced |= r.advance(self.durable);
        }
        advanced
    }

    /// The highest seq of `pod`'s `incarnation` that is durable, with all before it.
    pub fn acked(&self, pod: &ObjectKey, incarnation: &str) -> u64 {
        self.reporters
            .get(&(pod.to_string(), incarnation.to_string()))
            .map_or(0, |r| r.durable)
    }

    /// Grants (adding nothing) for the keys whose exhaustion lifted that `pod` must hear of.
    pub fn take_notices(&mut self, pod: &ObjectKey) -> Vec<Grant> {
        let sidecar = pod.to_string();
        let Some(keys) = self.notices.remove(&sidecar) else {
            return Vec::new();
        };
        keys.into_iter()
            .filter_map(|key| {
                let account = self.accounts.get_mut(&key)?;
                let exhausted = account.unallocated() == 0;
                if exhausted {
                    account.told_exhausted(&sidecar);
                }
                Some(grant(&key, account, 0, exhausted))
            })
            .collect()
    }

    /// Whether any sidecar has notices waiting.
    pub fn has_notices(&self) -> bool {
        !self.notices.is_empty()
    }

    /// Thresholds crossed and exhaustions since the last call.
    pub fn take_crossings(&mut self) -> Vec<Crossing> {
        std::mem::take(&mut self.crossings)
    }
}

/// Whether `window` is the current, previous or next window of kind `kind` at `wall`:
/// reports for it are booked (a sidecar's clock may be a little off at a boundary, and
/// spend settled just after one belongs to the window it was reserved in).
fn window_is_open(kind: Window, window: WindowId, wall: SystemTime) -> bool {
    if window.window() != kind {
        return false;
    }
    let current = kind.id(wall);
    let before = current.start().checked_sub(Duration::from_secs(1));
    let previous = kind.id(before.unwrap_or(SystemTime::UNIX_EPOCH));
    window == current || window == previous || window == current.next()
}

fn grant(key: &AccountKey, account: &Account, added: u64, exhausted: bool) -> Grant {
    Grant {
        key: Some(key.to_proto()),
        added_nano_usd: added,
        limit_nano_usd: account.limit(),
        spent_nano_usd: account.spent(),
        exhausted,
    }
}

mod view;

#[cfg(test)]
mod tests;
