//! Calls that name a model: OpenAI chat and embeddings, and native pass-through. Parse,
//! route, dispatch, answer.
//!
//! Non-streaming answers are read whole (they are one JSON document, and reading them
//! lets a broken body still fail over); streams go to the relay.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use tokio::time::Instant;

use super::exchange::Exchange;
use super::{decision_headers, json_response, read_body, upstream};
use crate::App;
use crate::api::ModelRequest;
use crate::config::{Route, Target};
use crate::dispatch::{self, Success, TryError};
use crate::error::ProxyError;
use crate::provider::Operation;
use crate::stream::body::{ProxyBody, collect_limited, full};
use crate::stream::relay;

/// The largest non-streamed upstream answer accepted.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// Upstream response headers worth passing on to the client.
const PASSED_ON: &[&str] = &[
    "x-request-id",
    "request-id",
    "openai-processing-ms",
    "openai-version",
];

/// Where the model comes from: the body's `model` field, or the URL (Gemini).
#[derive(Clone, Copy, Debug)]
pub enum ModelIn<'a> {
    Body,
    Path { model: &'a str, stream: bool },
}

pub async fn handle(
    app: &Arc<App>,
    req: Request<Incoming>,
    exchange: Exchange,
    model_in: ModelIn<'_>,
    started: Instant,
) -> Response<ProxyBody> {
    let dialect = exchange.dialect();
    let unknown: Arc<str> = Arc::from("");
    let (route, request, headers) = match prepare(app, req, exchange, model_in).await {
        Ok(p) => p,
        Err(e) => {
            app.metrics.error(&unknown, e.metric_kind());
            app.metrics.request(
                &unknown,
                None,
                e.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            return json_response(e.status(), dialect.error_body(&e));
        }
    };
    if request.stream {
        return relay::serve(app.clone(), route, request, headers, exchange, started).await;
    }
    match unary(app, &route, &request, &headers, exchange).await {
        Ok(answer) => {
            if let Some(usage) = dialect.usage(&answer.value.1) {
                app.metrics
                    .tokens(&route.alias, &answer.target.label, usage);
            }
            let status = answer.value.0.status;
            let secs = started.elapsed().as_secs_f64();
            app.metrics.request(
                &route.alias,
                Some(&answer.target.label),
                status.as_u16(),
                secs,
            );
            respond(answer)
        }
        Err(e) => {
            app.metrics.error(&route.alias, e.metric_kind());
            app.metrics.request(
                &route.alias,
                None,
                e.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            json_response(e.status(), dialect.error_body(&e))
        }
    }
}

async fn prepare(
    app: &App,
    req: Request<Incoming>,
    exchange: Exchange,
    model_in: ModelIn<'_>,
) -> Result<(Arc<Route>, ModelRequest, HeaderMap), ProxyError> {
    let table = app.table().ok_or(ProxyError::NotReady)?;
    let (parts, body) = read_body(req, app.max_body_bytes).await?;
    let request = match model_in {
        ModelIn::Body => ModelRequest::parse(body)?,
        ModelIn::Path { model, stream } => ModelRequest::native(body, model, stream)?,
    };
    match exchange {
        Exchange::Chat => request.require_messages()?,
        Exchange::Embeddings if request.stream => {
            return Err(ProxyError::BadRequest(
                "embeddings cannot be streamed".into(),
            ));
        }
        Exchange::Embeddings => {
            if !request.has_field("input") {
                return Err(ProxyError::BadRequest("you must provide `input`".into()));
            }
        }
        Exchange::Native(_) => {}
    }
    let route = table.route(&request.model)?.clone();
    Ok((route, request, parts.headers))
}

type Answer = (http::response::Parts, Bytes);

async fn unary(
    app: &App,
    route: &Route,
    request: &ModelRequest,
    headers: &HeaderMap,
    exchange: Exchange,
) -> Result<Success<Answer>, ProxyError> {
    let first_byte = route.timeouts.first_byte;
    let attempts = dispatch::run(
        route,
        &app.metrics,
        |t| exchange.eligible(t),
        |target| try_unary(target, request, headers, exchange, first_byte),
    );
    match tokio::time::timeout(route.timeouts.total, attempts).await {
        Ok(result) => result,
        Err(_) => Err(ProxyError::Timeout {
            message: format!(
                "model `{}`: no answer within the total timeout of {}",
                route.alias,
                upstream::humanize(route.timeouts.total)
            ),
        }),
    }
}

/// One try: the whole answer of one target.
async fn try_unary(
    target: Arc<Target>,
    request: &ModelRequest,
    headers: &HeaderMap,
    exchange: Exchange,
    first_byte: std::time::Duration,
) -> Result<Answer, TryError> {
    let body = exchange
        .body(request, &target)
        .map_err(|e| TryError::unusable(format!("{}: {e}", target.label)))?;
    let operation: Operation = exchange.operation();
    let response = upstream::open(&target, operation, false, body, headers, first_byte).await?;
    let (parts, body) = response.into_parts();
    let bytes = collect_limited(body, MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| TryError::stream(format!("reading the upstream answer failed: {e}")))?;
    let answer = exchange
        .answer(&target, bytes, &request.model)
        .map_err(|e| {
            TryError::stream(format!(
                "{} sent an answer that cannot be read: {e}",
                target.label
            ))
        })?;
    Ok((parts, answer))
}

fn respond(answer: Success<Answer>) -> Response<ProxyBody> {
    let Success {
        value: (parts, bytes),
        target,
        attempts,
    } = answer;
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = parts.status;
    let headers = resp.headers_mut();
    for name in PASSED_ON {
        if let Some(v) = parts.headers.get(*name) {
            headers.insert(*name, v.clone());
        }
    }
    for (name, value) in &parts.headers {
        if name.as_str().starts_with("x-ratelimit-") {
            headers.insert(name, value.clone());
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    decision_headers(headers, &target.label, attempts);
    resp
}
