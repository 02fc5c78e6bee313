//! The load generator: HTTP/1.1 keep-alive connections (one hyper client connection per
//! task), closed-loop and open-loop unary load, and streamed requests whose chunks are
//! timed on arrival. Latencies go into HDR histograms in nanoseconds.
//!
//! Every loop is bounded by a request count, a deadline, or both.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::{Instant, MissedTickBehavior};

use crate::fake_upstream::now_ns;

/// The unary request body every target receives.
pub const CHAT_BODY: &str =
    r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello!"}]}"#;
/// The streamed request body.
pub const STREAM_BODY: &str =
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"Hello!"}]}"#;

/// Where requests go: a loopback address and the chat completions path.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
}

/// A keep-alive connection.
pub type Conn = SendRequest<Full<Bytes>>;

/// What a unary load run measured.
#[derive(Clone, Debug)]
pub struct RunStats {
    /// Latency of each successful request, in nanoseconds.
    pub latency: Histogram<u64>,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// First error seen, for the log.
    pub first_error: Option<String>,
}

/// What a streaming run measured.
#[derive(Clone, Debug)]
pub struct StreamStats {
    /// Per chunk: client receive time - upstream send time (`t_ns`), in nanoseconds.
    pub delivery: Histogram<u64>,
    /// Per chunk after the first: time since the previous chunk arrived, in nanoseconds.
    pub gap: Histogram<u64>,
    pub chunks: u64,
    pub completed: u64,
    pub failed: u64,
    /// Streams that saw a gap longer than the stall threshold or did not finish in time.
    pub stalled: u64,
    /// Streams whose usage chunk reached the client (it should not, unless asked for).
    pub usage_chunks_seen: u64,
    pub first_error: Option<String>,
}

/// How a stream is shaped and judged.
#[derive(Clone, Copy, Debug)]
pub struct StreamSpec {
    pub chunks: u32,
    pub chunk_delay: Duration,
    /// A gap between chunks longer than this counts as a stall.
    pub stall: Duration,
    /// A stream not done by then counts as failed.
    pub timeout: Duration,
}

// === impl Target ===

impl Target {
    fn request(&self, body: &'static str) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(Bytes::from_static(body.as_bytes())));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::from_static("/v1/chat/completions");
        let h = req.headers_mut();
        if let Ok(host) = HeaderValue::from_str(&self.addr.to_string()) {
            h.insert(header::HOST, host);
        }
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        req
    }

    /// Opens a keep-alive connection (TCP_NODELAY, HTTP/1.1).
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {} at {}", self.name, self.addr))?;
        tcp.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    /// One unary chat request on `conn`; returns the response body.
    pub async fn chat(&self, conn: &mut Conn) -> anyhow::Result<Bytes> {
        conn.ready().await?;
        let resp = conn.send_request(self.request(CHAT_BODY)).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        ensure!(
            status.is_success(),
            "{} answered {status}: {}",
            self.name,
            String::from_utf8_lossy(&body)
        );
        Ok(body)
    }
}

/// `GET path` on `addr` (an admin port), the body as text.
pub async fn get_text(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))?;
    let body = sender
        .send_request(req)
        .await?
        .into_body()
        .collect()
        .await?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// A histogram for nanosecond latencies from 1 ns to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    match Histogram::new_with_bounds(1, 600_000_000_000, 3) {
        Ok(h) => h,
        Err(e) => unreachable!("constant histogram bounds rejected: {e:?}"),
    }
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1);
    h.saturating_record(ns);
}

