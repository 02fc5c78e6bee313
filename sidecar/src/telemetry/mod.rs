//! Logs, traces, metrics and the audit log.

pub mod audit;
pub mod genai;
pub mod metrics;
pub mod routing_metrics;
pub mod spans;

pub use audit::{AuditLog, AuditOptions};
pub use metrics::Metrics;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global subscriber: log lines on stderr and, when `tracer` is given, the
/// model-call spans exported through OpenTelemetry. `filter` is an `EnvFilter` directive
/// such as `info` or `modelroute_sidecar=debug` for the log lines; `RUST_LOG` overrides it.
pub fn init(format: LogFormat, filter: &str, tracer: Option<opentelemetry_sdk::trace::SdkTracer>) {
    use tracing_subscriber::util::SubscriberInitExt as _;
    // A second init (tests start several sidecars in one process) is harmless.
    let _ = subscriber(format, filter, tracer).try_init();
}

/// The subscriber [`init`] installs.
fn subscriber(
    format: LogFormat,
    filter: &str,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> Box<dyn tracing::Subscriber + Send + Sync> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    // The spans are for the exporter; in log lines they would only be noise.
    let filter = match format!("{}=off", spans::TARGET).parse() {
        Ok(directive) => filter.add_directive(directive),
        Err(_) => filter,
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let lines = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    let logs = tracing_subscriber::registry().with(lines.with_filter(filter));
    // No span layer at all without a tracer (see `modelroute_otel::layer`).
    let Some(tracer) = tracer else {
        return Box::new(logs);
    };
    Box::new(logs.with(modelroute_otel::layer(tracer)))
}

/// [`init`] without traces.
pub fn init_logging(format: LogFormat, filter: &str) {
    init(format, filter, None);
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TracerProvider as _;

    use super::*;
    use crate::provider::Operation;

    fn call_span_is_live(tracer: Option<opentelemetry_sdk::trace::SdkTracer>) -> bool {
        let subscriber = subscriber(LogFormat::Text, "info", tracer);
        tracing::subscriber::with_default(subscriber, || {
            !spans::CallSpan::start(Operation::Chat, &http::HeaderMap::new())
                .span()
                .is_disabled()
        })
    }

    #[test]
    fn model_call_spans_exist_only_when_exported() {
        assert!(
            !call_span_is_live(None),
            "spans were created with traces off"
        );
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        assert!(call_span_is_live(Some(provider.tracer("test"))));
    }
}
