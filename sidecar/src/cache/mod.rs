//! The response cache: an exact-match cache of whole answers, so identical deterministic
//! requests are never paid twice.
//!
//! A test suite, an eval run or a retrying client often sends the very same request with
//! `temperature: 0` or a `seed`; the provider bills each one although the answer cannot
//! differ. Only exact matches are served: similarity is not sameness, and a near-miss
//! answered from the cache would be a wrong answer, not a cheaper one.
//!
//! - [`key`]: the key of a request, a SHA-256 of its canonical form (field order, Unicode
//!   normalization, number spelling and whitespace around message text do not matter;
//!   everything that can change the answer does), and [`deterministic`], whether a request
//!   asks for a reproducible answer at all.
//! - [`store`]: the answers, bounded in bytes, each with its own time to live, and the
//!   [`StreamRecorder`] that keeps a stream's frames while they are relayed.
//!
//! These parts are pure (no HTTP): the handlers decide when to look up and when to store.

pub mod key;
pub mod store;

pub use key::{CacheKey, KeyError, deterministic, key_of};
pub use store::{Answer, Entry, ResponseCache, StreamRecorder};
