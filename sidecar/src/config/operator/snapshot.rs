//! One snapshot from the operator -> ModelRoutes and Secret values -> the active table, and
//! the Ack or Nack that answers it.

use modelroute_crds::{ModelRoute, ModelRouteSpec};
use modelroute_proto::v1::{Ack, Nack, Resource, SidecarMessage, Snapshot, sidecar_message};
use tracing::{debug, warn};

use crate::App;
use crate::config::{SecretKeys, SnapshotId};

/// The schema of `spec_json` this sidecar understands.
pub const API_VERSION: &str = "modelroute.dev/v1alpha1";

/// Applies `snapshot` whole or not at all, and says which. An identical snapshot (same
/// hash as the active one) is acknowledged without recompiling; a refused one leaves the
/// active table serving and is logged once and counted.
pub(super) fn apply(app: &App, source: &str, snapshot: Snapshot) -> SidecarMessage {
    let Snapshot {
        version,
        hash,
        resources,
        traceparent,
    } = snapshot;
    // A child of the operator's push when both export traces: one trace per change.
    let span = tracing::info_span!(
        target: modelroute_otel::TARGET,
        "apply snapshot",
        otel.kind = "consumer",
        modelroute.snapshot.version = version,
        modelroute.snapshot.result = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    modelroute_otel::continue_from(&span, &traceparent);
    let active = app.table().and_then(|t| t.snapshot.clone());
    if active.is_some_and(|a| a.hash == hash) {
        span.record("modelroute.snapshot.result", "unchanged");
        debug!(version, "snapshot unchanged; acknowledged");
        app.metrics.operator_snapshot("ack");
        return ack(version, hash);
    }
    let result = decode(resources).and_then(|(docs, keys)| {
        let id = SnapshotId {
            version,
            hash: hash.clone(),
        };
        app.apply_with_keys(&docs, source, &keys, Some(id))
            .map_err(|e| e.problems)
    });
    match result {
        Ok(_) => {
            span.record("modelroute.snapshot.result", "ack");
            app.metrics.operator_snapshot("ack");
            ack(version, hash)
        }
        Err(problems) => {
            span.record("modelroute.snapshot.result", "nack");
            span.record("otel.status_code", "ERROR");
            app.metrics.operator_snapshot("nack");
            app.metrics.config_rejected();
            let active = app.table().map_or(0, |t| t.version);
            warn!(
                version,
                error = %problems.join("; "),
                active_version = active,
                "snapshot refused; the active config keeps serving"
            );
            nack(version, hash, problems.join("\n"))
        }
    }
}

/// Resources -> ModelRoutes and the Secret values they may name. Every problem is reported.
fn decode(resources: Vec<Resource>) -> Result<(Vec<ModelRoute>, SecretKeys), Vec<String>> {
    let mut problems = Vec::new();
    let mut docs = Vec::with_capacity(resources.len());
    let mut keys = SecretKeys::empty();
    for r in resources {
        let namespace = Some(r.namespace).filter(|ns| !ns.is_empty());
        let name = match &namespace {
            Some(ns) => format!("ModelRoute {ns}/{}", r.name),
            None => format!("ModelRoute {}", r.name),
        };
        if r.api_version != API_VERSION {
            problems.push(format!(
                "{name}: apiVersion {:?} is not supported by this sidecar (it reads {API_VERSION})",
                r.api_version
            ));
            continue;
        }
        let spec: ModelRouteSpec = match serde_json::from_slice(&r.spec_json) {
            Ok(spec) => spec,
            Err(e) => {
                problems.push(format!("{name}: spec: {}", hide_values(&e.to_string())));
                continue;
            }
        };
        let ns = namespace.as_deref().unwrap_or("default");
        for s in r.secrets {
            keys.insert(ns, &s.name, &s.key, s.value);
        }
        let mut doc = ModelRoute::new(&r.name, spec);
        doc.metadata.namespace = namespace;
        doc.metadata.generation = Some(r.generation);
        docs.push(doc);
    }
    if problems.is_empty() {
        Ok((docs, keys))
    } else {
        Err(problems)
    }
}

/// serde quotes the values it could not read (`invalid type: string "sk-..."`), and a key
/// written in the wrong place would end up in a Nack, a log and the ModelRoute's status.
/// Field names (in backticks) stay.
fn hide_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find('"') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        // The closing quote: the first one not escaped.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        out.push_str("\"***\"");
        let Some(end) = end else {
            return out;
        };
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn ack(version: u64, hash: String) -> SidecarMessage {
    SidecarMessage {
        message: Some(sidecar_message::Message::Ack(Ack { version, hash })),
    }
}

fn nack(version: u64, hash: String, reason: String) -> SidecarMessage {
    SidecarMessage {
        message: Some(sidecar_message::Message::Nack(Nack {
            version,
            hash,
            reason,
        })),
    }
}

#[cfg(test)]
mod tests {
    use modelroute_proto::v1::SecretValue;

    use super::*;

    fn resource(namespace: &str, name: &str, spec: serde_json::Value) -> Resource {
        Resource {
            namespace: namespace.into(),
            name: name.into(),
            generation: 4,
            api_version: API_VERSION.into(),
            spec_json: spec.to_string().into_bytes().into(),
            secrets: vec![SecretValue {
                name: "s".into(),
                key: "k".into(),
                value: bytes::Bytes::from_static(b"sk-test-secret"),
            }],
        }
    }

    #[test]
    fn resources_become_model_routes_with_their_metadata_and_keys() {
        let spec = serde_json::json!({"providers": [{"name": "m", "kind": "mock"}], "routes": []});
        let (docs, keys) = decode(vec![resource("team", "r", spec.clone())]).unwrap();
        assert_eq!(docs[0].metadata.name.as_deref(), Some("r"));
        assert_eq!(docs[0].metadata.namespace.as_deref(), Some("team"));
        assert_eq!(docs[0].metadata.generation, Some(4));
        assert_eq!(docs[0].spec.providers[0].name, "m");
        assert_eq!(
            keys.resolve("team", "s", "k").unwrap().expose(),
            "sk-test-secret"
        );
        // No namespace: the default one, as for a ModelRoute without metadata.namespace.
        let (docs, keys) = decode(vec![resource("", "r", spec)]).unwrap();
        assert_eq!(docs[0].metadata.namespace, None);
        assert!(keys.resolve("default", "s", "k").is_ok());
    }

    #[test]
    fn every_bad_resource_is_named() {
        let mut old = resource("ns", "old", serde_json::json!({}));
        old.api_version = "modelroute.dev/v9".into();
        let bad_json = Resource {
            spec_json: bytes::Bytes::from_static(b"{not json"),
            ..resource("ns", "broken", serde_json::json!({}))
        };
        let leaky = resource(
            "ns",
            "leaky",
            serde_json::json!({"providers": [{"name": "a", "kind": "openai", "apiKey": "sk-test-misplaced"}]}),
        );
        let problems = decode(vec![old, bad_json, leaky]).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("ModelRoute ns/old: apiVersion \"modelroute.dev/v9\""),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("ModelRoute ns/broken: spec: "),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("ModelRoute ns/leaky: spec: invalid type"),
            "{problems:?}"
        );
        assert!(!problems[2].contains("sk-test-misplaced"), "{problems:?}");
    }

    #[test]
    fn quoted_values_are_hidden_and_field_names_kept() {
        assert_eq!(
            hide_values(r#"invalid type: string "sk-\"x", expected struct ApiKeySource at line 1"#),
            r#"invalid type: string "***", expected struct ApiKeySource at line 1"#
        );
        assert_eq!(
            hide_values("unknown field `apikey`, expected one of `name`, `kind`"),
            "unknown field `apikey`, expected one of `name`, `kind`"
        );
        assert_eq!(hide_values(r#"cut "open"#), r#"cut "***""#);
    }
}
