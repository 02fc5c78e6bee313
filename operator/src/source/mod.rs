//! Where ModelRoutes, Secrets and sidecar pods come from.

pub mod files;
pub mod kube;
