//! What a finished model call tells the audit log (telemetry/audit.rs writes it).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::App;
use crate::config::Target;
use crate::cost::{Cost, TokenUsage};
use crate::error::ProxyError;
use crate::limits::headers::usd;
use crate::telemetry::audit::Record;

/// One finished call, as its handler knows it.
#[derive(Debug)]
pub struct Call<'a> {
    pub route: &'a Arc<str>,
    /// The target that answered.
    pub target: Option<&'a Target>,
    pub status: u16,
    pub error: Option<&'static str>,
    pub stream: bool,
    pub usage: Option<TokenUsage>,
    pub cost: Option<Cost>,
    pub started: Instant,
    pub ttft: Option<Duration>,
    /// The client's trace id (from its `traceparent`).
    pub trace_id: Option<String>,
    /// Request and response bodies, when the audit log keeps them.
    pub bodies: Option<(&'a [u8], &'a [u8])>,
}

impl<'a> Call<'a> {
    /// A call that ended in `err` before any target answered.
    pub fn failed(
        route: &'a Arc<str>,
        err: &ProxyError,
        stream: bool,
        started: Instant,
        trace_id: Option<String>,
    ) -> Self {
        Call {
            route,
            target: None,
            status: err.status().as_u16(),
            error: Some(err.metric_kind()),
            stream,
            usage: None,
            cost: None,
            started,
            ttft: None,
            trace_id,
            bodies: None,
        }
    }
}

/// Queues the audit record of `call` (nothing when no audit log is configured).
pub fn record(app: &App, call: Call<'_>) {
    let Some(log) = &app.audit else { return };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let record = Record {
        time: String::new(),
        namespace: app.namespace.clone(),
        pod: app.pod.clone(),
        route: call.route.clone(),
        target: call.target.map(|t| t.label.clone()),
        provider: call.target.map(|t| t.provider.name.clone()),
        model: call.target.map(|t| t.model.clone()),
        status: call.status,
        error: call.error,
        stream: call.stream,
        input_tokens: call.usage.map(|u| u.prompt_tokens()),
        output_tokens: call.usage.map(|u| u.output_tokens()),
        cost_usd: call.cost.map(|c| usd(c.nano_usd)),
        cost_estimated: call.cost.is_some_and(|c| c.estimated),
        latency_ms: ms(call.started.elapsed()),
        ttft_ms: call.ttft.map(ms),
        trace_id: call.trace_id,
        ..Record::default()
    };
    log.record(record, call.bodies);
}

/// The client's trace id, read only when there is an audit log to put it in.
pub fn trace_id(app: &App, headers: &http::HeaderMap) -> Option<String> {
    app.audit
        .as_ref()
        .and_then(|_| crate::telemetry::audit::trace_id(headers))
}
