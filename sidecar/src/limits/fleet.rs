//! The sidecar's half of the fleet ledger protocol (proto `Usage` / `Grants`, see
//! docs/budgets.md): report spend, ask for allowance before it runs out, apply grants and
//! rate-limit shares.
//!
//! Reports are deltas sent at least once: each is kept until the leader says its spend is
//! durable (`applied_seq`) and re-sent after a reconnect, so an operator restart loses no
//! spend. The [`Reporter`] outlives sessions; the session loop feeds it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use modelroute_proto::v1::{
    AccountKey as WireKey, AccountUsage, Grants, SidecarMessage, Usage, sidecar_message,
};
use tracing::{debug, warn};

use super::Limits;
use super::ledger::{Account, AccountKey};
use super::policy::LimitId;

/// Allowance of an account no request used for this long goes back to the leader, so
/// it can be granted to sidecars that need it.
const IDLE_GIVE_BACK: Duration = Duration::from_secs(10);

/// Unacknowledged reports kept at most (an hour of one report a second); past it the
/// oldest are dropped with a warning rather than growing without bound.
const MAX_UNACKED: usize = 3600;

/// Reports spend and applies grants across the sessions of one sidecar process.
#[derive(Debug)]
pub struct Reporter {
    incarnation: String,
    next_seq: u64,
    /// Sent, not yet durable at the leader: re-sent after a reconnect.
    unacked: VecDeque<Usage>,
    /// The highest `Grants.answers_seq` applied by this process (across streams: a new
    /// leader reads it to tell grants on the wire from give-backs).
    answers_applied: u64,
}

// === impl Reporter ===

impl Default for Reporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter {
    pub fn new() -> Self {
        Self {
            incarnation: format!("{:016x}", fastrand::u64(..)),
            next_seq: 1,
            unacked: VecDeque::new(),
            answers_applied: 0,
        }
    }

    /// A new stream is up: what to send first — every unacknowledged report again, then
    /// every key this sidecar holds allowance for (so a new leader learns what is held).
    pub fn on_connect(&mut self, limits: &Limits) -> Vec<SidecarMessage> {
        limits.set_unreachable(false);
        // An ask on the old stream will not be answered on this one.
        limits
            .ledger
            .with_accounts(|accounts| accounts.values_mut().for_each(|a| a.asked = false));
        let mut out: Vec<SidecarMessage> = self.unacked.iter().cloned().map(message).collect();
        out.extend(self.report(limits, true));
        out
    }

    /// The stream ended: budgets fall back to `onControlPlaneLoss` once allowances are spent.
    pub fn on_disconnect(&mut self, limits: &Limits) {
        limits.set_unreachable(true);
    }

    /// A report of what changed since the last one, if anything did (`full`: every key
    /// with allowance too).
    pub fn report(&mut self, limits: &Limits, full: bool) -> Option<SidecarMessage> {
        let now = std::time::SystemTime::now();
        let accounts = limits.ledger.with_accounts(|accounts| {
            let mut out = Vec::new();
            let now_mono = tokio::time::Instant::now();
            for (key, account) in accounts.iter_mut() {
                // Idle (or of a past window): give the allowance back.
                let idle = account
                    .last_used
                    .is_none_or(|t| now_mono.saturating_duration_since(t) >= IDLE_GIVE_BACK);
                let give_back = account.held > 0
                    && account.reserved == 0
                    && (idle || account.release || !key.window.contains(now));
                if give_back {
                    account.held = 0;
                    account.last_grant = 0;
                }
                account.release = false;
                let want = wanted(account, account.unreported);
                // What the largest waiting request lacks: the leader grants at least that.
                let free = account.held.saturating_sub(account.reserved);
                let need = if want > 0 {
                    account.need.saturating_sub(free)
                } else {
                    0
                };
                let current = key.window.contains(now);
                if account.unreported == 0 && want == 0 && !give_back && !(full && account.held > 0)
                {
                    continue;
                }
                out.push(AccountUsage {
                    key: Some(wire_key(key)),
                    spent_nano_usd: std::mem::take(&mut account.unreported),
                    held_nano_usd: account.held,
                    want_nano_usd: if current { want } else { 0 },
                    need_nano_usd: if current { need } else { 0 },
                });
                if want > 0 {
                    account.asked = true;
                    account.need = 0;
                }
            }
            out
        });
        if accounts.is_empty() {
            return None;
        }
        let usage = Usage {
            seq: self.next_seq,
            incarnation: self.incarnation.clone(),
            accounts,
            answers_applied: self.answers_applied,
        };
        self.next_seq += 1;
        if self.unacked.len() == MAX_UNACKED {
            warn!("the operator acknowledged no spend report for an hour; dropping the oldest");
            self.unacked.pop_front();
        }
        self.unacked.push_back(usage.clone());
        Some(message(usage))
    }