/// Closed loop: `conns` connections, each sending its next request as soon as the last
/// answered, until `total` requests were sent or `duration` passed (whichever is first).
pub async fn closed_loop(
    target: &Target,
    conns: usize,
    total: Option<u64>,
    duration: Option<Duration>,
) -> anyhow::Result<RunStats> {
    ensure!(
        total.is_some() || duration.is_some(),
        "closed loop needs a bound"
    );
    let budget = Arc::new(AtomicU64::new(total.unwrap_or(u64::MAX)));
    let mut open = Vec::with_capacity(conns);
    for _ in 0..conns {
        open.push(target.connect().await?);
    }
    let started = Instant::now();
    let deadline = duration.map(|d| started + d);
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in open {
        let target = target.clone();
        let budget = budget.clone();
        tasks.spawn(async move {
            let mut h = histogram();
            let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if budget
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
                    .is_err()
                {
                    break;
                }
                let t0 = Instant::now();
                match target.chat(&mut conn).await {
                    Ok(_) => {
                        record(&mut h, t0.elapsed());
                        ok += 1;
                    }
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                        // A broken connection is replaced; a bounded loop still ends.
                        match target.connect().await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                }
            }
            (h, ok, errors, first_error)
        });
    }
    let mut stats = RunStats::default();
    while let Some(joined) = tasks.join_next().await {
        let (h, ok, errors, first_error) = joined?;
        stats.latency.add(&h).ok();
        stats.ok += ok;
        stats.errors += errors;
        if stats.first_error.is_none() {
            stats.first_error = first_error;
        }
    }
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// Open loop: starts a request every `1/rate` seconds for `duration`, whether or not the
/// earlier ones have answered, on a pool of keep-alive connections (grown on demand).
///
/// Latency is measured from when the request is handed to its connection. tokio's timer
/// ticks once per millisecond, so at 1000 req/s each tick starts about one request;
/// missed ticks are caught up in a burst, keeping the average rate.
pub async fn open_loop(target: &Target, rate: u32, duration: Duration) -> anyhow::Result<RunStats> {
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..8 {
        let conn = target.connect().await?;
        lock(&pool).push(conn);
    }
    let shared = Arc::new(Mutex::new(RunStats::default()));
    let period = Duration::from_nanos(1_000_000_000 / u64::from(rate.max(1)));
    let total =
        u64::try_from((duration.as_nanos() / period.as_nanos().max(1)).max(1)).unwrap_or(u64::MAX);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..total {
        ticker.tick().await;
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
        let (target, pool, shared) = (target.clone(), pool.clone(), shared.clone());
        tasks.spawn(async move {
            let pooled = lock(&pool).pop();
            let conn = match pooled {
                Some(c) => Ok(c),
                None => target.connect().await,
            };
            let result = match conn {
                Ok(mut conn) => {
                    let t0 = Instant::now();
                    let r = target.chat(&mut conn).await.map(|_| t0.elapsed());
                    if r.is_ok() {
                        lock(&pool).push(conn);
                    }
                    r
                }
                Err(e) => Err(e),
            };
            let mut s = lock(&shared);
            match result {
                Ok(d) => {
                    record(&mut s.latency, d);
                    s.ok += 1;
                }
                Err(e) => {
                    s.errors += 1;
                    s.first_error.get_or_insert_with(|| e.to_string());
                }
            }
        });
    }
    let drain = tokio::time::timeout(Duration::from_secs(30), async {
        while tasks.join_next().await.is_some() {}
    });
    if drain.await.is_err() {
        bail!(
            "{}: open-loop requests still running 30 s after the last was sent",
            target.name
        );
    }
    let mut stats = lock(&shared).clone();
    stats.elapsed = started.elapsed();
    Ok(stats)
}

/// `streams` streamed requests, at most `concurrency` at a time, each on its own new
/// connection; every chunk's delivery delay and arrival gap is recorded.
pub async fn streams(
    target: &Target,
    streams: u32,
    concurrency: usize,
    spec: StreamSpec,
) -> anyhow::Result<StreamStats> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (target, next) = (target.clone(), next.clone());
        tasks.spawn(async move {
            let mut stats = StreamStats::default();
            while next.fetch_add(1, Ordering::Relaxed) < u64::from(streams) {
                let one = tokio::time::timeout(spec.timeout, one_stream(&target, spec, &mut stats));
                match one.await {
                    Ok(Ok(())) => stats.completed += 1,
                    Ok(Err(e)) => {
                        stats.failed += 1;
                        stats.first_error.get_or_insert_with(|| e.to_string());
                    }
                    Err(_) => {
                        stats.failed += 1;
                        stats.stalled += 1;
                        stats.first_error.get_or_insert_with(|| {
                            format!("stream not done within {:?}", spec.timeout)
                        });
                    }
                }
            }
            stats
        });
    }
    let mut total = StreamStats::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined?);
    }
    Ok(total)
}

