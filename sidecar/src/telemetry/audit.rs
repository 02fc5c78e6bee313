//! The audit log: one JSON line per model call — who called which model on which provider,
//! what came back, how long it took, what it cost — to stdout or a file (docs/observability.md).
//!
//! The request path never waits for it: a record is handed to a bounded queue and a
//! writer task serializes and writes; when the queue is full (a stalled disk or pipe) the
//! record is dropped and counted (`modelroute_audit_dropped_total`). Bodies are left out
//! unless asked for, and then pass through the redaction rules before they are queued.

use std::path::PathBuf;
use std::sync::Arc;

use regex::Regex;
use serde::Serialize;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tracing::warn;

/// Records waiting for the writer; beyond this they are dropped (and counted).
const QUEUE: usize = 8192;

/// The longest body kept in a record; longer ones are cut (and marked).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What replaces each match of a redaction rule.
const REDACTED: &str = "[REDACTED]";

/// Where the audit log goes and what it holds (`--audit-log`, `--audit-bodies`,
/// `--audit-redact`).
#[derive(Clone, Debug, Default)]
pub struct AuditOptions {
    pub sink: Option<Sink>,
    /// Keep request and response bodies (redacted).
    pub bodies: bool,
    /// Regular expressions whose matches in bodies are replaced by `[REDACTED]`.
    pub redact: Vec<String>,
}

/// Where audit lines are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    /// Appended to (created when missing), so copy-and-truncate rotation works: writes go
    /// on at the new end of the file.
    File(PathBuf),
}

/// Why the audit log could not start.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit redaction rule {rule:?} is not a valid regular expression: {source}")]
    Rule { rule: String, source: regex::Error },
    #[error("cannot open the audit log {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The request path's handle on the audit log.
#[derive(Debug)]
pub struct AuditLog {
    queue: mpsc::Sender<Record>,
    bodies: Option<Redactor>,
    dropped: prometheus_client::metrics::counter::Counter,
}

/// The redaction rules, compiled once.
#[derive(Debug)]
struct Redactor {
    rules: Vec<Regex>,
}

/// One model call. Field names are stable: dashboards and SIEM pipelines parse them.
#[derive(Debug, Default, Serialize)]
pub struct Record {
    /// When the call ended, RFC 3339 UTC with milliseconds.
    pub time: String,
    pub namespace: Arc<str>,
    pub pod: Arc<str>,
    /// The model alias the client asked for ("" when the body named none).
    pub route: Arc<str>,
    /// `provider/model` of the target that answered (absent when none did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Arc<str>>,
    /// The HTTP status the client got (499: it went away mid-stream).
    pub status: u16,
    /// Why it failed (the `kind` of `modelroute_errors_total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    pub stream: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Exact decimal USD (absent without a price).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<String>,
    /// The cost is from estimated tokens (the provider reported no usage).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cost_estimated: bool,
    pub latency_ms: f64,
    /// Time to the first streamed event the client got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// The W3C trace id of the client's `traceparent`, to join the app's own traces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Answered from the response cache (no upstream call, nothing spent).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cache_hit: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// A body was longer than [`MAX_BODY_BYTES`] and was cut.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
}

// === impl AuditLog ===

