//! The mutating admission webhook: HTTPS on its own port, served by every replica (the
//! API server must reach one even while leadership changes hands).
//!
//! `POST /inject` — pods that opt in by annotation; `POST /inject/namespace` — pods in
//! namespaces labelled `modelroute.dev/inject=enabled`. See `inject` for what is added.

pub mod review;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::inject::{Injector, Scope};
use crate::metrics::Metrics;
use crate::tls::CertStore;
use crate::tls::store::incoming;

/// The API server caps request bodies at 3 MiB; a review is the object plus a little.
const MAX_REVIEW_BYTES: usize = 4 * 1024 * 1024;

/// What the webhook needs.
#[derive(Clone, Debug)]
pub struct Webhook {
    pub injector: Arc<Injector>,
    pub certs: Arc<CertStore>,
    pub metrics: Arc<Metrics>,
}

impl Webhook {
    /// Serves until `shutdown`, then lets reviews in flight finish (1 s at most).
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) {
        let acceptor = match self.certs.acceptor(&[b"h2", b"http/1.1"]) {
            Ok(acceptor) => acceptor,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve the webhook");
                return;
            }
        };
        let local = listener.local_addr().ok();
        tracing::info!(addr = ?local, "admission webhook listening (TLS)");
        let mut connections = incoming(listener, acceptor);
        let graceful = GracefulShutdown::new();
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let tls = tokio::select! {
                () = shutdown.cancelled() => break,
                next = connections.next() => match next {
                    Some(Ok(tls)) => tls,
                    Some(Err(_)) => continue,
                    None => break,
                },
            };
            let webhook = self.clone();
            let service = hyper::service::service_fn(move |req| {
                let webhook = webhook.clone();
                async move { Ok::<_, Infallible>(webhook.handle(req).await) }
            });
            let conn = builder
                .serve_connection(TokioIo::new(tls), service)
                .into_owned();
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                let _ = conn.await;
            });
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let scope = match req.uri().path() {
            "/inject" => Scope::Annotated,
            "/inject/namespace" => Scope::Namespace,
            "/healthz" => return reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            _ => {
                return reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    b"not found; the webhook serves POST /inject and /inject/namespace\n".to_vec(),
                );
            }
        };
        if req.method() != Method::POST {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"only POST\n".to_vec(),
            );
        }
        let started = tokio::time::Instant::now();
        let body = match Limited::new(req.into_body(), MAX_REVIEW_BYTES)
            .collect()
            .await
        {
            Ok(body) => body.to_bytes(),
            Err(e) => {
                self.metrics.webhook_review("malformed", started.elapsed());
                let message = format!("cannot read the review: {e}\n");
                return reply(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "text/plain",
                    message.into_bytes(),
                );
            }
        };
        let ca = self.certs.ca_pem();
        let span = tracing::info_span!(
            target: modelroute_otel::TARGET,
            "admission review",
            otel.kind = "server",
            modelroute.webhook.outcome = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        // Pure CPU work of microseconds: no need to leave the connection's task.
        let reviewed =
            span.in_scope(|| review::review(&body, scope, &self.injector, ca.as_deref()));
        span.record("modelroute.webhook.outcome", reviewed.outcome);
        if reviewed.outcome == "error" {
            span.record("otel.status_code", "ERROR");
        }
        self.metrics
            .webhook_review(reviewed.outcome, started.elapsed());
        reply(reviewed.status, "application/json", reviewed.body)
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

#[cfg(test)]
mod tests;
