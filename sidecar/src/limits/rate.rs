//! Rate limits: a requests bucket and a tokens bucket per rate limit and scope value, each
//! a minute's worth deep (bursts up to the per-minute limit, refilled smoothly).
//!
//! Under the operator each sidecar enforces its share of a fleet-wide limit
//! ([`RateBook::set_shares`]); standalone it enforces the whole limit.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::FastMap;
use super::bucket::TokenBucket;
use super::policy::{LimitId, RateRule};

/// The buckets of every rate limit and scope value in use.
#[derive(Debug, Default)]
pub struct RateBook {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    buckets: FastMap<BucketKey, Buckets>,
    /// This sidecar's share per limit (requests, tokens per minute), from the operator.
    shares: FastMap<LimitId, (u64, u64)>,
}

/// A rate limit and a scope value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BucketKey {
    limit: Arc<LimitId>,
    scope: String,
}

/// Cloned only when a new scope value gets its buckets.
impl From<&BucketKey> for BucketKey {
    fn from(key: &BucketKey) -> Self {
        key.clone()
    }
}

#[derive(Debug)]
struct Buckets {
    /// The rates the buckets were made for: a changed limit or share remakes them.
    rates: (u64, u64),
    requests: Option<TokenBucket>,
    tokens: Option<TokenBucket>,
}

/// A request refused by a rate limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limited {
    pub id: Arc<LimitId>,
    /// `requests` or `tokens`.
    pub what: &'static str,
    /// When to try again; `None`: never at this size (more tokens than a minute's worth).
    pub retry_after: Option<Duration>,
    pub headers: RateHeaders,
}

/// The `x-ratelimit-*` values of one limit after a request, as OpenAI sends them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub requests: Option<Remaining>,
    pub tokens: Option<Remaining>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Remaining {
    pub limit: u64,
    pub remaining: u64,
    pub reset: Duration,
}

/// Tokens taken from one bucket, to settle when the real count is known.
#[derive(Clone, Debug)]
pub struct TokensTaken {
    key: BucketKey,
    taken: u64,
}

// === impl RateBook ===

impl RateBook {
    /// Replaces this sidecar's shares of fleet-wide limits (requests, tokens per minute).
    pub fn set_shares(&self, shares: impl IntoIterator<Item = (LimitId, (u64, u64))>) {
        self.lock().shares = shares.into_iter().collect();
    }

    /// Takes one request and `tokens` tokens under `rule` for `scope`. On success returns
    /// the headers to send and what to settle later.
    pub fn take(
        &self,
        rule: &RateRule,
        scope: String,
        tokens: u64,
        now: Instant,
    ) -> Result<(RateHeaders, Option<TokensTaken>), Limited> {
        let mut state = self.lock();
        let rates = state.rates(rule);
        let key = BucketKey {
            limit: rule.id.clone(),
            scope,
        };
        let buckets = state
            .buckets
            .entry_ref(&key)
            .and_modify(|b| {
                if b.rates != rates {
                    *b = Buckets::new(rates, now);
                }
            })
            .or_insert_with(|| Buckets::new(rates, now));
        // Check both before taking either, so a refusal takes nothing.
        let tokens = tokens.min(rates.1.max(1));
        if let Some(requests) = &mut buckets.requests
            && requests.remaining(now) < 1
        {
            let retry_after = requests.take(1, now).err().and_then(|d| d.retry_after);
            return Err(Limited {
                id: rule.id.clone(),
                what: "requests",
                retry_after,
                headers: buckets.headers(now),
            });
        }
        if let Some(bucket) = &mut buckets.tokens
            && let Err(denied) = bucket.take(tokens, now)
        {
            return Err(Limited {
                id: rule.id.clone(),
                what: "tokens",
                retry_after: denied.retry_after,
                headers: buckets.headers(now),
            });
        }
        if let Some(requests) = &mut buckets.requests {
            let _ = requests.take(1, now);
        }
        let taken = buckets
            .tokens
            .as_ref()
            .map(|_| TokensTaken { key, taken: tokens });
        Ok((buckets.headers(now), taken))
    }

    /// Settles tokens taken at admission against the real count: the difference comes back,
    /// or is charged (the bucket may go into debt).
    pub fn settle(&self, taken: &TokensTaken, used: u64, now: Instant) {
        let mut state = self.lock();
        let Some(bucket) = state
            .buckets
            .get_mut(&taken.key)
            .and_then(|b| b.tokens.as_mut())
        else {
            return;
        };
        if used < taken.taken {
            bucket.give_back(taken.taken - used, now);
        } else {
            bucket.charge(used - taken.taken, now);
        }
    }

