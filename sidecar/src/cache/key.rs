//! Cache keys: a SHA-256 over a canonical form of the request, so that requests which can
//! only get the same answer share a key, and any difference that could change the answer
//! gives another.
//!
//! The canonical form is written straight into the hasher, never built as a second value:
//! a tagged, length-prefixed encoding of the parsed JSON (so no two values can run
//! together) in which
//! - object keys are sorted by bytes at every depth,
//! - every string and object key is in Unicode NFC (an "é" typed as one code point or as
//!   "e" plus an accent is the same text),
//! - the text a user or model wrote is trimmed (see [`Place`]), no other string is: a stop
//!   sequence of `"\n"` is not a stop sequence of `""`,
//! - integers are integers however they are spelled (`1`, `1.0`, `1e0`), other numbers the
//!   f64 they parse to,
//! - top-level fields that never change the answer ([`IGNORED`]) are left out.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use unicode_normalization::{IsNormalized, UnicodeNormalization, is_nfc_quick};

/// The key of a request: SHA-256 of endpoint, model alias, stream flag and canonical body.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheKey([u8; 32]);

/// Why a body has no key (such a request is not cached; the upstream judges it).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the request body is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    #[error("the request body is not a JSON object")]
    NotAnObject,
}

/// Top-level fields that never change the answer: who asks (`user`, `metadata`), whether
/// the provider keeps a copy (`store`) and at which priority it runs (`service_tier`).
/// `stream` changes the answer's form, so it is a separate input of the key.
const IGNORED: [&str; 5] = ["metadata", "service_tier", "store", "stream", "user"];

/// Where a value sits in a request, as far as trimming cares. Only message text is trimmed,
/// wherever one of the dialects puts it:
/// - OpenAI and Anthropic: `messages[].content` (a string) and `messages[].content[].text`,
/// - Anthropic: `system` (a string) and `system[].text`,
/// - Gemini: `contents[].parts[].text` and `systemInstruction.parts[].text` (also spelled
///   `system_instruction`).
///
/// The places are the same for every endpoint: each dialect's paths are absent from the
/// others' bodies, and embeddings' `input` is in none of them (its whitespace is embedded).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Root,
    /// `messages`: an array of turns.
    Messages,
    Message,
    /// Gemini's `contents`: an array of turns.
    Contents,
    /// A Gemini turn or system instruction: an object with `parts`.
    Turn,
    /// `messages[].content` or `system`: text, or an array of parts.
    Content,
    /// A Gemini turn's `parts`.
    Parts,
    /// One element of a content or parts array.
    Part,
    /// The `text` of a part.
    Text,
    Other,
}

/// The sampling fields of a request; the rest of the body is skipped, not parsed.
#[derive(Deserialize)]
struct Sampling {
    temperature: Option<f64>,
    /// `None` when absent or null.
    seed: Option<IgnoredAny>,
    #[serde(rename = "generationConfig", alias = "generation_config")]
    generation_config: Option<GenerationConfig>,
}

#[derive(Deserialize)]
struct GenerationConfig {
    temperature: Option<f64>,
    seed: Option<IgnoredAny>,
}

/// A field of an object: its name in NFC (borrowed when it already was) and its value.
type Field<'a> = (Cow<'a, str>, &'a Value);

/// The key of a request to endpoint `kind` ("chat", "embeddings", "anthropic", "gemini")
/// for model alias `model`, streamed or not.
///
/// # Errors
/// When `body` is not JSON or not a JSON object.
pub fn key_of(kind: &str, model: &str, stream: bool, body: &[u8]) -> Result<CacheKey, KeyError> {
    let value: Value = serde_json::from_slice(body)?;
    let Value::Object(fields) = &value else {
        return Err(KeyError::NotAnObject);
    };
    let mut hasher = Sha256::new();
    put_str(&mut hasher, kind);
    put_str(&mut hasher, model);
    hasher.update([u8::from(stream)]);
    put_object(&mut hasher, fields, Place::Root);
    Ok(CacheKey(hasher.finalize().into()))
}

/// Whether a request asks for a reproducible answer: `temperature` 0 or a `seed` (Gemini:
/// in `generationConfig`). Without a temperature the provider samples at its default (1.0),
/// so the next answer may differ and caching one would hide that.
///
/// Reads only those fields; a body that is not a JSON object, or whose fields have the wrong
/// types, is not deterministic.
pub fn deterministic(body: &[u8]) -> bool {
    // Most requests name neither field: a byte search spares them the parse. (A key
    // spelled with escapes is missed, so such a request is not cached: the safe side.)
    let names = |name: &[u8]| memchr::memmem::find(body, name).is_some();
    if !names(b"\"temperature\"") && !names(b"\"seed\"") {
        return false;
    }
    let Ok(request) = serde_json::from_slice::<Sampling>(body) else {
        return false;
    };
    let gemini = request.generation_config.as_ref();
    fixed(request.temperature, request.seed.as_ref())
        || gemini.is_some_and(|g| fixed(g.temperature, g.seed.as_ref()))
}

