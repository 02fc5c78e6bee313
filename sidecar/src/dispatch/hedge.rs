//! Hedging: a second try started when the first is slow to answer, within a budget of
//! extra tries per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Target;
use crate::config::table::HedgePolicy;

/// Credit is kept in thousandths of a try: each request earns `ratio` tries, a hedge
/// spends one. The cap lets a short burst of slow answers all be hedged after a quiet
/// spell, but no more than this many in a row.
const MILLI: u64 = 1_000;
const MAX_BURST_TRIES: u64 = 10;

/// A route's hedging policy and its budget of extra tries.
#[derive(Debug)]
pub struct Hedge {
    pub policy: HedgePolicy,
    credit: AtomicU64,
    earn: u64,
}

impl Hedge {
    pub fn new(policy: HedgePolicy) -> Self {
        Self {
            policy,
            credit: AtomicU64::new(0),
            earn: (policy.ratio * MILLI as f64).round() as u64,
        }
    }

    /// Counts one request towards the budget.
    pub fn earn(&self) {
        let cap = MAX_BURST_TRIES * MILLI;
        let _ = self
            .credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                (c < cap).then(|| (c + self.earn).min(cap))
            });
    }

    /// Takes one hedged try from the budget; `false` when there is none left.
    pub fn spend(&self) -> bool {
        self.credit
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                c.checked_sub(MILLI)
            })
            .is_ok()
    }

    /// Gives back a try taken by [`spend`](Self::spend) that was not used.
    pub fn refund(&self) {
        self.credit.fetch_add(MILLI, Ordering::Relaxed);
    }

    /// How long to wait for `first` before hedging: its recent percentile of time to first
    /// token when it has enough data, else the fixed delay; `None`: do not hedge (a
    /// percentile-only policy without data yet).
    pub fn delay(&self, first: &Target, now: Instant) -> Option<Duration> {
        self.policy
            .quantile
            .and_then(|q| first.latency.quantile(q, now))
            .or(self.policy.delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hedge(percent: f64) -> Hedge {
        Hedge::new(HedgePolicy {
            delay: Some(Duration::from_secs(1)),
            quantile: None,
            ratio: percent / 100.0,
        })
    }

    #[test]
    fn hedges_are_bounded_by_the_ratio() {
        let h = hedge(10.0);
        let mut hedged = 0;
        for _ in 0..1_000 {
            h.earn();
            if h.spend() {
                hedged += 1;
            }
        }
        // Every request wants a hedge: exactly 10% get one.
        assert_eq!(hedged, 100);
    }

    #[test]
    fn credit_is_capped() {
        let h = hedge(50.0);
        for _ in 0..1_000 {
            h.earn();
        }
        let burst = (0..100).take_while(|_| h.spend()).count();
        assert_eq!(burst, MAX_BURST_TRIES as usize);
        assert!(!h.spend());
    }

    #[test]
    fn nothing_is_spent_before_anything_is_earned() {
        assert!(!hedge(100.0).spend());
    }
}
