//! Configuration: the compiled [`RouteTable`] every request reads, and its sources.
//!
//! Sources produce ModelRoutes (files, or the operator's snapshots with the Secret values
//! they carry); [`compile`] validates them, resolves keys and builds a new table, which
//! replaces the old one atomically. Requests already running keep the table they started
//! with.

pub mod compile;
pub mod file;
pub mod keys;
pub mod limits;
pub mod operator;
pub mod redact;
pub mod routing;
pub mod table;

pub use compile::{CompileError, compile};
pub use keys::SecretKeys;
pub use table::{BreakerPolicy, RetryPolicy, Route, RouteTable, SnapshotId, Target, Timeouts};
