//! Streamed chat completions: pick a target, then relay its events to the client as
//! they arrive.
//!
//! One task per stream owns the exchange. Until the first upstream data event it may
//! still fail over, so a target that refuses, hangs or breaks before saying anything is
//! invisible to the client. If that takes longer than the keep-alive interval, the
//! response head is sent with SSE comments to keep the connection warm; failover stays
//! possible because no data has gone out yet, and a final failure then arrives as an
//! error event instead of an error status. Once data has gone out there is no retry: a
//! broken upstream ends the stream with an error event the OpenAI SDKs raise.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep, timeout_at};

use super::body::ProxyBody;
use super::sse::{Decoder, Event};
use crate::App;
use crate::api::dialect::Dialect;
use crate::api::{ModelRequest, Usage};
use crate::cache::StreamRecorder;
use crate::config::{Route, Target};
use crate::cost::{Cost, TokenUsage};
use crate::dispatch::{self, Success, TryError};
use crate::error::ProxyError;
use crate::handler::cached::{self, Fill};
use crate::handler::exchange::Exchange;
use crate::handler::report::{self, Call};
use crate::handler::{decision_headers, json_response, upstream};
use crate::limits::admission::DEFAULT_OUTPUT_RESERVE;
use crate::limits::{self, Admission};
use crate::provider::classify::{Disposition, error_body};
use crate::provider::{Operation, StreamTranslator};
use crate::telemetry::audit::MAX_BODY_BYTES;
use crate::telemetry::spans::CallSpan;
use tracing::Instrument;

const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// The longest stream the response cache keeps.
const MAX_CACHED_STREAM_BYTES: usize = 4 * 1024 * 1024;

/// A stream whose first event has arrived (and been translated to OpenAI's format).
struct Started {
    decoder: Decoder,
    translator: StreamTranslator,
    /// OpenAI events not yet sent, the first among them.
    pending: VecDeque<Bytes>,
}

/// The client's side of the exchange.
enum Client {
    /// Nothing sent yet: the handler waits for the response head (which gets the extra
    /// headers: rate limits, a clamped `max_tokens`).
    Waiting(
        oneshot::Sender<Response<ProxyBody>>,
        Dialect,
        limits::headers::Admitted,
        /// Routing decisions for the client: the rule, the cache's verdict.
        HeaderMap,
    ),
    /// Head sent; events go through the body channel.
    Streaming(mpsc::Sender<Bytes>, Dialect),
    /// The client went away.
    Gone,
}

/// What to do with one upstream event.
enum Step {
    Forward(Bytes),
    Skip,
    /// `[DONE]`: forward and finish.
    Done(Bytes),
    /// An error event from upstream: forward and finish as failed.
    UpstreamError(Bytes),
    /// The budget pays for no more: forward, then end the stream with a length finish.
    BudgetStop(Bytes),
}

/// What the relay learns from the events it passes.
struct Tally {
    usage: Option<Usage>,
    /// The provider's usage in full (cache reads and writes), for the cost.
    token_usage: Option<TokenUsage>,
    /// Why the answer ended, once an event said so.
    finish: Option<&'static str>,
    client_wants_usage: bool,
    dialect: Dialect,
    /// Tokens generated so far, estimated from the text: counted when a budget holds the
    /// stream to its reservation, or when the provider will report no usage.
    generated: Option<u64>,
    /// The stream's holds on its budgets.
    budget: Option<Admission>,
    alias: Arc<str>,
}

