//! Leader election against a mocked API server, in paused time.

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::*;
use crate::mock_api::{self, ApiServer, Call};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/modelroute-operator";

struct Replica {
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

fn start() -> (Replica, ApiServer) {
    let (client, server) = mock_api::pair();
    let (tx, leader) = watch::channel(false);
    let metrics = Arc::new(Metrics::new());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_with(
        client,
        LeaseOptions {
            namespace: "ops".into(),
            name: "modelroute-operator".into(),
            identity: "replica-a".into(),
            owner: None,
        },
        Timing::default(),
        tx,
        metrics.clone(),
        shutdown.clone(),
    ));
    (
        Replica {
            leader,
            metrics,
            shutdown,
            task,
        },
        server,
    )
}

fn lease(holder: Option<&str>, renew: &str, transitions: i32, rv: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "modelroute-operator", "namespace": "ops", "resourceVersion": rv},
        "spec": {
            "holderIdentity": holder, "leaseDurationSeconds": 15,
            "acquireTime": "2025-01-01T00:00:00.000000Z", "renewTime": renew,
            "leaseTransitions": transitions,
        },
    })
}

/// Answers a write with what was written and a new resourceVersion.
fn echo(call: Call, rv: &str, status: StatusCode) -> Value {
    let mut written = call.body.clone();
    written["metadata"]["resourceVersion"] = json!(rv);
    call.respond(status, &written);
    written
}

async fn get(server: &mut ApiServer) -> Call {
    let call = server.next().await;
    call.expect(Method::GET, LEASE);
    call
}

