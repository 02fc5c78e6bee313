//! One budget key's account: the limit, what was reported spent, and what each sidecar
//! still holds. Everything the operator grants comes out of `limit − spent − held`, so
//!
//! ```text
//! spent + Σ held ≤ limit
//! ```
//!
//! holds after every operation — the ledger's side of the overspend bound in
//! docs/budgets.md. Amounts are nano-USD (or tokens, for rate limits): the math does not
//! care which.

use std::collections::BTreeMap;

/// A budget key's account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Account {
    limit: u64,
    spent: u64,
    /// Allowance granted and not yet reported spent, per sidecar (pod).
    held: BTreeMap<String, u64>,
}

impl Account {
    /// An account for `limit`, `spent` already (read back from status after a restart).
    pub fn new(limit: u64, spent: u64) -> Self {
        Self {
            limit,
            spent,
            held: BTreeMap::new(),
        }
    }

    pub fn spent(&self) -> u64 {
        self.spent
    }

    pub fn held(&self) -> u64 {
        self.held.values().sum()
    }

    /// What is neither spent nor held by a sidecar.
    pub fn unallocated(&self) -> u64 {
        self.limit
            .saturating_sub(self.spent)
            .saturating_sub(self.held())
    }

    /// A sidecar's report: it spent `spent` since its last report (settled requests) and
    /// still holds `holds` of what it was granted. Spend beyond what it held (a request
    /// that cost more than its reservation) is recorded as spent all the same: the ledger
    /// counts truth, the bound accounts for it.
    pub fn report(&mut self, sidecar: &str, spent: u64, holds: u64) {
        self.spent = self.spent.saturating_add(spent);
        let held = self.held.entry(sidecar.to_string()).or_default();
        // A sidecar cannot hold more than it was granted; a report claiming so is capped.
        *held = holds.min(*held);
        if *held == 0 {
            self.held.remove(sidecar);
        }
    }

    /// Grants `sidecar` more allowance: [`grant_size`] of what is unallocated. Returns the
    /// amount added to what the sidecar holds.
    pub fn grant(&mut self, sidecar: &str, active: u32, floor: u64) -> u64 {
        let size = grant_size(self.unallocated(), active, floor);
        if size > 0 {
            *self.held.entry(sidecar.to_string()).or_default() += size;
        }
        size
    }

    /// What `sidecar` holds (what its allowance is, from the ledger's view).
    pub fn holds(&self, sidecar: &str) -> u64 {
        self.held.get(sidecar).copied().unwrap_or(0)
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
mod tests {
    use super::*;

    #[test]
    fn grants_shrink_as_the_budget_runs_out_and_never_exceed_it() {
        assert_eq!(grant_size(1000, 1, 10), 500);
        assert_eq!(grant_size(1000, 5, 10), 100);
        assert_eq!(grant_size(1000, 100, 10), 10, "the floor");
        assert_eq!(grant_size(7, 100, 10), 7, "never more than there is");
        assert_eq!(grant_size(0, 1, 10), 0);
        assert_eq!(grant_size(1000, 0, 10), 500, "no active count: one");
    }

    #[test]
    fn reports_move_held_allowance_to_spent() {
        let mut account = Account::new(1000, 100);
        assert_eq!(account.grant("a", 2, 1), 225); // (1000-100)/4
        assert_eq!(account.grant("b", 2, 1), 168); // 675/4
        assert_eq!(account.unallocated(), 1000 - 100 - 225 - 168);
        account.report("a", 200, 25);
        assert_eq!((account.spent(), account.holds("a")), (300, 25));
        // Claims to hold more than granted: capped.
        account.report("b", 0, 10_000);
        assert_eq!(account.holds("b"), 168);
        account.report("a", 25, 0);
        assert_eq!(account.holds("a"), 0);
        assert_eq!(account.spent() + account.held(), 325 + 168);
    }

    /// Many sidecars asking, spending at most what they hold, reporting in any order:
    /// recorded spend never exceeds the limit, and every nano-dollar is accounted for.
    #[test]
    fn the_invariant_holds_under_random_traffic() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..200 {
            let limit = rng.u64(1..10_000_000);
            let mut account = Account::new(limit, 0);
            let sidecars = ["a", "b", "c", "d", "e"];
            let mut local: BTreeMap<&str, u64> = BTreeMap::new(); // what each still holds
            for _ in 0..500 {
                let s = sidecars[rng.usize(..sidecars.len())];
                match rng.u8(..3) {
                    0 => {
                        let got = account.grant(s, rng.u32(1..6), rng.u64(0..1000));
                        *local.entry(s).or_default() += got;
                    }
                    _ => {
                        let holds = local.entry(s).or_default();
                        let spend = rng.u64(0..=*holds);
                        *holds -= spend;
                        account.report(s, spend, *holds);
                    }
                }
                assert!(account.spent() + account.held() <= limit);
                assert_eq!(account.held(), local.values().sum::<u64>());
            }
        }
    }
}
