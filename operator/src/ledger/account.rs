//! One budget key's account: the limit, what was reported spent, and what each sidecar
//! still holds. Everything the operator grants comes out of `limit − spent − held`, so
//!
//! ```text
//! spent + Σ held + unclaimed ≤ limit
//! ```
//!
//! holds after every grant — the ledger's side of the overspend bound in docs/budgets.md.
//! (`unclaimed` is allowance a previous leader granted to sidecars that have not reported
//! to this one yet.) Two things can push the left side above the limit, and both only stop
//! further grants: spend beyond what a sidecar held (a request that cost more than its
//! reservation, or `failOpen` spending while the operator was away), and a lowered amount.
//! Amounts are nano-USD (or tokens, for rate limits): the math does not care which.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio::time::Instant;

/// A sidecar counts as active for a key while it reported spend on it within this time.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(60);

/// A budget key's account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    limit: u64,
    spent: u64,
    /// What each sidecar (`namespace/pod`) holds. A sidecar has an entry from its first
    /// report on this key in this leader's term.
    sidecars: BTreeMap<String, Holding>,
    /// Allowance read back from status at a restart, held by sidecars that have not
    /// reported yet; gone when they report, or when the restart grace ends.
    unclaimed: u64,
    /// Threshold percentages already crossed in this window.
    crossed: BTreeSet<u32>,
    /// Whether exhaustion was already announced in this window.
    exhaustion_noted: bool,
    /// Sidecars told `exhausted`: they stop asking, so they are told when it lifts.
    told_exhausted: BTreeSet<String>,
}

/// What one sidecar holds of an account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Holding {
    held: u64,
    last_spend: Option<Instant>,
    /// Its claims are believed (and only raise `held`) until it has heard from this leader.
    adopting: bool,
}

// === impl Account ===

impl Account {
    /// An account for `limit`, `spent` already (read back after a restart), with `unclaimed`
    /// allowance held by sidecars that have not reported yet.
    pub fn new(limit: u64, spent: u64, unclaimed: u64) -> Self {
        Self {
            limit,
            spent,
            unclaimed: unclaimed.min(limit.saturating_sub(spent)),
            ..Self::default()
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    pub fn spent(&self) -> u64 {
        self.spent
    }

    /// Allowance outstanding at sidecars: what each holds, plus what is unclaimed.
    pub fn held(&self) -> u64 {
        self.sidecars
            .values()
            .fold(self.unclaimed, |sum, h| sum.saturating_add(h.held))
    }

    /// `limit − spent`, 0 when overspent.
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.spent)
    }

    /// What is neither spent nor held: what can still be granted.
    pub fn unallocated(&self) -> u64 {
        self.remaining().saturating_sub(self.held())
    }

    /// What `sidecar` holds, from the ledger's view.
    pub fn holds(&self, sidecar: &str) -> u64 {
        self.sidecars.get(sidecar).map_or(0, |h| h.held)
    }

    /// A sidecar's report: it spent `spent` since its last report and says it holds
    /// `claims` (with grants of answers it had not applied when it wrote the report added by
    /// the caller). `heard`: the report was written after the sidecar applied an answer of
    /// this leader.
    ///
    /// A sidecar the account knows holds what the ledger granted it less what it spent,
    /// and less again if it says it holds less (it gave allowance back); a claim above that
    /// is capped. A sidecar the account does not know yet (its first report since this
    /// leader started) is believed, up to `limit − spent`: it may hold allowance a previous
    /// leader granted, which is taken out of `unclaimed`. Until it has heard from this
    /// leader its claims only ever raise what it holds: reports re-sent after a reconnect
    /// were written before grants it received since, and must not take those back. Spend
    /// beyond what a sidecar held is recorded all the same: the ledger counts truth, the
    /// bound accounts for it.
    pub fn report(&mut self, sidecar: &str, spent: u64, claims: u64, heard: bool, now: Instant) {
        self.spent = self.spent.saturating_add(spent);
        let ceiling = self.remaining();
        let holding = self.sidecars.entry(sidecar.to_string()).or_insert(Holding {
            held: 0,
            last_spend: None,
            adopting: true,
        });
        let left = holding.held.saturating_sub(spent);
        let before = holding.held;
        holding.held = match (holding.adopting, heard) {
            // Possibly stale (re-sent): only ever raises.
            (true, false) => claims.min(ceiling).max(left),
            // Fresh, and the first report that knows this leader's grants: believed.
            (true, true) => claims.min(ceiling),
            (false, _) => left.min(claims),
        };
        holding.adopting &= !heard;
        self.unclaimed = self
            .unclaimed
            .saturating_sub(holding.held.saturating_sub(before));
        if spent > 0 {
            holding.last_spend = Some(now);
        }
    }

