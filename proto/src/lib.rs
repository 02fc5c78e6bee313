//! The gRPC contract between the operator and its sidecars (`discovery.proto`).
//!
//! Both halves are generated here, from the one `.proto`: the operator uses the server,
//! the sidecar the client.

#![allow(clippy::all, unreachable_pub, missing_docs)]

pub mod v1 {
    tonic::include_proto!("modelroute.discovery.v1");
}

pub use v1::*;
