//! OpenAI embeddings <-> Gemini `batchEmbedContents`.
//!
//! Gemini returns no token counts for embeddings: OpenAI's `usage` is reported as zeros.
//! Vectors shortened with `dimensions` are passed on as Gemini returns them (not
//! re-normalised). `encoding_format` is accepted and answered with float arrays.

use serde_json::{Value, json};

use crate::api::ModelRequest;
use crate::error::ProxyError;

fn bad(message: impl Into<String>) -> ProxyError {
    ProxyError::BadRequest(message.into())
}

/// The `batchEmbedContents` body: one request per input, in order.
pub fn request(request: &ModelRequest, model: &str) -> Result<Value, ProxyError> {
    let input = request.field("input");
    let inputs: Vec<&str> = match &input {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str().ok_or_else(|| {
                    bad("`input`: Gemini embeds text only; token arrays are not supported")
                })
            })
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(bad(
                "`input` must be a string or a non-empty array of strings",
            ));
        }
    };
    let dimensions = match request.field("dimensions") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|d| *d > 0)
                .ok_or_else(|| bad("`dimensions` must be a positive integer"))?,
        ),
    };
    let requests: Vec<Value> = inputs
        .into_iter()
        .map(|text| {
            let mut r =
                json!({"model": format!("models/{model}"), "content": {"parts": [{"text": text}]}});
            if let Some(d) = dimensions {
                r["outputDimensionality"] = json!(d);
            }
            r
        })
        .collect();
    Ok(json!({"requests": requests}))
}

/// `{embeddings:[{values}]}` as OpenAI's list.
pub fn response(body: &[u8], model: &str) -> Result<Value, String> {
    let answer: Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let Some(embeddings) = answer.get("embeddings").and_then(Value::as_array) else {
        return Err("the answer has no `embeddings`".into());
    };
    let data = embeddings
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let Some(values) = e.get("values").and_then(Value::as_array) else {
                return Err(format!("embeddings[{index}] has no `values`"));
            };
            Ok(json!({"object": "embedding", "index": index, "embedding": values}))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},
    }))
}
