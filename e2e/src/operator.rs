//! The operator under test, run from ModelRoute files (`--routes-dir`), and a client that
//! plays a sidecar on its discovery stream.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use modelroute_proto::discovery_client::DiscoveryClient;
use modelroute_proto::{
    Ack, Hello, OperatorMessage, SidecarMessage, Snapshot, operator_message, sidecar_message,
};
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

use crate::process::ChildGuard;
use crate::sidecar::field;

/// What the operator logs once both listeners are bound.
const READY: &str = "modelroute operator listening";

/// The token the test fleet shares.
pub const STATIC_TOKEN: &str = "e2e-static-token-0123456789abcdef";

/// Files an operator runs from: routes, secrets, token, TLS.
#[derive(Debug)]
pub struct OperatorFiles {
    pub dir: TempDir,
}

/// A running operator; dropping it stops it.
#[derive(Debug)]
pub struct Operator {
    pub guard: ChildGuard,
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
}

// === impl OperatorFiles ===

impl OperatorFiles {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("modelroute-e2e-op")
            .tempdir()?;
        for sub in ["routes", "secrets", "tls"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        std::fs::write(dir.path().join("token"), STATIC_TOKEN)?;
        Ok(Self { dir })
    }

    pub fn routes(&self) -> PathBuf {
        self.dir.path().join("routes")
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.path().join("token")
    }

    /// The CA sidecars trust (written by the operator on its first start).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    /// Writes a routes file atomically (write, then rename), as editors and ConfigMaps do.
    pub fn write_route(&self, name: &str, yaml: &str) -> anyhow::Result<()> {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, yaml)?;
        std::fs::rename(&tmp, self.routes().join(name))?;
        Ok(())
    }

    /// Writes Secret `name`'s `key` in `namespace` as a file.
    pub fn write_secret(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        let dir = self.dir.path().join("secrets").join(namespace).join(name);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{key}.tmp"));
        std::fs::write(&tmp, value)?;
        std::fs::rename(&tmp, dir.join(key))?;
        Ok(())
    }

    /// Starts an operator on these files; `grpc` may be port 0 (any) or a fixed address
    /// (to restart on the same one).
    pub fn start(&self, bin: &Path, grpc: SocketAddr) -> anyhow::Result<Operator> {
        self.start_with(bin, grpc, &[])
    }

    /// [`OperatorFiles::start`] with `extra` flags (e.g. `--ledger-file PATH`).
    pub fn start_with(
        &self,
        bin: &Path,
        grpc: SocketAddr,
        extra: &[&std::ffi::OsStr],
    ) -> anyhow::Result<Operator> {
        let mut cmd = Command::new(bin);
        cmd.arg("--routes-dir")
            .arg(self.routes())
            .arg("--secrets-dir")
            .arg(self.dir.path().join("secrets"))
            .arg("--static-token-file")
            .arg(self.token_file())
            .arg("--tls-generate")
            .arg(self.dir.path().join("tls"))
            .args([
                "--grpc-listen",
                &grpc.to_string(),
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args(["--drain-timeout", "2s", "--log", "info"])
            .args(extra)
            .env_remove("RUST_LOG");
        let (guard, line) =
            ChildGuard::spawn("modelroute-operator", cmd, READY, Duration::from_secs(20))?;
        let grpc = field(&line, "grpc=").context("no grpc= in the operator's listening line")?;
        let admin = field(&line, "admin=").context("no admin= in the operator's listening line")?;
        Ok(Operator { guard, grpc, admin })
    }
}

/// A real sidecar process of pod `shop/POD` taking its config from an operator.
#[derive(Debug)]
pub struct SidecarProcess {
    pub guard: ChildGuard,
    /// The proxy's address.
    pub proxy: SocketAddr,
}

// === impl SidecarProcess ===

impl SidecarProcess {
    /// Starts `bin` against `op`, showing `token`, with `extra` flags.
    pub fn start(
        bin: &Path,
        files: &OperatorFiles,
        op: &Operator,
        pod: &str,
        token: &Path,
        extra: &[&std::ffi::OsStr],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin);
        cmd.arg("--operator")
            .arg(format!("https://localhost:{}", op.grpc.port()))
            .arg("--operator-ca")
            .arg(files.ca_file())
            .arg("--token-file")
            .arg(token)
            .args(["--pod-namespace", "shop", "--pod-name", pod])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--drain-timeout", "1s", "--log", "info"])
            .args(extra)
            .env_remove("RUST_LOG");
        let (guard, line) = ChildGuard::spawn(
            "modelroute-sidecar",
            cmd,
            "modelroute sidecar listening",
            Duration::from_secs(20),
        )?;
        let proxy = field(&line, "proxy=").context("no proxy= in the sidecar's listening line")?;
        Ok(Self { guard, proxy })
    }
}

/// A sidecar's side of the discovery stream, without the proxy: for the push benchmark.
#[derive(Debug)]
pub struct SimulatedSidecar {
    tx: mpsc::Sender<SidecarMessage>,
    inbound: tonic::Streaming<OperatorMessage>,
}

// === impl SimulatedSidecar ===

impl SimulatedSidecar {
    /// Opens a TLS connection of its own (as every real sidecar does) and says hello.
    pub async fn connect(
        grpc: SocketAddr,
        ca_pem: &str,
        namespace: &str,
        pod: &str,
        labels: HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(format!("https://localhost:{}", grpc.port()))?
            .tls_config(tls)?
            .connect()
            .await
            .context("cannot connect to the operator")?;
        let (tx, rx) = mpsc::channel(4);
        tx.send(SidecarMessage {
            message: Some(sidecar_message::Message::Hello(Hello {
                token: STATIC_TOKEN.to_string(),
                sidecar_version: "simulated".to_string(),
                capabilities: vec!["snapshot.v1".to_string()],
                pod_namespace: namespace.to_string(),
                pod_name: pod.to_string(),
                pod_labels: labels,
                active_hash: String::new(),
            })),
        })
        .await?;
        let inbound = DiscoveryClient::new(channel)
            .session(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(Self { tx, inbound })
    }

    /// The next snapshot (other messages skipped); `None` when the stream ended.
    pub async fn next(&mut self) -> anyhow::Result<Option<Snapshot>> {
        while let Some(message) = self.inbound.message().await? {
            if let Some(operator_message::Message::Snapshot(s)) = message.message {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    pub async fn ack(&self, s: &Snapshot) -> anyhow::Result<()> {
        self.tx
            .send(SidecarMessage {
                message: Some(sidecar_message::Message::Ack(Ack {
                    version: s.version,
                    hash: s.hash.clone(),
                })),
            })
            .await?;
        Ok(())
    }
}
