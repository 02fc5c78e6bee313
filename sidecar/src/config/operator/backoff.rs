//! How long to wait before reconnecting to the operator.

use std::time::Duration;

/// The reconnect policy: waits double from `base` up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconnectBackoff {
    pub base: Duration,
    pub max: Duration,
}

/// Capped exponential backoff with full jitter: the n-th wait is drawn uniformly from
/// `[0, min(max, base * 2^n)]`, so a fleet of sidecars that lost the operator together
/// does not come back together.
#[derive(Debug)]
pub(super) struct Backoff {
    policy: ReconnectBackoff,
    failures: u32,
}

// === impl ReconnectBackoff ===

impl Default for ReconnectBackoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(200),
            max: Duration::from_secs(30),
        }
    }
}

// === impl Backoff ===

impl Backoff {
    pub(super) fn new(policy: ReconnectBackoff) -> Self {
        Self {
            policy,
            failures: 0,
        }
    }

    /// The largest wait the next call may return.
    pub(super) fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.failures.min(31));
        self.policy.base.saturating_mul(factor).min(self.policy.max)
    }

    pub(super) fn next_wait(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(fastrand::u64(0..=nanos))
    }

    /// After a healthy session: the next wait starts small again.
    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_with_full_jitter() {
        let ceilings_ms = [200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000];
        let mut seen_small = false;
        for _ in 0..200 {
            let mut b = Backoff::new(ReconnectBackoff::default());
            for c in ceilings_ms {
                let c = Duration::from_millis(c);
                assert_eq!(b.ceiling(), c);
                let w = b.next_wait();
                assert!(w <= c, "{w:?} over {c:?}");
                seen_small |= w < c / 2;
            }
        }
        assert!(seen_small, "full jitter draws from zero up");
    }

    #[test]
    fn reset_starts_over_and_many_failures_do_not_overflow() {
        let mut b = Backoff::new(ReconnectBackoff::default());
        for _ in 0..1000 {
            assert!(b.next_wait() <= Duration::from_secs(30));
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(200));
        assert!(b.next_wait() <= Duration::from_millis(200));
    }
}
