//! Gemini generateContent <-> OpenAI Chat Completions and Embeddings.
//!
//! Pure translation (no I/O): `request` builds GenerateContentRequest bodies, `schema`
//! rewrites JSON Schemas into Gemini's OpenAPI-subset `Schema`, `response` and `stream`
//! turn answers into OpenAI's shapes, `embed` covers batchEmbedContents. Mapping tables:
//! docs/providers-gemini.md.

use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use crate::api::ModelRequest;
use crate::api::params::ChatParams;
use crate::error::ProxyError;

mod embed;
mod request;
mod response;
mod schema;
mod stream;

pub use stream::ChatStream;

/// Tool call ids the gateway made up (Gemini gave none) start with this; they are not
/// sent back to Gemini as `functionCall.id` / `functionResponse.id`.
const GENERATED_ID_PREFIX: &str = "call_mrgen_";

/// An OpenAI chat request as a Gemini GenerateContentRequest body.
pub fn chat_request(chat: &ChatParams, model: &str) -> Result<Bytes, ProxyError> {
    to_bytes(&request::build(chat, model)?)
}

/// A GenerateContentResponse as an OpenAI `chat.completion`; `model` is the client's
/// alias.
pub fn chat_response(body: &[u8], model: &str) -> Result<Bytes, String> {
    to_bytes(&response::completion(body, model)?).map_err(|e| e.to_string())
}

/// An OpenAI embeddings request as a batchEmbedContents body.
pub fn embeddings_request(request: &ModelRequest, model: &str) -> Result<Bytes, ProxyError> {
    to_bytes(&embed::request(request, model)?)
}

/// A batchEmbedContents answer in OpenAI's embeddings shape. Vectors are always float
/// arrays, also for `encoding_format: "base64"`: the OpenAI SDKs ask for base64 by
/// default and decode only strings, so floats read the same.
pub fn embeddings_response(body: &[u8], model: &str) -> Result<Bytes, String> {
    to_bytes(&embed::response(body, model)?).map_err(|e| e.to_string())
}

/// `RetryInfo.retryDelay` (`"15s"`, `"1.5s"`) from a Gemini error body.
pub fn retry_delay(body: &[u8]) -> Option<Duration> {
    let error: Value = serde_json::from_slice(body).ok()?;
    let details = error.get("error")?.get("details")?.as_array()?;
    details
        .iter()
        .filter(|d| {
            d.get("@type").and_then(Value::as_str)
                == Some("type.googleapis.com/google.rpc.RetryInfo")
        })
        .find_map(|d| {
            let seconds: f64 = d
                .get("retryDelay")?
                .as_str()?
                .strip_suffix('s')?
                .parse()
                .ok()?;
            Duration::try_from_secs_f64(seconds).ok()
        })
}

fn to_bytes(v: &Value) -> Result<Bytes, ProxyError> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| ProxyError::BadRequest(e.to_string()))
}

fn generated_id() -> String {
    let mut id = String::from(GENERATED_ID_PREFIX);
    for _ in 0..24 {
        id.push(fastrand::alphanumeric());
    }
    id
}

fn is_generated_id(id: &str) -> bool {
    id.starts_with(GENERATED_ID_PREFIX)
}

#[cfg(test)]
mod tests;
