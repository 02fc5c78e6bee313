//! Command-line arguments (each also settable by environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use crate::Options;
use crate::config::operator::{CaBundle, DEFAULT_TOKEN_FILE, OperatorOptions};
use crate::telemetry::LogFormat;
use crate::telemetry::audit::Sink;

/// modelroute sidecar: an OpenAI-compatible LLM gateway on localhost.
#[derive(Debug, Parser)]
#[command(name = "modelroute-sidecar", version)]
pub struct Args {
    /// ModelRoute YAML file, or a directory of them; reloaded when it changes.
    #[arg(long, env = "MODELROUTE_CONFIG", conflicts_with = "operator")]
    pub config: Option<PathBuf>,
    /// The operator's discovery address, `https://host:port`: config is pushed from there
    /// (`http://` for tests only).
    #[arg(long, env = "MODELROUTE_OPERATOR")]
    pub operator: Option<String>,
    /// PEM bundle of the CA that signed the operator's certificate (the only roots trusted).
    #[arg(long, env = "MODELROUTE_OPERATOR_CA", requires = "operator")]
    pub operator_ca: Option<PathBuf>,
    /// The same CA bundle as PEM text (the injector sets this from the operator's CA).
    #[arg(
        long,
        env = "MODELROUTE_OPERATOR_CA_PEM",
        requires = "operator",
        conflicts_with = "operator_ca",
        hide_env_values = true
    )]
    pub operator_ca_pem: Option<String>,
    /// The name the operator's certificate must carry (default: the host of --operator).
    #[arg(long, env = "MODELROUTE_OPERATOR_SERVER_NAME", requires = "operator")]
    pub operator_server_name: Option<String>,
    /// The token that proves which pod this is, read on every connect.
    #[arg(long, env = "MODELROUTE_TOKEN_FILE", default_value = DEFAULT_TOKEN_FILE)]
    pub token_file: PathBuf,
    /// This pod's namespace (downward API).
    #[arg(long, env = "POD_NAMESPACE", default_value = "")]
    pub pod_namespace: String,
    /// This pod's name (downward API).
    #[arg(long, env = "POD_NAME", default_value = "")]
    pub pod_name: String,
    /// This pod's labels as the downward API writes them (`key="value"` lines).
    #[arg(long, env = "MODELROUTE_POD_LABELS_FILE")]
    pub pod_labels_file: Option<PathBuf>,
    /// ModelRoute YAML served until the operator's first snapshot applies.
    #[arg(long, env = "MODELROUTE_BOOTSTRAP", requires = "operator")]
    pub bootstrap: Option<PathBuf>,
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
    /// Memory the response cache (routes with `cache`) may hold, in bytes; least recently
    /// used answers are evicted first.
    #[arg(long, env = "MODELROUTE_CACHE_MAX_BYTES", default_value_t = crate::DEFAULT_CACHE_MAX_BYTES)]
    pub cache_max_bytes: u64,
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
    /// Standalone (`--config`): a file where budget spend is kept across restarts (written
    /// within a second of a change and at shutdown). Without it a restart starts budgets
    /// from zero.
    #[arg(long, env = "MODELROUTE_LEDGER_FILE", conflicts_with = "operator")]
    pub ledger_file: Option<PathBuf>,
    /// The audit log: one JSON line per model call, to `stdout` or appended to this file.
    #[arg(long, env = "MODELROUTE_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Keep request and response bodies in audit records (redacted by --audit-redact).
    #[arg(long, env = "MODELROUTE_AUDIT_BODIES", requires = "audit_log")]
    pub audit_bodies: bool,
    /// A regular expression whose matches in audit bodies become `[REDACTED]`; repeat it,
    /// or separate several with newlines in the environment variable.
    #[arg(
        long,
        env = "MODELROUTE_AUDIT_REDACT",
        value_delimiter = '\n',
        requires = "audit_bodies"
    )]
    pub audit_redact: Vec<String>,
    /// Runtime worker threads (default: one per core).
    #[arg(long, env = "MODELROUTE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
}

