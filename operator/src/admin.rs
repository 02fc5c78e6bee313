//! The admin port: `/healthz`, `/readyz`, `/metrics` and `/status` (what the operator
//! thinks of every ModelRoute and how its sidecars are doing — the file source's status).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::discovery::Registry;
use crate::index::World;
use crate::ledger::Ledger;
use crate::metrics::Metrics;

/// What the admin port reads.
#[derive(Clone, Debug)]
pub struct Admin {
    pub world: watch::Receiver<Arc<World>>,
    pub registry: Arc<Registry>,
    /// Spend per budget and window (empty on a follower).
    pub ledger: Arc<Ledger>,
    pub metrics: Arc<Metrics>,
    /// True once the source has its first full state.
    pub synced: watch::Receiver<bool>,
}

// === impl Admin ===

impl Admin {
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let stream = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let admin = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let admin = admin.clone();
                async move { Ok::<_, Infallible>(admin.handle(&req)) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(stream), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    }

    fn handle(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if *self.synced.borrow() => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not synced yet\n"),
            "/metrics" => {
                let mut resp = Response::new(Full::new(Bytes::from(self.metrics.encode())));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            "/status" => self.status(),
            _ => text(
                StatusCode::NOT_FOUND,
                "not found; try /healthz /readyz /metrics /status\n",
            ),
        }
    }

    /// Every ModelRoute's verdict, sync and spend (as in `status.budgets`), and the
    /// connected sidecars. No keys: the world's resources are never rendered here.
    fn status(&self) -> Response<Full<Bytes>> {
        let world = self.world.borrow().clone();
        let routes: Vec<_> = world
            .verdicts
            .iter()
            .map(|(key, v)| {
                let sync = v
                    .serving
                    .map(|g| self.registry.sync_of(key, g))
                    .unwrap_or_default();
                json!({
                    "namespace": key.namespace,
                    "name": key.name,
                    "generation": v.generation,
                    "servingGeneration": v.serving,
                    "routes": v.routes,
                    "valid": v.problem.is_none(),
                    "reason": v.problem.as_ref().map(|p| p.reason.as_str()),
                    "message": v.problem.as_ref().map(|p| p.message.as_str()),
                    "sidecarsInSync": sync.in_sync,
                    "sidecarsRefusing": sync.refusing,
                    "lastNack": sync.last_nack,
                    "budgets": self.ledger.statuses(key),
                })
            })
            .collect();
        let mut sidecars: Vec<String> = self
            .registry
            .pods()
            .iter()
            .map(ToString::to_string)
            .collect();
        sidecars.sort();
        let body = json!({
            "version": world.version,
            "modelRoutes": routes,
            "sidecars": sidecars,
        });
        let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}
