//! Sending a request to a route: the try loop over targets with retries, backoff,
//! `Retry-After`, circuit breakers and the fallback chain.
//!
//! [`run`] knows nothing about HTTP bodies: the caller passes a function that makes one
//! try against one target and says how it went. Everything it returns happens before a
//! byte reaches the client, so every failover here is invisible to the client.

pub mod backoff;
pub mod breaker;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
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
}

/// Tries `route`'s targets in plan order until one succeeds.
///
/// Per target: a try, then up to `retry.attempts` retries of retriable failures, waiting
/// the backoff or the upstream's `Retry-After` (one longer than `maxRetryAfter` moves on
/// at once). Targets whose circuit is open are skipped. A failure that is the request's
/// own fault ends the loop at once. The caller bounds the whole loop with the total
/// deadline. Each try runs in its own client span (`operation` names it).
pub async fn run<T, F, Fut>(
    route: &Route,
    operation: Operation,
    metrics: &Metrics,
    eligible: impl Fn(&Target) -> bool,
    tokens: impl Fn() -> u64,
    mut attempt: F,
) -> Result<Success<T>, ProxyError>
where
    F: FnMut(Arc<Target>) -> Fut,
    Fut: Future<Output = Result<T, TryError>>,
{
    let mut attempts = 0u32;
    let mut last: Option<(Arc<Target>, TryError)> = None;
    let mut any_eligible = false;
    for target in route.plan() {
        if !eligible(&target) {
            continue;
        }
        any_eligible = true;
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
        let mut backoff = Backoff::new(&route.retry);
        let mut retries = 0;
        loop {
            let Some(permit) = target.breaker.acquire(&route.breaker) else {
                metrics.attempt(&route.alias, &target.label, "circuit_open");
                break;
            };
            if retries == 0 && last.is_some() {
                metrics.fallback(&route.alias);
            }
            attempts += 1;
            let fallback = match &last {
                Some((_, err)) if retries == 0 => Some(err.outcome),
                _ => None,
            };
            let span = spans::attempt(&target, operation, attempts, fallback, retries > 0);
            let err = match attempt(target.clone()).instrument(span.clone()).await {
                Ok(value) => {
                    permit.success();
                    metrics.attempt(&route.alias, &target.label, "ok");
                    return Ok(Success {
                        value,
                        target,
                        attempts,
                    });
                }
                Err(err) => err,
            };
            spans::attempt_failed(&span, err.outcome, err.status.map(|s| s.as_u16()));
            metrics.attempt(&route.alias, &target.label, err.outcome);
            match err.disposition {
                Disposition::Final => {
                    // The request's fault says nothing about the target's health.
                    drop(permit);
                    return Err(err.into_proxy_error(&route.alias, &target, attempts));
                }
                Disposition::FailOver => {
                    permit.failure(&route.breaker);
                    last = Some((target.clone(), err));
                    break;
                }
                Disposition::Unsupported => {
                    drop(permit);
                    last = Some((target.clone(), err));
                    break;
                }
                Disposition::Retry => {
                    permit.failure(&route.breaker);
                    let wait = match err.retry_after {
                        Some(after) if after > route.retry.max_retry_after => None,
                        Some(after) => Some(after),
                        None => Some(backoff.next_wait()),
                    };
                    last = Some((target.clone(), err));
                    let Some(wait) = wait.filter(|_| retries < route.retry.attempts) else {
                        break;
                    };
                    retries += 1;
                    metrics.retry(&route.alias, &target.label);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
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
