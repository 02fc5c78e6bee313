//! What a client request is: an OpenAI call, translated for whichever target serves it,
//! or a provider's own API passed through to targets of that provider kind.

use bytes::Bytes;

use crate::api::ModelRequest;
use crate::api::dialect::Dialect;
use crate::config::Target;
use crate::error::ProxyError;
use crate::provider::{Operation, StreamTranslator, Wire};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exchange {
    /// `POST /v1/chat/completions`.
    Chat,
    /// `POST /v1/embeddings`.
    Embeddings,
    /// A provider's native API (`/v1/messages`, Gemini's `:generateContent`): keys
    /// injected, routed, retried and counted, but not translated.
    Native(Wire),
}

// === impl Exchange ===

impl Exchange {
    pub fn operation(self) -> Operation {
        match self {
            Exchange::Embeddings => Operation::Embeddings,
            Exchange::Chat | Exchange::Native(_) => Operation::Chat,
        }
    }

    /// The API the client speaks.
    pub fn dialect(self) -> Dialect {
        match self {
            Exchange::Native(Wire::Anthropic) => Dialect::Anthropic,
            Exchange::Native(Wire::Gemini) => Dialect::Gemini,
            Exchange::Chat | Exchange::Embeddings | Exchange::Native(_) => Dialect::OpenAi,
        }
    }

    /// Native calls go only to targets that speak that API.
    pub fn eligible(self, target: &Target) -> bool {
        match self {
            Exchange::Native(wire) => target.provider.wire() == wire,
            Exchange::Chat | Exchange::Embeddings => true,
        }
    }

    /// The upstream body for `target`.
    pub fn body(self, request: &ModelRequest, target: &Target) -> Result<Bytes, ProxyError> {
        let wire = target.provider.wire();
        match self {
            Exchange::Chat => {
                wire.chat_body(request, &target.model, target.provider.stream_usage())
            }
            Exchange::Embeddings => wire.embeddings_body(request, &target.model),
            Exchange::Native(_) => Ok(request.upstream_body(&target.model, false)),
        }
    }

    /// A whole upstream answer as the client expects it.
    pub fn answer(self, target: &Target, body: Bytes, alias: &str) -> Result<Bytes, String> {
        let wire = target.provider.wire();
        match self {
            Exchange::Chat => wire.chat_answer(body, alias),
            Exchange::Embeddings => wire.embeddings_answer(body, alias),
            Exchange::Native(_) => Ok(body),
        }
    }

    /// Turns the target's stream events into the client's.
    pub fn translator(self, target: &Target, alias: &str) -> StreamTranslator {
        match self {
            Exchange::Chat => target.provider.wire().stream_translator(alias),
            Exchange::Embeddings | Exchange::Native(_) => StreamTranslator::Identity,
        }
    }
}
