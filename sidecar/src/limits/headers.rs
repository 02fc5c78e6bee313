//! The response headers of limits: `x-ratelimit-*` the way OpenAI sends them, and what
//! modelroute adds (`x-modelroute-max-tokens-clamped`, `x-modelroute-cost-usd`).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::Admission;
use super::rate::{RateHeaders, Remaining};
use crate::cost::Cost;
use crate::error::ProxyError;

/// Adds what admission decided: the rate-limit headers and a clamped `max_tokens`.
pub fn admitted(headers: &mut HeaderMap, admission: &Admission) {
    if let Some(rate) = &admission.rate_headers {
        ratelimit(headers, rate);
    }
    if let Some(n) = admission.clamped {
        headers.insert("x-modelroute-max-tokens-clamped", HeaderValue::from(n));
    }
}

/// `x-modelroute-cost-usd` (and `x-modelroute-cost-estimated: true` when the provider
/// reported no usage).
pub fn cost(headers: &mut HeaderMap, cost: Cost) {
    if let Ok(v) = HeaderValue::from_str(&usd(cost.nano_usd)) {
        headers.insert("x-modelroute-cost-usd", v);
    }
    if cost.estimated {
        headers.insert(
            "x-modelroute-cost-estimated",
            HeaderValue::from_static("true"),
        );
    }
}

/// The headers of a refusal: `retry-after` (whole seconds, rounded up) for a rate limit,
/// the reset time for a spent budget.
pub fn refused(headers: &mut HeaderMap, err: &ProxyError) {
    match err {
        ProxyError::RateLimited(refusal) => {
            let Some(after) = refusal.retry_after else {
                return;
            };
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        ProxyError::BudgetExceeded(refusal) => {
            if let Ok(v) = HeaderValue::from_str(&refusal.resets_at) {
                headers.insert("x-modelroute-budget-reset", v);
            }
        }
        _ => {}
    }
}

fn ratelimit(headers: &mut HeaderMap, rate: &RateHeaders) {
    // (limit, remaining, reset) header names per kind, OpenAI's spelling.
    const REQUESTS: [&str; 3] = [
        "x-ratelimit-limit-requests",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-reset-requests",
    ];
    const TOKENS: [&str; 3] = [
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-tokens",
    ];
    let mut put = |names: [&'static str; 3], r: &Remaining| {
        headers.insert(
            HeaderName::from_static(names[0]),
            HeaderValue::from(r.limit),
        );
        headers.insert(
            HeaderName::from_static(names[1]),
            HeaderValue::from(r.remaining),
        );
        if let Ok(v) = HeaderValue::try_from(openai_duration(r.reset)) {
            headers.insert(HeaderName::from_static(names[2]), v);
        }
    };
    if let Some(r) = &rate.requests {
        put(REQUESTS, r);
    }
    if let Some(r) = &rate.tokens {
        put(TOKENS, r);
    }
}

/// A duration as OpenAI writes `x-ratelimit-reset-*`: `17ms`, `1s`, `6m0s`, `1h2m3s`
/// (Go's format, rounded up to the millisecond below a second, to the second above).
pub fn openai_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        let ms = d.as_millis() + u128::from(!d.as_nanos().is_multiple_of(1_000_000));
        return format!("{ms}ms");
    }
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// nano-USD as a decimal USD string with nine places trimmed: `0.000123`.
pub fn usd(nano: u64) -> String {
    let text = format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000);
    let trimmed = text.trim_end_matches('0');
    trimmed.strip_suffix('.').unwrap_or(trimmed).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_openais() {
        let ms = Duration::from_millis;
        assert_eq!(openai_duration(ms(17)), "17ms");
        assert_eq!(openai_duration(Duration::from_micros(16_200)), "17ms");
        assert_eq!(openai_duration(ms(0)), "0ms");
        assert_eq!(openai_duration(ms(1000)), "1s");
        assert_eq!(openai_duration(ms(1500)), "2s");
        assert_eq!(openai_duration(ms(360_000)), "6m0s");
        assert_eq!(openai_duration(ms(3_723_000)), "1h2m3s");
    }

    #[test]
    fn usd_is_exact_and_short() {
        assert_eq!(usd(0), "0");
        assert_eq!(usd(123_000), "0.000123");
        assert_eq!(usd(1_500_000_000), "1.5");
        assert_eq!(usd(1), "0.000000001");
    }

    #[test]
    fn rate_headers_are_openais_names() {
        let mut headers = HeaderMap::new();
        let r = |limit, remaining, ms| Remaining {
            limit,
            remaining,
            reset: Duration::from_millis(ms),
        };
        ratelimit(
            &mut headers,
            &RateHeaders {
                requests: Some(r(60, 59, 1000)),
                tokens: Some(r(150_000, 149_000, 400)),
            },
        );
        let get = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
        assert_eq!(get("x-ratelimit-limit-requests"), "60");
        assert_eq!(get("x-ratelimit-remaining-requests"), "59");
        assert_eq!(get("x-ratelimit-reset-requests"), "1s");
        assert_eq!(get("x-ratelimit-limit-tokens"), "150000");
        assert_eq!(get("x-ratelimit-remaining-tokens"), "149000");
        assert_eq!(get("x-ratelimit-reset-tokens"), "400ms");
    }
}
