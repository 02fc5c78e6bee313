//! Wire formats: how each provider kind wants its URL, auth header and bodies, and how
//! its answers become OpenAI's.
//!
//! OpenAI and Azure OpenAI speak OpenAI's format, so their bodies pass through (only the
//! model is replaced). Anthropic and Gemini are translated both ways by their modules.

use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http::header::HeaderName;

use super::classify::{self, ErrorBody};
use super::{Operation, anthropic, gemini};
use crate::api::ModelRequest;
use crate::error::ProxyError;
use crate::stream::sse::Event;

/// Azure OpenAI's latest GA inference API version.
pub const AZURE_API_VERSION: &str = "2024-10-21";
/// The only current Anthropic API version.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    OpenAi,
    Azure,
    Anthropic,
    Gemini,
}

/// Turns a provider's streamed events into OpenAI `chat.completion.chunk` events.
///
/// Contract for every translator: emit complete OpenAI SSE events; the first carries
/// `delta.role`; a final chunk carries `finish_reason`; then a usage chunk
/// (`choices: []`) when usage is known; then `data: [DONE]`. A provider error, or an end
/// before the answer is complete, becomes one `data: {"error":{...}}` event and nothing
/// after it.
#[derive(Debug)]
pub enum StreamTranslator {
    Identity,
    Anthropic(anthropic::ChatStream),
    Gemini(gemini::ChatStream),
}

// === impl Wire ===

impl Wire {
    /// The upstream URL for one call.
    pub fn uri(
        self,
        base: &str,
        operation: Operation,
        model: &str,
        stream: bool,
        api_version: Option<&str>,
    ) -> Result<Uri, String> {
        let url = match (self, operation) {
            (Wire::OpenAi, Operation::Chat) => format!("{base}/chat/completions"),
            (Wire::OpenAi, Operation::Embeddings) => format!("{base}/embeddings"),
            (Wire::Azure, op) => {
                let path = match op {
                    Operation::Chat => "chat/completions",
                    Operation::Embeddings => "embeddings",
                };
                let version = api_version.unwrap_or(AZURE_API_VERSION);
                format!(
                    "{base}/openai/deployments/{}/{path}?api-version={version}",
                    path_segment(model)?
                )
            }
            (Wire::Anthropic, Operation::Chat) => format!("{base}/messages"),
            (Wire::Anthropic, Operation::Embeddings) => {
                return Err("Anthropic has no embeddings API".into());
            }
            (Wire::Gemini, Operation::Chat) if stream => {
                format!(
                    "{base}/models/{}:streamGenerateContent?alt=sse",
                    path_segment(model)?
                )
            }
            (Wire::Gemini, Operation::Chat) => {
                format!("{base}/models/{}:generateContent", path_segment(model)?)
            }
            (Wire::Gemini, Operation::Embeddings) => {
                format!("{base}/models/{}:batchEmbedContents", path_segment(model)?)
            }
        };
        url.parse()
            .map_err(|e| format!("bad upstream URL {url}: {e}"))
    }

    /// The header the key goes in, and how its value is written.
    pub fn auth_header(self, key: &str) -> (HeaderName, String) {
        match self {
            Wire::OpenAi => (http::header::AUTHORIZATION, format!("Bearer {key}")),
            Wire::Azure => (HeaderName::from_static("api-key"), key.to_string()),
            Wire::Anthropic => (HeaderName::from_static("x-api-key"), key.to_string()),
            // In a header, never `?key=`: URLs end up in logs.
            Wire::Gemini => (HeaderName::from_static("x-goog-api-key"), key.to_string()),
        }
    }

    /// The upstream body of a chat request.
    pub fn chat_body(
        self,
        request: &ModelRequest,
        model: &str,
        stream_usage: bool,
    ) -> Result<Bytes, ProxyError> {
        match self {
            Wire::OpenAi | Wire::Azure => Ok(request.upstream_body(model, stream_usage)),
            Wire::Anthropic => anthropic::chat_request(&request.chat()?, model, request.stream),
            Wire::Gemini => gemini::chat_request(&request.chat()?, model),
        }
    }

    /// The upstream body of an embeddings request.
    pub fn embeddings_body(self, request: &ModelRequest, model: &str) -> Result<Bytes, ProxyError> {
        match self {
            Wire::OpenAi | Wire::Azure => Ok(request.upstream_body(model, false)),
            Wire::Anthropic => Err(ProxyError::BadRequest(
                "Anthropic has no embeddings API".into(),
            )),
            Wire::Gemini => gemini::embeddings_request(request, model),
        }
    }

    /// A whole chat answer as OpenAI's `chat.completion`.
    pub fn chat_answer(self, body: Bytes, model: &str) -> Result<Bytes, String> {
        match self {
            Wire::OpenAi | Wire::Azure => Ok(body),
            Wire::Anthropic => anthropic::chat_response(&body, model),
            Wire::Gemini => gemini::chat_response(&body, model),
        }
    }

