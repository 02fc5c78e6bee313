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
pub mod leader;
pub mod metrics;
pub mod source;
pub mod tls;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod mock_api;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

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
    },
    /// The Kubernetes API (in-cluster config or KUBECONFIG); sidecars present projected
    /// ServiceAccount tokens.
    Kubernetes(LeaseOptions),
}

/// The leader Lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    pub namespace: String,
    pub name: String,
    /// This replica's name.
    pub identity: String,
}

/// How to start an operator.
#[derive(Clone, Debug)]
pub struct Options {
    pub source: SourceOptions,
    pub grpc_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub tls: tls::ServingCertPem,
    pub drain_timeout: Duration,
}

/// A started operator.
#[derive(Debug)]
pub struct Running {
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
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

/// Binds both listeners, starts the source, and serves.
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

    let (index, world) = Index::new();
    let index = Arc::new(index);
    let registry = Arc::new(Registry::default());
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let (synced_tx, synced) = watch::channel(false);
    let (leader_tx, leader) = watch::channel(false);

    let auth = match &options.source {
        SourceOptions::Files {
            routes_dir,
            secrets_dir,
            static_token,
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
        SourceOptions::Kubernetes(lease) => {
            let client = kube::Client::try_default().await?;
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
            Authenticator::TokenReview(client)
        }
    };

    // Sessions wait for the first full state (an empty world would tell every sidecar
    // to drop its routes) and for leadership (the leader books ACKs and, later, spend).
    let serving = serving(synced.clone(), leader, &mut tasks, shutdown.clone());
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
    let discovery = Discovery {
        world: world.clone(),
        auth,
        registry: registry.clone(),
        metrics: metrics.clone(),
        serving,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
    };
    let (cert, key) = (options.tls.cert_pem.clone(), options.tls.key_pem.clone());
    tasks.spawn(async move {
        if let Err(e) = discovery.serve(grpc, &cert, &key).await {
            tracing::error!(error = %e, "discovery server stopped");
        }
    });
    let admin_server = admin::Admin {
        world,
        registry: registry.clone(),
        metrics,
        synced,
    };
    tasks.spawn(admin_server.serve(admin, shutdown.clone()));
    info!(grpc = %grpc_addr, admin = %admin_addr, "modelroute operator listening");
    Ok(Running {
        grpc_addr,
        admin_addr,
        index,
        registry,
        shutdown,
        tasks,
        drain_timeout: options.drain_timeout,
    })
}

/// `synced && leader`, as a watch.
fn serving(
    mut synced: watch::Receiver<bool>,
    mut leader: watch::Receiver<bool>,
    tasks: &mut JoinSet<()>,
    shutdown: CancellationToken,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tasks.spawn(async move {
        loop {
            let now = *synced.borrow_and_update() && *leader.borrow_and_update();
            tx.send_if_modified(|v| std::mem::replace(v, now) != now);
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = synced.changed() => if r.is_err() { return },
                r = leader.changed() => if r.is_err() { return },
            }
        }
    });
    rx
}
