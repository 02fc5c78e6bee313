#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::fixtures::{KEYED, MOCK, llm_keys, route};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn valid_route_is_published_with_its_keys() {
    let (index, rx) = Index::new();
    let v = index.update(
        &[route("team-a", "r", 1, KEYED)],
        &llm_keys("team-a", "sk-a"),
        BTreeMap::new(),
    );
    assert_eq!(v, 1);
    let world = rx.borrow().clone();
    let published = &world.routes[&ObjectKey::new("team-a", "r")];
    assert_eq!(published.resource.secrets.len(), 1);
    assert_eq!(&published.resource.secrets[0].value[..], b"sk-a");
    let verdict = &world.verdicts[&ObjectKey::new("team-a", "r")];
    assert_eq!(verdict.problem, None);
    assert_eq!(verdict.serving, Some(1));
    assert_eq!(verdict.routes, 2);
}

#[test]
fn unchanged_input_publishes_nothing_new() {
    let (index, _rx) = Index::new();
    let routes = [route("default", "r", 1, MOCK)];
    let first = index.update(&routes, &SecretMap::default(), BTreeMap::new());
    let second = index.update(&routes, &SecretMap::default(), BTreeMap::new());
    assert_eq!(first, second);
}

#[test]
fn secret_rotation_publishes_a_new_world_with_the_new_key() {
    let (index, rx) = Index::new();
    let routes = [route("team-a", "r", 1, KEYED)];
    index.update(&routes, &llm_keys("team-a", "sk-old"), BTreeMap::new());
    let before = rx.borrow().routes[&ObjectKey::new("team-a", "r")].digest;
    let v = index.update(&routes, &llm_keys("team-a", "sk-new"), BTreeMap::new());
    assert_eq!(v, 2);
    let world = rx.borrow().clone();
    let after = &world.routes[&ObjectKey::new("team-a", "r")];
    assert_ne!(after.digest, before);
    assert_eq!(&after.resource.secrets[0].value[..], b"sk-new");
}

#[test]
fn secrets_are_looked_up_in_the_routes_own_namespace_only() {
    let (index, rx) = Index::new();
    // The Secret exists, but in another namespace.
    index.update(
        &[route("team-a", "r", 1, KEYED)],
        &llm_keys("team-b", "sk-b"),
        BTreeMap::new(),
    );
    let world = rx.borrow().clone();
    let verdict = &world.verdicts[&ObjectKey::new("team-a", "r")];
    let problem = verdict.problem.as_ref().expect("refused");
    assert_eq!(problem.reason, Reason::SecretNotFound);
    assert!(
        problem
            .message
            .contains("\"llm-keys\" not found in namespace \"team-a\""),
        "{problem:?}"
    );
    assert!(world.routes.is_empty());
}

