//! The modelroute control plane: ModelRoute controller, discovery server, budget ledger
//! and admission webhook. Only the crate skeleton exists so far; see DESIGN.md.

pub use modelroute_crds as crds;
