//! The discovery server on loopback: who gets what, refusals, pushes, ACK/NACK
//! bookkeeping, and hostile input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::{BTreeMap, HashMap};

use modelroute_operator::discovery::Authenticator;
use modelroute_operator::index::ObjectKey;
use modelroute_proto::sidecar_message;
use support::{Review, TestOperator, contents, hello, pod, secrets, token_review_client};
use tonic::Code;

const STATIC_TOKEN: &str = "static-token-0123456789";

/// shop/for-a selects app=a with key-a; shop/for-b selects app=b with key-b; shop/everyone
/// selects every sidecar in shop; other/for-c lives in another namespace.
const ROUTES: &str = r#"
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: for-a, namespace: shop, generation: 1}
spec:
  podSelector: {matchLabels: {app: a}}
  providers: [{name: p, kind: openai, apiKey: {secretRef: {name: keys, key: a}}}]
  routes: [{model: chat-a, targets: [{provider: p, model: gpt-4o}]}]
---
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: for-b, namespace: shop, generation: 1}
spec:
  podSelector: {matchLabels: {app: b}}
  providers: [{name: p, kind: openai, apiKey: {secretRef: {name: keys, key: b}}}]
  routes: [{model: chat-b, targets: [{provider: p, model: gpt-4o}]}]
---
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: everyone, namespace: shop, generation: 1}
spec:
  providers: [{name: m, kind: mock}]
  routes: [{model: chat, targets: [{provider: m, model: m}]}]
---
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: for-c, namespace: other, generation: 1}
spec:
  providers: [{name: p, kind: openai, apiKey: {secretRef: {name: keys, key: c}}}]
  routes: [{model: chat-c, targets: [{provider: p, model: gpt-4o}]}]
"#;

fn kube_operator_tokens() -> HashMap<&'static str, Review> {
    HashMap::from([
        (
            "token-a",
            Review::Pod {
                namespace: "shop",
                name: "a",
                uid: "uid-a",
            },
        ),
        (
            "token-b",
            Review::Pod {
                namespace: "shop",
                name: "b",
                uid: "uid-b",
            },
        ),
        (
            "token-c",
            Review::Pod {
                namespace: "other",
                name: "c",
                uid: "uid-c",
            },
        ),
        (
            "token-ghost",
            Review::Pod {
                namespace: "shop",
                name: "ghost",
                uid: "uid-g",
            },
        ),
        (
            "token-stale-uid",
            Review::Pod {
                namespace: "shop",
                name: "a",
                uid: "uid-old",
            },
        ),
        ("token-audience", Review::OtherAudience),
        ("token-no-pod", Review::NoPod),
    ])
}

async fn kube_operator() -> TestOperator {
    let op = TestOperator::start(Authenticator::TokenReview(token_review_client(
        kube_operator_tokens(),
    )))
    .await;
    let pods = BTreeMap::from([
        (ObjectKey::new("shop", "a"), pod("uid-a", &[("app", "a")])),
        (ObjectKey::new("shop", "b"), pod("uid-b", &[("app", "b")])),
        (ObjectKey::new("other", "c"), pod("uid-c", &[("app", "a")])),
    ]);
    let keys = secrets(&[
        ("shop", "keys", "a", "sk-for-a"),
        ("shop", "keys", "b", "sk-for-b"),
        ("other", "keys", "c", "sk-for-c"),
    ]);
    op.update(ROUTES, &keys, pods);
    op
}

#[tokio::test]
async fn each_pod_receives_only_its_routes_and_keys() {
    let op = kube_operator().await;
    for (token, ns, name, expected) in [
        (
            "token-a",
            "shop",
            "a",
            vec![("shop/everyone", vec![]), ("shop/for-a", vec!["sk-for-a"])],
        ),
        (
            "token-b",
            "shop",
            "b",
            vec![("shop/everyone", vec![]), ("shop/for-b", vec!["sk-for-b"])],
        ),
        // Same labels as pod a, other namespace: only its namespace's route.
        (
            "token-c",
            "other",
            "c",
            vec![("other/for-c", vec!["sk-for-c"])],
        ),
    ] {
        let mut session = op.connect(hello(token, ns, name)).await.unwrap();
        let snapshot = session.snapshot().await;
        let expected: Vec<(String, Vec<String>)> = expected
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
            .collect();
        assert_eq!(contents(&snapshot), expected, "pod {ns}/{name}");
    }
}

