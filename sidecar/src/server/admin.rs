//! The admin port: `/healthz`, `/readyz`, `/metrics`, `/config`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::json;

use crate::App;
use crate::dispatch::breaker::CircuitState;

pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::GET {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n"));
    }
    Ok(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/readyz" => match app.table() {
            Some(_) => text(StatusCode::OK, "ready\n"),
            None => text(StatusCode::SERVICE_UNAVAILABLE, "no config loaded\n"),
        },
        "/metrics" => {
            app.metrics.ledger(app.limits.totals());
            let mut resp = Response::new(Full::new(Bytes::from(app.metrics.encode())));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        "/config" => config(&app),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz /readyz /metrics /config\n",
        ),
    })
}

/// The active config, redacted, with its version and the live circuit states.
fn config(app: &App) -> Response<Full<Bytes>> {
    let Some(table) = app.table() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "no config loaded\n");
    };
    let mut circuits = serde_json::Map::new();
    for target in table.targets() {
        let state = match target.breaker.state() {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half-open",
            CircuitState::Open => "open",
        };
        circuits.insert(target.label.to_string(), json!(state));
    }
    let body = json!({
        "version": table.version,
        "hash": table.hash,
        "source": table.source,
        "snapshot": table.snapshot,
        "models": table.aliases().collect::<Vec<_>>(),
        "circuits": circuits,
        "modelRoutes": table.redacted,
        "budgets": app.limits.view(),
    });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}
