//! Errors a client can see, each with its status and OpenAI-shaped body.

use bytes::Bytes;
use http::StatusCode;
use serde::Serialize;

/// Why a request did not get an upstream answer.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the model `{model}` does not exist or you do not have access to it (known: {known})")]
    UnknownModel { model: String, known: String },
    #[error("unknown endpoint {method} {path}")]
    NotFound { method: String, path: String },
    #[error("no configuration is loaded yet")]
    NotReady,
    #[error("{message}")]
    Unavailable { message: String },
    #[error("{message}")]
    Timeout { message: String },
    #[error("{message}")]
    BadGateway { message: String },
    /// A budget of the route is spent for this window (and its `onExhausted` is reject).
    #[error(
        "budget `{}` of ModelRoute {} is spent for window {}{}; it resets at {}",
        .0.budget, .0.model_route, .0.window, .0.scope, .0.resets_at
    )]
    BudgetExceeded(Box<BudgetRefusal>),
    /// A rate limit of the route refuses the request now.
    #[error(
        "rate limit `{}` of ModelRoute {}: {} per minute exceeded{}; {}",
        .0.limit, .0.model_route, .0.what, .0.scope, .0.retry
    )]
    RateLimited(Box<RateRefusal>),
    /// The last upstream's own error status, with its type and code where it gave them.
    #[error("{message}")]
    Upstream {
        status: StatusCode,
        message: String,
        kind: Option<String>,
        code: Option<String>,
    },
}

/// Why a spent budget refused a request.
#[derive(Debug)]
pub struct BudgetRefusal {
    pub budget: String,
    /// `namespace/name`.
    pub model_route: String,
    /// The window id, e.g. `2026-12`.
    pub window: String,
    /// ` (x-tenant "acme")`, or empty for a route-wide budget.
    pub scope: String,
    /// RFC 3339, UTC; `never` for a total budget.
    pub resets_at: String,
}

/// Why a rate limit refused a request.
#[derive(Debug)]
pub struct RateRefusal {
    pub limit: String,
    pub model_route: String,
    /// `requests` or `tokens`.
    pub what: &'static str,
    pub scope: String,
    /// For `retry-after`.
    pub retry_after: Option<std::time::Duration>,
    /// `try again in 1.5s`, or why retrying will not help.
    pub retry: String,
    /// The `x-ratelimit-*` values at the refusal (OpenAI sends them on its 429s too).
    pub headers: crate::limits::rate::RateHeaders,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    message: String,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

// === impl ProxyError ===

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnknownModel { .. } | Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::NotReady | Self::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::BadGateway { .. } => StatusCode::BAD_GATEWAY,
            Self::BudgetExceeded(_) | Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Upstream { status, .. } => *status,
        }
    }

    /// OpenAI's `error.type`.
    fn kind(&self) -> &str {
        match self {
            Self::BadRequest(_) | Self::BodyTooLarge { .. } | Self::UnknownModel { .. } => {
                "invalid_request_error"
            }
            Self::NotFound { .. } => "invalid_request_error",
            Self::NotReady | Self::Unavailable { .. } => "service_unavailable",
            Self::Timeout { .. } => "timeout",
            Self::BadGateway { .. } => "upstream_error",
            Self::BudgetExceeded(_) => "budget_exceeded",
            Self::RateLimited(_) => "requests",
            Self::Upstream { kind, .. } => kind.as_deref().unwrap_or("upstream_error"),
        }
    }

    /// OpenAI's `error.code`.
    fn code(&self) -> Option<&str> {
        match self {
            Self::BadRequest(_) => Some("invalid_request"),
            Self::BodyTooLarge { .. } => Some("request_too_large"),
            Self::UnknownModel { .. } => Some("model_not_found"),
            Self::NotFound { .. } => Some("unknown_url"),
            Self::NotReady => Some("not_ready"),
            Self::Unavailable { .. } => Some("no_healthy_target"),
            Self::Timeout { .. } => Some("timeout"),
            Self::BadGateway { .. } => Some("bad_gateway"),
            Self::BudgetExceeded(_) => Some("budget_exceeded"),
            Self::RateLimited(_) => Some("rate_limit_exceeded"),
            Self::Upstream { code, .. } => code.as_deref(),
        }
    }

    /// The JSON body OpenAI clients parse: `{"error":{"message","type","param","code"}}`.
    pub fn body(&self) -> Bytes {
        let body = Body {
            error: Detail {
                message: self.to_string(),
                kind: self.kind(),
                param: None,
                code: self.code(),
            },
        };
        serde_json::to_vec(&body)
            .map(Bytes::from)
            .unwrap_or_default()
    }

    /// The same error as a final SSE event, for streams whose headers are already sent.
    /// The OpenAI SDKs raise an `APIError` when a data event carries an `error` object.
    pub fn sse_event(&self) -> Bytes {
        let body = self.body();
        let mut event = Vec::with_capacity(body.len() + 8);
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(&body);
        event.extend_from_slice(b"\n\n");
        Bytes::from(event)
    }

    /// A bounded label for metrics.
    pub fn metric_kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::UnknownModel { .. } => "unknown_model",
            Self::NotFound { .. } => "not_found",
            Self::NotReady => "not_ready",
            Self::Unavailable { .. } => "unavailable",
            Self::Timeout { .. } => "timeout",
            Self::BadGateway { .. } => "bad_gateway",
            Self::BudgetExceeded(_) => "budget_exceeded",
            Self::RateLimited(_) => "rate_limited",
            Self::Upstream { .. } => "upstream",
        }
    }
}

/// The error with its sources, which is where hyper and tonic put the useful part. A source
/// its wrapper already printed (`tcp connect error: tcp connect error`) is left out.
pub fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_follows_sources_once_each() {
        #[derive(Debug)]
        struct Layer(&'static str, Option<Box<Layer>>);
        impl std::fmt::Display for Layer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Layer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|l| l as _)
            }
        }
        let refused = Layer("connection refused", None);
        let e = Layer(
            "transport error",
            Some(Box::new(Layer(
                "tcp connect error",
                Some(Box::new(Layer(
                    "tcp connect error",
                    Some(Box::new(refused)),
                ))),
            ))),
        );
        assert_eq!(
            describe(&e),
            "transport error: tcp connect error: connection refused"
        );
    }

    #[test]
    fn body_is_openai_shaped() {
        let e = ProxyError::UnknownModel {
            model: "gpt-9".into(),
            known: "gpt-4o".into(),
        };
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert!(v["error"]["message"].as_str().unwrap().contains("gpt-9"));
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn upstream_errors_keep_the_providers_type_and_code() {
        let e = ProxyError::Upstream {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: "slow down".into(),
            kind: Some("requests".into()),
            code: Some("rate_limit_exceeded".into()),
        };
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(e.status(), 429);
        assert_eq!(v["error"]["type"], "requests");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
    }

    #[test]
    fn sse_event_is_one_data_frame() {
        let e = ProxyError::Timeout {
            message: "idle".into(),
        };
        let ev = e.sse_event();
        assert!(ev.starts_with(b"data: {\"error\""));
        assert!(ev.ends_with(b"\n\n"));
        assert_eq!(ev.iter().filter(|b| **b == b'\n').count(), 2);
    }
}
