//! Sending a request to a route: the try loop over targets with retries, backoff,
//! `Retry-After`, circuit breakers and the fallback chain.
//!
//! [`run`] knows nothing about HTTP bodies: the caller passes a function that makes one
//! try against one target and says how it went. Everything it returns happens before a
//! byte reaches the client, so every failover here is invisible to the client.

pub mod backoff;
pub mod breaker;
pub mod hedge;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::StatusCode;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::{Route, Target};
use crate::error::ProxyError;
use crate::provider::Operation;
use crate::provider::classify::{Disposition, ErrorBody};
use crate::telemetry::{Metrics, spans};
use backoff::Backoff;

/// How one try failed.
#[derive(Debug)]
pub struct TryError {
    pub disposition: Disposition,
    /// The upstream's status, when it answered with one.
    pub status: Option<StatusCode>,
    /// The upstream's error, already scrubbed of the provider key.
    pub error: ErrorBody,
    pub retry_after: Option<Duration>,
    /// Metric label for the attempt's outcome.
    pub outcome: &'static str,
}

/// The answer, the target that gave it, and how many tries it took.
#[derive(Debug)]
pub struct Success<T> {
    pub value: T,
    pub target: Arc<Target>,
    pub attempts: u32,
    /// A hedged try that lost the race and was cancelled: its prompt was sent, so it
    /// costs something.
    pub hedge_loser: Option<Arc<Target>>,
}

/// What a request's tries share: the route, the try function and the count of tries.
struct Tries<'a, F> {
    route: &'a Route,
    operation: Operation,
    metrics: &'a Metrics,
    attempt: &'a F,
    /// Shared by the two tries of a hedged race (hence atomic; one task polls both).
    attempts: AtomicU32,
}

/// Why a target gave no answer.
enum Stop {
    /// The request's own fault: answer the client now.
    Final(TryError),
    /// The target refused the request as larger than its context window.
    TooLarge(TryError),
    /// Failed (after its retries); the next target may do better.
    Failed(TryError),
    /// Its circuit is open: nothing was sent.
    Open,
}

/// Tries `plan`'s targets in order until one succeeds.
///
/// Per target: a try, then up to `retry.attempts` retries of retriable failures, waiting
/// the backoff or the upstream's `Retry-After` (one longer than `maxRetryAfter` moves on
/// at once). Targets whose circuit is open are skipped. A failure that is the request's
/// own fault ends the loop at once; a context-length refusal moves on only to targets
/// with a larger declared context window. With hedging, a slow first target races the
/// next one. The caller bounds the whole loop with the total deadline. Each try runs in
/// its own client span (`operation` names it).
pub async fn run<T, F, Fut>(
    route: &Route,
    plan: Vec<Arc<Target>>,
    operation: Operation,
    metrics: &Metrics,
    eligible: impl Fn(&Target) -> bool,
    tokens: impl Fn() -> u64,
    attempt: F,
) -> Result<Success<T>, ProxyError>
where
    F: Fn(Arc<Target>) -> Fut,
    Fut: Future<Output = Result<T, TryError>>,
{
    let tries = Tries {
        route,
        operation,
        metrics,
        attempt: &attempt,
        attempts: AtomicU32::new(0),
    };
    if let Some(hedge) = &route.hedge {
        hedge.earn();
    }
    let mut last: Option<(Arc<Target>, TryError)> = None;
    let mut any_eligible = false;
    // After a context-length refusal: the window a target must exceed (0 when the refusing
    // target declared none, so any declared window may do better).
    let mut larger_than: Option<u64> = None;
    let mut queue = plan.into_iter();
    while let Some(target) = queue.next() {
        if !eligible(&target) {
            continue;
        }
        any_eligible = true;
        if let Some(min) = larger_than
            && target.context_window.is_none_or(|w| w <= min)
        {
            continue;
        }
        // The provider account's limit: wait briefly for room, else spill to the next
        // target rather than collect its 429.
        if let Some(limiter) = &target.provider.limiter
            && !limiter.acquire(tokens()).await
        {
            metrics.attempt(&route.alias, &target.label, "provider_limited");
            if last.is_none() {
                last = Some((target.clone(), TryError::provider_limited(&target)));
            }
            continue;
        }
        let fallback = last.as_ref().map(|(_, err)| err.outcome);
        let hedge = match (&route.hedge, &last) {
            (Some(hedge), None) => hedge.delay(&target, Instant::now()).map(|d| (hedge, d)),
            _ => None,
        };
        let (target, stopped) = match hedge {
            None => (target.clone(), tries.target(&target, fallback).await),
            Some((hedge, delay)) => {
                let second = || {
                    let next = queue.as_slice().iter().position(|t| eligible(t))?;
                    let t = &queue.as_slice()[next];
                    // A hedge is not worth a wait for the provider account's limit.
                    if let Some(limiter) = &t.provider.limiter
                        && !limiter.try_acquire(tokens())
                    {
                        return None;
                    }
                    let t = t.clone();
                    // Skip what comes before the second: ineligible either way.
                    (0..=next).for_each(|_| drop(queue.next()));
                    Some(t)
                };
                match tries.hedged(&target, delay, hedge, second).await {
                    Raced::Won(success) => return Ok(success),
                    Raced::Stopped(t, stop) => (t, stop),
                }
            }
        };
        match stopped {
            Ok(value) => {
                return Ok(Success {
                    value,
                    target,
                    attempts: tries.attempts.load(Ordering::Relaxed),
                    hedge_loser: None,
                });
            }
            Err(Stop::Final(err)) => {
                return Err(err.into_proxy_error(
                    &route.alias,
                    &target,
                    tries.attempts.load(Ordering::Relaxed),
                ));
            }
            Err(Stop::TooLarge(err)) => {
                larger_than = Some(target.context_window.unwrap_or(0));
                last = Some((target, err));
            }
            Err(Stop::Failed(err)) => last = Some((target, err)),
            Err(Stop::Open) => {}
        }
    }
    let attempts = tries.attempts.load(Ordering::Relaxed);
    Err(match last {
        Some((target, err)) => err.into_proxy_error(&route.alias, &target, attempts),
        None if !any_eligible => ProxyError::BadRequest(format!(
            "model `{}` has no target of the provider kind this endpoint speaks",
            route.alias
        )),
        None => ProxyError::Unavailable {
            message: format!(
                "every target of model `{}` has an open circuit breaker; try again later",
                route.alias
            ),
        },
    })
}

