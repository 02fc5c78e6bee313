//! The ledger over the real discovery stream (loopback TLS): fake sidecars send usage
//! reports and read the grants, acknowledgements, exhaustion pushes and rate shares.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use modelroute_crds::Window;
use modelroute_operator::discovery::Authenticator;
use modelroute_proto::{AccountKey, AccountUsage, Grants, Usage, sidecar_message};
use support::{Session, TestOperator, hello};

const TOKEN: &str = "static-token-0123456789";

/// `shop/chat`: a route-scoped monthly budget of 1 USD, and a fleet-wide 100 requests per
/// minute.
const ROUTES: &str = r#"
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: chat, namespace: shop, generation: 1}
spec:
  providers: [{name: m, kind: mock}]
  routes: [{model: chat, targets: [{provider: m, model: m}]}]
  budgets:
    - {name: team, amountUsd: 1, window: monthly}
    - {name: small, amountUsd: "0.000010", window: monthly}
  rateLimits:
    - {name: rpm, requestsPerMinute: 100}
"#;

const USD: u64 = 1_000_000_000;

fn window() -> String {
    Window::Monthly.id(SystemTime::now()).to_string()
}

fn key(namespace: &str, budget: &str) -> AccountKey {
    AccountKey {
        namespace: namespace.into(),
        model_route: "chat".into(),
        budget: budget.into(),
        scope_value: String::new(),
        window: window(),
    }
}

/// A usage report: (key, spent, held, want).
fn usage(
    seq: u64,
    answers_applied: u64,
    accounts: &[(AccountKey, u64, u64, u64)],
) -> sidecar_message::Message {
    sidecar_message::Message::Usage(Usage {
        seq,
        incarnation: "inc-1".into(),
        accounts: accounts
            .iter()
            .map(|(k, spent, held, want)| AccountUsage {
                key: Some(k.clone()),
                spent_nano_usd: *spent,
                held_nano_usd: *held,
                want_nano_usd: *want,
                need_nano_usd: 0,
            })
            .collect(),
        answers_applied,
    })
}

async fn operator() -> TestOperator {
    let op = TestOperator::start(Authenticator::static_token(TOKEN)).await;
    op.update(ROUTES, &support::secrets(&[]), BTreeMap::new());
    op
}

/// Connects pod `name` in `namespace`, applies its snapshot, and reads its rate shares.
async fn sidecar(op: &TestOperator, namespace: &str, name: &str) -> (Session, Grants) {
    let mut session = op.connect(hello(TOKEN, namespace, name)).await.unwrap();
    let snapshot = session.snapshot().await;
    session.ack(&snapshot).await;
    let shares = session.grants().await;
    (session, shares)
}

#[tokio::test]
async fn usage_is_answered_at_once_and_acknowledged_once_durable() {
    let op = operator().await;
    let (mut a, _) = sidecar(&op, "shop", "a").await;
    a.send(usage(1, 0, &[(key("shop", "team"), 100, 0, 1_000_000)]))
        .await;
    let answer = a.grants().await;
    assert_eq!(answer.answers_seq, 1);
    assert_eq!(answer.applied_seq, 0, "not written yet");
    assert_eq!(answer.grants.len(), 1);
    let g = &answer.grants[0];
    assert_eq!(g.key.as_ref(), Some(&key("shop", "team")));
    assert_eq!(
        (g.added_nano_usd, g.limit_nano_usd, g.spent_nano_usd),
        (1_000_000, USD, 100)
    );
    assert!(!g.exhausted);

    // Report 2 was written before the answer to 1 arrived (answers_applied 0): that it
    // holds nothing is not a give-back of the grant still on the wire.
    a.send(usage(2, 0, &[(key("shop", "team"), 0, 0, 0)])).await;
    let answer = a.grants().await;
    assert_eq!((answer.answers_seq, answer.applied_seq), (2, 0));

    // The ledger's write lands: the acknowledgement is pushed.
    let written = op.flush().expect("something to write");
    let team = written.routes[0]
        .2
        .iter()
        .find(|s| s.name == "team")
        .unwrap();
    assert_eq!(
        (team.spent_usd.nanos(), team.held_usd.nanos()),
        (100, 1_000_000)
    );
    let ack = a.grants().await;
    assert_eq!(
        (ack.applied_seq, ack.answers_seq, ack.grants.len()),
        (2, 0, 0)
    );

    // Re-sent (as after a reconnect): answered, not counted again.
    a.send(usage(1, 1, &[(key("shop", "team"), 100, 1_000_000, 0)]))
        .await;
    let again = a.grants().await;
    assert_eq!((again.answers_seq, again.applied_seq), (1, 2));
    assert_eq!(again.grants[0].spent_nano_usd, 100);
    assert_eq!(again.grants[0].added_nano_usd, 0);
    assert!(op.flush().is_none(), "nothing changed");
}

