//! The spans of a model call, named and attributed after the OpenTelemetry GenAI semantic
//! conventions: a server span per client request, a client span per upstream attempt.
//!
//! They are `tracing` spans with the target [`TARGET`], which only the OpenTelemetry layer
//! listens to: without an exporter they are disabled, and every method here returns after
//! one branch. Prompt and completion text are never recorded, nor any header.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{StringValue, Value};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::genai::{operation_name, provider_name};
use crate::api::ModelRequest;
use crate::api::chat::ChunkPeek;
use crate::config::Route;
use crate::config::Target;
use crate::cost::{Cost, TokenUsage};
use crate::provider::Operation;

pub use modelroute_otel::TARGET;

/// The server span of one client request.
#[derive(Clone, Debug)]
pub struct CallSpan(Span);

impl CallSpan {
    /// Starts the span, continuing the client's W3C `traceparent` when it sent one.
    pub fn start(operation: Operation, headers: &HeaderMap) -> Self {
        let span = tracing::info_span!(
            target: TARGET,
            "model call",
            otel.name = operation_name(operation),
            otel.kind = "server",
        );
        if !span.is_disabled() {
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
            if parent.span().span_context().is_valid() {
                let _ = span.set_parent(parent);
            }
            span.set_attribute("gen_ai.operation.name", operation_name(operation));
        }
        Self(span)
    }

    /// The span, to make attempts its children.
    pub fn span(&self) -> &Span {
        &self.0
    }

    /// What the client asked for (its model alias and the sampling parameters), and the
    /// ModelRoute that routes it.
    pub fn request(&self, operation: Operation, request: &ModelRequest, route: &Route) {
        let span = &self.0;
        if span.is_disabled() {
            return;
        }
        span.record(
            "otel.name",
            format!("{} {}", operation_name(operation), request.model),
        );
        let model: std::sync::Arc<str> = request.model.as_str().into();
        span.set_attribute("gen_ai.request.model", model.clone());
        span.set_attribute("modelroute.route", model);
        span.set_attribute("modelroute.modelroute", route.model_route.clone());
        if let Some(max) = request.max_tokens() {
            span.set_attribute("gen_ai.request.max_tokens", int(max));
        }
        for (field, attribute) in [
            ("temperature", "gen_ai.request.temperature"),
            ("top_p", "gen_ai.request.top_p"),
        ] {
            if let Some(v) = request.field(field).and_then(|v| v.as_f64()) {
                span.set_attribute(attribute, v);
            }
        }
        if request.stream {
            span.set_attribute("gen_ai.request.stream", true);
        }
    }

    /// The answer came from the response cache.
    pub fn cache_hit(&self) {
        if !self.0.is_disabled() {
            self.0.set_attribute("modelroute.cache_hit", true);
        }
    }

    /// How the targets were chosen: the match rule (if one did) and what ordered them.
    pub fn routed(&self, plan: &crate::config::table::Plan) {
        let span = &self.0;
        if span.is_disabled() {
            return;
        }
        if let Some(rule) = &plan.rule {
            span.set_attribute("modelroute.rule", rule.clone());
        }
        span.set_attribute("modelroute.ordered_by", plan.ordered_by);
    }

    /// The first event reached the client: the time to first token.
    pub fn first_token(&self) {
        if !self.0.is_disabled() {
            self.0.add_event("gen_ai.first_token", Vec::new());
        }
    }

    /// The target that answered, after how many tries.
    pub fn served(&self, target: &Target, attempts: u32) {
        let span = &self.0;
        if span.is_disabled() {
            return;
        }
        span.set_attribute("gen_ai.provider.name", provider_name(&target.provider));
        span.set_attribute("gen_ai.response.model", target.model.clone());
        span.set_attribute("modelroute.target", target.label.clone());
        span.set_attribute("modelroute.attempts", i64::from(attempts));
    }

