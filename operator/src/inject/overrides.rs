//! Per-pod annotations that override the injection settings, and the small value types
//! both share. Every value is checked here, so a typo is refused at admission with the
//! annotation's name instead of producing a pod that fails later.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::config::{InjectConfig, Resources};

/// Annotation prefix of everything modelroute reads or writes on a pod.
pub const PREFIX: &str = "modelroute.dev/";
pub const INJECT: &str = "modelroute.dev/inject";
pub const STATUS: &str = "modelroute.dev/status";
const PORT: &str = "modelroute.dev/port";
const ADMIN_PORT: &str = "modelroute.dev/admin-port";
const CPU_REQUEST: &str = "modelroute.dev/cpu-request";
const CPU_LIMIT: &str = "modelroute.dev/cpu-limit";
const MEMORY_REQUEST: &str = "modelroute.dev/memory-request";
const MEMORY_LIMIT: &str = "modelroute.dev/memory-limit";
const LOG_LEVEL: &str = "modelroute.dev/log-level";
const SET_ENV: &str = "modelroute.dev/set-env";
const KNOWN: &[&str] = &[
    INJECT,
    STATUS,
    PORT,
    ADMIN_PORT,
    CPU_REQUEST,
    CPU_LIMIT,
    MEMORY_REQUEST,
    MEMORY_LIMIT,
    LOG_LEVEL,
    SET_ENV,
];

/// A TCP port, 1..=65535.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "u32")]
pub struct Port(pub u16);

impl TryFrom<u32> for Port {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(Self(p)),
            _ => Err(format!("{n} is not a port (1-65535)")),
        }
    }
}

/// A Kubernetes resource quantity (`250m`, `64Mi`, `1.5`, `2e3`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct Quantity(pub String);

impl TryFrom<String> for Quantity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if is_quantity(&s) {
            Ok(Self(s))
        } else {
            Err(format!(
                "{s:?} is not a Kubernetes quantity (e.g. 100m, 64Mi)"
            ))
        }
    }
}

fn is_quantity(s: &str) -> bool {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let number_end = unsigned
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return false;
    }
    const SUFFIXES: &[&str] = &[
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
    ];
    if SUFFIXES.contains(&suffix) {
        return true;
    }
    // Decimal exponent: e3, E-2.
    suffix
        .strip_prefix(['e', 'E'])
        .map(|exp| exp.strip_prefix(['+', '-']).unwrap_or(exp))
        .is_some_and(|exp| !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit()))
}

/// A log filter for the sidecar (`info`, `modelroute_sidecar=debug,info`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "String")]
pub struct LogLevel(pub String);

impl TryFrom<String> for LogLevel {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '=' | ',' | '.' | '-')
            });
        if ok {
            Ok(Self(s))
        } else {
            Err(format!(
                "{s:?} is not a log filter (e.g. info, modelroute_sidecar=debug)"
            ))
        }
    }
}

/// Which SDK environment variables the app containers get.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(try_from = "Vec<String>")]
pub struct AppEnv {
    pub openai: bool,
    pub anthropic: bool,
    pub gemini: bool,
}

impl AppEnv {
    pub fn all() -> Self {
        Self {
            openai: true,
            anthropic: true,
            gemini: true,
        }
    }

    /// `openai,anthropic,gemini` (any subset) or `none`.
    pub fn parse(list: &str) -> Result<Self, String> {
        Self::try_from(
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect::<Vec<_>>(),
        )
    }

    /// `(name, value)` for each variable, pointing at the sidecar on `port`.
    pub fn variables(&self, port: Port) -> Vec<(&'static str, String)> {
        let base = format!("http://127.0.0.1:{}", port.0);
        let mut vars = Vec::new();
        if self.openai {
            // The OpenAI SDKs append `/chat/completions` to a base ending in `/v1`.
            vars.push(("OPENAI_BASE_URL", format!("{base}/v1")));
        }
        if self.anthropic {
            vars.push(("ANTHROPIC_BASE_URL", base.clone()));
        }
        if self.gemini {
            // Read by Google's Gen AI SDKs (google-genai) for the Gemini API.
            vars.push(("GOOGLE_GEMINI_BASE_URL", base));
        }
        vars
    }
}

impl TryFrom<Vec<String>> for AppEnv {
    type Error = String;
    fn try_from(names: Vec<String>) -> Result<Self, String> {
        let mut env = Self {
            openai: false,
            anthropic: false,
            gemini: false,
        };
        if names.len() == 1 && names[0] == "none" {
            return Ok(env);
        }
        for name in &names {
            match name.as_str() {
                "openai" => env.openai = true,
                "anthropic" => env.anthropic = true,
                "gemini" => env.gemini = true,
                other => {
                    return Err(format!(
                        "{other:?} is not one of openai, anthropic, gemini (or none alone)"
                    ));
                }
            }
        }
        Ok(env)
    }
}

/// The settings for one pod: the config with the pod's annotations applied.
#[derive(Clone, Debug)]
pub struct Effective {
    pub port: Port,
    pub admin_port: Port,
    pub resources: Resources,
    pub log_level: LogLevel,
    pub set_env: AppEnv,
    /// Annotations under `modelroute.dev/` that mean nothing (typos, usually).
    pub unknown: Vec<String>,
}

