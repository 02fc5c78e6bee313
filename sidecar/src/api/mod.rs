//! The OpenAI wire format as the sidecar needs to see it.
//!
//! Requests are kept as JSON objects and passed on field for field, so anything a newer
//! OpenAI SDK sends reaches an OpenAI-compatible upstream untouched; only the fields the
//! gateway acts on are read.

pub mod chat;
pub mod chunk;
pub mod dialect;
pub mod models;
pub mod params;

pub use chat::{ChunkPeek, ModelRequest, Usage};
