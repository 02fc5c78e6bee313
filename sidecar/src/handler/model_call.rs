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

use super::cached::{self, Lookup};
use super::exchange::Exchange;
use super::report::{self, Call};
use super::{decision_headers, json_response, read_body, upstream};
use crate::App;
use crate::api::ModelRequest;
use crate::config::{Route, Target};
use crate::cost::{Cost, TokenUsage};
use crate::dispatch::{self, Success, TryError};
use crate::error::ProxyError;
use crate::limits::admission::RequestFacts;
use crate::limits::{self, Admission, admission};
use crate::provider::Operation;
use crate::route::ask::Ask;
use crate::stream::body::{ProxyBody, collect_limited, full};
use crate::stream::relay;
use crate::telemetry::spans::CallSpan;
use tracing::Instrument;

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
    let trace_id = report::trace_id(app, req.headers());
    let span = CallSpan::start(exchange.operation(), req.headers());
    let prepared = match prepare(app, req, exchange, model_in).await {
        Ok((route, request, headers)) => {
            let lookup = cached::lookup(app, &route, &request, &headers, exchange);
            if let Lookup::Hit(entry) = &lookup {
                return hit(
                    app,
                    &route,
                    &request,
                    entry,
                    exchange,
                    (started, trace_id, span),
                );
            }
            limit(app, route, request, headers, exchange)
                .await
                .map(|(route, request, headers, admission)| {
                    (route, request, headers, admission, lookup)
                })
                .map_err(|(route, e)| (Some(route), e))
        }
        Err(e) => Err((None, e)),
    };
    let (route, request, headers, admission, lookup) = match prepared {
        Ok(p) => p,
        Err((route, e)) => {
            let alias = route.map_or(unknown, |r| r.alias.clone());
            app.metrics.error(&alias, e.metric_kind());
            app.metrics.request(
                &alias,
                None,
                e.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            let operation = exchange.operation();
            let mut call = Call::failed(&alias, &e, operation, false, started, trace_id);
            // Metrics keep unknown names out of their labels; the audit log says what
            // was asked for.
            if let ProxyError::UnknownModel { model, .. } = &e {
                call.asked = Some(model);
            }
            report::finished(app, call);
            span.end(e.status().as_u16(), Some(e.metric_kind()));
            let mut resp = json_response(e.status(), dialect.error_body(&e));
            limits::headers::refused(resp.headers_mut(), &e);
            return resp;
        }
    };
    span.request(exchange.operation(), &request, &route);
    if let Some(budget) = admission.as_ref().and_then(Admission::downgraded_by) {
        span.downgraded(budget);
    }
    let plan = route.plan(&Ask::new(&headers, &request));
    if let Some(rule) = &plan.rule {
        app.metrics.routing.rule(&route.alias, rule);
    }
    span.routed(&plan);
    let mut decided = HeaderMap::new();
    cached::mark(&mut decided, &lookup);
    if let Some(rule) = plan
        .rule
        .as_deref()
        .and_then(|r| HeaderValue::from_str(r).ok())
    {
        decided.insert(RULE_HEADER, rule);
    }
    let fill = match lookup {
        Lookup::Miss(fill) => Some(fill),
        Lookup::Off | Lookup::Hit(_) => None,
    };
    if request.stream {
        return relay::serve(
            app.clone(),
            (route, plan.targets),
            request,
            headers,
            exchange,
            (started, trace_id, span),
            admission,
            (decided, fill),
        )
        .await;
    }
    let answered = unary(app, &route, plan.targets, &request, &headers, exchange)
        .instrument(span.span().clone())
        .await;
    match answered {
        Ok(answer) => {
            let total = started.elapsed();
            answer.target.latency.total(total, Instant::now());
            let mut admission = admission;
            if let Some(loser) = &answer.hedge_loser {
                charge_hedge_loser(app, &route, admission.as_mut(), loser, &request);
            }
            if let Some(fill) = fill
                && let Some(kept) = cached::unary(answer.value.0.status, &answer.value.1)
            {
                cached::store(app, &route, fill, &answer.target.label, kept);
            }
            let body = &answer.value.1;
            let usage = dialect.body_token_usage(body);
            if let Some(u) = usage {
                app.metrics
                    .tokens(&route.alias, &answer.target.label, u.into());
            }
            let status = answer.value.0.status;
            let secs = started.elapsed().as_secs_f64();
            app.metrics.request(
                &route.alias,
                Some(&answer.target.label),
                status.as_u16(),
                secs,
            );
            // Without usage from the provider, the whole answer bounds what was generated.
            let generated = || crate::cost::estimate_tokens(&String::from_utf8_lossy(body));
            let admitted = admission.as_ref().map(limits::headers::Admitted::of);
            let served = (&*answer.target, &request);
            let cost = settle(app, &route, admission, served, usage, generated);
            span.served(&answer.target, answer.attempts);
            span.outcome(usage, cost, None);
            span.finish_reasons(body);
            span.end(status.as_u16(), None);
            report::finished(
                app,
                Call {
                    route: &route.alias,
                    asked: None,
                    operation: exchange.operation(),
                    target: Some(&answer.target),
                    status: status.as_u16(),
                    error: None,
                    stream: false,
                    usage,
                    cost,
                    started,
                    ttft: None,
                    trace_id,
                    bodies: Some((request.body(), body)),
                    cache_hit: false,
                },
            );
            let mut resp = respond(answer, admitted.as_ref());
            resp.headers_mut().extend(decided);
            if let Some(a) = admitted {
                a.write(resp.headers_mut());
            }
            if let Some(cost) = cost {
                limits::headers::cost(resp.headers_mut(), cost);
            }
            resp
        }
        Err(e) => {
            app.metrics.error(&route.alias, e.metric_kind());
            app.metrics.request(
                &route.alias,
                None,
                e.status().as_u16(),
                started.elapsed().as_secs_f64(),
            );
            let operation = exchange.operation();
            let call = Call::failed(&route.alias, &e, operation, false, started, trace_id);
            report::finished(app, call);
            span.end(e.status().as_u16(), Some(e.metric_kind()));
            json_response(e.status(), dialect.error_body(&e))
        }
    }
}