    /// Forgets buckets that are full again (idle scope values), so per-tenant limits do not
    /// keep one entry per tenant ever seen.
    pub fn prune(&self, now: Instant) {
        self.lock().buckets.retain(|_, b| !b.full(now));
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

// === impl State ===

impl State {
    /// Requests and tokens per minute for `rule` here: its share, else the whole limit.
    fn rates(&self, rule: &RateRule) -> (u64, u64) {
        let whole = (
            rule.requests_per_minute.map_or(0, u64::from),
            rule.tokens_per_minute.map_or(0, u64::from),
        );
        match self.shares.get(&*rule.id) {
            Some(&(r, t)) => (
                if whole.0 > 0 { r.max(1) } else { 0 },
                if whole.1 > 0 { t.max(1) } else { 0 },
            ),
            None => whole,
        }
    }
}

// === impl Buckets ===

impl Buckets {
    fn new((requests, tokens): (u64, u64), now: Instant) -> Self {
        let bucket = |per_minute: u64| {
            (per_minute > 0).then(|| TokenBucket::new(per_minute, per_minute, now))
        };
        Self {
            rates: (requests, tokens),
            requests: bucket(requests),
            tokens: bucket(tokens),
        }
    }

    fn headers(&mut self, now: Instant) -> RateHeaders {
        let (requests, tokens) = self.rates;
        let remaining = |bucket: &mut Option<TokenBucket>, limit: u64| {
            bucket.as_mut().map(|b| Remaining {
                limit,
                remaining: b.remaining(now),
                reset: b.until_full(now),
            })
        };
        RateHeaders {
            requests: remaining(&mut self.requests, requests),
            tokens: remaining(&mut self.tokens, tokens),
        }
    }

    fn full(&mut self, now: Instant) -> bool {
        [&mut self.requests, &mut self.tokens]
            .into_iter()
            .flatten()
            .all(|b| b.until_full(now).is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::policy::ScopeRule;

    fn rule(rpm: Option<u32>, tpm: Option<u32>) -> RateRule {
        RateRule {
            id: Arc::new(LimitId {
                namespace: "ns".into(),
                model_route: "mr".into(),
                name: "per-tenant".into(),
            }),
            requests_per_minute: rpm,
            tokens_per_minute: tpm,
            scope: ScopeRule::Route,
        }
    }

    #[test]
    fn requests_per_minute_hold_and_headers_count_down() {
        let book = RateBook::default();
        let rule = rule(Some(3), None);
        let t0 = Instant::now();
        for left in [2, 1, 0] {
            let (headers, taken) = book.take(&rule, "a".into(), 10, t0).unwrap();
            let r = headers.requests.unwrap();
            assert_eq!((r.limit, r.remaining), (3, left));
            assert!(taken.is_none(), "no token limit");
            assert!(headers.tokens.is_none());
        }
        let limited = book.take(&rule, "a".into(), 10, t0).unwrap_err();
        assert_eq!(limited.what, "requests");
        assert_eq!(limited.retry_after, Some(Duration::from_secs(20)));
        // Another scope value has its own bucket.
        assert!(book.take(&rule, "b".into(), 10, t0).is_ok());
        // 20 s later one request has refilled.
        assert!(
            book.take(&rule, "a".into(), 10, t0 + Duration::from_secs(20))
                .is_ok()
        );
    }

    #[test]
    fn a_refusal_takes_nothing_and_tokens_settle_to_the_real_count() {
        let book = RateBook::default();
        let rule = rule(Some(100), Some(1000));
        let t0 = Instant::now();
        let (_, taken) = book.take(&rule, String::new(), 900, t0).unwrap();
        let limited = book.take(&rule, String::new(), 200, t0).unwrap_err();
        assert_eq!(limited.what, "tokens");
        assert_eq!(
            limited.headers.requests.unwrap().remaining,
            99,
            "the refused request took none"
        );
        // It used 300 of its 900: 600 come back, and 200 now fit.
        book.settle(&taken.unwrap(), 300, t0);
        let (headers, _) = book.take(&rule, String::new(), 200, t0).unwrap();
        assert_eq!(headers.tokens.unwrap().remaining, 500);
    }

    #[test]
    fn a_share_from_the_operator_replaces_the_whole_limit() {
        let book = RateBook::default();
        let rule = rule(Some(90), None);
        book.set_shares([((*rule.id).clone(), (30, 0))]);
        let t0 = Instant::now();
        for _ in 0..30 {
            book.take(&rule, String::new(), 0, t0).unwrap();
        }
        assert!(book.take(&rule, String::new(), 0, t0).is_err());
        book.set_shares([]);
        let (headers, _) = book.take(&rule, String::new(), 0, t0).unwrap();
        assert_eq!(headers.requests.unwrap().limit, 90, "the whole limit again");
    }
}