    /// Grants `sidecar` more allowance, at most `want` (but at least `floor` when that much
    /// is there): [`grant_size`] of what is unallocated, with `active` the sidecars that
    /// spent on this key lately. Returns the amount added to what the sidecar holds.
    pub fn grant(&mut self, sidecar: &str, want: u64, need: u64, active: u32, floor: u64) -> u64 {
        if want == 0 && need == 0 {
            return 0;
        }
        // A fair share of what is left, capped by the ask; but never less than what a
        // waiting request needs while that much is unallocated.
        let unallocated = self.unallocated();
        let share = grant_size(unallocated, active, floor).min(want.max(floor));
        let size = share.max(need.min(unallocated));
        if size > 0 {
            let holding = self.sidecars.entry(sidecar.to_string()).or_default();
            holding.held = holding.held.saturating_add(size);
        }
        size
    }

    /// Sidecars that reported spend on this key within [`ACTIVE_WINDOW`] before `now`.
    pub fn active(&self, now: Instant) -> u32 {
        let n = self
            .sidecars
            .values()
            .filter(|h| {
                h.last_spend
                    .is_some_and(|t| now.saturating_duration_since(t) < ACTIVE_WINDOW)
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Forgets what `sidecar` holds (its pod is gone); returns how much that was.
    pub fn release(&mut self, sidecar: &str) -> u64 {
        self.told_exhausted.remove(sidecar);
        self.sidecars.remove(sidecar).map_or(0, |h| h.held)
    }

    /// Sidecars with an entry (they reported, or were granted, in this term).
    pub fn sidecars(&self) -> impl Iterator<Item = &str> {
        self.sidecars.keys().map(String::as_str)
    }

    /// The restart grace is over: sidecars that did not report hold nothing any more.
    pub fn expire_unclaimed(&mut self) -> bool {
        std::mem::take(&mut self.unclaimed) > 0
    }

    /// A new amount (the budget changed). Allowance already granted stays granted.
    pub fn set_limit(&mut self, limit: u64) {
        self.limit = limit;
    }

    /// Thresholds of `thresholds` (percentages of the limit) that spend has now reached and
    /// that were not crossed before in this window; they count as crossed from now on.
    pub fn cross(&mut self, thresholds: &[u32]) -> Vec<u32> {
        let reached = |t: u32| {
            u128::from(self.spent) * 100 >= u128::from(t) * u128::from(self.limit) && self.limit > 0
        };
        let crossed: Vec<u32> = thresholds
            .iter()
            .copied()
            .filter(|t| reached(*t) && !self.crossed.contains(t))
            .collect();
        self.crossed.extend(&crossed);
        crossed
    }

    /// Whether exhaustion is news (the first time in this window).
    pub fn note_exhaustion(&mut self) -> bool {
        !std::mem::replace(&mut self.exhaustion_noted, true)
    }

    /// `sidecar` was told the key is exhausted.
    pub fn told_exhausted(&mut self, sidecar: &str) {
        self.told_exhausted.insert(sidecar.to_string());
    }

    /// `sidecar` was told it is not.
    pub fn told_available(&mut self, sidecar: &str) {
        self.told_exhausted.remove(sidecar);
    }

    /// When something can be granted again: the sidecars told `exhausted`, who must now
    /// hear otherwise (they stopped asking). Empty while nothing can be granted.
    pub fn lift_exhaustion(&mut self) -> Vec<String> {
        if self.unallocated() == 0 {
            return Vec::new();
        }
        std::mem::take(&mut self.told_exhausted)
            .into_iter()
            .collect()
    }
}

/// How much to grant from `unallocated` to one of `active` busy sidecars: half a fair
/// share (so a second asker still finds some), at least `floor` (so grants are not
/// uselessly small), never more than what is there.
pub fn grant_size(unallocated: u64, active: u32, floor: u64) -> u64 {
    let share = unallocated / (2 * u64::from(active.max(1)));
    share.max(floor).min(unallocated)
}

#[cfg(test)]
mod tests;