/// An annotation that cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("annotation {annotation}: {problem}")]
pub struct BadAnnotation {
    pub annotation: &'static str,
    pub problem: String,
}

/// Applies the pod's annotations to `config`.
pub fn effective(
    annotations: &BTreeMap<String, String>,
    config: &InjectConfig,
) -> Result<Effective, BadAnnotation> {
    fn read<T>(
        annotations: &BTreeMap<String, String>,
        annotation: &'static str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<Option<T>, BadAnnotation> {
        annotations
            .get(annotation)
            .map(|v| parse(v.trim()))
            .transpose()
            .map_err(|problem| BadAnnotation {
                annotation,
                problem,
            })
    }
    let port_of = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{s:?} is not a port (1-65535)"))
            .and_then(Port::try_from)
    };
    let quantity = |s: &str| Quantity::try_from(s.to_string());

    let port = read(annotations, PORT, port_of)?.unwrap_or(config.port);
    let admin_port = read(annotations, ADMIN_PORT, port_of)?.unwrap_or(config.admin_port);
    if port == admin_port {
        return Err(BadAnnotation {
            annotation: if annotations.contains_key(PORT) {
                PORT
            } else {
                ADMIN_PORT
            },
            problem: format!("the proxy and admin ports would both be {}", port.0),
        });
    }
    let mut resources = config.resources.clone();
    for (annotation, limit, name) in [
        (CPU_REQUEST, false, "cpu"),
        (MEMORY_REQUEST, false, "memory"),
        (CPU_LIMIT, true, "cpu"),
        (MEMORY_LIMIT, true, "memory"),
    ] {
        if let Some(q) = read(annotations, annotation, quantity)? {
            let map = if limit {
                &mut resources.limits
            } else {
                &mut resources.requests
            };
            map.insert(name.to_string(), q);
        }
    }
    let log_level = read(annotations, LOG_LEVEL, |s| {
        LogLevel::try_from(s.to_string())
    })?
    .unwrap_or_else(|| config.log_level.clone());
    let set_env = read(annotations, SET_ENV, AppEnv::parse)?.unwrap_or(config.set_env);
    let unknown = annotations
        .keys()
        .filter(|k| k.starts_with(PREFIX) && !KNOWN.contains(&k.as_str()))
        .cloned()
        .collect();
    Ok(Effective {
        port,
        admin_port,
        resources,
        log_level,
        set_env,
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn quantities() {
        for ok in ["100m", "64Mi", "1", "1.5", "2e3", "1E-2", "+5G", ".5"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "m", "lots", "1.2.3", "5MiB", "1e", "64 Mi", "Mi64"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn annotations_override_the_config() {
        let config = InjectConfig::default();
        let got = effective(
            &annotations(&[
                (PORT, "5000"),
                (CPU_LIMIT, "500m"),
                (MEMORY_REQUEST, "16Mi"),
                (LOG_LEVEL, "modelroute_sidecar=debug,info"),
                (SET_ENV, "openai, gemini"),
                ("modelroute.dev/prot", "1"),
                ("example.com/other", "x"),
            ]),
            &config,
        )
        .unwrap();
        assert_eq!(got.port, Port(5000));
        assert_eq!(got.admin_port, config.admin_port);
        assert_eq!(got.resources.limits["cpu"], Quantity("500m".into()));
        assert_eq!(got.resources.limits["memory"], Quantity("128Mi".into()));
        assert_eq!(got.resources.requests["memory"], Quantity("16Mi".into()));
        assert_eq!(got.resources.requests["cpu"], Quantity("50m".into()));
        assert_eq!(got.log_level.0, "modelroute_sidecar=debug,info");
        assert!(got.set_env.openai && got.set_env.gemini && !got.set_env.anthropic);
        assert_eq!(got.unknown, vec!["modelroute.dev/prot".to_string()]);
    }

    #[test]
    fn bad_annotations_are_refused_by_name() {
        let config = InjectConfig::default();
        for (pairs, annotation) in [
            (vec![(PORT, "http")], PORT),
            (vec![(PORT, "0")], PORT),
            (vec![(ADMIN_PORT, "4000")], ADMIN_PORT),
            (vec![(CPU_REQUEST, "a lot")], CPU_REQUEST),
            (vec![(LOG_LEVEL, "debug; rm -rf")], LOG_LEVEL),
            (vec![(SET_ENV, "openai,cohere")], SET_ENV),
            (vec![(SET_ENV, "none,openai")], SET_ENV),
        ] {
            let err = effective(&annotations(&pairs), &config).unwrap_err();
            assert_eq!(err.annotation, annotation, "{pairs:?}");
        }
    }

    #[test]
    fn none_sets_no_variables() {
        assert!(
            AppEnv::parse("none")
                .unwrap()
                .variables(Port(4000))
                .is_empty()
        );
        let all = AppEnv::all().variables(Port(4100));
        assert_eq!(
            all,
            vec![
                ("OPENAI_BASE_URL", "http://127.0.0.1:4100/v1".to_string()),
                ("ANTHROPIC_BASE_URL", "http://127.0.0.1:4100".to_string()),
                (
                    "GOOGLE_GEMINI_BASE_URL",
                    "http://127.0.0.1:4100".to_string()
                ),
            ]
        );
    }
}
