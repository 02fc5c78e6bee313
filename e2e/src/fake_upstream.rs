//! A fast fake OpenAI upstream: `POST /v1/chat/completions` answers a fixed
//! `chat.completion` at once, or, with `"stream": true`, an SSE stream of chunks with a
//! fixed delay between them.
//!
//! Each streamed chunk carries `"t_ns"`: the wall-clock time (nanoseconds since the Unix
//! epoch, `CLOCK_REALTIME`) at which the server produced it. Client and server run on the
//! same machine, so `receive time - t_ns` is the chunk's delivery delay through whatever
//! sits in between.
//!
//! The stream's shape comes from the server's defaults or, per request, from the
//! `x-fake-chunks` and `x-fake-chunk-delay-us` headers (proxies pass them on).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The fixed non-streamed answer (with usage, as OpenAI sends it).
const COMPLETION: &str = concat!(
    r#"{"id":"chatcmpl-fake","object":"chat.completion","created":1700000000,"#,
    r#""model":"fake-model","choices":[{"index":0,"message":{"role":"assistant","#,
    r#""content":"Hello! How can I help you today?"},"logprobs":null,"finish_reason":"stop"}],"#,
    r#""usage":{"prompt_tokens":9,"completion_tokens":9,"total_tokens":18}}"#
);

/// How streamed answers are shaped unless a request says otherwise.
#[derive(Clone, Copy, Debug)]
pub struct StreamShape {
    /// Content chunks per stream (a final `finish_reason` chunk, the usage chunk when
    /// asked for, and `[DONE]` follow).
    pub chunks: u32,
    /// Delay between consecutive chunks; the first goes out at once.
    pub chunk_delay: Duration,
}

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// What the fake reads of a request body.
#[derive(Deserialize)]
struct Ask {
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Serves connections from `listener` forever (HTTP/1.1 with keep-alive).
pub async fn serve(listener: TcpListener, shape: StreamShape) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                // Usually out of file descriptors: back off instead of spinning.
                eprintln!("fake-upstream: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, shape));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Binds `addr` with a large accept backlog (1000 streams connect at once).
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The `x-ratelimit-*` headers of an OpenAI answer (tier-1 `gpt-4o-mini` limits).
const OPENAI_RATE_HEADERS: [(&str, &str); 6] = [
    ("x-ratelimit-limit-requests", "500"),
    ("x-ratelimit-limit-tokens", "200000"),
    ("x-ratelimit-remaining-requests", "499"),
    ("x-ratelimit-remaining-tokens", "199975"),
    ("x-ratelimit-reset-requests", "120ms"),
    ("x-ratelimit-reset-tokens", "7ms"),
];

async fn handle(req: Request<Incoming>, shape: StreamShape) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    if req.method() != Method::POST
        || !(path == "/v1/chat/completions" || path == "/chat/completions")
    {
        return Ok(plain(StatusCode::NOT_FOUND, "not found"));
    }
    let shape = shape_of(req.headers(), shape);
    let Ok(body) = req.into_body().collect().await else {
        return Ok(plain(StatusCode::BAD_REQUEST, "unreadable body"));
    };
    let Ok(ask) = serde_json::from_slice::<Ask>(&body.to_bytes()) else {
        return Ok(plain(StatusCode::BAD_REQUEST, "not a chat request"));
    };
    if !ask.stream {
        let mut resp =
            Response::new(Full::new(Bytes::from_static(COMPLETION.as_bytes())).boxed_unsync());
        let headers = resp.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // OpenAI's answers carry its rate-limit headers: proxies pass them on (or, with
        // their own limits, replace them), so a bench compares like with like.
        for (name, value) in OPENAI_RATE_HEADERS {
            headers.insert(name, HeaderValue::from_static(value));
        }
        return Ok(resp);
    }
    let usage = ask.stream_options.is_some_and(|o| o.include_usage);
    let mut resp = Response::new(stream_body(shape, usage));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    Ok(resp)
}

fn shape_of(headers: &HeaderMap, default: StreamShape) -> StreamShape {
    let number = |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.parse().ok() };
    StreamShape {
        chunks: number("x-fake-chunks")
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(default.chunks),
        chunk_delay: number("x-fake-chunk-delay-us")
            .map(Duration::from_micros)
            .unwrap_or(default.chunk_delay),
    }
}

