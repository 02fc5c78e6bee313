//! The operator source: one gRPC session with the operator's discovery server, for the
//! sidecar's whole life.
//!
//! Each connect sends a Hello (the pod's token, read fresh, its name and labels, and the hash
//! of the snapshot it serves); each snapshot the operator pushes is compiled whole and swapped
//! in, then answered with an Ack, or refused with a Nack listing every problem. When the
//! session ends or cannot start, the client reconnects forever with capped, jittered backoff
//! while the last good table keeps serving (static stability).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::limits::fleet::Reporter;
use modelroute_proto::v1::discovery_client::DiscoveryClient;
use modelroute_proto::v1::{Hello, SidecarMessage, operator_message, sidecar_message};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use self::backoff::Backoff;
use self::channel::OperatorAddr;
use crate::App;
use crate::error::describe;

mod backoff;
mod channel;
mod hello;
mod snapshot;

pub use backoff::ReconnectBackoff;
pub use hello::{CAPABILITIES, parse_labels};
pub use snapshot::API_VERSION;

/// Where the projected ServiceAccount token is mounted by the injector.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/modelroute/token";

/// A session that lasted this long was healthy, even without a snapshot (the operator sends
/// none when the sidecar already has its current one): the next reconnect starts fast.
const HEALTHY_SESSION: Duration = Duration::from_secs(30);

/// How often budget spend is reported to the operator (at once when a budget runs low).
const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// How long the operator may take to accept or refuse a Hello (it asks the API server to
/// review the token) before this attempt counts as failed.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest snapshot accepted. tonic's default (4 MiB) could refuse the routes and keys
/// of a big namespace, and the sidecar would reconnect forever; the operator is trusted
/// (TLS, its own CA), so the bound only stops runaway memory.
const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

/// How to reach the operator and who to say this sidecar is.
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// `https://host:port`; `http://` for tests and development only.
    pub url: String,
    /// PEM bundle of the CA that signed the operator's certificate; the only roots trusted.
    pub ca: Option<CaBundle>,
    /// The name the operator's certificate must carry; default the URL's host.
    pub server_name: Option<String>,
    /// Read on every connect: projected tokens rotate.
    pub token_file: PathBuf,
    pub pod_namespace: String,
    pub pod_name: String,
    /// The downward API's labels file (`key="value"` lines), read on every connect.
    pub pod_labels_file: Option<PathBuf>,
    /// ModelRoute YAML served from start until the first snapshot applies.
    pub bootstrap: Option<PathBuf>,
    pub backoff: ReconnectBackoff,
}

/// A checked [`OperatorOptions`], ready to [`run`](OperatorClient::run).
#[derive(Debug)]
pub struct OperatorClient {
    options: OperatorOptions,
    addr: OperatorAddr,
    /// `operator <url>`, for `/config` and logs.
    source: String,
}

/// How one session ended.
#[derive(Debug)]
enum SessionEnd {
    /// It never started: no token, no CA bundle, or no connection.
    Failed(String),
    /// The operator answered the call with an error status (for example Unauthenticated).
    Refused(Status),
    /// An accepted session ended: `None` when the operator closed it cleanly.
    Ended {
        snapshots: u64,
        status: Option<Status>,
    },
}

/// The CA bundle that signed the operator's certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CaBundle {
    /// A file, read at each connect (a rotated bundle is picked up).
    File(PathBuf),
    /// PEM text (the injector passes it in the environment).
    Pem(String),
}

// === impl OperatorOptions ===

impl OperatorOptions {
    /// Options for `url` with every other field at its default.
    pub fn new(url: String) -> Self {
        Self {
            url,
            ca: None,
            server_name: None,
            token_file: PathBuf::from(DEFAULT_TOKEN_FILE),
            pod_namespace: String::new(),
            pod_name: String::new(),
            pod_labels_file: None,
            bootstrap: None,
            backoff: ReconnectBackoff::default(),
        }
    }
}

// === impl OperatorClient ===

impl OperatorClient {
    /// Checks the URL and CA bundle now, so a mistake stops the start with a clear message.
    pub fn new(options: OperatorOptions) -> Result<Self, String> {
        let addr = OperatorAddr::new(&options)?;
        if addr.is_plaintext() {
            warn!(
                url = %options.url,
                "the operator is reached over plain http: the token and provider keys travel \
                 unencrypted; use https outside tests"
            );
        }
        let source = format!("operator {}", options.url);
        Ok(Self {
            options,
            addr,
            source,
        })
    }

