//! Anthropic Messages API <-> OpenAI Chat Completions.

use bytes::Bytes;

use crate::api::params::ChatParams;
use crate::error::ProxyError;
use crate::stream::sse::Event;

/// An OpenAI chat request as an Anthropic Messages request body.
pub fn chat_request(_chat: &ChatParams, _model: &str, _stream: bool) -> Result<Bytes, ProxyError> {
    Err(ProxyError::BadRequest(
        "anthropic translation is not available yet".into(),
    ))
}

/// An Anthropic message as an OpenAI `chat.completion`.
pub fn chat_response(_body: &[u8], _model: &str) -> Result<Bytes, String> {
    Err("anthropic translation is not available yet".into())
}

/// Anthropic stream events -> OpenAI chunks (see `Wire`'s stream contract).
#[derive(Debug)]
pub struct ChatStream {}

impl ChatStream {
    pub fn new(_model: &str) -> Self {
        Self {}
    }

    pub fn event(&mut self, _event: &Event, _out: &mut Vec<Bytes>) {}

    pub fn end(&mut self, _out: &mut Vec<Bytes>) {}
}
