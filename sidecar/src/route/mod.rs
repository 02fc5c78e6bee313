//! Choosing among a route's targets: what a request looks like to routing (`ask`), match
//! rules, strategies (weighted, priority, latency, cost), latency statistics, and
//! prompt-cache affinity.

pub mod affinity;
pub mod ask;
pub mod latency;
pub mod rules;
pub mod strategy;
pub mod weighted;
