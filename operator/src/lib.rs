//! modelroute's control plane.
//!
//! Sources (`source/`: the Kubernetes API or `--routes-dir`) feed the [`index`], which
//! judges every ModelRoute and publishes one immutable world; the [`discovery`] server
//! cuts per-pod snapshots from it and pushes them to the sidecars; the [`controller`]
//! writes what happened into each ModelRoute's status. See DESIGN.md, "Control plane".

pub mod admin;
pub mod cli;
pub mod controller;
pub mod discovery;
pub mod index;
pub mod inject;
pub mod leader;
pub mod ledger;
pub mod metrics;
pub mod source;
pub mod tls;
pub mod webhook;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod mock_api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use discovery::{Authenticator, Discovery, Registry};
use index::Index;
use metrics::Metrics;
pub use modelroute_crds as crds;

/// Where ModelRoutes come from.
#[derive(Clone, Debug)]
pub enum SourceOptions {
    /// ModelRoute YAML files in a directory; sidecars present a shared static token.
    Files {
        routes_dir: PathBuf,
        secrets_dir: Option<PathBuf>,
        static_token: String,
        /// Where the budget ledger is persisted (JSON); `None`: in memory only.
        ledger_file: Option<PathBuf>,
    },
    /// The Kubernetes API (in-cluster config or KUBECONFIG); sidecars present projected
    /// ServiceAccount tokens.
    Kubernetes(Box<KubernetesOptions>),
}

/// What the operator does in a cluster besides watching ModelRoutes.
#[derive(Clone, Debug)]
pub struct KubernetesOptions {
    pub lease: LeaseOptions,
    /// Where the admission webhook listens; `None`: no webhook.
    pub webhook_listen: Option<SocketAddr>,
    pub inject: inject::InjectConfig,
    /// Label this replica's pod while it leads (it must run in a pod named `identity`).
    pub leader_pod_label: bool,
    /// The chart's MutatingWebhookConfiguration: its caBundle follows the operator's CA
    /// (with [`TlsSource::Secret`]), and it owns what the operator creates (the Lease,
    /// the certificate Secret), so uninstalling the chart removes those too.
    pub webhook_configuration: Option<String>,
}

/// Where the serving certificate comes from.
#[derive(Clone, Debug)]
pub enum TlsSource {
    /// Given once (generated into a directory, or by a test).
    Fixed(tls::Serving),
    /// Files someone else renews; re-read every minute.
    Files(tls::files::CertFiles),
    /// A Secret in the operator's namespace that the operator creates and renews.
    Secret(SecretTls),
}

/// The operator-managed certificate Secret.
#[derive(Clone, Debug)]
pub struct SecretTls {
    pub name: String,
    pub sans: Vec<String>,
}

/// The leader Lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// This replica's name.
    pub identity: String,
    /// Set on the Lease when the operator creates it, so it goes when the owner goes.
    pub owner: Option<OwnerReference>,
}

/// How to start an operator.
#[derive(Clone, Debug)]
pub struct Options {
    pub source: SourceOptions,
    pub grpc_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: TlsSource,
    pub drain_timeout: Duration,
    /// Counts spans the exporter dropped (shared with it; see `modelroute_otel`).
    pub spans_dropped: prometheus_client::metrics::counter::Counter,
}

/// A started operator.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub webhook_addr: Option<SocketAddr>,
    pub index: Arc<Index>,
    pub registry: Arc<Registry>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    drain_timeout: Duration,
}

/// Why an operator did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot reach the Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("certificates: {0}")]
    Tls(#[from] tls::TlsError),
    #[error("certificate Secret: {0}")]
    Secret(#[from] tls::secret::SecretError),
    #[error("{0}")]
    Config(String),
}

// === impl Running ===

impl Running {
    /// Ends sessions, steps down, and returns when everything stopped (or the drain
    /// timeout passed).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(self.drain_timeout, drain)
            .await
            .is_err()
        {
            warn!("shutdown did not finish within the drain timeout");
        }
    }

    /// Runs until `signal` resolves, then stops.
    pub async fn run_until(self, signal: impl std::future::Future<Output = ()>) {
        signal.await;
        info!("shutting down");
        self.stop().await;
    }
}

