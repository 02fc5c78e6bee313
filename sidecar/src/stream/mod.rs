//! Streaming: SSE framing, the client-facing body, and the relay between them.

pub mod body;
pub mod relay;
pub mod sse;
