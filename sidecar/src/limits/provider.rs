//! A provider account's own limits (`providers[].rateLimit`): before a try is sent, the
//! target's provider must have room for one request and its tokens. A request that finds
//! none waits up to `maxQueue` for the buckets to refill, then moves on to the route's
//! next target — the provider's 429 is never collected.
//!
//! Counted per sidecar: set the account's limit divided by the number of pods, or leave
//! headroom (docs/budgets.md).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::bucket::TokenBucket;

/// The default `maxQueue`: long enough to ride out a burst, short next to a model's answer.
pub const DEFAULT_MAX_QUEUE: Duration = Duration::from_secs(1);

/// The limits of one provider endpoint, shared by every route that uses it.
#[derive(Debug)]
pub struct ProviderLimiter {
    /// (requests, tokens) per minute; 0 = no limit of that kind.
    rates: (u64, u64),
    max_queue: Duration,
    buckets: Mutex<(Option<TokenBucket>, Option<TokenBucket>)>,
}

// === impl ProviderLimiter ===

impl ProviderLimiter {
    pub fn new(requests_per_minute: u64, tokens_per_minute: u64, max_queue: Duration) -> Self {
        let now = Instant::now();
        let bucket = |n: u64| (n > 0).then(|| TokenBucket::new(n, n, now));
        Self {
            rates: (requests_per_minute, tokens_per_minute),
            max_queue,
            buckets: Mutex::new((bucket(requests_per_minute), bucket(tokens_per_minute))),
        }
    }

    /// Whether this limiter enforces exactly these limits (so a reload can keep it, and
    /// what was used this minute).
    pub fn same(
        &self,
        requests_per_minute: u64,
        tokens_per_minute: u64,
        max_queue: Duration,
    ) -> bool {
        self.rates == (requests_per_minute, tokens_per_minute) && self.max_queue == max_queue
    }

    /// Takes room for one request of `tokens` tokens, waiting up to `maxQueue` for it.
    /// False: there is none in time; try another target.
    pub async fn acquire(&self, tokens: u64) -> bool {
        let deadline = Instant::now() + self.max_queue;
        loop {
            let now = Instant::now();
            let wait = match self.try_take(tokens, now) {
                Ok(()) => return true,
                Err(None) => return false,
                Err(Some(wait)) => wait,
            };
            if now + wait > deadline {
                return false;
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes room for one request now, without waiting (a hedged try is not worth a wait).
    pub fn try_acquire(&self, tokens: u64) -> bool {
        self.try_take(tokens, Instant::now()).is_ok()
    }

    /// Takes both or neither; else how long until both could be taken (`None`: never,
    /// the request is larger than a minute's tokens).
    fn try_take(&self, tokens: u64, now: Instant) -> Result<(), Option<Duration>> {
        let mut guard = self.lock();
        let (requests, token_bucket) = &mut *guard;
        let tokens = tokens.min(self.rates.1.max(1));
        let mut wait = Duration::ZERO;
        if let Some(b) = requests.as_mut()
            && b.remaining(now) < 1
        {
            let denied = b.take(1, now).err().and_then(|d| d.retry_after);
            wait = wait.max(denied.ok_or(None)?);
        }
        if let Some(b) = token_bucket.as_mut()
            && b.remaining(now) < tokens
        {
            // Probe without taking: take fails and says when.
            let denied = b.take(tokens, now).err().and_then(|d| d.retry_after);
            wait = wait.max(denied.ok_or(None)?);
        }
        if !wait.is_zero() {
            return Err(Some(wait));
        }
        if let Some(b) = requests.as_mut() {
            let _ = b.take(1, now);
        }
        if let Some(b) = token_bucket.as_mut() {
            let _ = b.take(tokens, now);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, (Option<TokenBucket>, Option<TokenBucket>)> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_full_minute_queues_briefly_then_gives_up() {
        let limiter = ProviderLimiter::new(60, 0, Duration::from_millis(1500));
        for _ in 0..60 {
            assert!(limiter.acquire(0).await);
        }
        // One request a second refills: the next waits about a second and gets in.
        let t0 = Instant::now();
        assert!(limiter.acquire(0).await);
        let waited = t0.elapsed();
        assert!(
            waited >= Duration::from_millis(900) && waited <= Duration::from_millis(1100),
            "{waited:?}"
        );
        // Two more would need two seconds: more than the queue allows for the second.
        assert!(limiter.acquire(0).await);
        let strict = ProviderLimiter::new(1, 0, Duration::ZERO);
        assert!(strict.acquire(0).await);
        assert!(!strict.acquire(0).await, "no queue: moves on at once");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_count_and_an_oversized_request_never_waits() {
        let limiter = ProviderLimiter::new(0, 1000, Duration::from_secs(10));
        assert!(limiter.acquire(800).await);
        // 600 more need 400 refilled: 24 s at 1000 a minute, past the 10 s queue.
        let t0 = Instant::now();
        assert!(!limiter.acquire(600).await);
        assert_eq!(
            t0.elapsed(),
            Duration::ZERO,
            "gave up without waiting in vain"
        );
        assert!(limiter.acquire(200).await);
        assert!(limiter.same(0, 1000, Duration::from_secs(10)));
        assert!(!limiter.same(0, 2000, Duration::from_secs(10)));
    }
}