impl AuditLog {
    /// Opens the sink and starts the writer task (on the current runtime). `None` when
    /// no sink is configured.
    pub fn start(
        options: &AuditOptions,
        dropped: prometheus_client::metrics::counter::Counter,
    ) -> Result<Option<Self>, AuditError> {
        let Some(sink) = &options.sink else {
            return Ok(None);
        };
        let rules = options
            .redact
            .iter()
            .map(|rule| {
                Regex::new(rule).map_err(|source| AuditError::Rule {
                    rule: rule.clone(),
                    source,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let out: Box<dyn AsyncWrite + Send + Unpin> = match sink {
            Sink::Stdout => Box::new(tokio::io::stdout()),
            Sink::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| AuditError::Open {
                        path: path.clone(),
                        source,
                    })?;
                Box::new(tokio::fs::File::from_std(file))
            }
        };
        let (queue, records) = mpsc::channel(QUEUE);
        tokio::spawn(write(records, out));
        Ok(Some(Self {
            queue,
            bodies: options.bodies.then_some(Redactor { rules }),
            dropped,
        }))
    }

    /// Whether records carry bodies (the caller then keeps what it would otherwise drop).
    pub fn wants_bodies(&self) -> bool {
        self.bodies.is_some()
    }

    /// Queues `record`, with `bodies` (request, response) when bodies are kept. Never
    /// waits: a full queue drops the record and counts it.
    pub fn record(&self, mut record: Record, bodies: Option<(&[u8], &[u8])>) {
        if let (Some(redactor), Some((request, response))) = (&self.bodies, bodies) {
            let (request, cut_request) = redactor.body(request);
            let (response, cut_response) = redactor.body(response);
            record.request_body = Some(request);
            record.response_body = Some(response);
            record.body_truncated = cut_request || cut_response;
        }
        if record.time.is_empty() {
            record.time = now_rfc3339();
        }
        if self.queue.try_send(record).is_err() {
            self.dropped.inc();
        }
    }
}

// === impl Redactor ===

impl Redactor {
    /// `body` as text, cut to [`MAX_BODY_BYTES`] (on a character boundary), every rule's
    /// matches replaced. True when it was cut.
    fn body(&self, body: &[u8]) -> (String, bool) {
        let text = String::from_utf8_lossy(body);
        let mut end = text.len().min(MAX_BODY_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let mut out = text[..end].to_string();
        for rule in &self.rules {
            if let std::borrow::Cow::Owned(replaced) = rule.replace_all(&out, REDACTED) {
                out = replaced;
            }
        }
        (out, end < text.len())
    }
}

/// The writer task: one JSON line per record, flushed whenever the queue runs empty.
async fn write(mut records: mpsc::Receiver<Record>, mut out: Box<dyn AsyncWrite + Send + Unpin>) {
    let mut line = Vec::with_capacity(1024);
    while let Some(record) = records.recv().await {
        let mut next = Some(record);
        while let Some(record) = next {
            line.clear();
            if serde_json::to_writer(&mut line, &record).is_ok() {
                line.push(b'\n');
                if let Err(e) = out.write_all(&line).await {
                    warn!(error = %e, "cannot write the audit log");
                }
            }
            next = records.try_recv().ok();
        }
        if let Err(e) = out.flush().await {
            warn!(error = %e, "cannot flush the audit log");
        }
    }
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), unless
/// it is malformed or all zeros.
pub fn trace_id(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("traceparent")?.to_str().ok()?;
    let mut parts = value.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    let valid = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && id.bytes().any(|b| b != b'0');
    valid.then(|| id.to_string())
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Millisecond)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor(rules: &[&str]) -> Redactor {
        Redactor {
            rules: rules.iter().map(|r| Regex::new(r).unwrap()).collect(),
        }
    }

    #[test]
    fn redaction_replaces_every_match_of_every_rule() {
        let r = redactor(&[r"\b\d{3}-\d{2}-\d{4}\b", r"[\w.]+@[\w.]+"]);
        let (body, cut) =
            r.body(br#"{"content":"ssn 123-45-6789, mail ann@example.com, 123-45-6789"}"#);
        assert_eq!(
            body,
            r#"{"content":"ssn [REDACTED], mail [REDACTED], [REDACTED]"}"#
        );
        assert!(!cut);
    }

    #[test]
    fn long_bodies_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_BODY_BYTES);
        let (body, cut) = redactor(&[]).body(long.as_bytes());
        assert!(cut);
        assert!(body.len() <= MAX_BODY_BYTES && body.len() >= MAX_BODY_BYTES - 1);
        assert!(body.chars().all(|c| c == 'é'));
    }

    #[test]
    fn trace_ids_come_from_valid_traceparents_only() {
        let with = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert("traceparent", v.parse().unwrap());
            trace_id(&h)
        };
        assert_eq!(
            with("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(
            with("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            with("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(with("00-4bf92f35-00f067aa0ba902b7-01"), None);
        assert_eq!(with("garbage"), None);
        assert_eq!(trace_id(&http::HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dropped = prometheus_client::metrics::counter::Counter::default();
        // A queue of one with no writer: the second record has nowhere to go.
        let (queue, _records) = mpsc::channel(1);
        let log = AuditLog {
            queue,
            bodies: None,
            dropped: dropped.clone(),
        };
        log.record(Record::default(), None);
        log.record(Record::default(), None);
        log.record(Record::default(), None);
        assert_eq!(dropped.get(), 2);
    }
}
