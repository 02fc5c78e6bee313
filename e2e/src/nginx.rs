//! nginx as the baseline: a plain keep-alive reverse proxy in front of the fake upstream,
//! with a generated config in a temp dir, run in the foreground (`daemon off`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;

use crate::process::{ChildGuard, command_output};

const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx; dropping it stops master and workers.
#[derive(Debug)]
pub struct Nginx {
    pub guard: ChildGuard,
    pub addr: SocketAddr,
    pub version: String,
    _dir: TempDir,
}

/// The nginx binary, installed with apt-get when missing.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(NGINX);
    if path.exists() {
        return Ok(path);
    }
    eprintln!("bench: {NGINX} is missing; installing nginx with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "nginx"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
    };
    if !install().is_ok_and(|s| s.success()) {
        let _ = Command::new("apt-get").arg("update").status();
        let status = install().context("running apt-get install -y nginx")?;
        if !status.success() {
            bail!("apt-get install -y nginx failed ({status})");
        }
    }
    if !path.exists() {
        bail!("nginx installed but {NGINX} is still missing");
    }
    Ok(path)
}

/// The generated config: `workers` worker processes (None: `auto`, one per core), upstream keep-alive, no buffering,
/// no access log, every path inside `dir`.
pub fn config(
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    workers: Option<usize>,
) -> String {
    let d = dir.display();
    let workers = workers.map_or_else(|| "auto".to_string(), |n| n.to_string());
    // Workers of a root master switch to `nobody` unless told otherwise, and could not
    // use the temp dir (0700).
    let user = if running_as_root() {
        "user root root;\n"
    } else {
        ""
    };
    format!(
        r#"{user}daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile 65536;
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections 8192;
}}

http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;

    upstream fake {{
        server {upstream};
        keepalive 64;
        keepalive_requests 10000000;
    }}

    server {{
        listen {listen} backlog=4096;
        keepalive_requests 10000000;
        keepalive_timeout 120s;

        location / {{
            proxy_pass http://fake;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }}
    }}
}}
"#
    )
}

/// Starts nginx on a free loopback port before `upstream`.
pub async fn start(
    bin: &Path,
    upstream: SocketAddr,
    workers: Option<usize>,
) -> anyhow::Result<Nginx> {
    let dir = tempfile::Builder::new()
        .prefix("modelroute-bench-nginx")
        .tempdir()?;
    let addr = free_port()?;
    let conf = dir.path().join("nginx.conf");
    std::fs::write(&conf, config(dir.path(), addr, upstream, workers))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-c")
        .arg(&conf)
        .arg("-e")
        .arg(dir.path().join("error.log"));
    let mut guard = ChildGuard::spawn_quiet("nginx", cmd)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        guard.check_alive().with_context(|| {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            format!("nginx did not start; error.log:\n{log}")
        })?;
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("nginx is not accepting on {addr} after 10 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Nginx {
        guard,
        addr,
        version: command_output(&bin.display().to_string(), &["-v"]),
        _dir: dir,
    })
}

/// A loopback port free right now (nginx binds it a moment later).
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(probe.local_addr()?)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}
