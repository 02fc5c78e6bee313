//! A duration written the Kubernetes way (`250ms`, `30s`, `1m30s`, `2h`).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration that reads and writes as a Go-style string such as `1m30s`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

// === impl Duration ===

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}

impl From<Duration> for std::time::Duration {
    fn from(d: Duration) -> Self {
        d.0
    }
}

impl std::str::FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(s.trim())
            .map(Self)
            .map_err(|e| format!("invalid duration {s:?} ({e}); write it like 250ms, 30s or 1m30s"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        // humantime separates units with spaces; Kubernetes style has none.
        let spaced = humantime::format_duration(self.0).to_string();
        f.write_str(&spaced.replace(' ', ""))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(ns|us|ms|s|m|h))+$",
            "description": "A duration such as 250ms, 30s or 1m30s."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kubernetes_style() {
        let d: Duration = "1m30s".parse().unwrap();
        assert_eq!(d.0, std::time::Duration::from_secs(90));
        let d: Duration = "250ms".parse().unwrap();
        assert_eq!(d.0, std::time::Duration::from_millis(250));
    }

    #[test]
    fn rejects_unitless_numbers_with_a_hint() {
        let err = "30".parse::<Duration>().unwrap_err();
        assert!(err.contains("1m30s"), "{err}");
    }

    #[test]
    fn display_round_trips() {
        for s in ["0s", "250ms", "30s", "1m30s", "2h", "1m30s500ms"] {
            let d: Duration = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
            assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
    }
}
