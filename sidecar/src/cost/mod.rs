//! What a request cost: token usage × price.
//!
//! [`usage`] turns each provider's usage object into one [`TokenUsage`], whose parts are
//! disjoint so each is billed once at its own rate.

pub mod usage;

pub use usage::{TokenUsage, UsageFormat};