fn fixed(temperature: Option<f64>, seed: Option<&IgnoredAny>) -> bool {
    seed.is_some() || temperature.is_some_and(|t| t == 0.0)
}

fn put_value(hasher: &mut Sha256, value: &Value, place: Place) {
    match value {
        Value::Null => hasher.update(b"n"),
        Value::Bool(false) => hasher.update(b"f"),
        Value::Bool(true) => hasher.update(b"t"),
        Value::Number(n) => put_number(hasher, n),
        Value::String(s) => {
            hasher.update(b"s");
            let s = nfc(s);
            put_str(hasher, if place.trims() { s.trim() } else { &s });
        }
        Value::Array(items) => {
            hasher.update(b"a");
            put_len(hasher, items.len());
            for item in items {
                put_value(hasher, item, place.item());
            }
        }
        Value::Object(fields) => {
            hasher.update(b"o");
            put_object(hasher, fields, place);
        }
    }
}

fn put_object(hasher: &mut Sha256, fields: &Map<String, Value>, place: Place) {
    // Sorted here, not taken in the map's order: with serde_json's `preserve_order` (which
    // any crate in the build may turn on) that is the order the client wrote.
    let mut sorted: Vec<Field<'_>> = fields
        .iter()
        .filter(|(name, _)| !(place == Place::Root && IGNORED.contains(&name.as_str())))
        .map(|(name, value)| (nfc(name), value))
        .collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    put_len(hasher, sorted.len());
    for (name, value) in sorted {
        put_str(hasher, &name);
        put_value(hasher, value, place.field(&name));
    }
}

/// Integers as integers whatever their spelling (`1`, `1.0`, `1e0`, `-0.0` is 0), other
/// numbers as the bits of the f64 they parse to.
fn put_number(hasher: &mut Sha256, n: &Number) {
    let float = n.as_f64();
    let integer = n
        .as_i64()
        .map(i128::from)
        .or_else(|| n.as_u64().map(i128::from))
        .or_else(|| {
            // `as` saturates, and the bound keeps it exact: |f| < 2^127 fits.
            float
                .filter(|f| f.fract() == 0.0 && f.abs() < i128::MAX as f64)
                .map(|f| f as i128)
        });
    match (integer, float) {
        (Some(i), _) => {
            hasher.update(b"i");
            hasher.update(i.to_le_bytes());
        }
        (None, Some(f)) => {
            hasher.update(b"d");
            hasher.update(f.to_bits().to_le_bytes());
        }
        // Not an f64: only with serde_json's `arbitrary_precision`; its digits then.
        (None, None) => {
            hasher.update(b"r");
            put_str(hasher, &n.to_string());
        }
    }
}

fn put_str(hasher: &mut Sha256, s: &str) {
    put_len(hasher, s.len());
    hasher.update(s.as_bytes());
}

fn put_len(hasher: &mut Sha256, len: usize) {
    hasher.update((len as u64).to_le_bytes());
}

/// `s` in NFC, borrowed when it already is (nearly always: ASCII is).
fn nfc(s: &str) -> Cow<'_, str> {
    match is_nfc_quick(s.chars()) {
        IsNormalized::Yes => Cow::Borrowed(s),
        IsNormalized::No | IsNormalized::Maybe => Cow::Owned(s.nfc().collect()),
    }
}

// === impl CacheKey ===

impl fmt::Debug for CacheKey {
    /// The first 8 bytes in hex: enough to tell keys apart in a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CacheKey(")?;
        for byte in self.0.iter().take(8) {
            write!(f, "{byte:02x}")?;
        }
        f.write_str(")")
    }
}

// === impl Place ===

impl Place {
    /// The place of field `name` of an object at `self`.
    fn field(self, name: &str) -> Place {
        match (self, name) {
            (Place::Root, "messages") => Place::Messages,
            (Place::Root, "system") => Place::Content,
            (Place::Root, "contents") => Place::Contents,
            (Place::Root, "systemInstruction" | "system_instruction") => Place::Turn,
            (Place::Message, "content") => Place::Content,
            (Place::Turn, "parts") => Place::Parts,
            (Place::Part, "text") => Place::Text,
            _ => Place::Other,
        }
    }

    /// The place of an element of an array at `self`.
    fn item(self) -> Place {
        match self {
            Place::Messages => Place::Message,
            Place::Contents => Place::Turn,
            Place::Content | Place::Parts => Place::Part,
            _ => Place::Other,
        }
    }

    /// Whether a string here is message text.
    fn trims(self) -> bool {
        matches!(self, Place::Content | Place::Text)
    }
}

#[cfg(test)]
#[path = "key_tests.rs"]
mod tests;
