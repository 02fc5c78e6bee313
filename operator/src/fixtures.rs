//! ModelRoutes for tests: specs as YAML and a builder that wraps one into an object.

use std::collections::BTreeMap;

use bytes::Bytes;
use modelroute_crds::ModelRoute;

use crate::index::{ObjectKey, SecretMap};

/// An `openai` provider keyed from Secret `llm-keys`, key `openai`; two routes.
pub const KEYED: &str = "
  providers:
    - name: openai
      kind: openai
      apiKey:
        secretRef: {name: llm-keys, key: openai}
  routes:
    - model: chat
      targets: [{provider: openai, model: gpt-4o}]
    - model: fast
      targets: [{provider: openai, model: gpt-4o-mini}]
";

/// The built-in mock provider; one route; no key.
pub const MOCK: &str = "
  providers:
    - name: mock
      kind: mock
  routes:
    - model: chat
      targets: [{provider: mock, model: m}]
";

/// A ModelRoute `ns/name` at `generation` with `spec` (YAML indented by two spaces).
pub fn route(ns: &str, name: &str, generation: i64, spec: &str) -> ModelRoute {
    let text = format!(
        "apiVersion: modelroute.dev/v1alpha1\nkind: ModelRoute\nmetadata:\n  name: {name}\n  namespace: {ns}\n  generation: {generation}\n  uid: uid-{name}\nspec:\n{spec}"
    );
    modelroute_crds::from_yaml_documents(&text)
        .expect("a valid ModelRoute document")
        .remove(0)
}

/// Secret `llm-keys` in `ns` with key `openai` = `value`: what [`KEYED`] names.
pub fn llm_keys(ns: &str, value: &str) -> SecretMap {
    let mut map = SecretMap::default();
    map.0.insert(
        ObjectKey::new(ns, "llm-keys"),
        BTreeMap::from([("openai".to_string(), Bytes::from(value.to_string()))]),
    );
    map
}