    /// A whole embeddings answer in OpenAI's shape.
    pub fn embeddings_answer(self, body: Bytes, model: &str) -> Result<Bytes, String> {
        match self {
            Wire::OpenAi | Wire::Azure | Wire::Anthropic => Ok(body),
            Wire::Gemini => gemini::embeddings_response(&body, model),
        }
    }

    pub fn stream_translator(self, model: &str) -> StreamTranslator {
        match self {
            Wire::OpenAi | Wire::Azure => StreamTranslator::Identity,
            Wire::Anthropic => StreamTranslator::Anthropic(anthropic::ChatStream::new(model)),
            Wire::Gemini => StreamTranslator::Gemini(gemini::ChatStream::new(model)),
        }
    }

    /// An error answer's message, type, code and any retry delay the body gives.
    pub fn error(self, body: &[u8]) -> (ErrorBody, Option<Duration>) {
        let mut error = classify::error_body(body);
        // Anthropic's errors have a type and no code; OpenAI clients read `code`.
        if self == Wire::Anthropic && error.code.is_none() {
            error.code.clone_from(&error.kind);
        }
        let retry = match self {
            Wire::Gemini => gemini::retry_delay(body),
            _ => None,
        };
        (error, retry)
    }
}

/// A model name as one URL path segment; anything that could change the path is refused.
fn path_segment(model: &str) -> Result<&str, String> {
    let ok = !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._@".contains(&b))
        && !model.contains("..");
    if ok {
        Ok(model)
    } else {
        Err(format!("model {model:?} cannot be used in an upstream URL"))
    }
}

// === impl StreamTranslator ===

impl StreamTranslator {
    /// Translates one upstream event into zero or more OpenAI events appended to `out`.
    pub fn event(&mut self, event: Event, out: &mut Vec<Bytes>) {
        match self {
            StreamTranslator::Identity => out.push(event.raw),
            StreamTranslator::Anthropic(s) => s.event(&event, out),
            StreamTranslator::Gemini(s) => s.event(&event, out),
        }
    }

    /// The upstream stream ended: whatever must still be said.
    pub fn end(&mut self, out: &mut Vec<Bytes>) {
        match self {
            StreamTranslator::Identity => {}
            StreamTranslator::Anthropic(s) => s.end(out),
            StreamTranslator::Gemini(s) => s.end(out),
        }
    }

    pub fn is_identity(&self) -> bool {
        matches!(self, StreamTranslator::Identity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_per_wire() {
        let u = |w: Wire, base, op, model, stream| {
            w.uri(base, op, model, stream, None).unwrap().to_string()
        };
        assert_eq!(
            u(
                Wire::OpenAi,
                "https://api.openai.com/v1",
                Operation::Chat,
                "gpt-4o",
                true
            ),
            "https://api.openai.com/v1/chat/completions"
        );
        assert_eq!(
            u(
                Wire::Azure,
                "https://r.openai.azure.com",
                Operation::Chat,
                "my-gpt4o",
                false
            ),
            "https://r.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(
            u(
                Wire::Anthropic,
                "https://api.anthropic.com/v1",
                Operation::Chat,
                "claude-x",
                true
            ),
            "https://api.anthropic.com/v1/messages"
        );
        let g = "https://generativelanguage.googleapis.com/v1beta";
        assert_eq!(
            u(Wire::Gemini, g, Operation::Chat, "gemini-2.5-flash", false),
            format!("{g}/models/gemini-2.5-flash:generateContent")
        );
        assert_eq!(
            u(Wire::Gemini, g, Operation::Chat, "gemini-2.5-flash", true),
            format!("{g}/models/gemini-2.5-flash:streamGenerateContent?alt=sse")
        );
        assert_eq!(
            u(
                Wire::Gemini,
                g,
                Operation::Embeddings,
                "text-embedding-004",
                false
            ),
            format!("{g}/models/text-embedding-004:batchEmbedContents")
        );
        assert!(
            Wire::Gemini
                .uri(g, Operation::Chat, "../x", false, None)
                .is_err()
        );
        assert!(
            Wire::Gemini
                .uri(g, Operation::Chat, "a/b", false, None)
                .is_err()
        );
        assert!(
            Wire::Azure
                .uri(g, Operation::Chat, "a?b", false, None)
                .is_err()
        );
    }

    #[test]
    fn keys_go_in_headers() {
        assert_eq!(Wire::OpenAi.auth_header("k").1, "Bearer k");
        assert_eq!(Wire::Azure.auth_header("k").0.as_str(), "api-key");
        assert_eq!(Wire::Anthropic.auth_header("k").0.as_str(), "x-api-key");
        assert_eq!(Wire::Gemini.auth_header("k").0.as_str(), "x-goog-api-key");
    }
}