#[test]
fn invalid_generation_keeps_the_last_good_one_serving() {
    let (index, rx) = Index::new();
    index.update(
        &[route("default", "r", 1, MOCK)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let broken = "
  providers:
    - name: mock
      kind: mock
  routes:
    - model: chat
      targets: [{provider: nope, model: m}]
";
    index.update(
        &[route("default", "r", 2, broken)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let world = rx.borrow().clone();
    let key = ObjectKey::new("default", "r");
    let verdict = &world.verdicts[&key];
    assert_eq!(verdict.generation, 2);
    assert_eq!(verdict.serving, Some(1));
    let problem = verdict.problem.as_ref().expect("refused");
    assert_eq!(problem.reason, Reason::InvalidSpec);
    assert!(
        problem.message.contains("spec.routes[0].targets[0]"),
        "{problem:?}"
    );
    assert_eq!(world.routes[&key].generation, 1);
}

#[test]
fn a_route_that_was_never_valid_is_not_pushed() {
    let (index, rx) = Index::new();
    let broken = "
  routes:
    - model: chat
      targets: [{provider: nope, model: m}]
";
    index.update(
        &[route("default", "r", 1, broken)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let world = rx.borrow().clone();
    assert!(world.routes.is_empty());
    assert_eq!(
        world.verdicts[&ObjectKey::new("default", "r")].serving,
        None
    );
}

#[test]
fn deleted_route_leaves_the_world() {
    let (index, rx) = Index::new();
    index.update(
        &[route("default", "r", 1, MOCK)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    index.update(&[], &SecretMap::default(), BTreeMap::new());
    let world = rx.borrow().clone();
    assert!(world.routes.is_empty() && world.verdicts.is_empty());
}

#[test]
fn selection_by_namespace_and_labels() {
    let (index, rx) = Index::new();
    let selected = format!(
        "  podSelector:\n    matchLabels: {{app: checkout}}\n    matchExpressions:\n      - {{key: tier, operator: In, values: [web, api]}}\n{MOCK}"
    );
    index.update(
        &[
            route("shop", "all", 1, MOCK),
            route("shop", "checkout", 1, &selected),
            route("other", "all", 1, MOCK),
        ],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let world = rx.borrow().clone();
    let names = |ns: &str, l: &Labels| -> Vec<String> {
        world.select(ns, l).map(|p| p.key.to_string()).collect()
    };
    assert_eq!(
        names("shop", &labels(&[("app", "checkout"), ("tier", "api")])),
        ["shop/all", "shop/checkout"]
    );
    assert_eq!(
        names("shop", &labels(&[("app", "checkout"), ("tier", "batch")])),
        ["shop/all"]
    );
    assert_eq!(names("shop", &labels(&[])), ["shop/all"]);
    assert_eq!(
        names("other", &labels(&[("app", "checkout"), ("tier", "api")])),
        ["other/all"]
    );
    assert!(names("empty", &labels(&[])).is_empty());
}

#[test]
fn pods_selected_by_a_route() {
    let (index, rx) = Index::new();
    let selected = format!("  podSelector:\n    matchLabels: {{app: checkout}}\n{MOCK}");
    let pod = |app: &str| SidecarPod {
        uid: format!("uid-{app}"),
        labels: labels(&[("app", app)]),
    };
    let pods = BTreeMap::from([
        (ObjectKey::new("shop", "checkout-1"), pod("checkout")),
        (ObjectKey::new("shop", "cart-1"), pod("cart")),
        (ObjectKey::new("other", "checkout-1"), pod("checkout")),
    ]);
    index.update(
        &[route("shop", "r", 1, &selected)],
        &SecretMap::default(),
        pods,
    );
    let world = rx.borrow().clone();
    let published = &world.routes[&ObjectKey::new("shop", "r")];
    let selected: Vec<String> = world
        .pods_selected_by(published)
        .map(ToString::to_string)
        .collect();
    assert_eq!(selected, ["shop/checkout-1"]);
}

#[test]
fn bad_selector_is_refused() {
    let (index, rx) = Index::new();
    let spec = format!(
        "  podSelector:\n    matchExpressions:\n      - {{key: tier, operator: Sometimes, values: [a]}}\n{MOCK}"
    );
    index.update(
        &[route("default", "r", 1, &spec)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let world = rx.borrow().clone();
    let problem = world.verdicts[&ObjectKey::new("default", "r")]
        .problem
        .clone()
        .expect("refused");
    assert_eq!(problem.reason, Reason::InvalidSelector);
}

#[test]
fn an_unreadable_route_keeps_its_last_good_version_serving() {
    let (index, rx) = Index::new();
    let key = ObjectKey::new("default", "r");
    index.update(
        &[route("default", "r", 1, MOCK)],
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let unreadable = Unreadable {
        key: key.clone(),
        generation: 2,
        message: "this operator cannot read it: unknown field `shinyNewThing`".into(),
    };
    index.update_with_unreadable(
        std::iter::empty(),
        std::slice::from_ref(&unreadable),
        &SecretMap::default(),
        BTreeMap::new(),
    );
    let world = rx.borrow().clone();
    let verdict = &world.verdicts[&key];
    assert_eq!(verdict.generation, 2);
    assert_eq!(verdict.serving, Some(1));
    assert_eq!(
        verdict.problem.as_ref().map(|p| p.reason),
        Some(Reason::Unreadable)
    );
    assert_eq!(world.routes[&key].generation, 1);
}
