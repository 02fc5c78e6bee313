//! The Hello that opens every session: who this sidecar is, read fresh on each connect
//! (projected tokens rotate, downward-API labels change).

use std::collections::HashMap;
use std::path::Path;

use modelroute_proto::v1::Hello;

use super::OperatorOptions;
use crate::config::SnapshotId;
use crate::secret::Secret;

/// What this sidecar understands, so an operator can avoid sending what it would refuse.
pub const CAPABILITIES: &[&str] = &["snapshot.v1"];

/// Builds the Hello for one connect. Fails only when the token cannot be read: without it
/// the operator would refuse the session anyway. A labels file that cannot be read is
/// logged and sent as no labels.
pub(super) fn hello(
    options: &OperatorOptions,
    active: Option<&SnapshotId>,
) -> Result<Hello, String> {
    let token = read_token(&options.token_file)?;
    let pod_labels = match &options.pod_labels_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => parse_labels(&text),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read the pod labels; sending none");
                HashMap::new()
            }
        },
        None => HashMap::new(),
    };
    Ok(Hello {
        token: token.expose().clone(),
        sidecar_version: env!("CARGO_PKG_VERSION").to_string(),
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        pod_namespace: options.pod_namespace.clone(),
        pod_name: options.pod_name.clone(),
        pod_labels,
        active_hash: active.map(|s| s.hash.clone()).unwrap_or_default(),
    })
}

/// The token file's content without surrounding whitespace. Errors name the file only.
fn read_token(path: &Path) -> Result<Secret<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("the token file {} is empty", path.display()));
    }
    Ok(Secret::new(token.to_string()))
}

/// Parses the downward API's labels file: one `key="value"` per line, the value quoted the
/// way Go's `strconv.Quote` does. Tolerant: blank or malformed lines are skipped, and a
/// value that is not quoted is taken as written.
pub fn parse_labels(text: &str) -> HashMap<String, String> {
    let mut labels = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            continue;
        }
        let value = value.trim();
        let value = unquote(value).unwrap_or_else(|| value.to_string());
        labels.insert(key.to_string(), value);
    }
    labels
}

/// Undoes Go's `strconv.Quote`; `None` when `s` is not one quoted string.
fn unquote(s: &str) -> Option<String> {
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let escaped = match chars.next()? {
            'a' => '\x07',
            'b' => '\x08',
            'f' => '\x0c',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'v' => '\x0b',
            c @ ('\\' | '"' | '\'') => c,
            // Bytes: two hex digits or three octal ones; several may spell one UTF-8 char.
            'x' => {
                out.push(u8::from_str_radix(&take(&mut chars, 2)?, 16).ok()?);
                continue;
            }
            d @ '0'..='7' => {
                let digits = format!("{d}{}", take(&mut chars, 2)?);
                out.push(u8::from_str_radix(&digits, 8).ok()?);
                continue;
            }
            'u' => char::from_u32(u32::from_str_radix(&take(&mut chars, 4)?, 16).ok()?)?,
            'U' => char::from_u32(u32::from_str_radix(&take(&mut chars, 8)?, 16).ok()?)?,
            _ => return None,
        };
        let mut buf = [0; 4];
        out.extend_from_slice(escaped.encode_utf8(&mut buf).as_bytes());
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn take(chars: &mut std::str::Chars<'_>, n: usize) -> Option<String> {
    let s: String = chars.by_ref().take(n).collect();
    (s.chars().count() == n).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_downward_api_format() {
        let text = "app=\"web\"\npod-template-hash=\"6d4cf56db6\"\nmodelroute.dev/tier=\"gold\"\n";
        let labels = parse_labels(text);
        assert_eq!(labels.len(), 3);
        assert_eq!(labels["app"], "web");
        assert_eq!(labels["pod-template-hash"], "6d4cf56db6");
        assert_eq!(labels["modelroute.dev/tier"], "gold");
    }

    #[test]
    fn undoes_go_quoting() {
        let text = r#"a="say \"hi\"\n"
b="tab\there"
c="caf\u00e9 \xc3\xa9 \303\251"
d="back\\slash"
e=""
"#;
        let labels = parse_labels(text);
        assert_eq!(labels["a"], "say \"hi\"\n");
        assert_eq!(labels["b"], "tab\there");
        assert_eq!(labels["c"], "café é é");
        assert_eq!(labels["d"], "back\\slash");
        assert_eq!(labels["e"], "");
    }

    #[test]
    fn tolerates_what_it_does_not_expect() {
        let text = "\n  \nno-equals-sign\n=\"no key\"\nplain=unquoted\nbad=\"\\q\"\nhalf=\"open\n spaced = \"x\" \nk=\"a=b\"\n";
        let labels = parse_labels(text);
        assert_eq!(labels["plain"], "unquoted");
        assert_eq!(labels["bad"], "\"\\q\"", "a bad escape keeps the raw text");
        assert_eq!(labels["half"], "\"open");
        assert_eq!(labels["spaced"], "x");
        assert_eq!(labels["k"], "a=b");
        assert_eq!(labels.len(), 5, "{labels:?}");
    }

    #[test]
    fn the_token_is_read_fresh_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let mut options = OperatorOptions::new("http://127.0.0.1:1".into());
        options.token_file = path.clone();
        let err = hello(&options, None).unwrap_err();
        assert!(err.starts_with("cannot read the token file"), "{err}");
        std::fs::write(&path, "").unwrap();
        assert!(hello(&options, None).unwrap_err().contains("is empty"));
        std::fs::write(&path, "tok-one\n").unwrap();
        let active = SnapshotId {
            version: 3,
            hash: "abc".into(),
        };
        let h = hello(&options, Some(&active)).unwrap();
        assert_eq!(
            (h.token.as_str(), h.active_hash.as_str()),
            ("tok-one", "abc")
        );
        assert_eq!(h.capabilities, ["snapshot.v1"]);
        assert_eq!(h.sidecar_version, env!("CARGO_PKG_VERSION"));
        std::fs::write(&path, "tok-two").unwrap();
        assert_eq!(hello(&options, None).unwrap().token, "tok-two");
    }
}
