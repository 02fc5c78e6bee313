//! The response cache on the request path: look a request up before anything is spent,
//! answer a hit (a stream as a stream), and keep a fresh answer for next time.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::exchange::Exchange;
use crate::App;
use crate::api::ModelRequest;
use crate::cache::{Answer, CacheKey, Entry, deterministic, key_of};
use crate::config::Route;
use crate::stream::body::ProxyBody;

/// The header telling the client what the cache did: `hit`, `miss`, `bypass`.
pub const CACHE_HEADER: &str = "x-modelroute-cache";

/// What the cache does for one request.
#[derive(Debug)]
pub enum Lookup {
    /// The route does not cache, or this request may not be cached.
    Off,
    /// Served from memory.
    Hit(Arc<Entry>),
    /// Not there: keep the answer under this key (unless the client said `no-store`).
    Miss(Fill),
}

/// Where a fresh answer goes.
#[derive(Clone, Copy, Debug)]
pub struct Fill {
    pub key: CacheKey,
    pub ttl: Duration,
    /// `miss` or `bypass`, for the response header.
    pub outcome: &'static str,
}

/// Looks `request` up when its route caches. `Cache-Control: no-cache` skips the lookup
/// (the fresh answer is still kept); `no-store` leaves the cache out entirely.
pub fn lookup(
    app: &App,
    route: &Route,
    request: &ModelRequest,
    headers: &HeaderMap,
    exchange: Exchange,
) -> Lookup {
    let Some(policy) = route.cache else {
        return Lookup::Off;
    };
    let directives = cache_control(headers);
    if directives.no_store {
        app.metrics.routing.cache(&route.alias, "bypass");
        return Lookup::Off;
    }
    // Embeddings are a function of their input; chat answers only with temperature 0 or a
    // seed.
    let reproducible = exchange == Exchange::Embeddings || deterministic(request.body());
    if !policy.always && !reproducible {
        app.metrics.routing.cache(&route.alias, "uncacheable");
        return Lookup::Off;
    }
    let Ok(key) = key_of(
        kind(exchange),
        &request.model,
        request.stream,
        request.body(),
    ) else {
        return Lookup::Off;
    };
    if directives.no_cache {
        app.metrics.routing.cache(&route.alias, "bypass");
        return Lookup::Miss(Fill {
            key,
            ttl: policy.ttl,
            outcome: "bypass",
        });
    }
    match app.cache.get(&key) {
        Some(entry) => {
            app.metrics.routing.cache(&route.alias, "hit");
            Lookup::Hit(entry)
        }
        None => {
            app.metrics.routing.cache(&route.alias, "miss");
            Lookup::Miss(Fill {
                key,
                ttl: policy.ttl,
                outcome: "miss",
            })
        }
    }
}

/// Keeps an answer `target` gave.
pub fn store(app: &App, route: &Route, fill: Fill, target: &Arc<str>, answer: Answer) {
    let entry = Entry {
        answer,
        target: target.clone(),
        stored_at: SystemTime::now(),
    };
    if app.cache.insert(fill.key, entry, fill.ttl) {
        app.metrics.routing.cache(&route.alias, "stored");
    }
    let (entries, bytes) = app.cache.stats();
    app.metrics.routing.cache_size(entries, bytes);
}

/// The client's answer from a cache entry: the same bytes as the first time, a stream as a
/// stream, with `x-modelroute-cache: hit` and `Age`.
pub fn respond(entry: &Entry) -> Response<ProxyBody> {
    let (status, body, content_type) = match &entry.answer {
        Answer::Unary { status, body } => (
            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
            ProxyBody::full(body.clone()),
            "application/json",
        ),
        Answer::Stream { frames } => (
            StatusCode::OK,
            ProxyBody::Frames(frames.clone().into_iter()),
            "text/event-stream",
        ),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_HEADER, HeaderValue::from_static("hit"));
    let age = entry.stored_at.elapsed().unwrap_or_default().as_secs();
    h.insert(header::AGE, HeaderValue::from(age));
    super::decision_headers(h, &entry.target, 0);
    resp
}

/// Marks a fresh answer with what the cache did.
pub fn mark(headers: &mut HeaderMap, lookup: &Lookup) {
    if let Lookup::Miss(fill) = lookup {
        headers.insert(CACHE_HEADER, HeaderValue::from_static(fill.outcome));
    }
}

/// The response body of a unary answer worth keeping: a success.
pub fn unary(status: StatusCode, body: &Bytes) -> Option<Answer> {
    status.is_success().then(|| Answer::Unary {
        status: status.as_u16(),
        body: body.clone(),
    })
}

fn kind(exchange: Exchange) -> &'static str {
    match exchange {
        Exchange::Chat => "chat",
        Exchange::Embeddings => "embeddings",
        Exchange::Native(crate::provider::Wire::Anthropic) => "anthropic",
        Exchange::Native(crate::provider::Wire::Gemini) => "gemini",
        Exchange::Native(_) => "native",
    }
}

#[derive(Default)]
struct Directives {
    no_cache: bool,
    no_store: bool,
}

fn cache_control(headers: &HeaderMap) -> Directives {
    let mut d = Directives::default();
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim) {
            if directive.eq_ignore_ascii_case("no-cache") {
                d.no_cache = true;
            } else if directive.eq_ignore_ascii_case("no-store") {
                d.no_store = true;
            }
        }
    }
    d
}
