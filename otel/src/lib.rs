//! OpenTelemetry traces for the modelroute binaries: OTLP export (gRPC or HTTP/protobuf)
//! configured by the standard `OTEL_*` environment variables (docs/observability.md#traces),
//! the `tracing` layer that feeds it, and W3C trace context carried in plain strings (the
//! operator's snapshots carry the push's `traceparent` to the sidecar's apply).
//!
//! Export never slows the process: ended spans go to the SDK's batch processor, which
//! exports from its own thread. In front of it sits a bound of our own (`OTEL_BSP_MAX_QUEUE_SIZE`
//! spans waiting, default 2048): past it a span is dropped at once and counted
//! (`modelroute_spans_dropped_total`, `modelroute_operator_spans_dropped_total`), so a slow
//! or dead collector costs memory up to the bound and nothing else.
//!
//! The batch processor exports from a plain thread, but both transports need the Tokio
//! runtime: the gRPC channel is built on it (its tasks live there), and each HTTP export is
//! spawned onto it ([`OnRuntime`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{
    ExporterBuildError, Protocol, SpanExporter, WithExportConfig, WithHttpConfig,
};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanProcessor,
};
use prometheus_client::metrics::counter::Counter;

/// The `tracing` target of modelroute's OpenTelemetry spans: only the span layer listens to
/// it, so log lines stay free of them and, without an exporter, they are disabled.
pub const TARGET: &str = "modelroute::otel";

/// Spans waiting for export when `OTEL_BSP_MAX_QUEUE_SIZE` is unset (the spec's default).
const DEFAULT_QUEUE: usize = 2048;

/// An export's deadline when `OTEL_EXPORTER_OTLP_TIMEOUT` is unset (the spec's default).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Who this process is, for the resource every span carries.
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub service: &'static str,
    pub pod: String,
    pub namespace: String,
    pub node: String,
    pub service_account: String,
}

/// Why traces could not be set up (the process runs on without them).
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("OTEL_EXPORTER_OTLP_PROTOCOL={0:?} is not supported: use `grpc` or `http/protobuf`")]
    Protocol(String),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] ExporterBuildError),
}

/// A running exporter: flushes what is queued when shut down.
#[derive(Debug)]
pub struct Exporting {
    provider: SdkTracerProvider,
}

/// The exporter settings read from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub protocol: Protocol,
    pub queue: usize,
    /// One export's deadline (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds).
    pub timeout: Duration,
}

impl Settings {
    /// `None` when traces are off: no OTLP endpoint set, `OTEL_SDK_DISABLED=true`, or
    /// `OTEL_TRACES_EXPORTER=none`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, OtelError> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        let endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let disabled = set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        if endpoint.is_none() || disabled {
            return Ok(None);
        }
        let protocol = match set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
        {
            // The spec's default transport.
            None | Some("http/protobuf") => Protocol::HttpBinary,
            Some("grpc") => Protocol::Grpc,
            Some(other) => return Err(OtelError::Protocol(other.to_string())),
        };
        let queue = set("OTEL_BSP_MAX_QUEUE_SIZE")
            .and_then(|v| v.trim().parse().ok())
            .filter(|&n: &usize| n > 0)
            .unwrap_or(DEFAULT_QUEUE);
        let timeout = set("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_TIMEOUT"))
            .and_then(|v| v.trim().parse().ok())
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis);
        Ok(Some(Self {
            protocol,
            queue,
            timeout,
        }))
    }
}

/// Builds the tracer that exports this process's spans. Must run inside the Tokio runtime
/// (exports run on it). `dropped` counts spans refused by the bound.
pub fn start(
    settings: &Settings,
    identity: &Identity,
    dropped: Counter,
) -> Result<(SdkTracer, Exporting), OtelError> {
    let exporter = match settings.protocol {
        Protocol::Grpc => SpanExporter::builder().with_tonic().build()?,
        _ => SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(OnRuntime {
                client: Arc::new(HyperClient::with_default_connector(settings.timeout, None)),
                runtime: tokio::runtime::Handle::current(),
            })
            .build()?,
    };
    let backlog = Arc::new(Backlog {
        pending: AtomicUsize::new(0),
        limit: settings.queue,
        dropped,
    });
    let batches = BatchSpanProcessor::builder(Counted {
        inner: exporter,
        backlog: backlog.clone(),
    })
    // Roomier than our bound, so the SDK itself never drops uncounted.
    .with_batch_config(
        BatchConfigBuilder::default()
            .with_max_queue_size(settings.queue * 2)
            .build(),
    )
    .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batches,
            backlog,
        })
        .with_resource(resource(identity))
        .build();
    let tracer = provider.tracer("modelroute");
    Ok((tracer, Exporting { provider }))
}