#[tokio::test]
async fn a_sidecar_cannot_spend_another_namespaces_budget() {
    let op = operator().await;
    // A sidecar in `other` (it receives nothing) reports on shop's budget.
    let mut intruder = op.connect(hello(TOKEN, "other", "x")).await.unwrap();
    intruder.snapshot().await;
    intruder
        .send(usage(1, 0, &[(key("shop", "team"), 500, 0, USD)]))
        .await;
    let answer = intruder.grants().await;
    assert_eq!(answer.answers_seq, 1);
    assert!(answer.grants.is_empty(), "{answer:?}");
    let metrics = op.metrics.encode();
    assert!(
        metrics
            .contains("modelroute_operator_usage_keys_ignored_total{reason=\"other_namespace\"} 1"),
        "{metrics}"
    );
    let team = op
        .ledger
        .statuses(&modelroute_operator::index::ObjectKey::new("shop", "chat"))
        .into_iter()
        .find(|s| s.name == "team")
        .unwrap();
    assert_eq!(team.spent_usd.nanos(), 0);
}

#[tokio::test]
async fn exhaustion_is_answered_and_lifted_by_a_push() {
    let op = operator().await;
    let small = key("shop", "small");
    let (mut a, _) = sidecar(&op, "shop", "a").await;
    let (mut b, _) = sidecar(&op, "shop", "b").await;
    // a's shares change when b connects.
    assert!(a.grants().await.rate_shares.is_some());
    // a asks for everything until nothing is left.
    let mut held = 0;
    let mut seq = 0;
    loop {
        seq += 1;
        a.send(usage(seq, seq - 1, &[(small.clone(), 0, held, u64::MAX)]))
            .await;
        let g = a.grants().await;
        held += g.grants[0].added_nano_usd;
        if g.grants[0].exhausted {
            break;
        }
        assert!(seq < 50, "never exhausted");
    }
    assert_eq!(held, 10_000);
    b.send(usage(1, 0, &[(small.clone(), 0, 0, 1)])).await;
    let refused = b.grants().await;
    assert_eq!(refused.grants[0].added_nano_usd, 0);
    assert!(refused.grants[0].exhausted);
    // a spends some and gives the rest of half back: b is told, without asking.
    a.send(usage(seq + 1, seq, &[(small.clone(), 1_000, 4_000, 0)]))
        .await;
    a.grants().await;
    let push = b.grants().await;
    assert_eq!(push.answers_seq, 0, "a push");
    assert_eq!(push.grants.len(), 1);
    assert!(!push.grants[0].exhausted);
    assert_eq!(push.grants[0].spent_nano_usd, 1_000);
}

#[tokio::test]
async fn rate_shares_follow_the_number_of_connected_sidecars() {
    let op = operator().await;
    let rpm = |g: &Grants| {
        let shares = g.rate_shares.as_ref().expect("shares");
        assert_eq!(shares.shares.len(), 1);
        let s = &shares.shares[0];
        assert_eq!(
            (
                s.namespace.as_str(),
                s.model_route.as_str(),
                s.rate_limit.as_str()
            ),
            ("shop", "chat", "rpm")
        );
        s.requests_per_minute
    };
    let (mut a, first) = sidecar(&op, "shop", "a").await;
    assert_eq!(rpm(&first), 100, "alone: all of it");
    let (b, second) = sidecar(&op, "shop", "b").await;
    assert_eq!(rpm(&second), 50);
    assert_eq!(rpm(&a.grants().await), 50, "pushed to the first");
    let (_c, third) = sidecar(&op, "shop", "c").await;
    assert_eq!(rpm(&third), 34, "rounded up");
    assert_eq!(rpm(&a.grants().await), 34);
    drop(b);
    assert_eq!(rpm(&a.grants().await), 50, "one left");
    // A sidecar the route does not select changes nothing.
    let _other = op.connect(hello(TOKEN, "other", "x")).await.unwrap();
    assert!(a.quiet(Duration::from_millis(300)).await);
}
