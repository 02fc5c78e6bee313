//! Leader election through a `coordination.k8s.io/v1` Lease.
//!
//! Only the leader serves sidecars and writes status (and, later, owns the budget ledger),
//! so two replicas must never both believe they lead. The algorithm is client-go's:
//!
//! - A follower reads the Lease every [`Timing::retry`]. It takes the Lease when nobody
//!   holds it, or when the holder's record has not changed for the holder's
//!   `leaseDurationSeconds`, measured on this replica's monotonic clock from the moment it
//!   first saw that record (so clock skew between nodes does not matter).
//! - Taking and renewing are `replace`s carrying the `resourceVersion` that was read: of
//!   two replicas racing, the API server lets exactly one win (409 Conflict for the other).
//! - The leader renews every [`Timing::renew_every`]. If it could not renew for
//!   [`Timing::renew_deadline`] (shorter than the lease duration), it steps down on its own,
//!   before any follower can consider the Lease expired.
//! - On shutdown the leader first stops leading, then releases the Lease (empty holder),
//!   so a follower takes over within one retry interval instead of a lease duration.
//!
//! API errors are logged and retried, never fatal.
//!
//! Why not the `kube-lease-manager` crate: it keeps reporting leadership while renewals
//! fail (it has no renew deadline), so a leader cut off from the API server would go on
//! serving sidecars after the Lease expired and another replica took over; it also judges
//! expiry by comparing the holder's `renewTime` with the local wall clock.

pub mod label;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::LeaseOptions;
use crate::metrics::Metrics;

/// How long leadership lasts and how often it is checked.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// `leaseDurationSeconds` written into the Lease: how long followers wait for a silent
    /// holder before taking over.
    pub lease: Duration,
    /// How often the leader renews.
    pub renew_every: Duration,
    /// The leader steps down when it could not renew for this long (< `lease`).
    pub renew_deadline: Duration,
    /// How often a follower looks, and how soon a failed renewal is retried.
    pub retry: Duration,
}

/// Why an attempt to take or renew the Lease failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// This replica's view of the Lease.
#[derive(Debug)]
struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    owner: Option<OwnerReference>,
    timing: Timing,
    /// The last Lease spec read, and when (on the monotonic clock) it was first seen.
    observed: Option<(LeaseSpec, Instant)>,
    /// While leading: when the last successful renewal was sent.
    renewed: Option<Instant>,
    /// Whether the last attempt failed (the first failure is a warning, repeats debug).
    failing: bool,
}

// === impl Timing ===

impl Default for Timing {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// Holds `leader` true while this replica holds the Lease; releases it on shutdown.
pub async fn run(
    client: kube::Client,
    lease: LeaseOptions,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    run_with(client, lease, Timing::default(), leader, metrics, shutdown).await;
}

/// [`run`] with other timings (tests).
pub async fn run_with(
    client: kube::Client,
    lease: LeaseOptions,
    timing: Timing,
    leader: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let mut elector = Elector {
        api: Api::namespaced(client, &lease.namespace),
        name: lease.name,
        identity: lease.identity,
        owner: lease.owner,
        timing,
        observed: None,
        renewed: None,
        failing: false,
    };
    info!(
        lease = %format!("{}/{}", lease.namespace, elector.name),
        identity = %elector.identity,
        "leader election started"
    );
    metrics.set_leader(false);
    loop {
        let was = elector.leading();
        let holder_before = elector.holder().map(str::to_owned);
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = elector.step() => {}
        }
        let now = elector.leading();
        if now != was {
            if now {
                info!(identity = %elector.identity, "became leader");
            } else {
                warn!(identity = %elector.identity, holder = elector.holder().unwrap_or("<none>"), "no longer leader");
            }
            leader.send_replace(now);
            metrics.set_leader(now);
        } else if !now && elector.holder() != holder_before.as_deref() {
            info!(holder = elector.holder().unwrap_or("<none>"), "following");
        }
        let wait = match (now, elector.failing) {
            (true, false) => elector.timing.renew_every,
            _ => elector.timing.retry,
        };
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = sleep(wait) => {}
        }
    }
    if elector.leading() {
        leader.send_replace(false);
        metrics.set_leader(false);
        info!(identity = %elector.identity, "stepped down for shutdown");
    }
    elector.release().await;
}

// === impl Elector ===

impl Elector {
    fn leading(&self) -> bool {
        self.renewed.is_some()
    }

