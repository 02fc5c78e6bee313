//! What a finished model call reports: the GenAI metrics and the audit log
//! (telemetry/audit.rs writes it).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::App;
use crate::config::Target;
use crate::cost::{Cost, TokenUsage};
use crate::error::ProxyError;
use crate::limits::headers::usd;
use crate::provider::Operation;
use crate::telemetry::audit::Record;
use crate::telemetry::genai;
use crate::telemetry::metrics::GenAiCall;

/// One finished call, as its handler knows it.
#[derive(Debug)]
pub struct Call<'a> {
    pub route: &'a Arc<str>,
    /// The model the client named when no route has it: for the audit log only, since
    /// metrics never take a label from a request.
    pub asked: Option<&'a str>,
    pub operation: Operation,
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
    /// Answered from the response cache.
    pub cache_hit: bool,
}

impl<'a> Call<'a> {
    /// A call that ended in `err` before any target answered.
    pub fn failed(
        route: &'a Arc<str>,
        err: &ProxyError,
        operation: Operation,
        stream: bool,
        started: Instant,
        trace_id: Option<String>,
    ) -> Self {
        Call {
            route,
            asked: None,
            operation,
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
            cache_hit: false,
        }
    }
}

/// Reports `call`: the GenAI metrics, and the audit record when an audit log is configured.
pub fn finished(app: &App, call: Call<'_>) {
    app.metrics.gen_ai(&GenAiCall {
        operation: genai::operation_name(call.operation),
        provider: call
            .target
            .map_or("", |t| genai::provider_name(&t.provider)),
        request_model: call.route,
        response_model: call.target.map(|t| &t.model),
        error: call.error,
        secs: call.started.elapsed().as_secs_f64(),
        usage: call.usage,
        ttft: call.ttft.map(|d| d.as_secs_f64()),
    });
    let Some(log) = &app.audit else { return };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let record = Record {
        time: String::new(),
        namespace: app.namespace.clone(),
        pod: app.pod.clone(),
        route: call.asked.map_or_else(|| call.route.clone(), Arc::from),
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
        cache_hit: call.cache_hit,
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