/// The header naming the match rule that chose the targets.
pub const RULE_HEADER: &str = "x-modelroute-rule";

/// Answers from the response cache: no upstream call, no budget or rate limit spent.
fn hit(
    app: &App,
    route: &Route,
    request: &ModelRequest,
    entry: &crate::cache::Entry,
    exchange: Exchange,
    (started, trace_id, span): (Instant, Option<String>, CallSpan),
) -> Response<ProxyBody> {
    let resp = cached::respond(entry);
    let status = resp.status().as_u16();
    app.metrics.request(
        &route.alias,
        Some(&entry.target),
        status,
        started.elapsed().as_secs_f64(),
    );
    span.request(exchange.operation(), request, route);
    span.cache_hit();
    span.end(status, None);
    let call = Call {
        route: &route.alias,
        asked: None,
        operation: exchange.operation(),
        target: None,
        status,
        error: None,
        stream: request.stream,
        usage: None,
        cost: None,
        started,
        ttft: None,
        trace_id,
        bodies: None,
        cache_hit: true,
    };
    report::finished(app, call);
    resp
}

/// Books what a cancelled hedged try cost: its prompt was sent to `loser`, so its input
/// tokens (estimated) are paid at `loser`'s price, in metrics and in the request's budgets.
pub fn charge_hedge_loser(
    app: &App,
    route: &Route,
    admission: Option<&mut Admission>,
    loser: &Target,
    request: &ModelRequest,
) {
    let Some(price) = loser.price.as_deref() else {
        return;
    };
    let usage = TokenUsage::estimated(crate::cost::estimate_request_tokens(request.body()), 0);
    let cost = crate::cost::cost(&usage, price);
    app.metrics.cost(&route.alias, &loser.label, cost);
    if let Some(admission) = admission {
        admission.also_spent(cost.nano_usd);
    }
}

