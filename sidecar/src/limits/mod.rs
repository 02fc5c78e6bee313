//! Rate limits: token buckets the sidecar enforces locally (fleet-wide shares arrive as
//! grants from the operator, like budget allowances; see docs/budgets.md).

pub mod bucket;

pub use bucket::{Denied, TokenBucket};
