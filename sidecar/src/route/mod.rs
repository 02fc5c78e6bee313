//! Choosing among a route's targets.

pub mod weighted;