    /// Applies the leader's grants, acknowledgements and rate shares.
    pub fn on_grants(&mut self, limits: &Limits, grants: Grants) {
        if grants.answers_seq > 0 {
            self.answers_applied = self.answers_applied.max(grants.answers_seq);
        }
        while self
            .unacked
            .front()
            .is_some_and(|u| u.seq <= grants.applied_seq)
        {
            self.unacked.pop_front();
        }
        limits.ledger.with_accounts(|accounts| {
            for grant in &grants.grants {
                let Some(key) = grant.key.as_ref().and_then(ledger_key) else {
                    debug!("a grant for a key this sidecar cannot read");
                    continue;
                };
                let account = accounts.entry(key).or_default();
                account.held = account.held.saturating_add(grant.added_nano_usd);
                account.limit = grant.limit_nano_usd;
                account.spent = grant.spent_nano_usd.saturating_add(account.unreported);
                account.exhausted = grant.exhausted;
                if grants.answers_seq > 0 {
                    account.asked = false;
                }
                if grant.added_nano_usd > 0 {
                    account.last_grant = grant.added_nano_usd;
                    account.beyond_allowance = 0;
                }
            }
        });
        if let Some(shares) = grants.rate_shares {
            limits.rates.set_shares(shares.shares.into_iter().map(|s| {
                let id = LimitId {
                    namespace: s.namespace,
                    model_route: s.model_route,
                    name: s.rate_limit,
                };
                (id, (s.requests_per_minute, s.tokens_per_minute))
            }));
        }
        limits.granted.notify_waiters();
    }

    /// Reports sent and not yet durable at the leader.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }
}

/// How much more allowance to ask for: when what is left (net of reservations) is under
/// half the last grant, or a request found too little. 0: none.
///
/// Enough for a few of the requests that found too little, two report intervals of the
/// recent spend (`recent`), the last grant, or 1% of the budget, whichever is most: the
/// leader caps it at a fair share of what is left, so asking big costs nothing and saves
/// round trips.
fn wanted(account: &Account, recent: u64) -> u64 {
    if account.exhausted || account.asked {
        return 0;
    }
    let free = account.held.saturating_sub(account.reserved);
    let low = free.saturating_mul(2) < account.last_grant;
    if account.need == 0 && !low {
        return 0;
    }
    account
        .need
        .saturating_mul(4)
        .max(recent.saturating_mul(2))
        .max(account.last_grant)
        .max(account.limit / 100)
        .max(1)
}

fn message(usage: Usage) -> SidecarMessage {
    SidecarMessage {
        message: Some(sidecar_message::Message::Usage(usage)),
    }
}

fn wire_key(key: &AccountKey) -> WireKey {
    WireKey {
        namespace: key.budget.namespace.clone(),
        model_route: key.budget.model_route.clone(),
        budget: key.budget.name.clone(),
        scope_value: key.scope.clone(),
        window: key.window.to_string(),
    }
}