/// The layer that exports spans with the target [`TARGET`] through `tracer`. Add it to the
/// subscriber only when traces are on: an absent (`None`) layer counts as interested, and
/// spans would then be created for nobody.
pub fn layer<S>(tracer: SdkTracer) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use tracing_subscriber::Layer as _;
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_level(false)
        // Busy and idle time would cost two clock reads on every poll.
        .with_tracked_inactivity(false)
        .with_filter(
            tracing_subscriber::filter::Targets::new().with_target(TARGET, tracing::Level::INFO),
        )
}

/// The W3C `traceparent` of `span` ("" when it is not exported), for a message that
/// carries the trace to another process.
pub fn traceparent(span: &tracing::Span) -> String {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() {
        return String::new();
    }
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return String::new();
    }
    let mut carrier = HashMap::new();
    opentelemetry_sdk::propagation::TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent").unwrap_or_default()
}

/// Makes `span` a child of the span a received `traceparent` names (nothing when it is
/// empty or malformed).
pub fn continue_from(span: &tracing::Span, traceparent: &str) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::TraceContextExt as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if span.is_disabled() || traceparent.is_empty() {
        return;
    }
    let carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    let cx = opentelemetry_sdk::propagation::TraceContextPropagator::new().extract(&carrier);
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// `service.name` (unless `OTEL_SERVICE_NAME` says otherwise), the Kubernetes workload, and
/// whatever `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource(identity: &Identity) -> Resource {
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.with_service_name(identity.service);
    }
    let k8s = [
        ("k8s.pod.name", &identity.pod),
        ("k8s.namespace.name", &identity.namespace),
        ("k8s.node.name", &identity.node),
        ("k8s.serviceaccount.name", &identity.service_account),
    ];
    builder
        .with_attributes(
            k8s.into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| KeyValue::new(k, v.clone())),
        )
        .build()
}

/// An HTTP client whose requests run on the Tokio runtime, whatever thread awaits them.
#[derive(Debug)]
struct OnRuntime<C> {
    client: Arc<C>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl<C: HttpClient + 'static> HttpClient for OnRuntime<C> {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime
            .spawn(async move { client.send_bytes(request).await })
            .await?
    }
}

// === impl Exporting ===

impl Exporting {
    /// Exports what is queued (waiting at most a few seconds) and stops.
    pub fn shutdown(self) {
        let _ = self.provider.shutdown_with_timeout(Duration::from_secs(5));
    }
}

/// Spans handed to the batch processor and not yet given to the exporter.
#[derive(Debug)]
struct Backlog {
    pending: AtomicUsize,
    limit: usize,
    dropped: Counter,
}

/// The batch processor behind our bound.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    backlog: Arc<Backlog>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.backlog.pending.fetch_add(1, Ordering::Relaxed) >= self.backlog.limit {
            self.backlog.pending.fetch_sub(1, Ordering::Relaxed);
            self.backlog.dropped.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter, telling the bound when spans leave the queue.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    backlog: Arc<Backlog>,
}

