//! The leader labels its own pod `modelroute.dev/leader=true`, so the discovery Service
//! (which selects that label) sends sidecars straight to the one replica that serves
//! them instead of letting them bounce off followers.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub const LEADER_LABEL: &str = "modelroute.dev/leader";
const RETRY: Duration = Duration::from_secs(5);

/// Keeps the label on `pod` equal to `leader`; removes it on shutdown.
pub async fn run(
    client: kube::Client,
    namespace: String,
    pod: String,
    mut leader: watch::Receiver<bool>,
    shutdown: CancellationToken,
) {
    let api: Api<Pod> = Api::namespaced(client, &namespace);
    let mut labelled = None;
    loop {
        let want = *leader.borrow_and_update();
        if labelled != Some(want) {
            match set(&api, &pod, want).await {
                Ok(()) => labelled = Some(want),
                Err(e) => {
                    tracing::warn!(error = %e, pod, "cannot update the leader label; retrying")
                }
            }
        }
        let retry = labelled != Some(want);
        tokio::select! {
            () = shutdown.cancelled() => break,
            changed = leader.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(RETRY), if retry => {}
        }
    }
    if labelled != Some(false) {
        let _ = tokio::time::timeout(Duration::from_secs(2), set(&api, &pod, false)).await;
    }
}

async fn set(api: &Api<Pod>, pod: &str, leader: bool) -> Result<(), kube::Error> {
    // Merge patch: `null` deletes the label.
    let value = if leader { json!("true") } else { json!(null) };
    let patch = json!({"metadata": {"labels": {LEADER_LABEL: value}}});
    api.patch(pod, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(drop)
}