/// The SSE body: `chunks` content chunks `chunk_delay` apart (on a fixed schedule, so
/// gaps do not drift), a finish chunk, the usage chunk when asked for, `[DONE]`.
fn stream_body(shape: StreamShape, usage: bool) -> Body {
    let start = Instant::now();
    let events = futures_util::stream::unfold(0u32, move |i| async move {
        let last = shape.chunks + u32::from(usage) + 1;
        if i > last {
            return None;
        }
        if i > 0 && i < shape.chunks {
            tokio::time::sleep_until(start + shape.chunk_delay * i).await;
        }
        let event = if i < shape.chunks {
            chunk(i, now_ns())
        } else if i == shape.chunks {
            finish_chunk(now_ns())
        } else if usage && i == shape.chunks + 1 {
            Bytes::from_static(USAGE_CHUNK.as_bytes())
        } else {
            Bytes::from_static(b"data: [DONE]\n\n")
        };
        Some((Ok::<_, Infallible>(Frame::data(event)), i + 1))
    });
    StreamBody::new(events).boxed_unsync()
}

const USAGE_CHUNK: &str = concat!(
    r#"data: {"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1700000000,"#,
    r#""model":"fake-model","choices":[],"#,
    r#""usage":{"prompt_tokens":9,"completion_tokens":20,"total_tokens":29}}"#,
    "\n\n"
);

fn chunk(i: u32, t_ns: u64) -> Bytes {
    let delta = if i == 0 {
        r#"{"role":"assistant","content":"tok"}"#
    } else {
        r#"{"content":" tok"}"#
    };
    Bytes::from(format!(
        concat!(
            r#"data: {{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1700000000,"#,
            r#""model":"fake-model","t_ns":{},"choices":[{{"index":0,"delta":{},"#,
            r#""finish_reason":null}}]}}"#,
            "\n\n"
        ),
        t_ns, delta
    ))
}

fn finish_chunk(t_ns: u64) -> Bytes {
    Bytes::from(format!(
        concat!(
            r#"data: {{"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1700000000,"#,
            r#""model":"fake-model","t_ns":{},"choices":[{{"index":0,"delta":{{}},"#,
            r#""finish_reason":"stop"}}]}}"#,
            "\n\n"
        ),
        t_ns
    ))
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed_unsync());
    *resp.status_mut() = status;
    resp
}

/// Wall-clock nanoseconds since the Unix epoch (comparable across processes on one
/// machine, unlike a monotonic clock's origin).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The fake upstream's command line (the `fake-upstream` binary, and the bench's
/// `fake-upstream` subcommand).
#[derive(Clone, Debug, clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Content chunks per streamed answer.
    #[arg(long, default_value_t = 20)]
    pub chunks: u32,
    /// Delay between streamed chunks, in microseconds.
    #[arg(long, default_value_t = 5000)]
    pub chunk_delay_us: u64,
    /// Runtime worker threads (1 runs a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Exit when stdin closes (so the server dies with the process that started it).
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
}

/// Runs the fake upstream until killed; prints `fake-upstream listening addr=ADDR` on
/// stdout once bound.
pub fn run(args: &Args) -> anyhow::Result<()> {
    use std::io::Write;
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    if args.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let shape = StreamShape {
        chunks: args.chunks,
        chunk_delay: Duration::from_micros(args.chunk_delay_us),
    };
    runtime.block_on(async {
        let listener = bind(args.listen)?;
        let addr = listener.local_addr()?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "fake-upstream listening addr={addr}")?;
        out.flush()?;
        drop(out);
        serve(listener, shape).await;
        Ok(())
    })
}
