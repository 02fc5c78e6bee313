//! Views of the book: `status.budgets`, the ledger file's accounts, metric totals.

use std::collections::BTreeMap;
use std::time::SystemTime;

use modelroute_crds::v1alpha1::{STATUS_SCOPE_VALUES, STATUS_SCOPE_VALUES_PREVIOUS};
use modelroute_crds::{BudgetStatus, Window, WindowId};

use super::{Book, Total};
use crate::index::ObjectKey;
use crate::ledger::account::Account;
use crate::ledger::key::{AccountKey, BudgetRef};
use crate::ledger::saved::{self, Row, SavedAccount};

// === impl Book ===

impl Book {
    /// `status.budgets` of `route`: per budget in spec order, windows newest first, the
    /// most-spent scope values of each (the rest summed).
    pub fn statuses(&self, route: &ObjectKey, wall: SystemTime) -> Vec<BudgetStatus> {
        let Some((_, names)) = self.routes.get(route) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for name in names {
            let budget = BudgetRef::new(route.clone(), name);
            let Some(rule) = self.rules.get(&budget) else {
                continue;
            };
            let current = rule.window.id(wall);
            let mut windows: BTreeMap<WindowId, Vec<Row<'_>>> = BTreeMap::new();
            for (key, account) in self.range(&budget) {
                windows.entry(key.window).or_default().push(Row {
                    scope: &key.scope,
                    spent: account.spent(),
                    held: account.held(),
                });
            }
            for ((b, w), _) in self.unlisted.range((budget.clone(), first_window())..) {
                if *b != budget {
                    break;
                }
                windows.entry(*w).or_default();
            }
            for (window, rows) in windows.into_iter().rev() {
                let cap = if window >= current {
                    STATUS_SCOPE_VALUES
                } else {
                    STATUS_SCOPE_VALUES_PREVIOUS
                };
                let unlisted = self.unlisted.get(&(budget.clone(), window));
                out.extend(saved::window_entries(
                    name, window, rule.limit, rows, cap, unlisted,
                ));
            }
        }
        out
    }

    /// Every account, exactly (the ledger file).
    pub fn saved(&self) -> Vec<SavedAccount> {
        self.accounts
            .iter()
            .map(|(key, a)| SavedAccount::new(key, a.spent(), a.held()))
            .collect()
    }

    /// Spend and remaining per budget and window (metrics).
    pub fn totals(&self) -> Vec<Total> {
        let mut totals: Vec<Total> = Vec::new();
        for (key, account) in &self.accounts {
            match totals.last_mut() {
                Some(t) if t.budget == key.budget && t.window == key.window => {
                    t.spent = t.spent.saturating_add(account.spent());
                    t.remaining = t.remaining.min(account.remaining());
                }
                _ => totals.push(Total {
                    budget: key.budget.clone(),
                    window: key.window,
                    spent: account.spent(),
                    remaining: account.remaining(),
                }),
            }
        }
        totals
    }

    /// The account of `key`, if any.
    pub fn account(&self, key: &AccountKey) -> Option<&Account> {
        self.accounts.get(key)
    }

    /// The ModelRoutes with budgets, and their uids.
    pub fn routes(&self) -> impl Iterator<Item = (&ObjectKey, Option<&str>)> {
        self.routes.iter().map(|(k, (uid, _))| (k, uid.as_deref()))
    }

    /// Accounts of one budget, in window and scope value order.
    fn range<'a>(
        &'a self,
        budget: &'a BudgetRef,
    ) -> impl Iterator<Item = (&'a AccountKey, &'a Account)> + 'a {
        let from = AccountKey::new(budget.clone(), "", first_window());
        self.accounts
            .range(from..)
            .take_while(move |(k, _)| k.budget == *budget)
    }
}

/// The smallest window id (window kinds order before start times): a range start.
fn first_window() -> WindowId {
    Window::Hourly.id(SystemTime::UNIX_EPOCH)
}
