//! What the ledger persists, in two shapes: `status.budgets` entries (Kubernetes; capped
//! per budget and window, the rest summed) and the `--ledger-file` (every account, exactly).

use std::collections::BTreeMap;

use modelroute_crds::{BudgetStatus, NanoUsd, WindowId};
use serde::{Deserialize, Serialize};

use super::key::{AccountKey, BudgetRef};
use crate::index::ObjectKey;

/// The version of the ledger file's format.
pub const FILE_VERSION: u32 = 1;

/// One account as persisted: what was spent and what sidecars held.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SavedAccount {
    pub namespace: String,
    pub model_route: String,
    pub budget: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope_value: String,
    pub window: WindowId,
    pub spent_nano_usd: u64,
    pub held_nano_usd: u64,
}

/// Scope values of one budget and window that a status did not list, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unlisted {
    /// How many scope values.
    pub count: u64,
    pub spent: u64,
    /// The most one of them spent: where a restarted ledger starts each of them.
    pub most_spent: u64,
    pub held: u64,
}

/// Everything a restarting ledger reads back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Saved {
    pub accounts: Vec<SavedAccount>,
    pub unlisted: BTreeMap<(BudgetRef, WindowId), Unlisted>,
}

/// The `--ledger-file` (JSON).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LedgerFile {
    pub version: u32,
    pub accounts: Vec<SavedAccount>,
}

/// One scope value's account, for status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row<'a> {
    pub scope: &'a str,
    pub spent: u64,
    pub held: u64,
}

// === impl SavedAccount ===

impl SavedAccount {
    pub fn new(key: &AccountKey, spent: u64, held: u64) -> Self {
        Self {
            namespace: key.budget.route.namespace.clone(),
            model_route: key.budget.route.name.clone(),
            budget: key.budget.budget.clone(),
            scope_value: key.scope.clone(),
            window: key.window,
            spent_nano_usd: spent,
            held_nano_usd: held,
        }
    }

    pub fn key(&self) -> AccountKey {
        AccountKey::new(
            BudgetRef::new(
                ObjectKey::new(&self.namespace, &self.model_route),
                &self.budget,
            ),
            &self.scope_value,
            self.window,
        )
    }
}

// === impl Unlisted ===

impl Unlisted {
    /// One of these scope values got its own account again: it is no longer summed here.
    pub fn take_one(&mut self) {
        self.count = self.count.saturating_sub(1);
        self.spent = self.spent.saturating_sub(self.most_spent);
    }
}

// === impl Saved ===

impl Saved {
    /// What `route`'s `status.budgets` holds.
    pub fn add_status(&mut self, route: &ObjectKey, entries: &[BudgetStatus]) {
        for e in entries {
            let budget = BudgetRef::new(route.clone(), &e.name);
            match e.others {
                Some(count) => {
                    let u = self.unlisted.entry((budget, e.window)).or_default();
                    u.count = u.count.saturating_add(u64::from(count));
                    u.spent = u.spent.saturating_add(e.spent_usd.nanos());
                    // Without the most, the sum bounds each of them too.
                    let most = e.most_spent_usd.unwrap_or(e.spent_usd).nanos();
                    u.most_spent = u.most_spent.max(most);
                    u.held = u.held.saturating_add(e.held_usd.nanos());
                }
                None => self.accounts.push(SavedAccount {
                    namespace: route.namespace.clone(),
                    model_route: route.name.clone(),
                    budget: e.name.clone(),
                    scope_value: e.scope_value.clone(),
                    window: e.window,
                    spent_nano_usd: e.spent_usd.nanos(),
                    held_nano_usd: e.held_usd.nanos(),
                }),
            }
        }
    }
}

