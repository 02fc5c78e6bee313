//! Providers: how one upstream is called.
//!
//! A [`Provider`] turns a normalized call into the upstream's HTTP exchange and hands back
//! the upstream response unread. The built-in mock answers in-process with the same wire
//! bytes an OpenAI server would send, so everything after `send` is one code path.

pub mod anthropic;
pub mod classify;
pub mod client;
pub mod gemini;
mod mock;
mod remote;
pub mod wire;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::combinators::UnsyncBoxBody;
use modelroute_crds::v1alpha1::ProviderKind;

pub use mock::MockProvider;
pub use remote::HttpProvider;
pub use wire::{StreamTranslator, Wire};

/// Errors from an upstream body stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream response body, from the network or from the mock.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// One upstream endpoint with its credentials and connection pool.
#[derive(Debug)]
pub struct Provider {
    /// The provider's name in its ModelRoute.
    pub name: Arc<str>,
    pub kind: ProviderKind,
    /// Identifies the endpoint across config reloads (kind, URL, connect timeout), so pools
    /// and circuit breakers survive a reload that does not change it.
    pub endpoint: String,
    pub backend: Backend,
    /// The provider account's own limits (`rateLimit`), if set.
    pub limiter: Option<Arc<crate::limits::provider::ProviderLimiter>>,
}

#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "one per provider, behind an Arc")]
pub enum Backend {
    Http(HttpProvider),
    Mock(MockProvider),
}

/// What the client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Chat,
    Embeddings,
}

/// One upstream call: the operation, the upstream model, the body already in the
/// provider's format, and the client's headers (filtered before they go anywhere).
pub struct Call<'a> {
    pub operation: Operation,
    pub model: &'a str,
    pub stream: bool,
    pub body: Bytes,
    pub client_headers: &'a HeaderMap,
}

/// Why no upstream response head arrived.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("could not connect: {0}")]
    Connect(String),
    #[error("request failed: {0}")]
    Request(String),
    #[error("{0}")]
    Invalid(String),
}

// === impl Provider ===

impl Provider {
    pub async fn send(&self, call: Call<'_>) -> Result<Response<UpstreamBody>, SendError> {
        match &self.backend {
            Backend::Http(p) => p.send(call).await,
            Backend::Mock(p) => Ok(p.answer(call).await),
        }
    }

    /// Whether streamed requests to this provider ask for a usage chunk.
    pub fn stream_usage(&self) -> bool {
        match &self.backend {
            Backend::Http(p) => p.stream_usage,
            Backend::Mock(_) => true,
        }
    }

    /// The wire format this provider speaks (the mock speaks OpenAI's).
    pub fn wire(&self) -> Wire {
        match &self.backend {
            Backend::Http(p) => p.wire,
            Backend::Mock(_) => Wire::OpenAi,
        }
    }

    /// `text` with this provider's key blanked out, for messages that reach clients or logs.
    pub fn scrub(&self, text: &str) -> String {
        match &self.backend {
            Backend::Http(p) => p.scrub(text),
            Backend::Mock(_) => text.to_string(),
        }
    }
}