fn ledger_key(key: &WireKey) -> Option<AccountKey> {
    Some(AccountKey {
        budget: Arc::new(LimitId {
            namespace: key.namespace.clone(),
            model_route: key.model_route.clone(),
            name: key.budget.clone(),
        }),
        scope: key.scope_value.clone(),
        window: key.window.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use modelroute_crds::Window;
    use modelroute_proto::v1::Grant;

    use super::*;
    use crate::limits::ledger::Reserved;
    use crate::limits::{BudgetRule, Exhausted, Ledger, Mode, ScopeRule};

    fn rule() -> BudgetRule {
        BudgetRule {
            id: Arc::new(LimitId {
                namespace: "ns".into(),
                model_route: "mr".into(),
                name: "daily".into(),
            }),
            amount: 1_000_000,
            window: Window::Daily,
            scope: ScopeRule::Route,
            thresholds: vec![],
            exhausted: Exhausted::Reject,
            loss_cap: 0,
        }
    }

    fn usage(m: SidecarMessage) -> Usage {
        match m.message {
            Some(sidecar_message::Message::Usage(u)) => u,
            other => panic!("not a usage report: {other:?}"),
        }
    }

    fn grant(key: &AccountKey, added: u64, answers: u64, applied: u64) -> Grants {
        Grants {
            applied_seq: applied,
            answers_seq: answers,
            grants: vec![Grant {
                key: Some(wire_key(key)),
                added_nano_usd: added,
                limit_nano_usd: 1_000_000,
                spent_nano_usd: 0,
                exhausted: false,
            }],
            rate_shares: None,
        }
    }

    #[test]
    fn ask_spend_report_and_resend_until_durable() {
        let limits = Limits::new(Mode::Fleet, "pod-a".into(), None);
        let mut reporter = Reporter::new();
        assert!(
            reporter.on_connect(&limits).is_empty(),
            "nothing held, nothing unacked"
        );
        let rule = rule();
        let key = Ledger::key(&rule, String::new(), SystemTime::now());
        // A first request finds nothing: it asks.
        assert_eq!(
            limits.ledger.reserve(&rule, &key, 100, 10, true),
            Reserved::AskFirst
        );
        let first = usage(reporter.report(&limits, false).unwrap());
        assert_eq!(first.seq, 1);
        assert_eq!(
            first.accounts[0].want_nano_usd, 10_000,
            "1% of the limit > 4 × 100"
        );
        assert!(
            reporter.report(&limits, false).is_none(),
            "asked once, not every second"
        );
        reporter.on_grants(&limits, grant(&key, 500, 1, 0));
        assert_eq!(
            limits.ledger.reserve(&rule, &key, 100, 10, false),
            Reserved::Full(100)
        );
        limits.ledger.settle(&rule, &key, 100, 40);
        let second = usage(reporter.report(&limits, false).unwrap());
        assert_eq!(second.answers_applied, 1);
        let spent = &second.accounts[0];
        assert_eq!((spent.spent_nano_usd, spent.held_nano_usd), (40, 460));
        // Spend is reported once; nothing new, nothing sent.
        assert!(reporter.report(&limits, false).is_none());
        // Report 1 became durable, report 2 not yet: a reconnect re-sends 2, then what is held.
        reporter.on_grants(&limits, grant(&key, 0, 0, 1));
        assert_eq!(reporter.unacked(), 1);
        let resent: Vec<Usage> = reporter
            .on_connect(&limits)
            .into_iter()
            .map(usage)
            .collect();
        assert_eq!(resent.len(), 2);
        assert_eq!(
            (resent[0].seq, resent[0].accounts[0].spent_nano_usd),
            (2, 40)
        );
        assert_eq!(resent[1].seq, 3);
        assert_eq!(
            (
                resent[1].accounts[0].spent_nano_usd,
                resent[1].accounts[0].held_nano_usd
            ),
            (0, 460)
        );
        reporter.on_grants(&limits, grant(&key, 0, 3, 3));
        assert_eq!(reporter.unacked(), 0);
    }

    #[test]
    fn a_low_allowance_asks_for_more_before_it_runs_out() {
        let limits = Limits::new(Mode::Fleet, "pod-a".into(), None);
        let mut reporter = Reporter::new();
        let rule = rule();
        let key = Ledger::key(&rule, String::new(), SystemTime::now());
        reporter.on_grants(&limits, grant(&key, 1000, 1, 0));
        limits.ledger.reserve(&rule, &key, 400, 1, false);
        limits.ledger.settle(&rule, &key, 400, 400);
        let report = usage(reporter.report(&limits, false).unwrap());
        assert_eq!(
            report.accounts[0].want_nano_usd, 0,
            "600 of 1000 left: enough"
        );
        limits.ledger.reserve(&rule, &key, 200, 1, false);
        limits.ledger.settle(&rule, &key, 200, 200);
        let report = usage(reporter.report(&limits, false).unwrap());
        assert_eq!(
            report.accounts[0].want_nano_usd, 10_000,
            "400 left: under half"
        );
    }

    #[test]
    fn shares_and_exhaustion_come_with_grants() {
        let limits = Limits::new(Mode::Fleet, "pod-a".into(), None);
        let mut reporter = Reporter::new();
        let rule = rule();
        let key = Ledger::key(&rule, String::new(), SystemTime::now());
        let mut g = grant(&key, 0, 1, 0);
        g.grants[0].exhausted = true;
        g.rate_shares = Some(modelroute_proto::v1::RateShares {
            shares: vec![modelroute_proto::v1::RateShare {
                namespace: "ns".into(),
                model_route: "mr".into(),
                rate_limit: "rpm".into(),
                requests_per_minute: 5,
                tokens_per_minute: 0,
            }],
        });
        reporter.on_grants(&limits, g);
        assert_eq!(
            limits.ledger.reserve(&rule, &key, 10, 1, false),
            Reserved::Exhausted
        );
        let rate = crate::limits::RateRule {
            id: Arc::new(LimitId {
                namespace: "ns".into(),
                model_route: "mr".into(),
                name: "rpm".into(),
            }),
            requests_per_minute: Some(100),
            tokens_per_minute: None,
            scope: ScopeRule::Route,
        };
        let now = tokio::time::Instant::now();
        let (headers, _) = limits.rates.take(&rate, String::new(), 0, now).unwrap();
        assert_eq!(headers.requests.unwrap().limit, 5, "this sidecar's share");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_allowance_goes_back_to_the_leader() {
        let limits = Limits::new(Mode::Fleet, "pod-a".into(), None);
        let mut reporter = Reporter::new();
        let rule = rule();
        let key = Ledger::key(&rule, String::new(), SystemTime::now());
        reporter.on_grants(&limits, grant(&key, 1000, 1, 0));
        limits.ledger.reserve(&rule, &key, 100, 1, false);
        limits.ledger.settle(&rule, &key, 100, 100);
        let report = usage(reporter.report(&limits, false).unwrap());
        assert_eq!(report.accounts[0].held_nano_usd, 900, "in use: kept");
        tokio::time::advance(IDLE_GIVE_BACK).await;
        let report = usage(reporter.report(&limits, false).unwrap());
        assert_eq!(report.accounts[0].held_nano_usd, 0, "idle: given back");
        assert_eq!(limits.ledger.accounts()[0].1.held, 0);
        assert!(reporter.report(&limits, false).is_none(), "said once");
    }
}
