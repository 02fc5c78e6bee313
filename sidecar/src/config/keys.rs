//! The Secret values a config source hands to [`compile`](super::compile) for
//! `apiKey.secretRef`.
//!
//! Only the operator carries Secrets (in its snapshots); a file source has none, and a
//! secretRef there is refused with the fix. Values stay raw bytes until a provider names
//! them, so a key that is not text is reported against the field that uses it.

use std::collections::HashMap;
use std::fmt;

use bytes::Bytes;

use crate::secret::Secret;

/// Secret values by (namespace, Secret name, key).
pub struct SecretKeys {
    /// `None`: this source cannot resolve Secrets at all.
    values: Option<HashMap<SecretKeyId, Secret<Bytes>>>,
}

/// Why a secretRef did not resolve. Messages name the Secret and key, never the value.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretKeyError {
    #[error(
        "Secrets are resolved by the operator; when running with --config use env, file or value"
    )]
    Unsupported,
    #[error("Secret {name} has no key {key} in the snapshot")]
    Missing { name: String, key: String },
    #[error("key {key} of Secret {name} is not UTF-8 text")]
    NotText { name: String, key: String },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct SecretKeyId {
    namespace: String,
    name: String,
    key: String,
}

// === impl SecretKeys ===

impl SecretKeys {
    /// For sources without Secrets (files): every secretRef is an error naming the fix.
    pub fn none() -> Self {
        Self { values: None }
    }

    /// An empty store that [`SecretKeys::insert`] fills (the operator's snapshots).
    pub fn empty() -> Self {
        Self {
            values: Some(HashMap::new()),
        }
    }

    /// Adds (or replaces) one value. Turns a [`SecretKeys::none`] store into one that resolves.
    pub fn insert(&mut self, namespace: &str, name: &str, key: &str, value: impl Into<Bytes>) {
        let id = SecretKeyId {
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: key.to_string(),
        };
        self.values
            .get_or_insert_with(HashMap::new)
            .insert(id, Secret::new(value.into()));
    }

    /// The value of `key` in Secret `name` of `namespace`, as text.
    pub fn resolve(
        &self,
        namespace: &str,
        name: &str,
        key: &str,
    ) -> Result<Secret<String>, SecretKeyError> {
        let Some(values) = &self.values else {
            return Err(SecretKeyError::Unsupported);
        };
        let id = SecretKeyId {
            namespace: namespace.to_string(),
            name: name.to_string(),
            key: key.to_string(),
        };
        let Some(value) = values.get(&id) else {
            return Err(SecretKeyError::Missing {
                name: name.to_string(),
                key: key.to_string(),
            });
        };
        let text = std::str::from_utf8(value.expose()).map_err(|_| SecretKeyError::NotText {
            name: name.to_string(),
            key: key.to_string(),
        })?;
        Ok(Secret::new(text.to_string()))
    }
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(values) = &self.values else {
            return f.write_str("SecretKeys(none)");
        };
        // Names only: the values print as `***` anyway, but there is no reason to list them.
        let mut names: Vec<_> = values
            .keys()
            .map(|id| format!("{}/{}[{}]", id.namespace, id.name, id.key))
            .collect();
        names.sort_unstable();
        f.debug_tuple("SecretKeys").field(&names).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_within_one_namespace_only() {
        let mut keys = SecretKeys::empty();
        keys.insert("team-a", "openai", "key", b"sk-test-a".to_vec());
        assert_eq!(
            keys.resolve("team-a", "openai", "key").unwrap().expose(),
            "sk-test-a"
        );
        assert_eq!(
            keys.resolve("team-b", "openai", "key").unwrap_err(),
            SecretKeyError::Missing {
                name: "openai".into(),
                key: "key".into()
            }
        );
        assert_eq!(
            keys.resolve("team-a", "openai", "other")
                .unwrap_err()
                .to_string(),
            "Secret openai has no key other in the snapshot"
        );
    }

    #[test]
    fn refuses_bytes_that_are_not_text_and_sources_without_secrets() {
        let mut keys = SecretKeys::empty();
        keys.insert("ns", "s", "k", vec![0xff, 0xfe]);
        assert_eq!(
            keys.resolve("ns", "s", "k").unwrap_err().to_string(),
            "key k of Secret s is not UTF-8 text"
        );
        assert_eq!(
            SecretKeys::none().resolve("ns", "s", "k").unwrap_err(),
            SecretKeyError::Unsupported
        );
    }

    #[test]
    fn debug_names_keys_but_never_values() {
        let mut keys = SecretKeys::empty();
        keys.insert("ns", "s", "k", b"sk-test-hidden".to_vec());
        let text = format!("{keys:?}");
        assert_eq!(text, r#"SecretKeys(["ns/s[k]"])"#);
    }
}