/// The status entries of one budget in one window: the `cap` most-spent scope values
/// (ties by scope value), then one entry summing the rest with what `unlisted` still sums
/// from before a restart.
pub fn window_entries(
    budget: &str,
    window: WindowId,
    limit: u64,
    mut rows: Vec<Row<'_>>,
    cap: usize,
    unlisted: Option<&Unlisted>,
) -> Vec<BudgetStatus> {
    rows.sort_by(|a, b| b.spent.cmp(&a.spent).then_with(|| a.scope.cmp(b.scope)));
    let nano = NanoUsd::from_nanos;
    let mut entries: Vec<BudgetStatus> = rows
        .iter()
        .take(cap)
        .map(|r| BudgetStatus {
            name: budget.to_string(),
            window,
            scope_value: r.scope.to_string(),
            others: None,
            most_spent_usd: None,
            limit_usd: nano(limit),
            spent_usd: nano(r.spent),
            remaining_usd: nano(limit.saturating_sub(r.spent)),
            held_usd: nano(r.held),
        })
        .collect();
    let mut rest = unlisted.copied().unwrap_or_default();
    for r in rows.iter().skip(cap) {
        rest.count += 1;
        rest.spent = rest.spent.saturating_add(r.spent);
        rest.most_spent = rest.most_spent.max(r.spent);
        rest.held = rest.held.saturating_add(r.held);
    }
    if rest.count > 0 {
        let limits = u128::from(limit) * u128::from(rest.count);
        let remaining = limits.saturating_sub(u128::from(rest.spent));
        entries.push(BudgetStatus {
            name: budget.to_string(),
            window,
            scope_value: String::new(),
            others: Some(u32::try_from(rest.count).unwrap_or(u32::MAX)),
            most_spent_usd: Some(nano(rest.most_spent)),
            limit_usd: nano(limit),
            spent_usd: nano(rest.spent),
            remaining_usd: nano(u64::try_from(remaining).unwrap_or(u64::MAX)),
            held_usd: nano(rest.held),
        });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> WindowId {
        "2026-12".parse().expect("a window id")
    }

    #[test]
    fn status_lists_the_most_spent_and_sums_the_rest() {
        let scopes: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
        let rows: Vec<Row<'_>> = scopes
            .iter()
            .enumerate()
            .map(|(i, s)| Row {
                scope: s,
                spent: 10 * i as u64,
                held: 1,
            })
            .collect();
        let entries = window_entries("b", window(), 100, rows, 2, None);
        let listed: Vec<(&str, Option<u32>, u64)> = entries
            .iter()
            .map(|e| (e.scope_value.as_str(), e.others, e.spent_usd.nanos()))
            .collect();
        assert_eq!(
            listed,
            [("t4", None, 40), ("t3", None, 30), ("", Some(3), 30)]
        );
        let others = &entries[2];
        assert_eq!(others.most_spent_usd, Some(NanoUsd::from_nanos(20)));
        assert_eq!(others.held_usd.nanos(), 3);
        assert_eq!(others.remaining_usd.nanos(), 300 - 30);
        assert_eq!(entries[0].remaining_usd.nanos(), 60);
    }

    #[test]
    fn status_round_trips_into_what_a_restart_reads() {
        let route = ObjectKey::new("ns", "r");
        let scopes = ["a", "b", "c", "d"];
        let rows: Vec<Row<'_>> = scopes
            .iter()
            .zip([5u64, 9, 2, 7])
            .map(|(s, spent)| Row {
                scope: s,
                spent,
                held: 3,
            })
            .collect();
        let entries = window_entries("b", window(), 100, rows, 2, None);
        let mut saved = Saved::default();
        saved.add_status(&route, &entries);
        let listed: Vec<(&str, u64, u64)> = saved
            .accounts
            .iter()
            .map(|a| (a.scope_value.as_str(), a.spent_nano_usd, a.held_nano_usd))
            .collect();
        assert_eq!(listed, [("b", 9, 3), ("d", 7, 3)]);
        let unlisted = saved.unlisted[&(BudgetRef::new(route, "b"), window())];
        assert_eq!(
            unlisted,
            Unlisted {
                count: 2,
                spent: 7,
                most_spent: 5,
                held: 6
            }
        );
        // Written again with nothing new: the same summary.
        let again = window_entries("b", window(), 100, vec![], 2, Some(&unlisted));
        assert_eq!(again[0].others, Some(2));
        assert_eq!(again[0].most_spent_usd, Some(NanoUsd::from_nanos(5)));
    }

    #[test]
    fn the_ledger_file_is_plain_json_with_integer_nanos() {
        let file = LedgerFile {
            version: FILE_VERSION,
            accounts: vec![SavedAccount {
                namespace: "ns".into(),
                model_route: "r".into(),
                budget: "b".into(),
                scope_value: String::new(),
                window: window(),
                spent_nano_usd: u64::MAX,
                held_nano_usd: 1,
            }],
        };
        let text = serde_json::to_string(&file).expect("serializes");
        assert_eq!(
            text,
            r#"{"version":1,"accounts":[{"namespace":"ns","modelRoute":"r","budget":"b","window":"2026-12","spentNanoUsd":18446744073709551615,"heldNanoUsd":1}]}"#
        );
        assert_eq!(serde_json::from_str::<LedgerFile>(&text).ok(), Some(file));
    }
}