    /// `operator <url>`: the source named in `/config`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Holds a session with the operator until `shutdown`, reconnecting whenever it ends.
    pub async fn run(self, app: Arc<App>, shutdown: CancellationToken) {
        let mut backoff = Backoff::new(self.options.backoff);
        let url = self.options.url.as_str();
        let mut reporter = Reporter::new();
        loop {
            let started = Instant::now();
            let end = tokio::select! {
                () = shutdown.cancelled() => break,
                end = self.session(&app, &mut reporter) => end,
            };
            reporter.on_disconnect(&app.limits);
            app.metrics.operator_connected(false);
            let healthy = match &end {
                SessionEnd::Failed(error) => {
                    app.metrics.operator_connect("error");
                    warn!(
                        %url,
                        %error,
                        "cannot reach the operator; the active config keeps serving"
                    );
                    false
                }
                SessionEnd::Refused(status) => {
                    app.metrics.operator_connect("refused");
                    warn!(
                        %url,
                        code = ?status.code(),
                        reason = status.message(),
                        "the operator refused the session; the active config keeps serving"
                    );
                    false
                }
                SessionEnd::Ended { snapshots, status } => {
                    match status {
                        None => info!(%url, "the operator closed the session"),
                        Some(s) if is_local(s) => {
                            let error = local_error(s);
                            warn!(%url, %error, "the session with the operator broke");
                        }
                        Some(s) => warn!(
                            %url,
                            code = ?s.code(),
                            reason = s.message(),
                            "the operator ended the session"
                        ),
                    }
                    *snapshots > 0 || started.elapsed() >= HEALTHY_SESSION
                }
            };
            if healthy {
                backoff.reset();
            }
            let wait = backoff.next_wait();
            debug!(?wait, "reconnecting to the operator");
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        app.metrics.operator_connected(false);
        debug!("operator client stopped");
    }

    /// One session: connect, Hello, then answer every snapshot and apply every grant until
    /// the stream ends, reporting budget spend once a second (at once when a budget runs
    /// low).
    async fn session(&self, app: &App, reporter: &mut Reporter) -> SessionEnd {
        let active = app.table().and_then(|t| t.snapshot.clone());
        let hello = match hello::hello(&self.options, active.as_ref()) {
            Ok(h) => h,
            Err(e) => return SessionEnd::Failed(e),
        };
        let endpoint = match self.addr.endpoint() {
            Ok(e) => e,
            Err(e) => return SessionEnd::Failed(e),
        };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => return SessionEnd::Failed(describe(&e)),
        };
        // Room for the Hello and a few replies; the operator reads them as they come.
        let (outbound, rx) = mpsc::channel(4);
        let _ = outbound.try_send(sidecar_hello(hello));
        let mut client =
            DiscoveryClient::new(channel).max_decoding_message_size(MAX_SNAPSHOT_BYTES);
        let call = client.session(ReceiverStream::new(rx));
        let mut inbound = match tokio::time::timeout(ANSWER_TIMEOUT, call).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if is_local(&status) => {
                return SessionEnd::Failed(local_error(&status));
            }
            Ok(Err(status)) => return SessionEnd::Refused(status),
            Err(_) => {
                return SessionEnd::Failed(format!(
                    "no answer to the Hello within {}s",
                    ANSWER_TIMEOUT.as_secs()
                ));
            }
        };
        app.metrics.operator_connect("ok");
        app.metrics.operator_connected(true);
        info!(
            url = %self.options.url,
            active_hash = active.as_ref().map(|a| a.hash.as_str()),
            "connected to the operator"
        );
        let mut snapshots = 0;
        for message in reporter.on_connect(&app.limits) {
            let _ = outbound.send(message).await;
        }
        let mut tick = tokio::time::interval(REPORT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                next = inbound.message() => next,
                _ = tick.tick() => {
                    if let Some(report) = reporter.report(&app.limits, false) {
                        let _ = outbound.send(report).await;
                    }
                    continue;
                }
                () = app.limits.want.notified() => {
                    if let Some(report) = reporter.report(&app.limits, false) {
                        let _ = outbound.send(report).await;
                    }
                    continue;
                }
            };
            let message = match next {
                Ok(Some(m)) => m,
                Ok(None) => {
                    return SessionEnd::Ended {
                        snapshots,
                        status: None,
                    };
                }
                Err(status) => {
                    return SessionEnd::Ended {
                        snapshots,
                        status: Some(status),
                    };
                }
            };
            let s = match message.message {
                Some(operator_message::Message::Snapshot(s)) => s,
                Some(operator_message::Message::Grants(g)) => {
                    reporter.on_grants(&app.limits, g);
                    continue;
                }
                None => {
                    debug!("ignoring an operator message this sidecar does not know");
                    continue;
                }
            };
            snapshots += 1;
            let reply = snapshot::apply(app, &self.source, s);
            // A closed stream shows up as the next read's error.
            let _ = outbound.send(reply).await;
        }
    }
}

fn sidecar_hello(hello: Hello) -> SidecarMessage {
    SidecarMessage {
        message: Some(sidecar_message::Message::Hello(hello)),
    }
}

/// What went wrong in a status [`is_local`] made: its message and the cause.
fn local_error(status: &Status) -> String {
    match std::error::Error::source(status) {
        Some(cause) if status.message().is_empty() => describe(cause),
        Some(cause) => format!("{}: {}", status.message(), describe(cause)),
        None => status.message().to_string(),
    }
}

/// A status made on this side from a transport failure (tonic keeps the cause as its
/// source), as opposed to one the operator sent.
fn is_local(status: &Status) -> bool {
    std::error::Error::source(status).is_some()
        && matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Internal
        )
}
