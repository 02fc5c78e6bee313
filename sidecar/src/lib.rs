//! modelroute's sidecar: an OpenAI-compatible LLM gateway on localhost.
//!
//! Request path: `handler` (parse, size limit) -> `config` (alias -> route) -> `dispatch`
//! (targets, retries, breakers, fallbacks) -> `provider` (upstream call) -> `stream`
//! (relay) -> `telemetry` (metrics). See DESIGN.md for the map.

pub mod api;
pub mod cache;
pub mod cli;
pub mod config;
pub mod cost;
pub mod dispatch;
pub mod error;
pub mod handler;
pub mod limits;
pub mod provider;
pub mod route;
pub mod secret;
pub mod server;
pub mod stream;
pub mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use modelroute_crds::ModelRoute;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use config::operator::{OperatorClient, OperatorOptions};
use config::{CompileError, RouteTable, SecretKeys, SnapshotId};
use telemetry::Metrics;

/// State shared by every request: the active route table, metrics, limits, and the
/// tracker of stream tasks (so shutdown can wait for them).
#[derive(Debug)]
pub struct App {
    table: ArcSwapOption<RouteTable>,
    /// Serializes config applies; requests never take it.
    apply_lock: Mutex<()>,
    pub metrics: Metrics,
    pub max_body_bytes: usize,
    pub tasks: TaskTracker,
    /// Budget accounts and rate-limit buckets; they outlive config reloads.
    pub limits: Arc<limits::Limits>,
    /// The audit log, when one is configured.
    pub audit: Option<telemetry::AuditLog>,
    /// Where this sidecar runs, for audit records.
    pub pod: Arc<str>,
    pub namespace: Arc<str>,
    /// Whole answers of routes with `cache`, bounded in bytes for the whole sidecar.
    pub cache: cache::ResponseCache,
}

/// How to start a sidecar (the CLI's arguments, minus logging).
#[derive(Clone, Debug)]
pub struct Options {
    /// A ModelRoute YAML file or a directory of them.
    pub config: Option<PathBuf>,
    /// Config from the operator instead of files (excludes `config`).
    pub operator: Option<OperatorOptions>,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub max_body_bytes: usize,
    pub drain_timeout: Duration,
    /// Standalone: where budget spend is kept across restarts.
    pub ledger_file: Option<PathBuf>,
    /// This pod's name (`scope: pod`); "local" when unknown.
    pub pod_name: String,
    /// This pod's namespace (in audit records); "" when unknown.
    pub pod_namespace: String,
    /// The audit log (off unless it has a sink).
    pub audit: telemetry::AuditOptions,
    /// Counts spans the exporter dropped (shared with it; see `telemetry::otel`).
    pub spans_dropped: prometheus_client::metrics::counter::Counter,
    /// Memory the response cache may hold, in bytes.
    pub cache_max_bytes: u64,
}

/// Default `--cache-max-bytes`: 64 MiB.
pub const DEFAULT_CACHE_MAX_BYTES: u64 = 64 * 1024 * 1024;

/// For tests and embedding: no config source, loopback on ports the OS chooses, the CLI's
/// limits.
impl Default for Options {
    fn default() -> Self {
        Self {
            config: None,
            operator: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_body_bytes: 32 * 1024 * 1024,
            drain_timeout: Duration::from_secs(30),
            ledger_file: None,
            pod_name: String::new(),
            pod_namespace: String::new(),
            audit: telemetry::AuditOptions::default(),
            spans_dropped: prometheus_client::metrics::counter::Counter::default(),
            cache_max_bytes: DEFAULT_CACHE_MAX_BYTES,
        }
    }
}

/// A started sidecar.
#[derive(Debug)]
pub struct Running {
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: CancellationToken,
    servers: JoinSet<()>,
}

