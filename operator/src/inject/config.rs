//! The injection settings: the chart renders them into a file (`--inject-config`), read
//! and validated once at start. Per-pod annotations may override some (`overrides`).

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::EnvVar;
use serde::Deserialize;

use super::overrides::{AppEnv, LogLevel, Port, Quantity};

/// What gets injected, before per-pod overrides.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct InjectConfig {
    pub image: String,
    pub image_pull_policy: String,
    /// The discovery Service, e.g. `https://modelroute-operator.modelroute-system.svc:8443`.
    pub operator_address: String,
    /// TLS name to check instead of the address's host.
    pub operator_server_name: Option<String>,
    pub native_sidecar: NativeSidecar,
    pub port: Port,
    pub admin_port: Port,
    pub log_level: LogLevel,
    pub log_format: String,
    pub resources: Resources,
    pub set_env: AppEnv,
    /// More environment for the sidecar (e.g. `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub env: Vec<EnvVar>,
    pub token_expiration_seconds: i64,
    /// Never injected (the operator's own namespace always is too).
    pub exclude_namespaces: Vec<String>,
}

/// Whether the sidecar is a native sidecar (an init container that keeps running,
/// started before and stopped after the app) or a regular container.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum NativeSidecar {
    /// Native where the API server is 1.29 or newer (where the feature is on by default).
    #[default]
    Auto,
    Always,
    Never,
}

/// Requests and limits, by resource name (`cpu`, `memory`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    pub requests: BTreeMap<String, Quantity>,
    pub limits: BTreeMap<String, Quantity>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Default for InjectConfig {
    fn default() -> Self {
        Self {
            image: concat!(
                "ghcr.io/modelroute/modelroute-sidecar:",
                env!("CARGO_PKG_VERSION")
            )
            .to_string(),
            image_pull_policy: "IfNotPresent".to_string(),
            operator_address: "https://modelroute-operator.modelroute-system.svc:8443".to_string(),
            operator_server_name: None,
            native_sidecar: NativeSidecar::Auto,
            port: Port(4000),
            admin_port: Port(4001),
            log_level: LogLevel("info".to_string()),
            log_format: "json".to_string(),
            resources: Resources {
                requests: BTreeMap::from([
                    ("cpu".to_string(), Quantity("50m".to_string())),
                    ("memory".to_string(), Quantity("32Mi".to_string())),
                ]),
                limits: BTreeMap::from([("memory".to_string(), Quantity("128Mi".to_string()))]),
            },
            set_env: AppEnv::all(),
            env: Vec::new(),
            token_expiration_seconds: 3600,
            exclude_namespaces: vec!["kube-system".to_string()],
        }
    }
}

impl InjectConfig {
    /// Reads and validates the file; everything absent takes its default.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    pub fn parse(yaml: &str) -> Result<Self, String> {
        let config: Self = if yaml.trim().is_empty() {
            Self::default()
        } else {
            serde_saphyr::from_str(yaml).map_err(|e| e.to_string())?
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if self.image.trim().is_empty() {
            return Err("image must not be empty".into());
        }
        if !matches!(
            self.image_pull_policy.as_str(),
            "Always" | "IfNotPresent" | "Never"
        ) {
            return Err(format!(
                "imagePullPolicy {:?} is not Always, IfNotPresent or Never",
                self.image_pull_policy
            ));
        }
        if !self.operator_address.starts_with("https://") {
            return Err(format!(
                "operatorAddress {:?} must be an https:// URL (the discovery server only speaks TLS)",
                self.operator_address
            ));
        }
        if self.port == self.admin_port {
            return Err(format!("port and adminPort are both {}", self.port.0));
        }
        if !matches!(self.log_format.as_str(), "json" | "text") {
            return Err(format!(
                "logFormat {:?} is not json or text",
                self.log_format
            ));
        }
        // The API server refuses projected tokens outside [10 min, 2^32 s].
        if !(600..=u32::MAX as i64).contains(&self.token_expiration_seconds) {
            return Err("tokenExpirationSeconds must be at least 600".into());
        }
        Ok(())
    }

    /// Whether to inject a native sidecar on an API server of this minor version.
    pub fn native_for(&self, server_minor: Option<u32>) -> bool {
        match self.native_sidecar {
            NativeSidecar::Always => true,
            NativeSidecar::Never => false,
            NativeSidecar::Auto => server_minor.is_some_and(|minor| minor >= 29),
        }
    }
}

/// `minor` of a `/version` answer ("29", "29+" on some managed clusters).
pub fn server_minor(minor: &str) -> Option<u32> {
    minor.trim_end_matches('+').parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_means_the_defaults() {
        let config = InjectConfig::parse("").unwrap();
        assert_eq!(config.port, Port(4000));
        assert_eq!(config.set_env, AppEnv::all());
    }

    #[test]
    fn chart_shaped_config_parses() {
        let config = InjectConfig::parse(
            r#"
image: registry.example/sidecar:1.2.3
imagePullPolicy: Always
operatorAddress: https://mr-operator.ops.svc:8443
nativeSidecar: never
port: 5000
adminPort: 5001
logLevel: debug
logFormat: text
resources: {requests: {cpu: 10m}, limits: {memory: 64Mi}}
setEnv: [openai]
env: [{name: OTEL_EXPORTER_OTLP_ENDPOINT, value: "http://collector:4317"}]
tokenExpirationSeconds: 7200
excludeNamespaces: [kube-system, monitoring]
"#,
        )
        .unwrap();
        assert_eq!(config.port, Port(5000));
        assert_eq!(config.native_sidecar, NativeSidecar::Never);
        assert_eq!(config.set_env, AppEnv::parse("openai").unwrap());
        assert_eq!(
            config.env[0].value.as_deref(),
            Some("http://collector:4317")
        );
        assert!(config.resources.limits.contains_key("memory"));
    }

    #[test]
    fn mistakes_are_named() {
        for (yaml, needle) in [
            ("imag: x", "imag"),
            ("port: 70000", "70000"),
            ("port: 4001", "both 4001"),
            ("operatorAddress: http://x:1", "https://"),
            ("setEnv: [openai, cohere]", "cohere"),
            ("resources: {requests: {cpu: lots}}", "lots"),
            ("nativeSidecar: maybe", "maybe"),
            ("tokenExpirationSeconds: 60", "600"),
        ] {
            let err = InjectConfig::parse(yaml).unwrap_err();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }

    #[test]
    fn native_sidecars_from_1_29_unless_told() {
        let mut config = InjectConfig::default();
        assert!(!config.native_for(server_minor("20")));
        assert!(!config.native_for(server_minor("28+")));
        assert!(config.native_for(server_minor("29")));
        assert!(config.native_for(server_minor("33+")));
        assert!(!config.native_for(None));
        config.native_sidecar = NativeSidecar::Never;
        assert!(!config.native_for(server_minor("33")));
        config.native_sidecar = NativeSidecar::Always;
        assert!(config.native_for(server_minor("20")));
    }
}