/// Binds the listeners, starts the source, and serves.
pub async fn start(options: Options) -> Result<Running, StartError> {
    let bind = |addr: SocketAddr| async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok::<_, StartError>((listener, local))
    };
    let (grpc, grpc_addr) = bind(options.grpc_listen).await?;
    let (admin, admin_addr) = bind(options.admin_listen).await?;
    let kubernetes = match &options.source {
        SourceOptions::Kubernetes(k) => Some(k.as_ref().clone()),
        SourceOptions::Files { .. } => None,
    };
    let webhook_listener = match kubernetes.as_ref().and_then(|k| k.webhook_listen) {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let client = match kubernetes {
        Some(_) => Some(kube::Client::try_default().await?),
        None => None,
    };
    let owner = match (&kubernetes, &client) {
        (Some(k), Some(client)) => owner(client, k.webhook_configuration.as_deref()).await?,
        _ => None,
    };

    let (index, world) = Index::new();
    let index = Arc::new(index);
    let registry = Arc::new(Registry::default());
    let metrics = Arc::new(Metrics::with_spans_dropped(options.spans_dropped.clone()));
    let store = match (&options.source, &client) {
        (SourceOptions::Files { ledger_file, .. }, _) => match ledger_file {
            Some(path) => ledger::Store::File(path.clone()),
            None => {
                warn!(
                    "no --ledger-file: budget spend lives in memory and starts from zero when \
                     the operator restarts"
                );
                ledger::Store::Memory
            }
        },
        (SourceOptions::Kubernetes(_), Some(client)) => ledger::Store::Status(client.clone()),
        (SourceOptions::Kubernetes(_), None) => ledger::Store::Memory,
    };
    let ledger = Arc::new(ledger::Ledger::new(store.persistent(), metrics.clone()));
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (synced_tx, synced) = watch::channel(false);
    let (leader_tx, leader) = watch::channel(false);
    let certs = certificates(
        &options,
        client.as_ref(),
        owner.clone(),
        &mut tasks,
        &shutdown,
    )
    .await?;

    let auth = match &options.source {
        SourceOptions::Files {
            routes_dir,
            secrets_dir,
            static_token,
            ledger_file: _,
        } => {
            let mut files = source::files::FileSource::new(routes_dir.clone(), secrets_dir.clone());
            files.load(&index);
            synced_tx.send_replace(true);
            // One process, no election: it always leads.
            leader_tx.send_replace(true);
            let (index, stop) = (index.clone(), shutdown.clone());
            tasks.spawn(async move {
                files.run(&index, stop).await;
                drop(synced_tx);
                drop(leader_tx);
            });
            Authenticator::static_token(static_token)
        }
        SourceOptions::Kubernetes(k) => {
            let lease = &LeaseOptions {
                owner: owner.clone(),
                ..k.lease.clone()
            };
            let client = client
                .clone()
                .ok_or_else(|| StartError::Config("no Kubernetes client".into()))?;
            tasks.spawn(source::kube::run(
                client.clone(),
                index.clone(),
                synced_tx,
                shutdown.clone(),
            ));
            tasks.spawn(leader::run(
                client.clone(),
                lease.clone(),
                leader_tx,
                metrics.clone(),
                shutdown.clone(),
            ));
            tasks.spawn(controller::run(
                controller::Context::new(
                    client.clone(),
                    world.clone(),
                    registry.clone(),
                    metrics.clone(),
                ),
                leader.clone(),
                shutdown.clone(),
            ));
            if k.leader_pod_label {
                tasks.spawn(leader::label::run(
                    client.clone(),
                    lease.namespace.clone(),
                    lease.identity.clone(),
                    leader.clone(),
                    shutdown.clone(),
                ));
            }
            Authenticator::TokenReview(client)
        }
    };
    let webhook_addr = match (webhook_listener, &options.source, &client) {
        (Some((listener, addr)), SourceOptions::Kubernetes(k), Some(client)) => {
            let version = client.apiserver_version().await?;
            let minor = inject::config::server_minor(&version.minor);
            let injector = inject::Injector {
                native: k.inject.native_for(minor),
                config: k.inject.clone(),
                operator_namespace: k.lease.namespace.clone(),
            };
            info!(
                server = %version.git_version,
                native_sidecar = injector.native,
                "admission webhook injects the sidecar"
            );
            let webhook = webhook::Webhook {
                injector: Arc::new(injector),
                certs: certs.clone(),
                metrics: metrics.clone(),
            };
            tasks.spawn(webhook.serve(listener, shutdown.clone()));
            Some(addr)
        }
        _ => None,
    };

    // Budget events go on the ModelRoutes in a cluster (and to the log and metrics always).
    let sink = match (&options.source, &client) {
        (SourceOptions::Kubernetes(k), Some(client)) => Some(ledger::events::EventSink {
            client: client.clone(),
            instance: k.lease.identity.clone(),
        }),
        _ => None,
    };
    let (announcer, publish) =
        ledger::events::Announcer::new(sink, metrics.clone(), shutdown.clone());
    tasks.spawn(publish);
    tasks.spawn(ledger::run(
        ledger::run::Parts {
            ledger: ledger.clone(),
            store,
            announcer,
            metrics: metrics.clone(),
            world: world.clone(),
            synced: synced.clone(),
            leader: leader.clone(),
            pods_known: matches!(options.source, SourceOptions::Kubernetes(_)),
        },
        shutdown.clone(),
    ));

    // Sessions wait for the first full state (an empty world would tell every sidecar
    // to drop its routes), for leadership (the leader books ACKs and spend) and for the
    // ledger to be read back (a report applied to an empty ledger would restart spend).
    let serving = serving(
        [synced.clone(), leader, ledger.ready()],
        &mut tasks,
        shutdown.clone(),
    );
    {
        let metrics = metrics.clone();
        let mut world = world.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                let w = world.borrow_and_update().clone();
                let invalid = w.verdicts.values().filter(|v| v.problem.is_some()).count();
                metrics.world(w.version, w.verdicts.len() - invalid, invalid);
                tokio::select! {
                    () = stop.cancelled() => return,
                    changed = world.changed() => if changed.is_err() { return },
                }
            }
        });
    }
    if matches!(options.source, SourceOptions::Files { .. }) {
        // One process that always leads: serve from the first connection on, once the
        // ledger file is read (milliseconds; an unreadable one is retried in the background).
        let mut ready = serving.clone();
        if tokio::time::timeout(Duration::from_secs(10), ready.wait_for(|s| *s))
            .await
            .is_err()
        {
            warn!("not serving sidecars yet: the ledger could not be read back (see above)");
        }
    }
    let discovery = Discovery {
        world: world.clone(),
        auth,
        registry: registry.clone(),
        ledger: ledger.clone(),
        metrics: metrics.clone(),
        serving,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
    };
    let acceptor = certs.acceptor(&[b"h2"])?;
    tasks.spawn(async move {
        if let Err(e) = discovery.serve(grpc, acceptor).await {
            tracing::error!(error = %e, "discovery server stopped");
        }
    });
    let admin_server = admin::Admin {
        world,
        registry: registry.clone(),
        ledger: ledger.clone(),
        metrics,
        synced,
    };
    tasks.spawn(admin_server.serve(admin, shutdown.clone()));
    let webhook = webhook_addr.map_or_else(|| "off".to_string(), |a| a.to_string());
    info!(grpc = %grpc_addr, admin = %admin_addr, %webhook, "modelroute operator listening");
    Ok(Running {
        grpc_addr,
        admin_addr,
        webhook_addr,
        index,
        registry,
        shutdown,
        tasks,
        drain_timeout: options.drain_timeout,
    })
}

