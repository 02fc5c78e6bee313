//! Command-line arguments (each also settable by environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::Options;
use crate::telemetry::LogFormat;

/// modelroute sidecar: an OpenAI-compatible LLM gateway on localhost.
#[derive(Debug, Parser)]
#[command(name = "modelroute-sidecar", version)]
pub struct Args {
    /// ModelRoute YAML file, or a directory of them; reloaded when it changes.
    #[arg(long, env = "MODELROUTE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the OpenAI-compatible proxy. Loopback by default: only the pod's own
    /// containers should reach it.
    #[arg(long, env = "MODELROUTE_LISTEN", default_value = "127.0.0.1:4000")]
    pub listen: SocketAddr,
    /// Address of the admin port (/healthz, /readyz, /metrics, /config).
    #[arg(long, env = "MODELROUTE_ADMIN_LISTEN", default_value = "0.0.0.0:4001")]
    pub admin_listen: SocketAddr,
    /// Largest request body accepted, in bytes (images as data URLs make bodies large).
    #[arg(long, env = "MODELROUTE_MAX_BODY_BYTES", default_value_t = 32 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long shutdown waits for requests and streams in flight.
    #[arg(long, env = "MODELROUTE_DRAIN_TIMEOUT", default_value = "30s")]
    pub drain_timeout: modelroute_crds::Duration,
    #[arg(
        long,
        env = "MODELROUTE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `modelroute_sidecar=debug` (RUST_LOG wins when set).
    #[arg(long, env = "MODELROUTE_LOG", default_value = "info")]
    pub log: String,
    /// Runtime worker threads (default: one per core).
    #[arg(long, env = "MODELROUTE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

// === impl Args ===

impl Args {
    pub fn options(&self) -> Options {
        Options {
            config: self.config.clone(),
            listen: self.listen,
            admin_listen: self.admin_listen,
            max_body_bytes: self.max_body_bytes,
            drain_timeout: self.drain_timeout.into(),
        }
    }
}
