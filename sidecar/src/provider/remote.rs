//! Providers reached over HTTP: OpenAI and compatible servers, Azure OpenAI, Anthropic,
//! Gemini. What differs between them is the [`Wire`]; the exchange is the same.

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use modelroute_crds::CREDENTIAL_HEADERS;

use super::client::HttpClient;
use super::wire::{ANTHROPIC_VERSION, Wire};
use super::{BoxError, Call, SendError, UpstreamBody};
use crate::error::describe;
use crate::secret::Secret;

/// An upstream endpoint reached over HTTP.
#[derive(Debug)]
pub struct HttpProvider {
    pub wire: Wire,
    /// Base URL without a trailing slash.
    pub base: String,
    /// Azure's `api-version` or Anthropic's `anthropic-version`.
    pub api_version: Option<String>,
    /// The auth header with the key, ready to send.
    pub auth: Option<Secret<(HeaderName, HeaderValue)>>,
    /// The bare key, kept only to scrub it from upstream error messages.
    pub key: Option<Secret<String>>,
    /// Headers from the provider's config, sent on every request.
    pub headers: HeaderMap,
    /// Ask for `stream_options.include_usage` on streams (some servers reject the field).
    pub stream_usage: bool,
    pub client: HttpClient,
}

/// Client headers never sent upstream: hop-by-hop headers and what the sidecar sets
/// itself — and, besides these, credentials ([`CREDENTIAL_HEADERS`]: the sidecar injects
/// the provider's own).
const DROPPED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "content-type",
    // Streams must arrive uncompressed so the relay can read them.
    "accept-encoding",
];

// === impl HttpProvider ===

impl HttpProvider {
    pub async fn send(&self, call: Call<'_>) -> Result<Response<UpstreamBody>, SendError> {
        let uri = self
            .wire
            .uri(
                &self.base,
                call.operation,
                call.model,
                call.stream,
                self.api_version.as_deref(),
            )
            .map_err(SendError::Invalid)?;
        let mut request = Request::new(Full::new(call.body));
        *request.method_mut() = Method::POST;
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        forward_headers(call.client_headers, headers);
        // Our span as the parent of the provider's, when traces are exported.
        crate::telemetry::spans::inject(headers);
        for (name, value) in &self.headers {
            headers.insert(name, value.clone());
        }
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(auth) = &self.auth {
            let (name, value) = auth.expose();
            headers.insert(name, value.clone());
        }
        if self.wire == Wire::Anthropic && !headers.contains_key("anthropic-version") {
            let version = self.api_version.as_deref().unwrap_or(ANTHROPIC_VERSION);
            if let Ok(v) = HeaderValue::from_str(version) {
                headers.insert("anthropic-version", v);
            }
        }
        match self.client.request(request).await {
            Ok(response) => Ok(response.map(|b| b.map_err(box_error).boxed_unsync())),
            Err(e) if e.is_connect() => Err(SendError::Connect(describe(&e))),
            Err(e) => Err(SendError::Request(describe(&e))),
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        match &self.key {
            Some(key) if !key.expose().is_empty() => text.replace(key.expose().as_str(), "***"),
            _ => text.to_string(),
        }
    }
}

/// Copies the client's end-to-end headers, minus [`DROPPED`] and `x-modelroute-*`.
pub fn forward_headers(from: &HeaderMap, to: &mut HeaderMap) {
    let connection_listed: Vec<&str> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for (name, value) in from {
        let n = name.as_str();
        if DROPPED.contains(&n)
            || CREDENTIAL_HEADERS.contains(&n)
            || n.starts_with("x-modelroute-")
            || connection_listed.iter().any(|c| c.eq_ignore_ascii_case(n))
        {
            continue;
        }
        to.append(HeaderName::clone(name), value.clone());
    }
}

// A named function, not `Into::into`: the boxed error must be `'static`, and a generic
// conversion inside the response future defeats the compiler's `Send` check.
fn box_error(e: hyper::Error) -> BoxError {
    Box::new(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_end_to_end_headers_only() {
        let mut from = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer app-dummy"),
            ("x-api-key", "k"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("accept-encoding", "gzip"),
            ("x-modelroute-debug", "1"),
            ("openai-beta", "assistants=v2"),
            ("x-request-id", "abc"),
            ("user-agent", "OpenAI/Python"),
        ] {
            from.append(k, HeaderValue::from_static(v));
        }
        let mut to = HeaderMap::new();
        forward_headers(&from, &mut to);
        let mut names: Vec<_> = to.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["openai-beta", "user-agent", "x-request-id"]);
    }
}
