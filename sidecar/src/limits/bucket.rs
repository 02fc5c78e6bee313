//! A token bucket in integer arithmetic: `per_minute` tokens a minute, bursts up to
//! `capacity`. Time is passed in (monotonic `Instant`s), so the math is tested without
//! sleeping and the caller decides where the clock is read.
//!
//! Tokens are kept in millionths so that slow rates (1 request a minute) refill smoothly
//! instead of in whole-token steps, and no float rounding accumulates.

use std::time::Duration;

use tokio::time::Instant;

const SCALE: u128 = 1_000_000;
const NANOS_PER_MINUTE: u128 = 60_000_000_000;

/// A bucket of `capacity` tokens refilled at `per_minute`.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    capacity: u128,
    per_minute: u128,
    /// Tokens available, in millionths.
    level: u128,
    updated: Instant,
    /// The last `now` refilled at.
    refilled_at: Instant,
}

/// Not enough tokens now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denied {
    /// When enough will have refilled (never, for more than the capacity: `None`).
    pub retry_after: Option<Duration>,
}

impl TokenBucket {
    /// A full bucket. `per_minute` of 0 never refills.
    pub fn new(capacity: u64, per_minute: u64, now: Instant) -> Self {
        Self {
            capacity: u128::from(capacity) * SCALE,
            per_minute: u128::from(per_minute),
            level: u128::from(capacity) * SCALE,
            updated: now,
            refilled_at: now,
        }
    }

    /// Takes `n` tokens, or says when they will be there.
    pub fn take(&mut self, n: u64, now: Instant) -> Result<(), Denied> {
        self.refill(now);
        let want = u128::from(n) * SCALE;
        if want <= self.level {
            self.level -= want;
            return Ok(());
        }
        if want > self.capacity || self.per_minute == 0 {
            return Err(Denied { retry_after: None });
        }
        Err(Denied {
            retry_after: Some(self.time_to(want, now)),
        })
    }

    /// Returns `n` tokens taken earlier and not used (an estimate settled lower), never
    /// above capacity.
    pub fn give_back(&mut self, n: u64, now: Instant) {
        self.refill(now);
        self.level = (self.level + u128::from(n) * SCALE).min(self.capacity);
    }

    /// Takes `n` tokens even when that leaves the bucket in debt (usage that turned out
    /// higher than reserved): later requests wait until the debt is refilled.
    pub fn charge(&mut self, n: u64, now: Instant) {
        self.refill(now);
        let want = u128::from(n) * SCALE;
        if want <= self.level {
            self.level -= want;
        } else {
            // Debt is kept as a later `updated`: the refill first pays it back.
            let debt = want - self.level;
            self.level = 0;
            if self.per_minute > 0 {
                let nanos = debt * NANOS_PER_MINUTE / (self.per_minute * SCALE);
                self.updated += Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
            }
        }
    }

    /// Whole tokens available now (`x-ratelimit-remaining-*`).
    pub fn remaining(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.level / SCALE).unwrap_or(u64::MAX)
    }

    /// Time until the bucket is full again (`x-ratelimit-reset-*`).
    pub fn until_full(&mut self, now: Instant) -> Duration {
        self.refill(now);
        if self.per_minute == 0 {
            return Duration::ZERO;
        }
        self.time_to(self.capacity, now)
    }

    fn time_to(&self, level: u128, now: Instant) -> Duration {
        let missing = level.saturating_sub(self.level);
        // Round up: a client told to retry after this must find the tokens there.
        let nanos = (missing * NANOS_PER_MINUTE).div_ceil(self.per_minute * SCALE);
        let wait = Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
        // While in debt (`updated` ahead of now) the wait includes the rest of the debt.
        wait + self.updated.saturating_duration_since(now)
    }

    fn refill(&mut self, now: Instant) {
        // One request reads a bucket several times at the same `now` (take, remaining,
        // until full): the 128-bit divisions below are done once.
        if now <= self.updated || now == self.refilled_at {
            return;
        }
        self.refilled_at = now;
        let elapsed = (now - self.updated).as_nanos();
        let added = elapsed * self.per_minute * SCALE / NANOS_PER_MINUTE;
        if added == 0 {
            return; // not even a millionth: keep `updated` so the fraction is not lost
        }
        self.level = (self.level + added).min(self.capacity);
        // Advance by exactly the time the added amount took, keeping the remainder.
        let used = added * NANOS_PER_MINUTE / (self.per_minute * SCALE);
        self.updated += Duration::from_nanos(u64::try_from(used).unwrap_or(u64::MAX));
        if self.level == self.capacity {
            self.updated = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn a_full_bucket_serves_a_burst_then_refills_at_the_rate() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(10, 60, t0); // one token a second
        for _ in 0..10 {
            assert_eq!(bucket.take(1, t0), Ok(()));
        }
        let denied = bucket.take(1, t0).unwrap_err();
        assert_eq!(denied.retry_after, Some(SEC));
        assert!(bucket.take(1, t0 + SEC / 2).is_err());
        assert_eq!(bucket.take(1, t0 + SEC), Ok(()));
        assert_eq!(bucket.remaining(t0 + SEC), 0);
        assert_eq!(bucket.remaining(t0 + 4 * SEC), 3);
        assert_eq!(bucket.until_full(t0 + 4 * SEC), 7 * SEC);
        // Never above capacity, however long it waits.
        assert_eq!(bucket.remaining(t0 + 3600 * SEC), 10);
    }

    #[test]
    fn slow_rates_refill_smoothly_and_nothing_is_lost_to_rounding() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1, 1, t0); // one a minute
        bucket.take(1, t0).unwrap();
        // Many tiny refills add up to exactly one token after a minute.
        let mut now = t0;
        for _ in 0..60_000 {
            now += Duration::from_millis(1);
            let _ = bucket.remaining(now);
        }
        assert_eq!(bucket.take(1, now), Ok(()));
        assert!(bucket.take(1, now).is_err());
    }

    #[test]
    fn more_than_the_capacity_is_never_possible() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(100, 6000, t0);
        assert_eq!(bucket.take(101, t0), Err(Denied { retry_after: None }));
        assert_eq!(bucket.take(100, t0), Ok(()));
    }

    #[test]
    fn estimates_settle_both_ways() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(1000, 60_000, t0); // 1000 tokens a second
        bucket.take(800, t0).unwrap(); // reserved an estimate
        bucket.give_back(300, t0); // used 500
        assert_eq!(bucket.remaining(t0), 500);
        // Used more than reserved: the bucket goes into debt and refills it first.
        bucket.take(500, t0).unwrap();
        bucket.charge(1500, t0);
        assert_eq!(bucket.remaining(t0 + SEC), 0);
        // 1500 tokens of debt at 1000/s: paid off at t0 + 1.5 s, one token 1 ms later.
        let denied = bucket.take(1, t0 + SEC).unwrap_err();
        assert_eq!(denied.retry_after, Some(Duration::from_millis(501)));
        assert_eq!(bucket.remaining(t0 + 2 * SEC), 500);
    }
}
