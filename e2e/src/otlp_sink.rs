//! An OTLP/HTTP receiver that accepts every export and keeps only counts: the cheapest
//! collector there is, so a benchmark measures the sidecar's side of tracing. It can also
//! play a slow collector, answering each export only after a delay.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A running sink; it serves until the process ends.
#[derive(Debug)]
pub struct OtlpSink {
    pub addr: SocketAddr,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    bytes: AtomicU64,
}

impl OtlpSink {
    /// Export requests received.
    pub fn requests(&self) -> u64 {
        self.counts.requests.load(Ordering::Relaxed)
    }

    /// Protobuf bytes received.
    pub fn spans_bytes(&self) -> u64 {
        self.counts.bytes.load(Ordering::Relaxed)
    }
}

/// Starts the sink on a loopback port; it answers each export after `delay`.
pub async fn start(delay: Duration) -> anyhow::Result<OtlpSink> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let counts = Arc::new(Counts::default());
    let shared = counts.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counts = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| receive(counts.clone(), req, delay));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(OtlpSink { addr, counts })
}

/// Reads an export and answers an empty `ExportTraceServiceResponse` (zero protobuf bytes).
async fn receive(
    counts: Arc<Counts>,
    req: Request<hyper::body::Incoming>,
    delay: Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    tokio::time::sleep(delay).await;
    let n = req
        .into_body()
        .collect()
        .await
        .map_or(0, |b| b.to_bytes().len());
    counts.requests.fetch_add(1, Ordering::Relaxed);
    counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
    let mut resp = Response::new(Full::new(Bytes::new()));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-protobuf"),
    );
    Ok(resp)
}