/// How a hedged race ended.
enum Raced<T> {
    Won(Success<T>),
    /// No answer: the target whose failure counts, and why.
    Stopped(Arc<Target>, Result<T, Stop>),
}

// === impl Tries ===

impl<F, Fut, T> Tries<'_, F>
where
    F: Fn(Arc<Target>) -> Fut,
    Fut: Future<Output = Result<T, TryError>>,
{
    /// One target: a try and its retries. `fallback` says why the previous target was left,
    /// for the span.
    async fn target(
        &self,
        target: &Arc<Target>,
        fallback: Option<&'static str>,
    ) -> Result<T, Stop> {
        let (route, metrics) = (self.route, self.metrics);
        let mut backoff = Backoff::new(&route.retry);
        let mut retries = 0;
        let mut failed = None;
        loop {
            let Some(permit) = target.breaker.acquire(&route.breaker) else {
                metrics.attempt(&route.alias, &target.label, "circuit_open");
                return Err(failed.map_or(Stop::Open, Stop::Failed));
            };
            if retries == 0 && fallback.is_some() {
                metrics.fallback(&route.alias);
            }
            self.attempts.fetch_add(1, Ordering::Relaxed);
            let reason = if retries == 0 { fallback } else { None };
            let span = spans::attempt(
                target,
                self.operation,
                self.attempts.load(Ordering::Relaxed),
                reason,
                retries > 0,
            );
            let started = Instant::now();
            let err = match (self.attempt)(target.clone())
                .instrument(span.clone())
                .await
            {
                Ok(value) => {
                    permit.success();
                    target
                        .latency
                        .first_token(started.elapsed(), Instant::now());
                    metrics.attempt(&route.alias, &target.label, "ok");
                    return Ok(value);
                }
                Err(err) => err,
            };
            spans::attempt_failed(&span, err.outcome, err.status.map(|s| s.as_u16()));
            metrics.attempt(&route.alias, &target.label, err.outcome);
            match err.disposition {
                // The request's fault says nothing about the target's health.
                Disposition::Final => return Err(Stop::Final(err)),
                Disposition::TooLarge => return Err(Stop::TooLarge(err)),
                Disposition::Unsupported => return Err(Stop::Failed(err)),
                Disposition::FailOver => {
                    permit.failure(&route.breaker);
                    target.latency.failure(Instant::now());
                    return Err(Stop::Failed(err));
                }
                Disposition::Retry => {
                    permit.failure(&route.breaker);
                    target.latency.failure(Instant::now());
                    let wait = match err.retry_after {
                        Some(after) if after > route.retry.max_retry_after => None,
                        Some(after) => Some(after),
                        None => Some(backoff.next_wait()),
                    };
                    let Some(wait) = wait.filter(|_| retries < route.retry.attempts) else {
                        return Err(Stop::Failed(err));
                    };
                    failed = Some(err);
                    retries += 1;
                    metrics.retry(&route.alias, &target.label);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// `first`, and when it has not answered within `delay`, also the target `second`
    /// gives (if the hedge budget allows): the first answer wins and the other try is
    /// dropped, which cancels its upstream request.
    async fn hedged(
        &self,
        first: &Arc<Target>,
        delay: Duration,
        hedge: &hedge::Hedge,
        second: impl FnOnce() -> Option<Arc<Target>>,
    ) -> Raced<T> {
        let one = self.target(first, None);
        tokio::pin!(one);
        let early = tokio::select! {
            r = &mut one => Some(r),
            () = tokio::time::sleep(delay) => None,
        };
        if let Some(r) = early {
            return Raced::Stopped(first.clone(), r);
        }
        if !hedge.spend() {
            // The budget says no: no hedge, and the next target stays next in line.
            self.metrics.hedge(&self.route.alias, "denied");
            return Raced::Stopped(first.clone(), one.await);
        }
        let Some(other) = second() else {
            hedge.refund();
            return Raced::Stopped(first.clone(), one.await);
        };
        self.metrics.hedge(&self.route.alias, "started");
        let two = self.target(&other, Some("hedge"));
        tokio::pin!(two);
        let (finished, running, result, rest) = tokio::select! {
            r = &mut one => (first.clone(), other.clone(), r, Either::Two(two)),
            r = &mut two => (other.clone(), first.clone(), r, Either::One(one)),
        };
        let won = |value, target: Arc<Target>, cancelled| {
            self.metrics.hedge(
                &self.route.alias,
                if Arc::ptr_eq(&target, first) {
                    "first_won"
                } else {
                    "hedge_won"
                },
            );
            Raced::Won(Success {
                value,
                target,
                attempts: self.attempts.load(Ordering::Relaxed),
                hedge_loser: cancelled,
            })
        };
        match result {
            // The other try is still running: dropping it cancels it.
            Ok(value) => won(value, finished, Some(running)),
            // The request's own fault: the other try would be refused too.
            Err(Stop::Final(err)) => Raced::Stopped(finished, Err(Stop::Final(err))),
            Err(stop) => {
                let r = match rest {
                    Either::One(f) => f.await,
                    Either::Two(f) => f.await,
                };
                match r {
                    Ok(value) => won(value, running, None),
                    Err(Stop::Open) => Raced::Stopped(finished, Err(stop)),
                    Err(s) => Raced::Stopped(running, Err(s)),
                }
            }
        }
    }
}

enum Either<A, B> {
    One(A),
    Two(B),
}

// === impl TryError ===

impl TryError {
    pub fn connect(message: String) -> Self {
        Self::transient(None, message, "connect_error")
    }

    pub fn timeout(message: String) -> Self {
        Self::transient(None, message, "timeout")
    }

    /// This target cannot take the request (a field its provider has no equivalent for):
    /// the next target may; if none does, the client gets a 400 saying why.
    pub fn unusable(message: String) -> Self {
        Self {
            disposition: Disposition::Unsupported,
            status: Some(StatusCode::BAD_REQUEST),
            error: ErrorBody {
                message,
                kind: Some("invalid_request_error".into()),
                code: None,
            },
            retry_after: None,
            outcome: "unsupported",
        }
    }

    /// The target's provider account had no room within its `maxQueue` (the sidecar's
    /// own count of `rateLimit`); nothing was sent.
    pub fn provider_limited(target: &Target) -> Self {
        Self {
            disposition: Disposition::FailOver,
            status: Some(StatusCode::TOO_MANY_REQUESTS),
            error: ErrorBody {
                message: format!(
                    "{}: the provider's rate limit (providers[].rateLimit) has no room now",
                    target.label
                ),
                kind: Some("requests".into()),
                code: Some("rate_limit_exceeded".into()),
            },
            retry_after: None,
            outcome: "provider_limited",
        }
    }

    /// A stream that broke or said nothing useful before its first event.
    pub fn stream(message: String) -> Self {
        Self::transient(None, message, "stream_error")
    }

    fn transient(status: Option<StatusCode>, message: String, outcome: &'static str) -> Self {
        Self {
            disposition: Disposition::Retry,
            status,
            error: ErrorBody {
                message,
                kind: None,
                code: None,
            },
            retry_after: None,
            outcome,
        }
    }

    /// The client's view once no target is left.
    pub fn into_proxy_error(self, alias: &str, target: &Target, attempts: u32) -> ProxyError {
        let tries = if attempts == 1 {
            "1 try".to_string()
        } else {
            format!("{attempts} tries")
        };
        let message = format!(
            "model `{alias}`: no upstream answered after {tries}; last: {} {}",
            target.label,
            match self.status {
                Some(s) => format!("answered {}: {}", s.as_u16(), self.error.message),
                None => self.error.message.clone(),
            }
        );
        match self.status {
            Some(status) => ProxyError::Upstream {
                status,
                message,
                kind: self.error.kind,
                code: self.error.code,
            },
            None if self.outcome == "timeout" => ProxyError::Timeout { message },
            None => ProxyError::BadGateway { message },
        }
    }
}