/// The certificate store for both servers, from wherever the options say, with the task
/// that keeps it current.
async fn certificates(
    options: &Options,
    client: Option<&kube::Client>,
    owner: Option<OwnerReference>,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Result<Arc<tls::CertStore>, StartError> {
    Ok(match &options.tls {
        TlsSource::Fixed(serving) => tls::CertStore::new(serving.clone())?,
        TlsSource::Files(files) => {
            let serving = tls::load(&files.cert, &files.key, files.ca.as_deref())?;
            let store = tls::CertStore::new(serving)?;
            tasks.spawn(tls::files::run(
                files.clone(),
                store.clone(),
                Duration::from_secs(60),
                shutdown.clone(),
            ));
            store
        }
        TlsSource::Secret(secret) => {
            let (SourceOptions::Kubernetes(k), Some(client)) = (&options.source, client) else {
                return Err(StartError::Config(
                    "certificates in a Secret need the Kubernetes API (not --routes-dir)".into(),
                ));
            };
            let managed = tls::secret::ManagedCerts {
                client: client.clone(),
                namespace: k.lease.namespace.clone(),
                secret: secret.name.clone(),
                sans: secret.sans.clone(),
                webhook_configuration: k.webhook_configuration.clone(),
                owner,
                lifetimes: tls::Lifetimes::default(),
            };
            let issued = managed.ensure().await?;
            let store = tls::CertStore::new(issued.serving)?;
            tasks.spawn(managed.run(store.clone(), shutdown.clone()));
            store
        }
    })
}

/// An owner reference to the named MutatingWebhookConfiguration, if it exists.
async fn owner(
    client: &kube::Client,
    webhook_configuration: Option<&str>,
) -> Result<Option<OwnerReference>, StartError> {
    use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
    use kube::Resource as _;
    let Some(name) = webhook_configuration else {
        return Ok(None);
    };
    let api: kube::Api<MutatingWebhookConfiguration> = kube::Api::all(client.clone());
    let Some(config) = api.get_opt(name).await? else {
        warn!(
            configuration = name,
            "the webhook configuration does not exist; what the operator creates will have no owner"
        );
        return Ok(None);
    };
    Ok(config.controller_owner_ref(&()).map(|mut owner| {
        // An owner, not a controller: nothing reconciles these objects from it.
        owner.controller = None;
        owner.block_owner_deletion = None;
        owner
    }))
}

/// All of `conditions` true, as a watch.
fn serving(
    mut conditions: [watch::Receiver<bool>; 3],
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tasks.spawn(async move {
        loop {
            let now = conditions.iter_mut().all(|c| *c.borrow_and_update());
            tx.send_if_modified(|v| std::mem::replace(v, now) != now);
            let [a, b, c] = &mut conditions;
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = a.changed() => if r.is_err() { return },
                r = b.changed() => if r.is_err() { return },
                r = c.changed() => if r.is_err() { return },
            }
        }
    });
    rx
}
