//! One pod's snapshot, cut from the world.

use std::sync::Arc;

use modelroute_proto::Snapshot;
use sha2::{Digest, Sha256};

use crate::index::{Labels, ObjectKey, Published, World};

/// A snapshot and what it holds, for ACK bookkeeping.
#[derive(Clone, Debug)]
pub struct Cut {
    pub snapshot: Snapshot,
    /// The ModelRoutes in it, with the generation of each.
    pub routes: Arc<[(ObjectKey, i64)]>,
}

/// Everything the world holds for a sidecar in `namespace` with `labels`.
pub fn cut(world: &World, namespace: &str, labels: &Labels) -> Cut {
    let selected: Vec<&Arc<Published>> = world.select(namespace, labels).collect();
    let mut h = Sha256::new();
    for p in &selected {
        h.update(p.digest);
    }
    let hash = hex(&h.finalize());
    Cut {
        routes: selected
            .iter()
            .map(|p| (p.key.clone(), p.generation))
            .collect(),
        snapshot: Snapshot {
            version: world.version,
            hash,
            resources: selected.iter().map(|p| p.resource.clone()).collect(),
            // Set per send, from that push's span.
            traceparent: String::new(),
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