/// One streamed request, read to `[DONE]`.
async fn one_stream(
    target: &Target,
    spec: StreamSpec,
    stats: &mut StreamStats,
) -> anyhow::Result<()> {
    let mut conn = target.connect().await?;
    let mut req = target.request(STREAM_BODY);
    let h = req.headers_mut();
    h.insert("x-fake-chunks", HeaderValue::from(spec.chunks));
    h.insert(
        "x-fake-chunk-delay-us",
        HeaderValue::from(u64::try_from(spec.chunk_delay.as_micros()).unwrap_or(u64::MAX)),
    );
    conn.ready().await?;
    let resp = conn.send_request(req).await?;
    ensure!(
        resp.status().is_success(),
        "{} answered {}",
        target.name,
        resp.status()
    );
    let mut body = resp.into_body();
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut last: Option<Instant> = None;
    let mut stalled = false;
    let mut chunks = 0u32;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let (arrived, arrived_ns) = (Instant::now(), now_ns());
        buf.extend_from_slice(&data);
        while let Some(end) = find(&buf, b"\n\n") {
            let event: Vec<u8> = buf.drain(..end + 2).collect();
            let Some(payload) = event.strip_prefix(b"data: ") else {
                continue;
            };
            if payload.starts_with(b"[DONE]") {
                if stalled {
                    stats.stalled += 1;
                }
                ensure!(
                    chunks == spec.chunks + 1,
                    "{}: stream ended after {chunks} of {} chunks",
                    target.name,
                    spec.chunks + 1
                );
                return Ok(());
            }
            if find(payload, br#""usage":{"#).is_some() {
                stats.usage_chunks_seen += 1;
            }
            let Some(sent_ns) = stamp(payload) else {
                continue;
            };
            chunks += 1;
            stats.chunks += 1;
            record(
                &mut stats.delivery,
                Duration::from_nanos(arrived_ns.saturating_sub(sent_ns)),
            );
            if let Some(prev) = last {
                let gap = arrived - prev;
                stalled |= gap > spec.stall;
                record(&mut stats.gap, gap);
            }
            last = Some(arrived);
        }
    }
    bail!("{}: stream ended without [DONE]", target.name)
}

/// The `"t_ns":<digits>` stamp of a chunk.
fn stamp(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = br#""t_ns":"#;
    let at = find(payload, KEY)? + KEY.len();
    let digits = payload[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    std::str::from_utf8(&payload[at..at + digits])
        .ok()?
        .parse()
        .ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// === impl RunStats ===

impl Default for RunStats {
    fn default() -> Self {
        Self {
            latency: histogram(),
            ok: 0,
            errors: 0,
            elapsed: Duration::ZERO,
            first_error: None,
        }
    }
}

impl RunStats {
    /// Successful requests per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency quantile in microseconds.
    pub fn us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

// === impl StreamStats ===

impl Default for StreamStats {
    fn default() -> Self {
        Self {
            delivery: histogram(),
            gap: histogram(),
            chunks: 0,
            completed: 0,
            failed: 0,
            stalled: 0,
            usage_chunks_seen: 0,
            first_error: None,
        }
    }
}

impl StreamStats {
    fn merge(&mut self, other: Self) {
        self.delivery.add(&other.delivery).ok();
        self.gap.add(&other.gap).ok();
        self.chunks += other.chunks;
        self.completed += other.completed;
        self.failed += other.failed;
        self.stalled += other.stalled;
        self.usage_chunks_seen += other.usage_chunks_seen;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_chunk_stamp() {
        let payload = br#"{"id":"x","t_ns":1700000000123456789,"choices":[]}"#;
        assert_eq!(stamp(payload), Some(1_700_000_000_123_456_789));
        assert_eq!(stamp(br#"{"id":"x"}"#), None);
    }
}
