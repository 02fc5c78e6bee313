use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use kube::runtime::reflector::store::Writer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::*;
use crate::fixtures;
use crate::index::ObjectKey;

fn route(ns: &str, name: &str) -> ModelRoute {
    fixtures::route(ns, name, 1, fixtures::KEYED)
}

fn secret(ns: &str, name: &str, data: &[(&str, &str)]) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

fn pod(ns: &str, name: &str, labels: &[(&str, &str)]) -> PartialObjectMeta<Pod> {
    let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": {"name": name, "namespace": ns, "uid": format!("uid-{name}"), "labels": labels},
    }))
    .unwrap()
}

fn apply<K>(writer: &mut Writer<K>, object: K)
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    writer.apply_watcher_event(&watcher::Event::Apply(object));
}

#[test]
fn reflected_secrets_answer_for_the_index() {
    let (store, mut writer) = reflector::store::<Secret>();
    apply(
        &mut writer,
        secret("team-a", "llm-keys", &[("openai", "sk-a")]),
    );
    let secrets = ReflectedSecrets(&store);
    assert_eq!(
        secrets.get("team-a", "llm-keys", "openai").unwrap(),
        Bytes::from_static(b"sk-a")
    );
    assert_eq!(
        secrets.get("team-a", "llm-keys", "anthropic"),
        Err(SecretMissing::Key)
    );
    assert_eq!(
        secrets.get("team-b", "llm-keys", "openai"),
        Err(SecretMissing::Secret)
    );
}

#[test]
fn secret_rotation_in_the_store_publishes_a_new_world_with_the_new_key() {
    let (index, world) = Index::new();
    let (store, mut writer) = reflector::store::<Secret>();
    let routes = [route("team-a", "r")];
    apply(
        &mut writer,
        secret("team-a", "llm-keys", &[("openai", "sk-old")]),
    );
    let first = index.update(&routes, &ReflectedSecrets(&store), BTreeMap::new());

    apply(
        &mut writer,
        secret("team-a", "llm-keys", &[("openai", "sk-new")]),
    );
    let second = index.update(&routes, &ReflectedSecrets(&store), BTreeMap::new());
    assert_eq!(second, first + 1);
    let w = world.borrow().clone();
    let published = &w.routes[&ObjectKey::new("team-a", "r")];
    assert_eq!(&published.resource.secrets[0].value[..], b"sk-new");

    // The Secret deleted: the route is refused, the last good key keeps serving.
    writer.apply_watcher_event(&watcher::Event::Delete(secret("team-a", "llm-keys", &[])));
    index.update(&routes, &ReflectedSecrets(&store), BTreeMap::new());
    let w = world.borrow().clone();
    let verdict = &w.verdicts[&ObjectKey::new("team-a", "r")];
    assert_eq!(
        verdict.problem.as_ref().map(|p| p.reason),
        Some(crate::index::Reason::SecretNotFound)
    );
    assert_eq!(
        &w.routes[&ObjectKey::new("team-a", "r")].resource.secrets[0].value[..],
        b"sk-new"
    );
}

#[test]
fn sidecar_pods_keep_uid_and_labels() {
    let pods = [
        Arc::new(pod("team-a", "app-1", &[("app", "chat")])),
        Arc::new(pod("team-b", "app-2", &[])),
    ];
    let map = sidecar_pods(&pods);
    assert_eq!(map.len(), 2);
    let one = &map[&ObjectKey::new("team-a", "app-1")];
    assert_eq!(one.uid, "uid-app-1");
    assert_eq!(one.labels.get("app").map(String::as_str), Some("chat"));
}

#[test]
fn slimming_drops_what_is_not_needed_and_keeps_data() {
    let mut s = secret("team-a", "llm-keys", &[("openai", "sk-a")]);
    s.metadata.annotations = Some(BTreeMap::from([(
        "kubectl.kubernetes.io/last-applied-configuration".to_string(),
        "{\"data\":{\"openai\":\"c2stYQ==\"}}".to_string(),
    )]));
    slim_secret(&mut s);
    assert_eq!(s.metadata.annotations, None);
    assert!(s.data.unwrap().contains_key("openai"));
}

/// The loop over three stores fed by hand.
struct Harness {
    routes: Writer<DeserializeGuard<ModelRoute>>,
    secrets: Writer<Secret>,
    pods: Writer<PartialObjectMeta<Pod>>,
    events: mpsc::UnboundedSender<Seen>,
}

#[tokio::test(start_paused = true)]
async fn publishes_only_after_every_store_listed_and_coalesces_bursts() {
    let (index, world) = Index::new();
    let (synced_tx, synced) = watch::channel(false);
    let shutdown = CancellationToken::new();
    let (routes, routes_w) = reflector::store::<DeserializeGuard<ModelRoute>>();
    let (secrets, secrets_w) = reflector::store::<Secret>();
    let (pods, pods_w) = reflector::store::<PartialObjectMeta<Pod>>();
    let stores = Stores {
        routes,
        secrets,
        pods,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let mut h = Harness {
        routes: routes_w,
        secrets: secrets_w,
        pods: pods_w,
        events: tx,
    };
    let follower = follow(
        UnboundedReceiverStream::new(rx),
        &stores,
        &index,
        &synced_tx,
        &shutdown,
    );
    let settle = || tokio::time::sleep(Duration::from_millis(200));

    let script = async {
        // Routes and Secrets listed; pods not yet: nothing is published.
        h.routes
            .apply_watcher_event(&watcher::Event::Apply(DeserializeGuard(Ok(route(
                "team-a", "r",
            )))));
        h.events.send(Seen::Listed(Watched::Routes)).unwrap();
        apply(
            &mut h.secrets,
            secret("team-a", "llm-keys", &[("openai", "sk-a")]),
        );
        h.events.send(Seen::Listed(Watched::Secrets)).unwrap();
        settle().await;
        assert!(!*synced.borrow(), "synced before the pods were listed");
        assert_eq!(world.borrow().version, 0);

        h.events.send(Seen::Listed(Watched::Pods)).unwrap();
        settle().await;
        assert!(*synced.borrow());
        let first = world.borrow().version;
        assert_eq!(first, 1);
        assert!(
            world
                .borrow()
                .routes
                .contains_key(&ObjectKey::new("team-a", "r"))
        );

        // A churn of 1000 pods, each event 1 ms after the last, is a handful of updates
        // (one per MAX_DELAY), not 1000.
        for i in 0..1000 {
            apply(
                &mut h.pods,
                pod("team-a", &format!("app-{i}"), &[("app", "chat")]),
            );
            h.events.send(Seen::Changed(Watched::Pods)).unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        settle().await;
        let updates = world.borrow().version - first;
        assert!(
            (1..=25).contains(&updates),
            "{updates} updates for 1000 changes over 1 s"
        );
        assert_eq!(world.borrow().pods.len(), 1000);

        // A failing watch changes nothing and does not stop the loop.
        h.events
            .send(Seen::Failed(
                Watched::Secrets,
                watcher::Error::NoResourceVersion,
            ))
            .unwrap();
        settle().await;
        assert_eq!(world.borrow().version - first, updates);
        shutdown.cancel();
    };
    tokio::join!(follower, script);
}
