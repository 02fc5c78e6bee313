//! What an upstream failure means for the request: retry, move on, or give up.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};
use serde_json::Value;

/// What to do after a failed try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: retry this target (after backoff), then move on.
    Retry,
    /// This target cannot serve it (bad key, unknown model): move on without retrying.
    FailOver,
    /// The request itself is wrong; any target would refuse it. Answer the client now.
    Final,
    /// This target's provider cannot express the request (a field it has no equivalent
    /// for): move on; it says nothing about the target's health.
    Unsupported,
    /// The prompt does not fit this target's context window: only a target with a larger
    /// window may take it; it says nothing about the target's health.
    TooLarge,
}

/// The parts of an upstream error body worth passing on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub message: String,
    pub kind: Option<String>,
    pub code: Option<String>,
}

/// Classifies an upstream status.
///
/// 408, 409, 429 and every 5xx (including 529 "overloaded") are transient; 401, 403 and 404
/// concern this target's key or model, so another target may succeed; any other 4xx is the
/// request's own fault and would fail everywhere.
pub fn disposition(status: StatusCode) -> Disposition {
    match status.as_u16() {
        408 | 409 | 429 | 500..=599 => Disposition::Retry,
        401 | 403 | 404 => Disposition::FailOver,
        _ => Disposition::Final,
    }
}

/// Whether a refusal says the prompt does not fit the model's context window, in the words
/// each provider uses: OpenAI (and DeepSeek, vLLM) `code: context_length_exceeded` / "This
/// model's maximum context length is 8192 tokens", Anthropic "prompt is too long: 210000
/// tokens > 200000 maximum", Gemini "The input token count (N) exceeds the maximum number of
/// tokens allowed (M)", Mistral "... too large for model with 32768 maximum context length".
pub fn context_exceeded(status: StatusCode, error: &ErrorBody) -> bool {
    if !matches!(status.as_u16(), 400 | 413) {
        return false;
    }
    if error.code.as_deref() == Some("context_length_exceeded") {
        return true;
    }
    let message = error.message.to_ascii_lowercase();
    [
        "maximum context length",
        "context length exceeded",
        "context window",
        "prompt is too long",
        "exceeds the maximum number of tokens",
    ]
    .iter()
    .any(|phrase| message.contains(phrase))
}

/// How long the upstream asks us to wait: `retry-after-ms`, then `retry-after` in seconds
/// or as an HTTP date.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = header_str(headers, "retry-after-ms").and_then(|v| v.parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let value = header_str(headers, "retry-after")?;
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads an error body in the shapes servers use: OpenAI's `{"error":{...}}`,
/// `{"error":"text"}`, `{"message":..}`, FastAPI's `{"detail":..}`, or plain text.
pub fn error_body(body: &[u8]) -> ErrorBody {
    let text_of = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(err) = v.get("error") {
            if let Some(obj) = err.as_object() {
                return ErrorBody {
                    message: obj.get("message").and_then(text_of).unwrap_or_default(),
                    kind: obj.get("type").and_then(text_of),
                    code: obj.get("code").and_then(text_of),
                };
            }
            if let Some(message) = text_of(err) {
                return ErrorBody {
                    message,
                    ..Default::default()
                };
            }
        }
        for key in ["message", "detail"] {
            if let Some(message) = v.get(key).and_then(text_of) {
                return ErrorBody {
                    message,
                    ..Default::default()
                };
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    ErrorBody {
        message: truncate(text.trim(), 300).to_string(),
        ..Default::default()
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn context_length_refusals_in_each_providers_words() {
        let bad = StatusCode::BAD_REQUEST;
        // OpenAI's documented error body for an oversized prompt.
        let openai = error_body(
            br#"{"error":{"message":"This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens. Please reduce the length of the messages.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        );
        assert!(context_exceeded(bad, &openai));
        let anthropic = ErrorBody {
            message: "prompt is too long: 210000 tokens > 200000 maximum".into(),
            kind: Some("invalid_request_error".into()),
            code: None,
        };
        assert!(context_exceeded(bad, &anthropic));
        let gemini = ErrorBody {
            message: "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).".into(),
            kind: Some("INVALID_ARGUMENT".into()),
            code: None,
        };
        assert!(context_exceeded(bad, &gemini));
        let other = ErrorBody {
            message: "temperature must be between 0 and 2".into(),
            ..Default::default()
        };
        assert!(!context_exceeded(bad, &other));
        assert!(!context_exceeded(StatusCode::TOO_MANY_REQUESTS, &openai));
    }

    #[test]
    fn statuses() {
        use Disposition::*;
        for (s, d) in [
            (429, Retry),
            (500, Retry),
            (503, Retry),
            (529, Retry),
            (408, Retry),
        ] {
            assert_eq!(disposition(StatusCode::from_u16(s).unwrap()), d, "{s}");
        }
        for (s, d) in [(401, FailOver), (403, FailOver), (404, FailOver)] {
            assert_eq!(disposition(StatusCode::from_u16(s).unwrap()), d, "{s}");
        }
        for s in [400, 413, 422] {
            assert_eq!(disposition(StatusCode::from_u16(s).unwrap()), Final, "{s}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, now), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(2)));
        h.insert("retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_millis(150)));
        let mut h = HeaderMap::new();
        let date = httpdate::fmt_http_date(now + Duration::from_secs(7));
        h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn error_body_shapes() {
        let openai = br#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
        assert_eq!(
            error_body(openai),
            ErrorBody {
                message: "Rate limit reached".into(),
                kind: Some("requests".into()),
                code: Some("rate_limit_exceeded".into())
            }
        );
        assert_eq!(error_body(br#"{"error":"boom"}"#).message, "boom");
        assert_eq!(
            error_body(br#"{"detail":"Not Found"}"#).message,
            "Not Found"
        );
        assert_eq!(
            error_body(br#"{"error":{"message":"x","code":400}}"#)
                .code
                .as_deref(),
            Some("400")
        );
        assert_eq!(
            error_body(b"  upstream connect error  ").message,
            "upstream connect error"
        );
        let long = "x".repeat(1000);
        assert_eq!(error_body(long.as_bytes()).message.len(), 300);
    }
}
