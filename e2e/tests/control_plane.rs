//! The control plane with real binaries: an operator serving ModelRoute files and two
//! sidecar processes that take their config from it.
//!
//! Edit a route file -> both sidecars serve the change; kill the operator -> they keep
//! serving; restart it -> they resync; an invalid file -> the operator says why and the
//! sidecars keep the last good version.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use modelroute_e2e::binaries::{self, Profile};
use modelroute_e2e::operator::{Operator, OperatorFiles, SidecarProcess};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

fn route(reply: &str) -> String {
    format!(
        r#"apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata:
  name: app
  namespace: shop
spec:
  providers:
    - name: mock
      kind: mock
      mock:
        reply: "{reply}"
  routes:
    - model: chat
      targets:
        - provider: mock
          model: mock-1
"#
    )
}

fn start_sidecar(bin: &Path, files: &OperatorFiles, op: &Operator, pod: &str) -> SidecarProcess {
    start_sidecar_with(bin, files, op, pod, &files.token_file(), &[])
}

fn start_sidecar_with(
    bin: &Path,
    files: &OperatorFiles,
    op: &Operator,
    pod: &str,
    token: &Path,
    extra: &[&std::ffi::OsStr],
) -> SidecarProcess {
    SidecarProcess::start(bin, files, op, pod, token, extra).unwrap()
}

/// A minimal HTTP/1.1 exchange; returns status and body.
async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The reply text the sidecar gives for model `chat`, or the failure.
async fn reply(sidecar: &SidecarProcess) -> Result<String, String> {
    let (status, body) = http(
        sidecar.proxy,
        "POST",
        "/v1/chat/completions",
        r#"{"model":"chat","messages":[{"role":"user","content":"hi"}]}"#,
    )
    .await;
    if status != 200 {
        return Err(format!("{status} {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
    Ok(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string())
}

/// Polls until every sidecar answers `expected`; returns how long that took.
async fn until_all_serve(sidecars: &[&SidecarProcess], expected: &str) -> Duration {
    let start = Instant::now();
    loop {
        let mut all = true;
        for s in sidecars {
            all &= reply(s).await.as_deref() == Ok(expected);
        }
        if all {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "sidecars do not serve {expected:?}: {:?}",
            futures_util::future::join_all(sidecars.iter().map(|s| reply(s))).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn status(op: &Operator) -> Value {
    let (code, body) = http(op.admin, "GET", "/status", "").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls the operator's /status until `check` holds.
async fn until_status(op: &Operator, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let s = status(op).await;
        if check(&s) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{what}: {s:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_static_stability_resync_and_bad_files() {
    let workspace = binaries::workspace();
    let operator_bin = binaries::build(&workspace, "modelroute-operator", Profile::Dev).unwrap();
    let sidecar_bin = binaries::build(&workspace, "modelroute-sidecar", Profile::Dev).unwrap();
    let files = OperatorFiles::new().unwrap();
    files.write_route("app.yaml", &route("v1")).unwrap();
    let op = files
        .start(&operator_bin, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let grpc = op.grpc;
    let a = start_sidecar(&sidecar_bin, &files, &op, "web-1");
    let b = start_sidecar(&sidecar_bin, &files, &op, "web-2");
    until_all_serve(&[&a, &b], "v1").await;
    until_status(&op, "both sidecars in sync", |s| {
        s["sidecars"] == serde_json::json!(["shop/web-1", "shop/web-2"])
            && s["modelRoutes"][0]["sidecarsInSync"] == 2
    })
    .await;

    // An edit reaches both sidecars.
    files.write_route("app.yaml", &route("v2")).unwrap();
    let took = until_all_serve(&[&a, &b], "v2").await;
    eprintln!("route edit served by both sidecars after {took:?}");

    // The operator dies: the sidecars keep serving what they have.
    let mut op = op;
    op.guard.kill();
    drop(op);
    for _ in 0..20 {
        assert_eq!(reply(&a).await.as_deref(), Ok("v2"));
        assert_eq!(reply(&b).await.as_deref(), Ok("v2"));
    }
    // A change made while it is down...
    files.write_route("app.yaml", &route("v3")).unwrap();

    // ...is picked up when it comes back on its address, and the sidecars resync.
    let op = files.start(&operator_bin, grpc).unwrap();
    let took = until_all_serve(&[&a, &b], "v3").await;
    eprintln!("sidecars resynced {took:?} after the operator restarted");
    until_status(&op, "resynced", |s| {
        s["modelRoutes"][0]["sidecarsInSync"] == 2
    })
    .await;

    // A semantically invalid ModelRoute: refused with the reason, last good keeps serving.
    let invalid = route("v4").replace(
        "provider: mock\n          model",
        "provider: missing\n          model",
    );
    files.write_route("app.yaml", &invalid).unwrap();
    let s = until_status(&op, "refused", |s| s["modelRoutes"][0]["valid"] == false).await;
    let entry = &s["modelRoutes"][0];
    assert_eq!(entry["reason"], "InvalidSpec");
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .contains("spec.routes[0].targets[0]"),
        "{entry}"
    );
    assert_eq!(
        entry["servingGeneration"].as_i64(),
        entry["generation"].as_i64().map(|g| g - 1)
    );
    // A file that is not even YAML: the log says why, the last good content stays.
    files.write_route("app.yaml", "kind: [unclosed").unwrap();
    let start = Instant::now();
    while !op.guard.output().contains("routes file rejected") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            op.guard.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        op.guard.output().contains("ModelRoute refused"),
        "{}",
        op.guard.output()
    );
    for _ in 0..10 {
        assert_eq!(reply(&a).await.as_deref(), Ok("v3"));
        assert_eq!(reply(&b).await.as_deref(), Ok("v3"));
    }
    // Fixed again: pushed.
    files.write_route("app.yaml", &route("v5")).unwrap();
    until_all_serve(&[&a, &b], "v5").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_with_the_wrong_token_is_refused_and_serves_its_bootstrap() {
    let workspace = binaries::workspace();
    let operator_bin = binaries::build(&workspace, "modelroute-operator", Profile::Dev).unwrap();
    let sidecar_bin = binaries::build(&workspace, "modelroute-sidecar", Profile::Dev).unwrap();
    let files = OperatorFiles::new().unwrap();
    files
        .write_route("app.yaml", &route("from-operator"))
        .unwrap();
    let op = files
        .start(&operator_bin, "127.0.0.1:0".parse().unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("token");
    std::fs::write(&wrong, "not-the-fleet-token-0000000000").unwrap();
    let bootstrap = dir.path().join("bootstrap.yaml");
    std::fs::write(
        &bootstrap,
        route("from-bootstrap").replace("  namespace: shop\n", ""),
    )
    .unwrap();
    let sidecar = start_sidecar_with(
        &sidecar_bin,
        &files,
        &op,
        "intruder",
        &wrong,
        &["--bootstrap".as_ref(), bootstrap.as_os_str()],
    );
    let start = Instant::now();
    while !op.guard.output().contains("sidecar refused") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            op.guard.output()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(reply(&sidecar).await.as_deref(), Ok("from-bootstrap"));
    let s = status(&op).await;
    assert_eq!(s["sidecars"], serde_json::json!([]));
    // The token never shows up in either log.
    assert!(!op.guard.output().contains("not-the-fleet-token"));
    assert!(!sidecar.guard.output().contains("not-the-fleet-token"));
}
