//! The response headers of limits: `x-ratelimit-*` the way OpenAI sends them, and what
//! modelroute adds (`x-modelroute-max-tokens-clamped`, `x-modelroute-cost-usd`).

use std::time::Duration;

use bytes::BytesMut;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::Admission;
use super::rate::RateHeaders;
use crate::cost::Cost;
use crate::error::ProxyError;

/// What admission decided that the response tells the client: the rate-limit headers and
/// a clamped `max_tokens`. Copied out of the [`Admission`] so the headers can be written
/// straight into the response after the admission is settled.
#[derive(Clone, Copy, Debug, Default)]
pub struct Admitted {
    rate: Option<RateHeaders>,
    clamped: Option<u64>,
}

impl Admitted {
    pub fn of(admission: &Admission) -> Self {
        Self {
            rate: admission.rate_headers,
            clamped: admission.clamped,
        }
    }

    /// Whether [`write`](Self::write) sets the header `name` (an upstream `x-ratelimit-*`
    /// header that need not be copied first).
    pub fn writes(&self, name: &HeaderName) -> bool {
        let Some(rate) = &self.rate else {
            return false;
        };
        let name = name.as_str();
        (rate.requests.is_some() && REQUESTS.iter().any(|n| n.as_str() == name))
            || (rate.tokens.is_some() && TOKENS.iter().any(|n| n.as_str() == name))
    }

    /// Writes the headers (over the upstream's own `x-ratelimit-*`, if any).
    pub fn write(self, headers: &mut HeaderMap) {
        if let Some(rate) = &self.rate {
            ratelimit(headers, rate);
        }
        if let Some(n) = self.clamped {
            headers.insert(MAX_TOKENS_CLAMPED, HeaderValue::from(n));
        }
    }
}

const MAX_TOKENS_CLAMPED: HeaderName = HeaderName::from_static("x-modelroute-max-tokens-clamped");
const COST_USD: HeaderName = HeaderName::from_static("x-modelroute-cost-usd");
const COST_ESTIMATED: HeaderName = HeaderName::from_static("x-modelroute-cost-estimated");
const BUDGET_RESET: HeaderName = HeaderName::from_static("x-modelroute-budget-reset");

/// (limit, remaining, reset) header names per kind, OpenAI's spelling.
const REQUESTS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-requests"),
    HeaderName::from_static("x-ratelimit-remaining-requests"),
    HeaderName::from_static("x-ratelimit-reset-requests"),
];
const TOKENS: [HeaderName; 3] = [
    HeaderName::from_static("x-ratelimit-limit-tokens"),
    HeaderName::from_static("x-ratelimit-remaining-tokens"),
    HeaderName::from_static("x-ratelimit-reset-tokens"),
];

/// `x-modelroute-cost-usd` (and `x-modelroute-cost-estimated: true` when the provider
/// reported no usage).
pub fn cost(headers: &mut HeaderMap, cost: Cost) {
    let mut buf = [0u8; USD_LEN];
    if let Ok(v) = HeaderValue::from_bytes(write_usd(cost.nano_usd, &mut buf)) {
        headers.insert(COST_USD, v);
    }
    if cost.estimated {
        headers.insert(COST_ESTIMATED, HeaderValue::from_static("true"));
    }
}

