//! Choosing among a route's targets.

pub mod latency;
pub mod weighted;