    /// The holder in the last Lease read.
    fn holder(&self) -> Option<&str> {
        self.observed
            .as_ref()
            .and_then(|(spec, _)| spec.holder_identity.as_deref())
            .filter(|h| !h.is_empty())
    }

    /// One attempt to take or renew the Lease, and what it means for leadership.
    async fn step(&mut self) {
        let started = Instant::now();
        // A leader's attempt may take only until its renew deadline.
        let limit = match self.renewed {
            Some(renewed) => (renewed + self.timing.renew_deadline)
                .saturating_duration_since(started)
                .max(Duration::from_millis(100)),
            None => self.timing.renew_deadline,
        };
        let attempt = match timeout(limit, self.try_acquire_or_renew(started)).await {
            Ok(result) => result,
            Err(_) => Err(AttemptError::Timeout(limit)),
        };
        match attempt {
            Ok(true) => {
                self.renewed = Some(started);
                self.recovered();
            }
            Ok(false) => {
                // Someone else holds a live Lease.
                self.renewed = None;
                self.recovered();
            }
            Err(e) => {
                if std::mem::replace(&mut self.failing, true) {
                    debug!(error = %e, "leader election: Lease still unreachable; retrying");
                } else {
                    warn!(error = %e, "leader election: cannot read or write the Lease; retrying");
                }
                if let Some(renewed) = self.renewed
                    && renewed.elapsed() >= self.timing.renew_deadline
                {
                    warn!(
                        deadline = ?self.timing.renew_deadline,
                        "could not renew the Lease in time; stepping down"
                    );
                    self.renewed = None;
                }
            }
        }
    }

    fn recovered(&mut self) {
        if std::mem::replace(&mut self.failing, false) {
            info!("leader election: Lease reachable again");
        }
    }

    /// Takes the Lease if it is free or expired, renews it if it is ours. `Ok(true)`: we
    /// hold it now; `Ok(false)`: someone else holds a live Lease.
    async fn try_acquire_or_renew(&mut self, now: Instant) -> Result<bool, AttemptError> {
        let stamp = Some(MicroTime(Timestamp::now()));
        let duration = i32::try_from(self.timing.lease.as_secs()).unwrap_or(i32::MAX);
        let Some(current) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    owner_references: self.owner.clone().map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: stamp.clone(),
                    renew_time: stamp,
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            // A 409 (someone else created it first) is an error: the next read decides.
            let created = self.api.create(&PostParams::default(), &lease).await?;
            self.observe(&created, now);
            return Ok(true);
        };
        self.observe(&current, now);
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.identity.as_str());
        if holder.is_some() && !ours && !self.expired(&spec, now) {
            return Ok(false);
        }
        let mut next = current;
        let spec = next.spec.get_or_insert_with(LeaseSpec::default);
        if !ours {
            spec.acquire_time = stamp.clone();
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
            spec.holder_identity = Some(self.identity.clone());
        }
        spec.renew_time = stamp;
        spec.lease_duration_seconds = Some(duration);
        // `next` carries the resourceVersion read: a concurrent writer makes this a 409.
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await?;
        self.observe(&written, now);
        Ok(true)
    }

    /// Books the Lease's spec; a changed spec restarts the expiry clock.
    fn observe(&mut self, lease: &Lease, now: Instant) {
        let spec = lease.spec.clone().unwrap_or_default();
        match &self.observed {
            Some((seen, _)) if *seen == spec => {}
            _ => self.observed = Some((spec, now)),
        }
    }

    /// Whether the holder of `spec` has been silent for its lease duration.
    fn expired(&self, spec: &LeaseSpec, now: Instant) -> bool {
        let Some((_, since)) = &self.observed else {
            return false;
        };
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.timing.lease, Duration::from_secs);
        now.saturating_duration_since(*since) >= duration
    }

    /// Empties the holder if it is us, so a follower takes over at once. (Always read: an
    /// attempt cut short by shutdown may have taken the Lease unseen.) Bounded by the retry
    /// interval: shutdown must not hang on an unreachable API server.
    async fn release(&mut self) {
        let release = async {
            let Some(mut lease) = self.api.get_opt(&self.name).await? else {
                return Ok::<_, kube::Error>(false);
            };
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
                return Ok(false);
            }
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await?;
            Ok(true)
        };
        match timeout(self.timing.retry, release).await {
            Ok(Ok(true)) => info!("released the leader Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                warn!(error = %e, "could not release the leader Lease; it expires on its own")
            }
            Err(_) => warn!("releasing the leader Lease timed out; it expires on its own"),
        }
    }
}

#[cfg(test)]
mod tests;