/// The headers of a refusal: the `x-ratelimit-*` values and `retry-after` (whole seconds,
/// rounded up) for a rate limit, the reset time for a spent budget.
pub fn refused(headers: &mut HeaderMap, err: &ProxyError) {
    match err {
        ProxyError::RateLimited(refusal) => {
            ratelimit(headers, &refusal.headers);
            let Some(after) = refusal.retry_after else {
                return;
            };
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        ProxyError::BudgetExceeded(refusal) => {
            if let Ok(v) = HeaderValue::from_str(&refusal.resets_at) {
                headers.insert(BUDGET_RESET, v);
            }
        }
        _ => {}
    }
}

/// Writes OpenAI's six `x-ratelimit-*` headers for `rate` (over any already there).
pub fn ratelimit(headers: &mut HeaderMap, rate: &RateHeaders) {
    // The six values are written into one buffer and each header is a slice of it: one
    // allocation instead of six (this runs on every response of a rate-limited route).
    let mut text = BytesMut::with_capacity(96);
    let mut values: [Option<(HeaderName, usize, usize)>; 6] = Default::default();
    let kinds = [(REQUESTS, &rate.requests), (TOKENS, &rate.tokens)];
    for (k, ([limit, remaining, reset], r)) in kinds.into_iter().enumerate() {
        let Some(r) = r else { continue };
        let mut put = |slot: usize, name: HeaderName, value: &[u8]| {
            let start = text.len();
            text.extend_from_slice(value);
            values[k * 3 + slot] = Some((name, start, text.len()));
        };
        put(0, limit, itoa::Buffer::new().format(r.limit).as_bytes());
        put(
            1,
            remaining,
            itoa::Buffer::new().format(r.remaining).as_bytes(),
        );
        let mut buf = [0u8; DURATION_LEN];
        put(2, reset, write_openai_duration(r.reset, &mut buf));
    }
    let text = text.freeze();
    headers.reserve(6);
    for (name, start, end) in values.into_iter().flatten() {
        if let Ok(v) = HeaderValue::from_maybe_shared(text.slice(start..end)) {
            headers.insert(name, v);
        }
    }
}

/// Room for any [`write_openai_duration`]: at most 16 digits of hours and `59m59s`.
const DURATION_LEN: usize = 48;

/// Room for any [`write_usd`]: 11 integer digits, the point, 9 decimals.
const USD_LEN: usize = 24;

/// A duration as OpenAI writes `x-ratelimit-reset-*`: `17ms`, `1s`, `6m0s`, `1h2m3s`
/// (Go's format, rounded up to the millisecond below a second, to the second above).
pub fn openai_duration(d: Duration) -> String {
    let mut buf = [0u8; DURATION_LEN];
    String::from_utf8_lossy(write_openai_duration(d, &mut buf)).into_owned()
}

/// [`openai_duration`] into `buf`, without allocating (it runs on every rate-limited
/// response).
fn write_openai_duration(d: Duration, buf: &mut [u8; DURATION_LEN]) -> &[u8] {
    let mut out = Out { buf, len: 0 };
    if d < Duration::from_secs(1) {
        let ms = d.subsec_millis() + u32::from(!d.subsec_nanos().is_multiple_of(1_000_000));
        out.num(u64::from(ms));
        out.text(b"ms");
    } else {
        let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            out.num(h);
            out.text(b"h");
        }
        if h > 0 || m > 0 {
            out.num(m);
            out.text(b"m");
        }
        out.num(s);
        out.text(b"s");
    }
    out.done()
}

/// nano-USD as a decimal USD string with nine places trimmed: `0.000123`.
pub fn usd(nano: u64) -> String {
    let mut buf = [0u8; USD_LEN];
    String::from_utf8_lossy(write_usd(nano, &mut buf)).into_owned()
}

/// [`usd`] into `buf`, without allocating.
fn write_usd(nano: u64, buf: &mut [u8; USD_LEN]) -> &[u8] {
    let mut out = Out { buf, len: 0 };
    out.num(nano / 1_000_000_000);
    let mut fraction = nano % 1_000_000_000;
    if fraction > 0 {
        let mut digits = [b'0'; 9];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        let kept = 9 - digits.iter().rev().take_while(|d| **d == b'0').count();
        out.text(b".");
        out.text(&digits[..kept]);
    }
    out.done()
}

/// A fixed buffer written left to right: the values here are formatted on every response
/// of a limited route, and `core::fmt` costs several times as much as this.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> Out<'a> {
    fn num(&mut self, n: u64) {
        self.text(itoa::Buffer::new().format(n).as_bytes());
    }

    /// Callers size `buf` for their longest value; anything past it is dropped.
    fn text(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(self.buf.len());
        let n = end - self.len;
        self.buf[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
    }

    fn done(self) -> &'a [u8] {
        &self.buf[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::rate::Remaining;

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
    fn values_match_decimal_formatting() {
        for nano in [
            0,
            1,
            9,
            10,
            999_999_999,
            1_000_000_000,
            1_000_000_001,
            123_456_789_000,
            u64::MAX,
        ] {
            let mut expected = format!("{}.{:09}", nano / 1_000_000_000, nano % 1_000_000_000);
            while expected.ends_with('0') {
                expected.pop();
            }
            if expected.ends_with('.') {
                expected.pop();
            }
            assert_eq!(usd(nano), expected);
        }
        assert_eq!(openai_duration(Duration::from_millis(59_500)), "1m0s");
        assert_eq!(openai_duration(Duration::from_secs(7_200)), "2h0m0s");
        assert_eq!(openai_duration(Duration::from_nanos(1)), "1ms");
        assert_eq!(openai_duration(Duration::from_millis(999)), "999ms");
    }

    #[test]
    fn only_the_kinds_a_route_limits_replace_the_upstreams_headers() {
        let left = Remaining {
            limit: 10,
            remaining: 9,
            reset: Duration::from_secs(6),
        };
        let requests_only = Admitted {
            rate: Some(RateHeaders {
                requests: Some(left),
                tokens: None,
            }),
            clamped: None,
        };
        let name = HeaderName::from_static;
        assert!(requests_only.writes(&name("x-ratelimit-remaining-requests")));
        assert!(!requests_only.writes(&name("x-ratelimit-remaining-tokens")));
        assert!(!Admitted::default().writes(&name("x-ratelimit-limit-requests")));
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
