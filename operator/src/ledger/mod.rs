//! The budget ledger the leader keeps (docs/budgets.md): spend reported by sidecars,
//! allowance outstanding at each, and how much to grant next.

pub mod account;

pub use account::{Account, grant_size};
