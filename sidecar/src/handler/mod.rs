//! One module per endpoint; this one routes paths to them and owns the shared steps
//! (reading a size-limited body, turning errors into responses).

pub mod cached;
pub mod exchange;
mod model_call;
pub mod report;
pub use model_call::{charge_hedge_loser, settle};
mod models;
pub mod upstream;

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::App;
use crate::error::ProxyError;
use crate::provider::Wire;
use crate::stream::body::{CollectError, ProxyBody, collect_limited, full};
use exchange::Exchange;
use model_call::ModelIn;

/// The proxy's service function.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let started = Instant::now();
    let raw_path = req.uri().path().to_string();
    // Gemini's own API: `/v1beta/models/{model}:generateContent` (or :streamGenerateContent).
    if req.method() == Method::POST
        && let Some((model, method)) = raw_path
            .strip_prefix("/v1beta/models/")
            .and_then(|r| r.split_once(':'))
    {
        let query = req.uri().query().unwrap_or_default();
        let stream = match method {
            "generateContent" => false,
            "streamGenerateContent" if query.split('&').any(|kv| kv == "alt=sse") => true,
            "streamGenerateContent" => {
                let e = ProxyError::BadRequest("streamGenerateContent needs ?alt=sse".into());
                return Ok(json_response(
                    e.status(),
                    crate::api::dialect::Dialect::Gemini.error_body(&e),
                ));
            }
            other => {
                let e = ProxyError::NotFound {
                    method: "POST".into(),
                    path: format!("models/{model}:{other}"),
                };
                return Ok(json_response(
                    e.status(),
                    crate::api::dialect::Dialect::Gemini.error_body(&e),
                ));
            }
        };
        let model_in = ModelIn::Path { model, stream };
        let exchange = Exchange::Native(Wire::Gemini);
        return Ok(model_call::handle(&app, req, exchange, model_in, started).await);
    }
    let path = raw_path.strip_prefix("/v1").unwrap_or(&raw_path);
    let result = match (req.method(), path) {
        (&Method::POST, "/chat/completions") => {
            Ok(model_call::handle(&app, req, Exchange::Chat, ModelIn::Body, started).await)
        }
        (&Method::POST, "/embeddings") => {
            Ok(model_call::handle(&app, req, Exchange::Embeddings, ModelIn::Body, started).await)
        }
        // Anthropic's own API, for the Anthropic SDKs (ANTHROPIC_BASE_URL).
        (&Method::POST, "/messages") => {
            let exchange = Exchange::Native(Wire::Anthropic);
            Ok(model_call::handle(&app, req, exchange, ModelIn::Body, started).await)
        }
        (&Method::GET, "/models") => models::list(&app),
        (&Method::GET, p) if p.starts_with("/models/") => models::one(&app, &p["/models/".len()..]),
        _ => Err(ProxyError::NotFound {
            method: req.method().to_string(),
            path: req.uri().path().to_string(),
        }),
    };
    Ok(result.unwrap_or_else(|e| error_response(&e)))
}

/// An error as OpenAI would send it.
pub fn error_response(err: &ProxyError) -> Response<ProxyBody> {
    json_response(err.status(), err.body())
}

pub fn json_response(status: http::StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Reads the request body, refusing more than `limit` bytes (by `Content-Length` up front,
/// or while reading when it is absent or wrong).
async fn read_body(
    req: Request<Incoming>,
    limit: usize,
) -> Result<(http::request::Parts, Bytes), ProxyError> {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    match collect_limited(body, limit).await {
        Ok(bytes) => Ok((parts, bytes)),
        Err(CollectError::TooLarge(_)) => Err(ProxyError::BodyTooLarge { limit }),
        Err(e) => Err(ProxyError::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// `x-modelroute-target` and `x-modelroute-attempts`: which target answered, after how
/// many tries.
pub fn decision_headers(headers: &mut http::HeaderMap, target: &str, attempts: u32) {
    if let Ok(v) = HeaderValue::from_str(target) {
        headers.insert("x-modelroute-target", v);
    }
    headers.insert("x-modelroute-attempts", HeaderValue::from(attempts));
}
