//! Command-line arguments (each also settable by environment variable).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Parser};

/// modelroute operator: pushes ModelRoutes to the sidecars.
#[derive(Debug, Parser)]
#[command(name = "modelroute-operator", version)]
#[command(group(ArgGroup::new("tls").required(true).args(["tls_cert", "tls_generate", "tls_secret"])))]
pub struct Args {
    /// Serve ModelRoute YAML files from this directory (watched) instead of the
    /// Kubernetes API. Sidecars then authenticate with --static-token-file.
    #[arg(long, env = "MODELROUTE_ROUTES_DIR", requires = "static_token_file")]
    pub routes_dir: Option<PathBuf>,
    /// With --routes-dir: Secrets as files, `DIR/<namespace>/<secret>/<key>` (the layout
    /// of mounted Secret volumes), for `apiKey.secretRef`.
    #[arg(long, env = "MODELROUTE_SECRETS_DIR", requires = "routes_dir")]
    pub secrets_dir: Option<PathBuf>,
    /// With --routes-dir: a file holding the token every sidecar must present.
    #[arg(long, env = "MODELROUTE_STATIC_TOKEN_FILE", requires = "routes_dir")]
    pub static_token_file: Option<PathBuf>,
    /// With --routes-dir: persist the budget ledger (spend and allowance held per budget,
    /// scope value and window) to this JSON file, replaced atomically about once a second
    /// while it changes, and read back at start. Without it, spend starts from zero when the
    /// operator restarts. (In Kubernetes the ledger lives in ModelRoute status.)
    #[arg(long, env = "MODELROUTE_LEDGER_FILE", requires = "routes_dir")]
    pub ledger_file: Option<PathBuf>,
    /// Address of the discovery gRPC server (TLS).
    #[arg(long, env = "MODELROUTE_GRPC_LISTEN", default_value = "0.0.0.0:8443")]
    pub grpc_listen: SocketAddr,
    /// Address of the admin port (/healthz, /readyz, /metrics, /status).
    #[arg(long, env = "MODELROUTE_ADMIN_LISTEN", default_value = "0.0.0.0:8080")]
    pub admin_listen: SocketAddr,
    /// Address of the admission webhook (HTTPS; Kubernetes mode only).
    #[arg(
        long,
        env = "MODELROUTE_WEBHOOK_LISTEN",
        default_value = "0.0.0.0:9443"
    )]
    pub webhook_listen: SocketAddr,
    /// Do not serve the admission webhook.
    #[arg(long, env = "MODELROUTE_NO_WEBHOOK")]
    pub no_webhook: bool,
    /// Injection settings (YAML; the chart renders them). Defaults when absent.
    #[arg(long, env = "MODELROUTE_INJECT_CONFIG")]
    pub inject_config: Option<PathBuf>,
    /// Keep the certificates in this Secret of the operator's namespace: created when
    /// missing, renewed before expiry, shared by all replicas.
    #[arg(long, env = "MODELROUTE_TLS_SECRET", conflicts_with_all = ["tls_cert", "tls_generate", "routes_dir"])]
    pub tls_secret: Option<String>,
    /// The chart's MutatingWebhookConfiguration: with --tls-secret its caBundle is kept
    /// equal to the operator's CA; it owns the Lease and Secret the operator creates.
    #[arg(long, env = "MODELROUTE_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// The leader labels its own pod `modelroute.dev/leader=true` (the discovery
    /// Service selects it). Needs to run in the pod named by POD_NAME.
    #[arg(long, env = "MODELROUTE_LEADER_POD_LABEL")]
    pub leader_pod_label: bool,
    /// PEM certificate chain of the discovery server and webhook (e.g. from a mounted
    /// Secret; re-read every minute).
    #[arg(long, env = "MODELROUTE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the discovery server and webhook.
    #[arg(long, env = "MODELROUTE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// With --tls-cert: the CA (PEM) injected sidecars trust. Needed for injection.
    #[arg(long, env = "MODELROUTE_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Generate a CA and serving certificate into this directory (ca.crt, tls.crt,
    /// tls.key), or reuse the ones already there. Sidecars trust ca.crt.
    #[arg(long, env = "MODELROUTE_TLS_GENERATE")]
    pub tls_generate: Option<PathBuf>,
    /// DNS names and IPs for the generated or Secret-kept certificate (repeat or
    /// comma-separate).
    #[arg(
        long,
        env = "MODELROUTE_TLS_SAN",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub tls_san: Vec<String>,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "modelroute-system")]
    pub namespace: String,
    /// This replica's name in the Lease (its pod name).
    #[arg(long, env = "POD_NAME", default_value = "modelroute-operator")]
    pub identity: String,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "MODELROUTE_LEASE_NAME",
        default_value = "modelroute-operator"
    )]
    pub lease_name: String,
    /// How long shutdown waits for sessions and status writes.
    #[arg(long, env = "MODELROUTE_DRAIN_TIMEOUT", default_value = "10s")]
    pub drain_timeout: modelroute_crds::Duration,
    /// Log filter, e.g. `info` or `modelroute_operator=debug` (RUST_LOG wins when set).
    #[arg(long, env = "MODELROUTE_LOG", default_value = "info")]
    pub log: String,
    /// `text` or `json`.
    #[arg(long, env = "MODELROUTE_LOG_FORMAT", default_value = "text")]
    pub log_format: String,
}
