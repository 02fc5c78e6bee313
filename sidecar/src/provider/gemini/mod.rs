//! Gemini generateContent <-> OpenAI Chat Completions and Embeddings.

use std::time::Duration;

use bytes::Bytes;

use crate::api::ModelRequest;
use crate::api::params::ChatParams;
use crate::error::ProxyError;
use crate::stream::sse::Event;

/// An OpenAI chat request as a Gemini GenerateContentRequest body.
pub fn chat_request(_chat: &ChatParams, _model: &str) -> Result<Bytes, ProxyError> {
    Err(ProxyError::BadRequest(
        "gemini translation is not available yet".into(),
    ))
}

/// A GenerateContentResponse as an OpenAI `chat.completion`.
pub fn chat_response(_body: &[u8], _model: &str) -> Result<Bytes, String> {
    Err("gemini translation is not available yet".into())
}

/// An OpenAI embeddings request as a batchEmbedContents body.
pub fn embeddings_request(_request: &ModelRequest, _model: &str) -> Result<Bytes, ProxyError> {
    Err(ProxyError::BadRequest(
        "gemini translation is not available yet".into(),
    ))
}

/// A batchEmbedContents answer in OpenAI's embeddings shape.
pub fn embeddings_response(_body: &[u8], _model: &str) -> Result<Bytes, String> {
    Err("gemini translation is not available yet".into())
}

/// `RetryInfo.retryDelay` from a Gemini error body.
pub fn retry_delay(_body: &[u8]) -> Option<Duration> {
    None
}

/// Gemini stream events -> OpenAI chunks (see `Wire`'s stream contract).
#[derive(Debug)]
pub struct ChatStream {}

impl ChatStream {
    pub fn new(_model: &str) -> Self {
        Self {}
    }

    pub fn event(&mut self, _event: &Event, _out: &mut Vec<Bytes>) {}

    pub fn end(&mut self, _out: &mut Vec<Bytes>) {}
}
