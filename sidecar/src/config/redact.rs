//! The config as `/config` shows it: key sources named, key values and header values hidden.

use modelroute_crds::ModelRoute;
use serde_json::Value;

const HIDDEN: &str = "***";

/// ModelRoutes as JSON with every inline key and every provider header value replaced.
pub fn redact(docs: &[ModelRoute]) -> Value {
    let mut out = Vec::with_capacity(docs.len());
    for doc in docs {
        let mut v = serde_json::to_value(doc).unwrap_or(Value::Null);
        if let Some(providers) = v
            .pointer_mut("/spec/providers")
            .and_then(Value::as_array_mut)
        {
            for p in providers {
                if let Some(value) = p.pointer_mut("/apiKey/value") {
                    *value = Value::String(HIDDEN.into());
                }
                if let Some(headers) = p.get_mut("headers").and_then(Value::as_object_mut) {
                    for value in headers.values_mut() {
                        *value = Value::String(HIDDEN.into());
                    }
                }
            }
        }
        out.push(v);
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_inline_keys_and_header_values_but_names_sources() {
        let docs = modelroute_crds::from_yaml_documents(
            r#"
apiVersion: modelroute.dev/v1alpha1
kind: ModelRoute
metadata: {name: r}
spec:
  providers:
    - {name: a, kind: openai, apiKey: {value: sk-test-inline-secret}, headers: {X-Token: tok-secret}}
    - {name: b, kind: openai, apiKey: {env: B_KEY}}
"#,
        )
        .unwrap();
        let text = redact(&docs).to_string();
        assert!(!text.contains("sk-test-inline-secret"), "{text}");
        assert!(!text.contains("tok-secret"), "{text}");
        assert!(text.contains("B_KEY"), "{text}");
        assert!(text.contains("X-Token"), "{text}");
    }
}