/// Why a sidecar did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot load the config: {0}")]
    Config(String),
    #[error("cannot use the operator: {0}")]
    Operator(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

// === impl App ===

impl App {
    /// A standalone sidecar's state (it keeps its own budget ledger).
    pub fn new(max_body_bytes: usize) -> Self {
        let limits = limits::Limits::new(limits::Mode::Standalone, "local".into(), None);
        Self::with_limits(max_body_bytes, limits)
    }

    pub fn with_limits(max_body_bytes: usize, limits: limits::Limits) -> Self {
        Self {
            table: ArcSwapOption::empty(),
            apply_lock: Mutex::new(()),
            metrics: Metrics::new(),
            max_body_bytes,
            tasks: TaskTracker::new(),
            limits: Arc::new(limits),
            audit: None,
            pod: Arc::from(""),
            namespace: Arc::from(""),
            cache: cache::ResponseCache::new(DEFAULT_CACHE_MAX_BYTES),
        }
    }

    /// The active route table, if a config has been loaded.
    pub fn table(&self) -> Option<Arc<RouteTable>> {
        self.table.load_full()
    }

    /// Compiles `docs` and makes them the active config. An identical config is a no-op;
    /// a bad one changes nothing. `apiKey.secretRef` is refused: files carry no Secrets.
    pub fn apply(
        &self,
        docs: &[ModelRoute],
        source: &str,
    ) -> Result<Arc<RouteTable>, CompileError> {
        self.apply_with_keys(docs, source, &SecretKeys::none(), None)
    }

    /// [`App::apply`] for a source that carries Secret values: `keys` resolves
    /// `apiKey.secretRef`, and `snapshot` names the operator snapshot the config came from
    /// (shown in `/config`, sent back as `active_hash` in the next Hello). The config is
    /// compiled whole before the swap, so a bad one changes nothing.
    pub fn apply_with_keys(
        &self,
        docs: &[ModelRoute],
        source: &str,
        keys: &SecretKeys,
        snapshot: Option<SnapshotId>,
    ) -> Result<Arc<RouteTable>, CompileError> {
        let _guard = self.apply_lock.lock().unwrap_or_else(|e| e.into_inner());
        let previous = self.table.load_full();
        let mut table = config::compile(docs, source, keys, previous.as_deref(), &self.metrics)?;
        table.snapshot = snapshot;
        if let Some(prev) =
            previous.filter(|p| p.hash == table.hash && p.snapshot == table.snapshot)
        {
            return Ok(prev);
        }
        let table = Arc::new(table);
        self.table.store(Some(table.clone()));
        self.metrics.config_applied(table.version);
        info!(
            version = table.version,
            hash = &table.hash[..12],
            source = %table.source,
            snapshot = table.snapshot.as_ref().map(|s| s.version),
            models = ?table.aliases().collect::<Vec<_>>(),
            "config applied"
        );
        Ok(table)
    }
}

// === impl Running ===

impl Running {
    /// Stops accepting, lets requests and streams finish (up to the drain timeout), and
    /// returns when everything has stopped.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.servers.join_next().await.is_some() {}
    }

    /// Runs until `signal` resolves, then stops.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        info!("shutting down");
        self.stop().await;
    }
}

/// The budget ledger: under the operator, spent from its grants; standalone, the sidecar's
/// own, read back from `--ledger-file`.
fn new_limits(options: &Options) -> Result<limits::Limits, StartError> {
    let pod = if options.pod_name.is_empty() {
        "local".to_string()
    } else {
        options.pod_name.clone()
    };
    if options.operator.is_some() {
        if options.ledger_file.is_some() {
            return Err(StartError::Config(
                "--ledger-file is for a standalone sidecar; under --operator the operator \
                 keeps the ledger"
                    .into(),
            ));
        }
        return Ok(limits::Limits::new(limits::Mode::Fleet, pod, None));
    }
    let limits = limits::Limits::new(limits::Mode::Standalone, pod, options.ledger_file.clone());
    if let Some(path) = &options.ledger_file {
        let spent = limits::store::load(path).map_err(|e| StartError::Config(e.to_string()))?;
        info!(path = %path.display(), accounts = spent.len(), "ledger read");
        limits.ledger.restore(spent, std::time::SystemTime::now());
    }
    Ok(limits)
}