// === impl Args ===

impl Args {
    pub fn options(&self) -> Options {
        let operator = self.operator.clone().map(|url| OperatorOptions {
            ca: match (&self.operator_ca, &self.operator_ca_pem) {
                (Some(path), _) => Some(CaBundle::File(path.clone())),
                (None, Some(pem)) => Some(CaBundle::Pem(pem.clone())),
                (None, None) => None,
            },
            server_name: self.operator_server_name.clone(),
            token_file: self.token_file.clone(),
            pod_namespace: self.pod_namespace.clone(),
            pod_name: self.pod_name.clone(),
            pod_labels_file: self.pod_labels_file.clone(),
            bootstrap: self.bootstrap.clone(),
            ..OperatorOptions::new(url)
        });
        Options {
            config: self.config.clone(),
            operator,
            listen: self.listen,
            admin_listen: self.admin_listen,
            max_body_bytes: self.max_body_bytes,
            cache_max_bytes: self.cache_max_bytes,
            drain_timeout: self.drain_timeout.into(),
            ledger_file: self.ledger_file.clone(),
            pod_name: self.pod_name.clone(),
            pod_namespace: self.pod_namespace.clone(),
            audit: crate::telemetry::AuditOptions {
                sink: self.audit_log.as_deref().map(|to| match to {
                    "stdout" | "-" => Sink::Stdout,
                    path => Sink::File(path.into()),
                }),
                bodies: self.audit_bodies,
                redact: self.audit_redact.clone(),
            },
            spans_dropped: prometheus_client::metrics::counter::Counter::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_flags_build_operator_options() {
        let args = Args::try_parse_from([
            "modelroute-sidecar",
            "--operator",
            "https://op.modelroute-system.svc:8443",
            "--operator-ca",
            "/ca.pem",
            "--pod-name",
            "web-1",
            "--pod-namespace",
            "shop",
            "--bootstrap",
            "/boot.yaml",
        ])
        .unwrap();
        let o = args.options().operator.unwrap();
        assert_eq!(o.url, "https://op.modelroute-system.svc:8443");
        assert_eq!(o.ca, Some(CaBundle::File(PathBuf::from("/ca.pem"))));
        assert_eq!(
            (o.pod_namespace.as_str(), o.pod_name.as_str()),
            ("shop", "web-1")
        );
        assert_eq!(o.token_file, PathBuf::from(DEFAULT_TOKEN_FILE));
        assert_eq!(o.bootstrap, Some(PathBuf::from("/boot.yaml")));
    }

    #[test]
    fn audit_flags_build_audit_options() {
        let args = Args::try_parse_from([
            "modelroute-sidecar",
            "--audit-log",
            "-",
            "--audit-bodies",
            "--audit-redact",
            r"\d{16}",
            "--audit-redact",
            "secret",
        ])
        .unwrap();
        let audit = args.options().audit;
        assert_eq!(audit.sink, Some(Sink::Stdout));
        assert!(audit.bodies);
        assert_eq!(audit.redact, [r"\d{16}", "secret"]);
        let to_file = Args::try_parse_from(["modelroute-sidecar", "--audit-log", "/var/log/a"])
            .unwrap()
            .options()
            .audit;
        assert_eq!(to_file.sink, Some(Sink::File("/var/log/a".into())));
        assert!(!to_file.bodies);
        // Redaction rules without bodies would do nothing: refused rather than ignored.
        assert!(
            Args::try_parse_from([
                "modelroute-sidecar",
                "--audit-log",
                "-",
                "--audit-redact",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn config_and_operator_exclude_each_other() {
        let err = Args::try_parse_from([
            "modelroute-sidecar",
            "--config",
            "r.yaml",
            "--operator",
            "https://op:8443",
        ])
        .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let err =
            Args::try_parse_from(["modelroute-sidecar", "--bootstrap", "b.yaml"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }
}
