//! Capped exponential backoff with jitter.

use std::time::Duration;

use crate::config::RetryPolicy;

/// Backoff for the retries of one target: the n-th wait is drawn uniformly from
/// `[d/2, d]` where `d = min(max, base * 2^n)` ("equal jitter"), so waits grow, never
/// exceed the cap, and clients that failed together do not retry together.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    retries: u32,
}

// === impl Backoff ===

impl Backoff {
    pub fn new(policy: &RetryPolicy) -> Self {
        Self {
            base: policy.backoff_base,
            max: policy.backoff_max,
            retries: 0,
        }
    }

    pub fn next_wait(&mut self) -> Duration {
        let factor = 2u32.saturating_pow(self.retries.min(31));
        self.retries += 1;
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        let half = ceiling / 2;
        let jitter_nanos = fastrand::u64(0..=u64::try_from(half.as_nanos()).unwrap_or(u64::MAX));
        half + Duration::from_nanos(jitter_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_doubles_and_caps_with_jitter_in_range() {
        let policy = RetryPolicy {
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(700),
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            let mut b = Backoff::new(&policy);
            let waits: Vec<_> = (0..6).map(|_| b.next_wait()).collect();
            let ceilings = [100, 200, 400, 700, 700, 700];
            for (w, c) in waits.iter().zip(ceilings) {
                let c = Duration::from_millis(c);
                assert!(*w >= c / 2 && *w <= c, "{w:?} not in [{:?}, {c:?}]", c / 2);
            }
        }
    }

    #[test]
    fn many_retries_do_not_overflow() {
        let mut b = Backoff::new(&RetryPolicy::default());
        for _ in 0..100 {
            assert!(b.next_wait() <= RetryPolicy::default().backoff_max);
        }
    }
}