/// Reads and applies ModelRoute YAML at start; any problem stops the start.
fn load_file(app: &App, path: &std::path::Path, source: String) -> Result<(), StartError> {
    let docs = config::file::read(path).map_err(StartError::Config)?;
    app.apply(&docs, &source)
        .map_err(|e| StartError::Config(e.problems.join("\n  ")))?;
    Ok(())
}

/// Loads the config, binds both listeners and starts serving.
pub async fn start(options: Options) -> Result<Running, StartError> {
    if options.config.is_some() && options.operator.is_some() {
        return Err(StartError::Config(
            "--config and --operator exclude each other: choose one source".into(),
        ));
    }
    let mut app = App::with_limits(options.max_body_bytes, new_limits(&options)?);
    app.metrics = Metrics::with_spans_dropped(options.spans_dropped.clone());
    app.audit = telemetry::AuditLog::start(&options.audit, app.metrics.audit_dropped())
        .map_err(|e| StartError::Config(e.to_string()))?;
    app.pod = Arc::from(options.pod_name.as_str());
    app.namespace = Arc::from(options.pod_namespace.as_str());
    app.cache = cache::ResponseCache::new(options.cache_max_bytes);
    let app = Arc::new(app);
    // Watch before the first read, so a change between the two is not missed.
    let watch = options.config.clone().map(config::file::Watch::new);
    if let Some(path) = &options.config {
        load_file(&app, path, format!("file:{}", path.display()))?;
    }
    let operator = match &options.operator {
        Some(o) => {
            let client = OperatorClient::new(o.clone()).map_err(StartError::Operator)?;
            match &o.bootstrap {
                Some(path) => {
                    let source = format!("bootstrap file:{}", path.display());
                    load_file(&app, path, source)?;
                }
                None => info!("no --bootstrap: not ready until the operator's first snapshot"),
            }
            Some(client)
        }
        None => None,
    };
    if options.config.is_none() && options.operator.is_none() {
        tracing::warn!("no --config or --operator given: serving no models");
    }
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })
    };
    let proxy = bind(options.listen).await?;
    let admin = bind(options.admin_listen).await?;
    let proxy_addr = proxy.local_addr().map_err(|source| StartError::Bind {
        addr: options.listen,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
        addr: options.admin_listen,
        source,
    })?;
    info!(proxy = %proxy_addr, admin = %admin_addr, "modelroute sidecar listening");

    let shutdown = CancellationToken::new();
    let mut servers = JoinSet::new();
    let drain = options.drain_timeout;
    {
        let app = app.clone();
        let stop = shutdown.clone();
        servers.spawn(async move {
            let handler = {
                let app = app.clone();
                move |req| handler::handle(app.clone(), req)
            };
            server::serve(proxy, handler, stop, drain).await;
            // Streams run in their own tasks: give them the same drain time.
            app.tasks.close();
            let _ = tokio::time::timeout(drain, app.tasks.wait()).await;
        });
    }
    {
        let app = app.clone();
        let stop = shutdown.clone();
        let handler = move |req| server::admin::handle(app.clone(), req);
        servers.spawn(server::serve(admin, handler, stop, Duration::from_secs(1)));
    }
    if let Some(watch) = watch {
        servers.spawn(watch.run(app.clone(), shutdown.clone()));
    }
    if let Some(path) = &app.limits.ledger_file {
        let task = limits::store::run(app.limits.clone(), path.clone(), shutdown.clone());
        servers.spawn(task);
    }
    if let Some(operator) = operator {
        info!(source = operator.source(), "config from the operator");
        servers.spawn(operator.run(app.clone(), shutdown.clone()));
    }
    Ok(Running {
        proxy_addr,
        admin_addr,
        app,
        shutdown,
        servers,
    })
}
