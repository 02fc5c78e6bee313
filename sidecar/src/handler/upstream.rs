//! One try against one target: send, wait for the head, and turn a refusal into a
//! classified [`TryError`].

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};

use crate::config::Target;
use crate::dispatch::TryError;
use crate::provider::{Call, Operation, SendError, UpstreamBody, classify};
use crate::stream::body::collect_limited;

/// The most of an upstream error body read: it only feeds the message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Sends `body` to `target` and returns the response once its head arrived with a success
/// status, within `first_byte`.
pub async fn open(
    target: &Target,
    operation: Operation,
    stream: bool,
    body: Bytes,
    client_headers: &HeaderMap,
    first_byte: Duration,
) -> Result<Response<UpstreamBody>, TryError> {
    let call = Call {
        operation,
        model: &target.model,
        stream,
        body,
        client_headers,
    };
    let response = match tokio::time::timeout(first_byte, target.provider.send(call)).await {
        Err(_) => {
            return Err(TryError::timeout(format!(
                "no response within the first-byte timeout of {}",
                humanize(first_byte)
            )));
        }
        Ok(Err(SendError::Connect(e))) => return Err(TryError::connect(target.provider.scrub(&e))),
        Ok(Err(SendError::Request(e))) => return Err(TryError::stream(target.provider.scrub(&e))),
        Ok(Err(SendError::Invalid(e))) => return Err(TryError::unusable(e)),
        Ok(Ok(response)) => response,
    };
    if response.status().is_success() {
        return Ok(response);
    }
    Err(refusal(target, response).await)
}

/// A non-success upstream answer as a [`TryError`].
async fn refusal(target: &Target, response: Response<UpstreamBody>) -> TryError {
    let status = response.status();
    let header_delay = classify::retry_after(response.headers(), SystemTime::now());
    let read = collect_limited(response.into_body(), ERROR_BODY_LIMIT);
    let bytes = match tokio::time::timeout(Duration::from_secs(5), read).await {
        Ok(Ok(bytes)) => bytes,
        _ => Bytes::new(),
    };
    let (mut error, body_delay) = target.provider.wire().error(&bytes);
    let retry_after = header_delay.or(body_delay);
    error.message = target.provider.scrub(&error.message);
    if error.message.is_empty() {
        error.message = status.canonical_reason().unwrap_or("error").to_string();
    }
    if classify::context_exceeded(status, &error) {
        return TryError {
            disposition: classify::Disposition::TooLarge,
            status: Some(status),
            error,
            retry_after: None,
            outcome: "context_length",
        };
    }
    TryError {
        disposition: classify::disposition(status),
        status: Some(status),
        error,
        retry_after,
        outcome: outcome(status),
    }
}

fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        429 => "status_429",
        500..=599 => "status_5xx",
        _ => "status_4xx",
    }
}

pub fn humanize(d: Duration) -> String {
    modelroute_crds::Duration(d).to_string()
}