#[tokio::test]
async fn a_token_decides_the_pod_not_the_hello() {
    let op = kube_operator().await;
    // Pod a's token, claiming to be pod b: refused, and nothing of b's is sent.
    let refused = op
        .connect(hello("token-a", "shop", "b"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(
        refused.message().contains("token belongs to shop/a"),
        "{refused:?}"
    );
    // Claiming the right namespace's other pod through a namespace mismatch, too.
    let refused = op
        .connect(hello("token-c", "shop", "c"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // No claim at all: the token alone decides.
    let mut session = op.connect(hello("token-a", "", "")).await.unwrap();
    let names: Vec<String> = contents(&session.snapshot().await)
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(names, ["shop/everyone", "shop/for-a"]);
}

#[tokio::test]
async fn bad_tokens_are_refused_and_counted() {
    let op = kube_operator().await;
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for (token, code, reason) in [
        ("", Code::Unauthenticated, "missing_token"),
        ("not-a-token", Code::Unauthenticated, "bad_token"),
        ("token-audience", Code::Unauthenticated, "wrong_audience"),
        ("token-no-pod", Code::Unauthenticated, "not_a_pod"),
        ("token-ghost", Code::PermissionDenied, "unknown_pod"),
        // A token of an earlier pod with the same name: the uid gives it away.
        ("token-stale-uid", Code::PermissionDenied, "unknown_pod"),
    ] {
        let refused = op.connect(hello(token, "", "")).await.err().unwrap();
        assert_eq!(refused.code(), code, "{token}: {refused:?}");
        let count = counts.entry(reason).or_default();
        *count += 1;
        let metrics = op.metrics.encode();
        let line =
            format!("modelroute_operator_sessions_refused_total{{reason=\"{reason}\"}} {count}");
        assert!(metrics.contains(&line), "{token}: no {line} in\n{metrics}");
    }
    assert_eq!(op.registry.len(), 0);
}

#[tokio::test]
async fn static_token_admits_the_fleet_and_refuses_others() {
    let op = TestOperator::start(Authenticator::static_token(STATIC_TOKEN)).await;
    op.update(
        ROUTES,
        &secrets(&[("shop", "keys", "a", "sk-for-a")]),
        BTreeMap::new(),
    );
    let refused = op
        .connect(hello("wrong-token-0123456789", "shop", "x"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = op
        .connect(hello(STATIC_TOKEN, "shop", ""))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);
    // With the file source, a sidecar's labels are its own word.
    let mut h = hello(STATIC_TOKEN, "shop", "x");
    h.pod_labels = HashMap::from([("app".to_string(), "a".to_string())]);
    let mut session = op.connect(h).await.unwrap();
    let names: Vec<String> = contents(&session.snapshot().await)
        .into_iter()
        .map(|c| c.0)
        .collect();
    assert_eq!(names, ["shop/everyone", "shop/for-a"]);
}

#[tokio::test]
async fn changes_are_pushed_only_to_the_pods_they_concern() {
    let op = kube_operator().await;
    let mut a = op.connect(hello("token-a", "shop", "a")).await.unwrap();
    let first = a.snapshot().await;
    a.ack(&first).await;
    // A change in another namespace, then one in pod a's: a's next snapshot is the
    // second change, so the first sent it nothing.
    let keys = secrets(&[
        ("shop", "keys", "a", "sk-for-a"),
        ("shop", "keys", "b", "sk-for-b"),
        ("other", "keys", "c", "sk-for-c-rotated"),
    ]);
    let pods = op.index.current().pods.clone();
    let unrelated = op.update(ROUTES, &keys, pods.clone());
    let rotated = secrets(&[
        ("shop", "keys", "a", "sk-for-a-rotated"),
        ("shop", "keys", "b", "sk-for-b"),
        ("other", "keys", "c", "sk-for-c-rotated"),
    ]);
    let relevant = op.update(ROUTES, &rotated, pods);
    assert_eq!(relevant, unrelated + 1);
    let next = a.snapshot().await;
    assert_eq!(next.version, relevant);
    assert_ne!(next.hash, first.hash);
    assert_eq!(
        contents(&next)[1],
        (
            "shop/for-a".to_string(),
            vec!["sk-for-a-rotated".to_string()]
        )
    );
}

#[tokio::test]
async fn acks_and_nacks_are_booked_per_route_generation() {
    let op = kube_operator().await;
    let for_a = ObjectKey::new("shop", "for-a");
    let everyone = ObjectKey::new("shop", "everyone");
    let mut a = op.connect(hello("token-a", "shop", "a")).await.unwrap();
    let mut b = op.connect(hello("token-b", "shop", "b")).await.unwrap();
    let (sa, sb) = (a.snapshot().await, b.snapshot().await);
    a.ack(&sa).await;
    b.nack(&sb, "shop/for-b: spec.providers[0].headers: bad value")
        .await;
    let sync = wait_for(&op, || {
        let s = op.registry.sync_of(&everyone, 1);
        (s.in_sync == 1 && s.refusing == 1).then_some(s)
    })
    .await;
    assert_eq!(
        sync.last_nack.as_deref(),
        Some("shop/for-b: spec.providers[0].headers: bad value")
    );
    assert_eq!(op.registry.sync_of(&for_a, 1).in_sync, 1);
    // An ACK for a hash the operator never sent books nothing.
    b.send(sidecar_message::Message::Ack(modelroute_proto::Ack {
        version: 99,
        hash: "f00".into(),
    }))
    .await;
    let metrics = op.metrics.encode();
    assert!(
        metrics.contains("modelroute_operator_snapshot_replies_total{result=\"nack\"} 1"),
        "{metrics}"
    );
    drop(a);
    wait_for(&op, || {
        (op.registry.sync_of(&for_a, 1).in_sync == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_reconnect_with_the_current_hash_gets_nothing_to_apply() {
    let op = kube_operator().await;
    let mut first = op.connect(hello("token-a", "shop", "a")).await.unwrap();
    let snapshot = first.snapshot().await;
    drop(first);
    wait_for(&op, || op.registry.is_empty().then_some(())).await;
    let mut h = hello("token-a", "shop", "a");
    h.active_hash = snapshot.hash.clone();
    let mut again = op.connect(h).await.unwrap();
    // In sync without a send...
    wait_for(&op, || {
        (op.registry
            .sync_of(&ObjectKey::new("shop", "for-a"), 1)
            .in_sync
            == 1)
            .then_some(())
    })
    .await;
    // ...and the next message is the next change, not a repeat.
    let pods = op.index.current().pods.clone();
    let v = op.update(ROUTES, &secrets(&[("shop", "keys", "a", "sk-new")]), pods);
    let next = again.snapshot().await;
    assert_eq!(next.version, v);
}

#[tokio::test]
async fn protocol_violations_end_one_session_and_the_server_keeps_serving() {
    let op = kube_operator().await;
    let mut healthy = op.connect(hello("token-b", "shop", "b")).await.unwrap();
    healthy.snapshot().await;

    // A second hello.
    let mut twice = op.connect(hello("token-a", "shop", "a")).await.unwrap();
    twice.snapshot().await;
    twice
        .send(sidecar_message::Message::Hello(hello(
            "token-a", "shop", "a",
        )))
        .await;
    let status = twice
        .next()
        .await
        .expect_err("the session ends with an error");
    assert_eq!(status.code(), Code::InvalidArgument);

    // A message with nothing in it.
    let mut empty = op.connect(hello("token-a", "shop", "a")).await.unwrap();
    empty.snapshot().await;
    empty
        .tx
        .send(modelroute_proto::SidecarMessage { message: None })
        .await
        .unwrap();
    assert_eq!(
        empty.next().await.err().unwrap().code(),
        Code::InvalidArgument
    );

    // A first message that is not a hello.
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(modelroute_proto::SidecarMessage {
        message: Some(sidecar_message::Message::Ack(
            modelroute_proto::Ack::default(),
        )),
    })
    .await
    .unwrap();
    let mut client = modelroute_proto::discovery_client::DiscoveryClient::new(op.channel().await);
    let refused = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);

    // A huge hello (over the 1 MiB message limit).
    let mut huge = hello("token-a", "shop", "a");
    huge.sidecar_version = "x".repeat(2 * 1024 * 1024);
    assert!(op.connect(huge).await.is_err());

    // Bytes that are not a protobuf message at all.
    assert_garbage_is_refused(&op).await;

    // The healthy session still gets pushes.
    let pods = op.index.current().pods.clone();
    let v = op.update(
        ROUTES,
        &secrets(&[
            ("shop", "keys", "a", "sk-for-a"),
            ("shop", "keys", "b", "sk-b-2"),
        ]),
        pods,
    );
    assert_eq!(healthy.snapshot().await.version, v);
}

#[tokio::test]
async fn a_follower_refuses_sessions_and_a_stepping_down_leader_ends_them() {
    let op = kube_operator().await;
    let mut session = op.connect(hello("token-a", "shop", "a")).await.unwrap();
    session.snapshot().await;
    op.serving.send_replace(false);
    let ended = session.next().await.expect_err("ended with a status");
    assert_eq!(ended.code(), Code::Unavailable);
    let refused = op
        .connect(hello("token-a", "shop", "a"))
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unavailable);
}

/// Sends a gRPC frame whose payload is not a valid `SidecarMessage`.
async fn assert_garbage_is_refused(op: &TestOperator) {
    use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

    #[derive(Default)]
    struct Raw;
    struct RawEnc;
    struct RawDec;
    impl Encoder for RawEnc {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
            bytes::BufMut::put_slice(dst, &item);
            Ok(())
        }
    }
    impl Decoder for RawDec {
        type Item = Vec<u8>;
        type Error = tonic::Status;
        fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Self::Error> {
            let n = bytes::Buf::remaining(src);
            Ok(Some(bytes::Buf::copy_to_bytes(src, n).to_vec()))
        }
    }
    impl Codec for Raw {
        type Encode = Vec<u8>;
        type Decode = Vec<u8>;
        type Encoder = RawEnc;
        type Decoder = RawDec;
        fn encoder(&mut self) -> RawEnc {
            RawEnc
        }
        fn decoder(&mut self) -> RawDec {
            RawDec
        }
    }

    let mut grpc = tonic::client::Grpc::new(op.channel().await);
    grpc.ready().await.unwrap();
    // Field 1 as a length-delimited value claiming 200 bytes that are not there.
    let garbage = vec![0x0a, 0xc8, 0x01, 0xff, 0xff];
    let request = tonic::Request::new(tokio_stream::iter(vec![garbage]));
    let path = http::uri::PathAndQuery::from_static("/modelroute.discovery.v1.Discovery/Session");
    let result = grpc.streaming(request, path, Raw).await;
    let status = result.expect_err("refused");
    assert_ne!(status.code(), Code::Ok);
    let metrics = op.metrics.encode();
    assert!(
        metrics.contains("modelroute_operator_session_errors_total{reason=\"decode\"}"),
        "{metrics}"
    );
}

async fn wait_for<T>(_op: &TestOperator, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..500 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("condition not met within 5s");
}

#[tokio::test]
async fn a_push_carries_its_trace_to_the_sidecar() {
    // This test's thread only (its runtime is single-threaded): other tests stay untraced.
    let (_traced, kept) = modelroute_otel::testing::traced();

    let op = TestOperator::start(Authenticator::static_token(STATIC_TOKEN)).await;
    let mut version = op.update(ROUTES, &secrets(&[]), BTreeMap::new());
    // Other tests pushing at the same time (untraced) may have registered the span's
    // callsite as off a moment ago; look again with this test's subscriber in place.
    tracing::callsite::rebuild_interest_cache();
    let mut session = op.connect(hello(STATIC_TOKEN, "shop", "x")).await.unwrap();
    let mut snapshot = session.snapshot().await;
    // `tracing` caches a callsite's interest for the whole process, and a test on another
    // thread can still cache it as off between the rebuild and the push (CI saw it once in
    // many runs): then push a changed config and look at the next snapshot.
    for n in 0..5 {
        if !snapshot.traceparent.is_empty() {
            break;
        }
        tracing::callsite::rebuild_interest_cache();
        let changed = ROUTES.replace("model: chat,", &format!("model: chat-{n},"));
        version = op.update(&changed, &secrets(&[]), BTreeMap::new());
        snapshot = session.snapshot().await;
    }
    let parts: Vec<&str> = snapshot.traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "no traceparent: {:?}", snapshot.traceparent);

    // The span it names is the exported push of this snapshot (ended after the send).
    let mut pushes = kept.named("push snapshot");
    for _ in 0..100 {
        if !pushes.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        pushes = kept.named("push snapshot");
    }
    let push = pushes.pop().expect("a push span");
    assert_eq!(push.span_context.trace_id().to_string(), parts[1]);
    assert_eq!(push.span_context.span_id().to_string(), parts[2]);
    assert_eq!(push.span_kind, opentelemetry::trace::SpanKind::Producer);
    let version_attr = push
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "modelroute.snapshot.version")
        .map(|kv| kv.value.to_string());
    assert_eq!(version_attr, Some(version.to_string()));
}

#[tokio::test]
async fn without_traces_a_snapshot_carries_no_traceparent() {
    let op = TestOperator::start(Authenticator::static_token(STATIC_TOKEN)).await;
    op.update(ROUTES, &secrets(&[]), BTreeMap::new());
    let mut session = op.connect(hello(STATIC_TOKEN, "shop", "x")).await.unwrap();
    assert_eq!(session.snapshot().await.traceparent, "");
}