/// Applies the route's rate limits and budgets (nothing to do for most routes): the
/// request may come back with a lower `max_tokens`, and the route with only its downgrade
/// target.
async fn limit(
    app: &Arc<App>,
    route: Arc<Route>,
    request: ModelRequest,
    headers: HeaderMap,
    exchange: Exchange,
) -> Result<(Arc<Route>, ModelRequest, HeaderMap, Option<Admission>), (Arc<Route>, ProxyError)> {
    if route.limits.is_empty() {
        return Ok((route, request, headers, None));
    }
    let user = request.user();
    let facts = RequestFacts {
        headers: &headers,
        user: user.as_deref(),
        input_tokens: crate::cost::estimate_request_tokens(request.body()),
        max_tokens: request.max_tokens(),
    };
    let limits = &route.limits;
    let admitted = admission::admit(
        &app.limits,
        limits,
        route.ceiling,
        &route.alias,
        facts,
        &app.metrics,
    )
    .await;
    let admission = match admitted {
        Ok(a) => a,
        Err(e) => return Err((route, e)),
    };
    let request = match admission.clamped {
        Some(n) if exchange.operation() == Operation::Chat => {
            let gemini = exchange == Exchange::Native(crate::provider::Wire::Gemini);
            match request.with_max_tokens(n, gemini) {
                Ok(r) => r,
                Err(e) => return Err((route, e)),
            }
        }
        _ => request,
    };
    let route = match &admission.downgrade {
        Some(target) => Arc::new(route.downgraded(target.clone())),
        None => route,
    };
    Ok((route, request, headers, Some(admission)))
}

/// Settles a served request: its cost at `target`'s price, from the provider's `usage` (or,
/// without it, the estimated prompt and `generated`), booked against its budgets. `None`
/// when the target has no price.
pub fn settle(
    app: &App,
    route: &Route,
    admission: Option<Admission>,
    (target, request): (&Target, &ModelRequest),
    usage: Option<TokenUsage>,
    generated: impl FnOnce() -> u64,
) -> Option<Cost> {
    if let Some(admission) = admission {
        let estimated = if usage.is_none() { generated() } else { 0 };
        return admission.settle(Some(target), usage, estimated, &route.alias, &app.metrics);
    }
    let price = target.price.as_deref()?;
    let usage = match usage {
        Some(u) => u,
        None => TokenUsage::estimated(
            crate::cost::estimate_request_tokens(request.body()),
            generated(),
        ),
    };
    let cost = crate::cost::cost(&usage, price);
    app.metrics.cost(&route.alias, &target.label, cost);
    Some(cost)
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
    plan: Vec<Arc<Target>>,
    request: &ModelRequest,
    headers: &HeaderMap,
    exchange: Exchange,
) -> Result<Success<Answer>, ProxyError> {
    let first_byte = route.timeouts.first_byte;
    let tokens = std::sync::OnceLock::new();
    let attempts = dispatch::run(
        route,
        plan,
        exchange.operation(),
        &app.metrics,
        |t| exchange.eligible(t),
        || *tokens.get_or_init(|| request.rate_limit_tokens()),
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

/// The client's response from an upstream answer. Upstream `x-ratelimit-*` headers that
/// the route's own rate limit (`admitted`) replaces are not copied.
fn respond(
    answer: Success<Answer>,
    admitted: Option<&limits::headers::Admitted>,
) -> Response<ProxyBody> {
    let Success {
        value: (parts, bytes),
        target,
        attempts,
        ..
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
        if name.as_str().starts_with("x-ratelimit-") && !admitted.is_some_and(|a| a.writes(name)) {
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