/// How a relayed stream ended.
enum End {
    Complete,
    /// Ended early: its budget could pay for no more output.
    BudgetStop,
    Broken(&'static str),
    ClientGone,
}

/// Starts the stream task and waits for its response head.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
pub async fn serve(
    app: Arc<App>,
    (route, plan): (Arc<Route>, Vec<Arc<Target>>),
    request: ModelRequest,
    headers: HeaderMap,
    exchange: Exchange,
    (started, trace_id, span): (Instant, Option<String>, CallSpan),
    admission: Option<Admission>,
    (decided, fill): (HeaderMap, Option<Fill>),
) -> Response<ProxyBody> {
    let (respond, head) = oneshot::channel();
    let extra = admission
        .as_ref()
        .map(limits::headers::Admitted::of)
        .unwrap_or_default();
    // The tries are children of the request's span.
    let parent = span.span().clone();
    let task = run(
        app.clone(),
        (route, plan),
        request,
        (headers, extra, decided),
        exchange,
        (started, trace_id, span),
        (respond, fill),
        admission,
    );
    app.tasks.spawn(task.instrument(parent));
    head.await.unwrap_or_else(|_| {
        let e = ProxyError::BadGateway {
            message: "the stream ended before it started".into(),
        };
        json_response(e.status(), exchange.dialect().error_body(&e))
    })
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn run(
    app: Arc<App>,
    (route, plan): (Arc<Route>, Vec<Arc<Target>>),
    request: ModelRequest,
    (headers, extra, decided): (HeaderMap, limits::headers::Admitted, HeaderMap),
    exchange: Exchange,
    (started, trace_id, span): (Instant, Option<String>, CallSpan),
    (respond, fill): (oneshot::Sender<Response<ProxyBody>>, Option<Fill>),
    admission: Option<Admission>,
) {
    let deadline = started + route.timeouts.total;
    let mut seen = Seen {
        trace_id,
        span,
        ttft: None,
        body: app
            .audit
            .as_ref()
            .filter(|a| a.wants_bodies())
            .map(|_| Vec::new()),
        record: fill.map(|f| (StreamRecorder::new(MAX_CACHED_STREAM_BYTES), f)),
    };
    let dialect = exchange.dialect();
    let mut client = Client::Waiting(respond, dialect, extra, decided);
    let first_byte = route.timeouts.first_byte;
    let (request, headers) = (&request, &headers);
    let tokens = std::sync::OnceLock::new();
    let attempts = dispatch::run(
        &route,
        plan,
        Operation::Chat,
        &app.metrics,
        |t| exchange.eligible(t),
        || *tokens.get_or_init(|| request.rate_limit_tokens()),
        |target| try_stream(target, request, headers, exchange, first_byte),
    );
    let attempts = timeout_at(deadline, attempts);
    tokio::pin!(attempts);
    let outcome = loop {
        enum Wait<T> {
            Done(T),
            KeepAlive,
            Gone,
        }
        let wait = tokio::select! {
            r = &mut attempts => Wait::Done(r),
            () = sleep(route.timeouts.keep_alive) => Wait::KeepAlive,
            () = client.closed() => Wait::Gone,
        };
        match wait {
            Wait::Done(r) => break r,
            Wait::KeepAlive => {
                client.commit(None);
                if !client.send(Bytes::from_static(KEEP_ALIVE)).await {
                    let gone = Finished::nothing(End::ClientGone);
                    return finish(&app, &route, request, started, gone, seen);
                }
            }
            Wait::Gone => {
                let gone = Finished::nothing(End::ClientGone);
                return finish(&app, &route, request, started, gone, seen);
            }
        }
    };
    let success = match outcome {
        Ok(Ok(success)) => success,
        Ok(Err(e)) => return fail(&app, &route, &mut client, e, started, seen).await,
        Err(_) => {
            let e = ProxyError::Timeout {
                message: format!(
                    "model `{}`: no stream started within the total timeout of {}",
                    route.alias,
                    upstream::humanize(route.timeouts.total)
                ),
            };
            return fail(&app, &route, &mut client, e, started, seen).await;
        }
    };
    let Success {
        value: stream,
        target,
        attempts,
        hedge_loser,
    } = success;
    client.commit(Some((&target, attempts)));
    seen.span.served(&target, attempts);
    app.metrics.streams_active().inc();
    let count_generated = admission.is_some() || !target.provider.stream_usage();
    let mut tally = Tally {
        usage: None,
        token_usage: None,
        finish: None,
        client_wants_usage: request.include_usage,
        dialect,
        generated: count_generated.then_some(0),
        budget: admission,
        alias: route.alias.clone(),
    };
    let end = relay(
        &app,
        &route,
        &target,
        &mut client,
        stream,
        &mut tally,
        (started, &mut seen),
        deadline,
    )
    .await;
    app.metrics.streams_active().dec();
    match end {
        End::Broken(_) => target.breaker.record_failure(&route.breaker),
        End::Complete => target.latency.total(started.elapsed(), Instant::now()),
        End::BudgetStop | End::ClientGone => {}
    }
    if let Some(usage) = tally.usage {
        app.metrics.tokens(&route.alias, &target.label, usage);
    }
    let generated = tally.generated.unwrap_or(0);
    if let Some(loser) = &hedge_loser {
        crate::handler::charge_hedge_loser(&app, &route, tally.budget.as_mut(), loser, request);
    }
    if let (End::Complete, Some((recorder, fill))) = (&end, seen.record.take())
        && let Some(frames) = recorder.finish()
    {
        let answer = crate::cache::Answer::Stream { frames };
        cached::store(&app, &route, fill, &target.label, answer);
    }
    let served = (&*target, request);
    let cost = crate::handler::settle(
        &app,
        &route,
        tally.budget.take(),
        served,
        tally.token_usage,
        || generated,
    );
    let finished = Finished {
        target: Some(&target),
        end,
        usage: tally.token_usage,
        cost,
        reason: tally.finish,
    };
    finish(&app, &route, request, started, finished, seen);
}

/// One try: a stream from one target, up to its first event.
async fn try_stream(
    target: Arc<Target>,
    request: &ModelRequest,
    headers: &HeaderMap,
    exchange: Exchange,
    first_byte: Duration,
) -> Result<Started, TryError> {
    let tried = Instant::now();
    let body = exchange
        .body(request, &target)
        .map_err(|e| TryError::unusable(format!("{}: {e}", target.label)))?;
    let response =
        upstream::open(&target, Operation::Chat, true, body, headers, first_byte).await?;
    let mut decoder = Decoder::new(response.into_body());
    let mut translator = exchange.translator(&target, &request.model);
    let by = tried + first_byte;
    let dialect = exchange.dialect();
    let pending = first_events(&mut decoder, &mut translator, by, &target, dialect).await?;
    Ok(Started {
        decoder,
        translator,
        pending,
    })
}

/// Reads until the stream yields its first OpenAI event, skipping comments and events
/// that translate to nothing (pings). An error before that is a failed try.
async fn first_events(
    decoder: &mut Decoder,
    translator: &mut StreamTranslator,
    by: Instant,
    target: &Target,
    dialect: Dialect,
) -> Result<VecDeque<Bytes>, TryError> {
    let mut out = Vec::new();
    loop {
        match timeout_at(by, decoder.next()).await {
            Err(_) => {
                return Err(TryError::timeout(
                    "no first event within the first-byte timeout".into(),
                ));
            }
            Ok(None) => {
                translator.end(&mut out);
                if out.is_empty() {
                    return Err(TryError::stream(
                        "the upstream stream ended before its first event".into(),
                    ));
                }
            }
            Ok(Some(Err(e))) => {
                return Err(TryError::stream(target.provider.scrub(&e.to_string())));
            }
            Ok(Some(Ok(event))) => {
                if event.data().is_none() {
                    continue;
                }
                translator.event(event, &mut out);
            }
        }
        let Some(first) = out.first() else { continue };
        let event = Event { raw: first.clone() };
        if let Some(data) = event.data()
            && dialect.read(&data).error
        {
            let mut error = error_body(&data);
            error.message = target.provider.scrub(&error.message);
            return Err(TryError {
                disposition: Disposition::Retry,
                status: None,
                error,
                retry_after: None,
                outcome: "stream_error",
            });
        }
        return Ok(out.into());
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
async fn relay(
    app: &App,
    route: &Route,
    target: &Target,
    client: &mut Client,
    stream: Started,
    tally: &mut Tally,
    (started, seen): (Instant, &mut Seen),
    deadline: Instant,
) -> End {
    let Started {
        mut decoder,
        mut translator,
        mut pending,
    } = stream;
    let mut translated = Vec::new();
    let mut upstream_ended = false;
    let mut first_sent = false;
    // Looked up once per stream; each event is then one atomic add.
    let bytes_sent = app.metrics.stream_bytes(&route.alias, &target.label);
    let mut last_upstream = Instant::now();
    let mut last_client = Instant::now();
    loop {
        let event = match pending.pop_front() {
            Some(bytes) => Event { raw: bytes },
            None => {
                enum Wait<T> {
                    Next(T),
                    KeepAlive,
                    Gone,
                }
                let idle_by = (last_upstream + route.timeouts.idle).min(deadline);
                let wait = tokio::select! {
                    biased;
                    () = client.closed() => Wait::Gone,
                    next = timeout_at(idle_by, decoder.next()) => Wait::Next(next),
                    () = tokio::time::sleep_until(last_client + route.timeouts.keep_alive) => Wait::KeepAlive,
                };
                match wait {
                    Wait::Gone => return End::ClientGone,
                    Wait::KeepAlive => {
                        last_client = Instant::now();
                        if !client.send(Bytes::from_static(KEEP_ALIVE)).await {
                            return End::ClientGone;
                        }
                        continue;
                    }
                    Wait::Next(Err(_)) => {
                        let message = if Instant::now() >= deadline {
                            format!(
                                "the stream exceeded the total timeout of {}",
                                upstream::humanize(route.timeouts.total)
                            )
                        } else {
                            format!(
                                "{} sent nothing for {} (idle timeout)",
                                target.label,
                                upstream::humanize(route.timeouts.idle)
                            )
                        };
                        return break_off(
                            client,
                            tally.dialect,
                            ProxyError::Timeout { message },
                            "stream_idle_timeout",
                        )
                        .await;
                    }
                    Wait::Next(Ok(None)) => {
                        if !upstream_ended {
                            // The translator may still have the end to say.
                            upstream_ended = true;
                            translator.end(&mut translated);
                            pending.extend(translated.drain(..));
                            continue;
                        }
                        if tally.finish.is_some() {
                            // Complete but for the terminator some servers omit.
                            if let Some(done) = tally.dialect.done() {
                                let done = Bytes::from_static(done);
                                seen.record(&done);
                                client.send(done).await;
                            }
                            return End::Complete;
                        }
                        let message = format!(
                            "{} ended the stream before the answer was complete",
                            target.label
                        );
                        return break_off(
                            client,
                            tally.dialect,
                            ProxyError::BadGateway { message },
                            "stream_interrupted",
                        )
                        .await;
                    }
                    Wait::Next(Ok(Some(Err(e)))) => {
                        let message = format!(
                            "{}: {}",
                            target.label,
                            target.provider.scrub(&e.to_string())
                        );
                        return break_off(
                            client,
                            tally.dialect,
                            ProxyError::BadGateway { message },
                            "stream_interrupted",
                        )
                        .await;
                    }
                    Wait::Next(Ok(Some(Ok(event)))) => {
                        if translator.is_identity() {
                            event
                        } else {
                            last_upstream = Instant::now();
                            translator.event(event, &mut translated);
                            pending.extend(translated.drain(..));
                            continue;
                        }
                    }
                }
            }
        };
        last_upstream = Instant::now();
        let (bytes, end) = match tally.step(&event) {
            Step::Skip => continue,
            Step::Forward(b) => (b, None),
            Step::Done(b) => (b, Some(End::Complete)),
            Step::UpstreamError(b) => (b, Some(End::Broken("stream_upstream_error"))),
            Step::BudgetStop(b) => (b, Some(End::BudgetStop)),
        };
        seen.capture(&bytes);
        seen.record(&bytes);
        let len = bytes.len() as u64;
        if !client.send(bytes).await {
            return End::ClientGone;
        }
        bytes_sent.inc_by(len);
        last_client = Instant::now();
        if !first_sent {
            first_sent = true;
            let ttft = started.elapsed();
            seen.ttft = Some(ttft);
            seen.span.first_token();
            app.metrics
                .ttft(&route.alias, &target.label, ttft.as_secs_f64());
        }
        if let Some(end) = end {
            if let End::BudgetStop = end {
                for event in tally
                    .dialect
                    .budget_stop("chatcmpl-modelroute", &tally.alias)
                {
                    client.send(event).await;
                }
            }
            return end;
        }
    }
}

/// Ends a started stream with one error event in the client's dialect.
async fn break_off(
    client: &mut Client,
    dialect: Dialect,
    err: ProxyError,
    kind: &'static str,
) -> End {
    client.send_error(dialect.error_event(&err)).await;
    End::Broken(kind)
}

async fn fail(
    app: &App,
    route: &Route,
    client: &mut Client,
    err: ProxyError,
    started: Instant,
    seen: Seen,
) {
    app.metrics.error(&route.alias, err.metric_kind());
    app.metrics.request(
        &route.alias,
        None,
        err.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    seen.span
        .end(err.status().as_u16(), Some(err.metric_kind()));
    let call = Call::failed(
        &route.alias,
        &err,
        Operation::Chat,
        true,
        started,
        seen.trace_id,
    );
    report::finished(app, call);
    client.fail(err).await;
}

/// How a stream that started ended, for metrics and the audit log.
struct Finished<'a> {
    target: Option<&'a Target>,
    end: End,
    usage: Option<TokenUsage>,
    cost: Option<Cost>,
    /// The finish reason the stream gave.
    reason: Option<&'static str>,
}

impl Finished<'_> {
    fn nothing(end: End) -> Self {
        Self {
            target: None,
            end,
            usage: None,
            cost: None,
            reason: None,
        }
    }
}

/// What the relay saw of a stream for the audit log: the client's trace id, the time to
/// its first event, and (when the audit log keeps bodies) the bytes it was sent.
struct Seen {
    trace_id: Option<String>,
    /// The request's span (disabled when traces are off).
    span: CallSpan,
    ttft: Option<Duration>,
    body: Option<Vec<u8>>,
    /// The events as sent, for the response cache.
    record: Option<(StreamRecorder, Fill)>,
}

impl Seen {
    fn record(&mut self, bytes: &Bytes) {
        if let Some((recorder, _)) = &mut self.record {
            recorder.push(bytes);
        }
    }

    fn capture(&mut self, bytes: &[u8]) {
        if let Some(body) = &mut self.body {
            // One byte past the cap is enough for the audit log to mark the body cut.
            let room = (MAX_BODY_BYTES + 1).saturating_sub(body.len());
            body.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }
}

fn finish(
    app: &App,
    route: &Route,
    request: &ModelRequest,
    started: Instant,
    finished: Finished<'_>,
    seen: Seen,
) {
    let Finished {
        target,
        end,
        usage,
        cost,
        reason,
    } = finished;
    let status = match end {
        End::Complete | End::BudgetStop | End::Broken(_) => 200,
        // What nginx logs for a client that closed the connection.
        End::ClientGone => 499,
    };
    let error = match end {
        End::Broken(kind) => Some(kind),
        End::ClientGone => Some("client_closed"),
        End::BudgetStop => Some("stream_budget_stop"),
        End::Complete => None,
    };
    if let Some(kind) = error {
        app.metrics.error(&route.alias, kind);
    }
    let label = target.map(|t| &t.label);
    app.metrics
        .request(&route.alias, label, status, started.elapsed().as_secs_f64());
    // A budget stop ends the stream with `length`, whatever upstream would have said.
    let reason = if matches!(end, End::BudgetStop) {
        Some("length")
    } else {
        reason
    };
    seen.span.outcome(usage, cost, reason);
    seen.span.end(status, error);
    report::finished(
        app,
        Call {
            route: &route.alias,
            asked: None,
            operation: Operation::Chat,
            target,
            status,
            error,
            stream: true,
            usage,
            cost,
            started,
            ttft: seen.ttft,
            trace_id: seen.trace_id,
            bodies: seen.body.as_deref().map(|b| (request.body().as_ref(), b)),
            cache_hit: false,
        },
    );
}

// === impl Tally ===

impl Tally {
    fn step(&mut self, event: &Event) -> Step {
        let Some(data) = event.data() else {
            // Upstream comments keep intermediaries awake; pass them on.
            return Step::Forward(event.raw.clone());
        };
        let reading = self.dialect.read(&data);
        if let Some(usage) = reading.usage {
            self.usage = Some(self.usage.map_or(usage, |seen| seen.merge(usage)));
        }
        let over_budget = self.count(&data, reading.usage.is_some());
        self.finish = reading.finish.or(self.finish);
        if reading.error {
            return Step::UpstreamError(event.raw.clone());
        }
        if reading.last {
            return Step::Done(event.raw.clone());
        }
        // The usage chunk was asked for by the sidecar, not the client: keep it back.
        if reading.unrequested_usage && !self.client_wants_usage {
            return Step::Skip;
        }
        if over_budget {
            return Step::BudgetStop(event.raw.clone());
        }
        Step::Forward(event.raw.clone())
    }

    /// Reads the usage and the generated text of one event where they are needed. True
    /// when the stream has outgrown what its budgets can pay for.
    fn count(&mut self, data: &[u8], has_usage: bool) -> bool {
        if !has_usage && self.generated.is_none() {
            return false;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
            return false;
        };
        if has_usage && let Some(usage) = self.dialect.token_usage(&v) {
            self.token_usage = Some(self.token_usage.map_or(usage, |seen| seen.merge(usage)));
        }
        let Some(generated) = &mut self.generated else {
            return false;
        };
        *generated += self.dialect.generated_tokens(&v);
        let Some(budget) = &mut self.budget else {
            return false;
        };
        match budget.output_bound {
            Some(bound) if *generated > bound => {
                !budget.extend_output(DEFAULT_OUTPUT_RESERVE.max(*generated - bound))
            }
            _ => false,
        }
    }
}

// === impl Client ===

impl Client {
    /// Sends the response head (once). `target` is known unless this is a keep-alive.
    fn commit(&mut self, target: Option<(&Target, u32)>) {
        let Client::Waiting(..) = self else { return };
        let Client::Waiting(respond, dialect, extra, decided) =
            std::mem::replace(self, Client::Gone)
        else {
            return;
        };
        let (tx, body) = ProxyBody::channel();
        let mut resp = Response::new(body);
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Tells nginx-style proxies in between not to buffer the stream.
        h.insert("x-accel-buffering", HeaderValue::from_static("no"));
        if let Some((target, attempts)) = target {
            decision_headers(h, &target.label, attempts);
        }
        extra.write(h);
        h.extend(decided);
        if respond.send(resp).is_ok() {
            *self = Client::Streaming(tx, dialect);
        }
    }

    /// Sends bytes on a committed stream; false when the client is gone.
    async fn send(&mut self, bytes: Bytes) -> bool {
        match self {
            Client::Streaming(tx, _) => {
                if tx.send(bytes).await.is_ok() {
                    return true;
                }
                *self = Client::Gone;
                false
            }
            Client::Waiting(..) | Client::Gone => false,
        }
    }

    /// Sends a final error event (see [`Dialect::error_event`]).
    async fn send_error(&mut self, event: Bytes) {
        if let Client::Streaming(tx, _) = self {
            // A client that reads nothing more must not hold the task forever.
            let _ = tokio::time::timeout(Duration::from_secs(5), tx.send(event)).await;
        }
    }

    /// Reports a failure: as the response when nothing was sent, else as an event.
    async fn fail(&mut self, err: ProxyError) {
        match std::mem::replace(self, Client::Gone) {
            Client::Waiting(respond, dialect, ..) => {
                let _ = respond.send(json_response(err.status(), dialect.error_body(&err)));
            }
            Client::Streaming(tx, dialect) => {
                *self = Client::Streaming(tx, dialect);
                self.send_error(dialect.error_event(&err)).await;
            }
            Client::Gone => {}
        }
    }

    /// Resolves when the client has gone away.
    async fn closed(&mut self) {
        match self {
            Client::Waiting(respond, ..) => respond.closed().await,
            Client::Streaming(tx, _) => tx.closed().await,
            Client::Gone => {}
        }
    }
}
