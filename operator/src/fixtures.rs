//! ModelRoutes for tests: specs as YAML and a builder that wraps one into an object.

use modelroute_crds::ModelRoute;

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
