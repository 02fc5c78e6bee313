//! End-to-end support: spawning binaries, fake providers, load generation.
//!
//! The load benchmark (`cargo run --release -p modelroute-e2e --bin bench`) is built from
//! these parts; see docs/performance.md for what it measures.

pub mod binaries;
pub mod fake_upstream;
pub mod load;
pub mod nginx;
pub mod operator;
pub mod otlp_sink;
pub mod process;
pub mod report;
pub mod sidecar;
