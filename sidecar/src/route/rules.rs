//! Match rules: conditions on a request that send it to another set of targets.

use http::HeaderName;
use modelroute_crds::v1alpha1::{RuleMatch, StringMatch};
use regex::Regex;

use super::ask::Ask;

/// A rule's conditions, compiled. Every condition set must hold.
#[derive(Debug)]
pub struct Matcher {
    headers: Vec<(HeaderName, Test)>,
    user: Option<Test>,
    /// Estimated prompt tokens: at least `.0`, below `.1`.
    prompt_tokens: Option<(u64, u64)>,
    tools: Option<bool>,
    images: Option<bool>,
    stream: Option<bool>,
}

/// A test of one string value.
#[derive(Debug)]
enum Test {
    Exact(String),
    Prefix(String),
    /// Anchored: the whole value must match.
    Regex(Regex),
    OneOf(Vec<String>),
}

// === impl Matcher ===

impl Matcher {
    /// Compiles a validated `match`; the error names what is wrong (validation catches it
    /// first, so this only guards against a bypassed check).
    pub fn compile(spec: &RuleMatch) -> Result<Self, String> {
        let headers = spec
            .headers
            .iter()
            .map(|(name, test)| {
                let name = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| format!("{name:?} is not a valid HTTP header name"))?;
                Ok((name, Test::compile(test)?))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            headers,
            user: spec.user.as_ref().map(Test::compile).transpose()?,
            prompt_tokens: spec
                .prompt_tokens
                .map(|r| (r.at_least.unwrap_or(0), r.below.unwrap_or(u64::MAX))),
            tools: spec.tools,
            images: spec.images,
            stream: spec.stream,
        })
    }

    /// Whether `ask` meets every condition. Cheap conditions are tested first, and body
    /// properties only when everything before them held.
    pub fn matches(&self, ask: &Ask<'_>) -> bool {
        let stream_ok = self.stream.is_none_or(|s| s == ask.stream());
        stream_ok
            && self.headers.iter().all(|(name, test)| {
                ask.headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| test.holds(v))
            })
            && self
                .user
                .as_ref()
                .is_none_or(|t| ask.user().is_some_and(|u| t.holds(u)))
            && self.tools.is_none_or(|t| t == ask.tools())
            && self.images.is_none_or(|i| i == ask.images())
            && self.prompt_tokens.is_none_or(|(low, high)| {
                let n = ask.prompt_tokens();
                low <= n && n < high
            })
    }
}

// === impl Test ===

impl Test {
    fn compile(spec: &StringMatch) -> Result<Self, String> {
        let StringMatch {
            exact,
            prefix,
            regex,
            one_of,
        } = spec;
        match (exact, prefix, regex, one_of) {
            (Some(v), None, None, None) => Ok(Self::Exact(v.clone())),
            (None, Some(v), None, None) => Ok(Self::Prefix(v.clone())),
            (None, None, Some(re), None) => Regex::new(&format!("^(?:{re})$"))
                .map(Self::Regex)
                .map_err(|e| format!("not a valid regex: {e}")),
            (None, None, None, Some(values)) => Ok(Self::OneOf(values.clone())),
            _ => Err("set exactly one of exact, prefix, regex or oneOf".into()),
        }
    }

    fn holds(&self, value: &str) -> bool {
        match self {
            Self::Exact(v) => value == v,
            Self::Prefix(p) => value.starts_with(p.as_str()),
            Self::Regex(re) => re.is_match(value),
            Self::OneOf(values) => values.iter().any(|v| v == value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ModelRequest;
    use http::HeaderMap;

    fn matcher(yaml: &str) -> Matcher {
        let spec: RuleMatch = serde_saphyr::from_str(yaml).unwrap();
        Matcher::compile(&spec).unwrap()
    }

    fn check(m: &Matcher, headers: &[(&'static str, &'static str)], body: &str) -> bool {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        let request = ModelRequest::parse(body.as_bytes().to_vec()).unwrap();
        m.matches(&Ask::new(&map, &request))
    }

    const HI: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    #[test]
    fn headers_match_by_exact_prefix_regex_and_list() {
        let m = matcher("headers: {X-Tenant: {exact: acme}}");
        assert!(check(&m, &[("x-tenant", "acme")], HI));
        assert!(!check(&m, &[("x-tenant", "acme2")], HI));
        assert!(!check(&m, &[], HI), "an absent header never matches");
        let m = matcher("headers: {x-tenant: {prefix: team-}}");
        assert!(check(&m, &[("x-tenant", "team-a")], HI));
        assert!(!check(&m, &[("x-tenant", "a-team-")], HI));
        let m = matcher("headers: {x-security-level: {regex: 'high|secret'}}");
        assert!(check(&m, &[("x-security-level", "high")], HI));
        assert!(
            !check(&m, &[("x-security-level", "highest")], HI),
            "anchored"
        );
        let m = matcher("headers: {x-tenant: {oneOf: [a, b]}}");
        assert!(check(&m, &[("x-tenant", "b")], HI));
        assert!(!check(&m, &[("x-tenant", "c")], HI));
    }

    #[test]
    fn every_condition_must_hold() {
        let m = matcher("headers: {x-tenant: {exact: acme}}\nuser: {exact: u1}\nstream: true");
        let body = r#"{"model":"m","user":"u1","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        assert!(check(&m, &[("x-tenant", "acme")], body));
        assert!(!check(&m, &[("x-tenant", "acme")], HI));
        assert!(!check(&m, &[("x-tenant", "other")], body));
    }

    #[test]
    fn request_properties() {
        let long = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
            "word ".repeat(4000)
        );
        let m = matcher("promptTokens: {atLeast: 1000}");
        assert!(check(&m, &[], &long));
        assert!(!check(&m, &[], HI));
        let m = matcher("promptTokens: {below: 1000}");
        assert!(!check(&m, &[], &long));
        assert!(check(&m, &[], HI));
        let tools = r#"{"model":"m","tools":[{"type":"function","function":{"name":"f"}}],"messages":[{"role":"user","content":"hi"}]}"#;
        let m = matcher("tools: true");
        assert!(check(&m, &[], tools));
        assert!(!check(&m, &[], HI));
        let m = matcher("images: false");
        assert!(check(&m, &[], HI));
    }
}