#[tokio::test(start_paused = true)]
async fn creates_the_lease_leads_renews_and_releases_on_shutdown() {
    let (mut replica, mut server) = start();
    get(&mut server).await.fail(404, "NotFound");
    let create = server.next().await;
    create.expect(Method::POST, LEASES);
    assert_eq!(create.body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(create.body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(create.body["spec"]["leaseTransitions"], 0);
    let created = echo(create, "1", StatusCode::CREATED);
    let led_at = Instant::now();
    replica.leader.wait_for(|l| *l).await.unwrap();
    assert!(
        replica
            .metrics
            .encode()
            .contains("modelroute_operator_leader 1"),
        "{}",
        replica.metrics.encode()
    );

    // Renewal, one renew interval later, with the resourceVersion read.
    get(&mut server).await.ok(&created);
    assert!(led_at.elapsed() >= Timing::default().renew_every);
    let renew = server.next().await;
    renew.expect(Method::PUT, LEASE);
    assert_eq!(renew.body["metadata"]["resourceVersion"], "1");
    assert_eq!(renew.body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(renew.body["spec"]["leaseTransitions"], 0);
    assert_ne!(
        renew.body["spec"]["renewTime"],
        created["spec"]["renewTime"]
    );
    let renewed = echo(renew, "2", StatusCode::OK);
    assert!(*replica.leader.borrow());

    // Shutdown: leadership ends first, then the Lease is emptied.
    replica.shutdown.cancel();
    get(&mut server).await.ok(&renewed);
    let release = server.next().await;
    release.expect(Method::PUT, LEASE);
    assert_eq!(release.body["spec"].get("holderIdentity"), None);
    assert_eq!(release.body["spec"]["leaseDurationSeconds"], 1);
    assert!(
        !*replica.leader.borrow(),
        "stopped leading before releasing"
    );
    echo(release, "3", StatusCode::OK);
    replica.task.await.unwrap();
    assert!(
        replica
            .metrics
            .encode()
            .contains("modelroute_operator_leader 0")
    );
}

#[tokio::test(start_paused = true)]
async fn follows_a_renewing_holder_and_takes_over_once_it_falls_silent() {
    let (replica, mut server) = start();
    let start = Instant::now();
    // The holder renews for 30 s: every read shows a new renewTime.
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(30) {
        n += 1;
        let renew = format!("2025-01-01T00:00:{n:02}.000000Z");
        get(&mut server)
            .await
            .ok(&lease(Some("replica-b"), &renew, 3, &n.to_string()));
        assert!(!*replica.leader.borrow());
    }
    // Then it falls silent: the same record on every read.
    let silent = Instant::now();
    let last = lease(Some("replica-b"), "2025-01-01T00:00:59.000000Z", 3, "99");
    let take = loop {
        let call = server.next().await;
        if call.method == Method::PUT {
            break call;
        }
        call.expect(Method::GET, LEASE);
        assert!(!*replica.leader.borrow());
        call.ok(&last);
    };
    let waited = silent.elapsed();
    assert!(
        waited >= Duration::from_secs(15),
        "took over after {waited:?} of silence"
    );
    assert!(
        waited <= Duration::from_secs(15) + 2 * Timing::default().retry,
        "{waited:?}"
    );
    assert_eq!(take.body["metadata"]["resourceVersion"], "99");
    assert_eq!(take.body["spec"]["holderIdentity"], "replica-a");
    assert_eq!(take.body["spec"]["leaseTransitions"], 4);
    assert_ne!(
        take.body["spec"]["acquireTime"],
        last["spec"]["acquireTime"]
    );
    echo(take, "100", StatusCode::OK);
    let mut leader = replica.leader.clone();
    leader.wait_for(|l| *l).await.unwrap();
    replica.task.abort();
}

#[tokio::test(start_paused = true)]
async fn a_released_lease_is_taken_at_once() {
    let (replica, mut server) = start();
    let start = Instant::now();
    get(&mut server)
        .await
        .ok(&lease(None, "2025-01-01T00:00:00.000000Z", 5, "40"));
    let take = server.next().await;
    take.expect(Method::PUT, LEASE);
    assert_eq!(start.elapsed(), Duration::ZERO);
    assert_eq!(take.body["spec"]["leaseTransitions"], 6);
    echo(take, "41", StatusCode::OK);
    let mut leader = replica.leader.clone();
    leader.wait_for(|l| *l).await.unwrap();
    replica.task.abort();
}

#[tokio::test(start_paused = true)]
async fn losing_a_race_leaves_the_other_replica_leading() {
    let (replica, mut server) = start();
    get(&mut server)
        .await
        .ok(&lease(None, "2025-01-01T00:00:00.000000Z", 5, "40"));
    let take = server.next().await;
    take.expect(Method::PUT, LEASE);
    take.fail(409, "Conflict");
    // The winner's record.
    for rv in 41..45 {
        get(&mut server).await.ok(&lease(
            Some("replica-b"),
            &format!("2025-01-01T00:01:{rv}.000000Z"),
            6,
            &rv.to_string(),
        ));
        assert!(!*replica.leader.borrow());
    }
    replica.task.abort();
}

#[tokio::test(start_paused = true)]
async fn steps_down_when_it_cannot_renew_before_the_deadline() {
    let (mut replica, mut server) = start();
    get(&mut server).await.fail(404, "NotFound");
    let create = server.next().await;
    create.expect(Method::POST, LEASES);
    let renewed_at = Instant::now();
    echo(create, "1", StatusCode::CREATED);
    replica.leader.wait_for(|l| *l).await.unwrap();

    // From now on the API server fails every request.
    let failing = tokio::spawn(async move {
        loop {
            server.next().await.fail(500, "InternalError");
        }
    });
    replica.leader.wait_for(|l| !*l).await.unwrap();
    let after = renewed_at.elapsed();
    let timing = Timing::default();
    assert!(
        after >= timing.renew_deadline,
        "stepped down after {after:?}"
    );
    assert!(
        after < timing.lease,
        "stepped down after {after:?}, when others may already lead"
    );
    assert!(
        replica
            .metrics
            .encode()
            .contains("modelroute_operator_leader 0")
    );
    // Errors are never fatal: it goes on trying.
    assert!(!replica.task.is_finished());
    replica.shutdown.cancel();
    replica.task.await.unwrap();
    failing.abort();
}