impl<E: opentelemetry_sdk::trace::SpanExporter> opentelemetry_sdk::trace::SpanExporter
    for Counted<E>
{
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        // Counted out before the export: one that times out must not leak its count.
        self.backlog
            .pending
            .fetch_sub(batch.len(), Ordering::Relaxed);
        self.inner.export(batch)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// For tests: an exporter that keeps what it is given, and a subscriber that sends
/// [`TARGET`] spans to it.
pub mod testing {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// The spans exported so far.
    #[derive(Clone, Debug, Default)]
    pub struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl Kept {
        /// The ended spans named `name`.
        pub fn named(&self, name: &str) -> Vec<SpanData> {
            self.0
                .lock()
                .map(|spans| spans.iter().filter(|s| s.name == name).cloned().collect())
                .unwrap_or_default()
        }
    }

    impl opentelemetry_sdk::trace::SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            if let Ok(mut spans) = self.0.lock() {
                spans.extend(batch);
            }
            Ok(())
        }
    }

    /// A subscriber exporting every span (synchronously) to the returned [`Kept`].
    pub fn subscriber() -> (impl tracing::Subscriber + Send + Sync, Kept) {
        let kept = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(kept.clone())
            .build();
        let subscriber = tracing_subscriber::registry().with(super::layer(provider.tracer("test")));
        (subscriber, kept)
    }

    /// Tests that trace take turns: `tracing` caches which callsites are on, process-wide,
    /// and two tests setting and dropping their own subscribers at once can leave a stale
    /// "off" behind.
    static TURN: Mutex<()> = Mutex::new(());

    /// This thread's spans go to the returned [`Kept`] until the guard is dropped (a test
    /// on a single-threaded runtime: all its tasks run here).
    pub fn traced() -> (Traced, Kept) {
        let turn = TURN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (subscriber, kept) = subscriber();
        let default = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        let guard = Traced {
            _default: default,
            _turn: turn,
        };
        (guard, kept)
    }

    /// While it lives, this thread's spans are exported to its [`Kept`].
    #[derive(Debug)]
    pub struct Traced {
        // Dropped first: the subscriber goes before the next test's turn begins.
        _default: tracing::subscriber::DefaultGuard,
        _turn: std::sync::MutexGuard<'static, ()>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Option<Settings>, OtelError> {
        Settings::from_env(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_string())
        })
    }

    #[test]
    fn traces_are_on_only_with_an_endpoint_and_not_disabled() {
        assert_eq!(settings(&[]).unwrap(), None);
        assert_eq!(
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(),
            None
        );
        let on = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).unwrap();
        assert_eq!(
            on,
            Some(Settings {
                protocol: Protocol::HttpBinary,
                queue: DEFAULT_QUEUE,
                timeout: DEFAULT_TIMEOUT,
            })
        );
        let traces_only = settings(&[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
        ])
        .unwrap();
        assert_eq!(
            traces_only,
            Some(Settings {
                protocol: Protocol::Grpc,
                queue: 10,
                timeout: Duration::from_millis(2500),
            })
        );
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]).unwrap(),
                None
            );
        }
    }

    #[test]
    fn a_traceparent_carries_the_trace_to_a_child() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry().with(layer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let push = tracing::info_span!(target: TARGET, "push");
            let carried = traceparent(&push);
            let parts: Vec<&str> = carried.split('-').collect();
            assert_eq!(parts.len(), 4, "{carried}");
            let apply = tracing::info_span!(target: TARGET, "apply");
            continue_from(&apply, &carried);
            let child = traceparent(&apply);
            // Same trace, another span.
            assert_eq!(child.split('-').nth(1), Some(parts[1]));
            assert_ne!(child.split('-').nth(2), Some(parts[2]));
            // Garbage is ignored: a new trace.
            let other = tracing::info_span!(target: TARGET, "other");
            continue_from(&other, "00-garbage");
            assert_ne!(traceparent(&other).split('-').nth(1), Some(parts[1]));
        });
        // No subscriber, no trace: nothing to carry.
        assert_eq!(traceparent(&tracing::info_span!(target: TARGET, "off")), "");
    }

    #[test]
    fn an_unknown_protocol_is_an_error_that_names_it() {
        let err = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("\"http/json\""), "{err}");
    }

    /// An exporter that never finishes: the collector is down.
    #[derive(Debug)]
    struct Stuck;

    impl opentelemetry_sdk::trace::SpanExporter for Stuck {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            std::future::pending().await
        }
    }

    #[test]
    fn a_stuck_collector_costs_a_bounded_queue_and_counted_drops() {
        use opentelemetry::trace::{Tracer as _, TracerProvider as _};
        let backlog = Arc::new(Backlog {
            pending: AtomicUsize::new(0),
            limit: 8,
            dropped: Counter::default(),
        });
        let batches = BatchSpanProcessor::builder(Counted {
            inner: Stuck,
            backlog: backlog.clone(),
        })
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(16)
                .with_max_export_batch_size(4)
                .build(),
        )
        .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(Bounded {
                inner: batches,
                backlog: backlog.clone(),
            })
            .build();
        let tracer = provider.tracer("test");
        // Ending a span never waits on the exporter (were it to, this would hang).
        for _ in 0..1000 {
            tracer.start("span");
        }
        let pending = backlog.pending.load(Ordering::Relaxed);
        assert!(pending <= 8, "{pending} spans pending past the bound");
        // Everything not pending was either handed to the (stuck) exporter — at most one
        // batch of 4 — or dropped and counted.
        let dropped = usize::try_from(backlog.dropped.get()).unwrap();
        assert!(dropped >= 1000 - 8 - 4, "only {dropped} counted as dropped");
        // Shutting down would wait for the stuck export.
        std::mem::forget(provider);
    }
}