    /// Tokens, cost and why generation stopped.
    pub fn outcome(&self, usage: Option<TokenUsage>, cost: Option<Cost>, finish: Option<&str>) {
        let span = &self.0;
        if span.is_disabled() {
            return;
        }
        if let Some(u) = usage {
            span.set_attribute("gen_ai.usage.input_tokens", int(u.prompt_tokens()));
            span.set_attribute("gen_ai.usage.output_tokens", int(u.output_tokens()));
        }
        if let Some(c) = cost {
            #[expect(
                clippy::cast_precision_loss,
                reason = "a cost attribute, not the ledger"
            )]
            span.set_attribute("modelroute.cost_usd", c.nano_usd as f64 / 1e9);
            span.set_attribute("modelroute.cost_estimated", c.estimated);
        }
        if let Some(reason) = finish {
            let reasons = vec![StringValue::from(reason.to_string())];
            span.set_attribute(
                "gen_ai.response.finish_reasons",
                Value::Array(reasons.into()),
            );
        }
    }

    /// A spent budget sent the request to its cheaper `downgrade` target.
    pub fn downgraded(&self, budget: &str) {
        if !self.0.is_disabled() {
            self.0
                .set_attribute("modelroute.budget", budget.to_string());
            self.0
                .set_attribute("modelroute.budget_action", "downgrade");
        }
    }

    /// The `finish_reason`s of a whole OpenAI answer.
    pub fn finish_reasons(&self, body: &[u8]) {
        if self.0.is_disabled() {
            return;
        }
        let Ok(peek) = serde_json::from_slice::<ChunkPeek<'_>>(body) else {
            return;
        };
        let reasons: Vec<StringValue> = peek
            .choices
            .iter()
            .filter_map(|c| c.finish_reason.as_deref())
            .map(|r| StringValue::from(r.to_string()))
            .collect();
        if !reasons.is_empty() {
            self.0.set_attribute(
                "gen_ai.response.finish_reasons",
                Value::Array(reasons.into()),
            );
        }
    }

    /// Ends the span with the status the client got; `error` is the failure's kind.
    pub fn end(self, status: u16, error: Option<&'static str>) {
        let span = self.0;
        if span.is_disabled() {
            return;
        }
        span.set_attribute("http.response.status_code", i64::from(status));
        if let Some(kind) = error {
            span.set_attribute("error.type", kind);
            span.set_status(Status::error(kind));
        }
    }
}

/// The client span of one try against one target; `fallback` is why the previous target
/// was left (the outcome label of its last try), `retry` whether this repeats a try of the
/// same target.
pub fn attempt(
    target: &Target,
    operation: Operation,
    number: u32,
    fallback: Option<&'static str>,
    retry: bool,
) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "attempt",
        otel.name = tracing::field::Empty,
        otel.kind = "client",
    );
    if span.is_disabled() {
        return span;
    }
    let name = operation_name(operation);
    span.record("otel.name", format!("{name} {}", target.model));
    span.set_attribute("gen_ai.operation.name", name);
    span.set_attribute("gen_ai.provider.name", provider_name(&target.provider));
    span.set_attribute("gen_ai.request.model", target.model.clone());
    span.set_attribute("modelroute.target", target.label.clone());
    span.set_attribute("modelroute.attempt", i64::from(number));
    if retry {
        span.set_attribute("modelroute.retry", true);
    }
    if let Some(reason) = fallback {
        span.set_attribute("modelroute.fallback_reason", reason);
    }
    span
}

/// Records how an attempt ended: `None` when it succeeded, else its outcome label and the
/// upstream's status when it answered with one.
pub fn attempt_failed(span: &Span, outcome: &'static str, status: Option<u16>) {
    if span.is_disabled() {
        return;
    }
    if let Some(status) = status {
        span.set_attribute("http.response.status_code", i64::from(status));
    }
    span.set_attribute("error.type", outcome);
    span.set_status(Status::error(outcome));
}

/// Puts the current span's context in `headers` as `traceparent` (and `tracestate`), so the
/// provider's own traces join the app's. Leaves `headers` alone when no span is exported.
pub fn inject(headers: &mut HeaderMap) {
    let span = Span::current();
    if span.is_disabled() {
        return;
    }
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

fn int(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_exporter_spans_are_disabled_and_headers_untouched() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let call = CallSpan::start(Operation::Chat, &headers);
        assert!(call.span().is_disabled());
        let before = headers.clone();
        let _entered = call.span().enter();
        inject(&mut headers);
        assert_eq!(headers, before);
    }

    #[test]
    fn the_extractor_reads_the_traceparent_the_propagator_expects() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        let mut out = HeaderMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(&mut out));
        assert_eq!(out.get("traceparent"), headers.get("traceparent"));
    }
}
