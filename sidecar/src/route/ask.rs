//! What routing may look at in a request: headers, `user`, and properties of the body.
//! Each property is read from the body once, on first use: most routes need none.

use std::cell::OnceCell;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::api::ModelRequest;

/// One request as routing sees it.
pub struct Ask<'a> {
    pub headers: &'a HeaderMap,
    pub request: &'a ModelRequest,
    user: OnceCell<Option<String>>,
    prompt_tokens: OnceCell<u64>,
}

/// The leading part of a prompt that providers cache: system prompt and tools.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    /// A hash of the prefix that is the same in every sidecar (fixed seed).
    pub hash: u64,
    /// The prefix's estimated size in tokens.
    pub tokens: u64,
}

/// Byte patterns that only appear in a body holding an image: OpenAI `image_url` parts,
/// Anthropic `image` blocks, Gemini inline or file data.
const IMAGE_MARKERS: [&[u8]; 5] = [
    b"\"image_url\"",
    b"\"type\":\"image\"",
    b"\"type\": \"image\"",
    b"\"inlineData\"",
    b"\"fileData\"",
];

#[derive(Deserialize)]
struct MessagePeek<'a> {
    #[serde(default, borrow)]
    role: Option<&'a str>,
    #[serde(default, borrow)]
    content: Option<&'a RawValue>,
}

// === impl Ask ===

impl<'a> Ask<'a> {
    pub fn new(headers: &'a HeaderMap, request: &'a ModelRequest) -> Self {
        Self {
            headers,
            request,
            user: OnceCell::new(),
            prompt_tokens: OnceCell::new(),
        }
    }

    /// A header's value, when it is present and valid text.
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The OpenAI `user` field.
    pub fn user(&self) -> Option<&str> {
        self.user.get_or_init(|| self.request.user()).as_deref()
    }

    /// The prompt's estimated size in tokens (an upper estimate).
    pub fn prompt_tokens(&self) -> u64 {
        *self
            .prompt_tokens
            .get_or_init(|| crate::cost::estimate_request_tokens(self.request.body()))
    }

    /// What the request may use of a context window: the prompt and the output limit.
    pub fn context_tokens(&self) -> u64 {
        self.prompt_tokens() + self.request.max_tokens().unwrap_or(0)
    }

    /// Whether the request offers tools (a non-empty `tools`).
    pub fn tools(&self) -> bool {
        self.request
            .raw_field("tools")
            .is_some_and(|raw| !matches!(raw.trim(), "[]" | "null"))
    }

    /// Whether the request holds an image, in any provider's format.
    pub fn images(&self) -> bool {
        let body = self.request.body();
        IMAGE_MARKERS
            .iter()
            .any(|m| memchr::memmem::find(body, m).is_some())
    }

    pub fn stream(&self) -> bool {
        self.request.stream
    }

    /// The system prompt (OpenAI `system`/`developer` messages before the first other
    /// message, Anthropic's `system`, Gemini's `systemInstruction`) and the tools, as the
    /// client wrote them. `None` when the request has neither.
    pub fn prefix(&self) -> Option<Prefix> {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher =
            foldhash::fast::FixedState::with_seed(0x6d72_7072_6566_6978).build_hasher();
        let mut bytes = 0usize;
        // Estimated piece by piece: the pieces are not copied into one string.
        let mut tokens = 0;
        let mut take = |raw: &str| {
            hasher.write(raw.as_bytes());
            hasher.write_u8(0xff);
            bytes += raw.len();
            tokens += crate::cost::estimate_tokens(raw);
        };
        for name in ["system", "systemInstruction", "tools"] {
            if let Some(raw) = self.request.raw_field(name) {
                take(raw);
            }
        }
        if let Some(raw) = self.request.raw_field("messages")
            && let Ok(messages) = serde_json::from_str::<Vec<MessagePeek<'_>>>(raw)
        {
            for m in messages
                .iter()
                .take_while(|m| matches!(m.role, Some("system" | "developer")))
            {
                if let Some(content) = m.content {
                    take(content.get());
                }
            }
        }
        (bytes > 0).then(|| Prefix {
            hash: hasher.finish(),
            tokens,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask_of(body: &str, f: impl FnOnce(&Ask<'_>)) {
        let request = ModelRequest::parse(body.as_bytes().to_vec()).unwrap();
        let headers = HeaderMap::new();
        f(&Ask::new(&headers, &request));
    }

    #[test]
    fn reads_tools_images_and_stream() {
        ask_of(
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            |a| assert!(!a.tools() && !a.images() && !a.stream()),
        );
        ask_of(
            r#"{"model":"m","stream":true,"tools":[{"type":"function","function":{"name":"f"}}],
               "messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
            |a| assert!(a.tools() && a.images() && a.stream()),
        );
        ask_of(r#"{"model":"m","tools":[],"messages":[]}"#, |a| {
            assert!(!a.tools());
        });
        ask_of(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image","source":{}}]}]}"#,
            |a| assert!(a.images()),
        );
    }

    #[test]
    fn the_prefix_is_the_system_prompt_and_tools() {
        let system = "You are a careful assistant. ".repeat(50);
        let one = format!(
            r#"{{"model":"m","messages":[{{"role":"system","content":"{system}"}},{{"role":"user","content":"question one"}}]}}"#
        );
        let two = format!(
            r#"{{"model":"m","messages":[{{"role":"system","content":"{system}"}},{{"role":"user","content":"another question"}}]}}"#
        );
        let other = r#"{"model":"m","messages":[{"role":"system","content":"short"},{"role":"user","content":"question one"}]}"#;
        let (mut a, mut b, mut c) = (None, None, None);
        ask_of(&one, |x| a = x.prefix());
        ask_of(&two, |x| b = x.prefix());
        ask_of(other, |x| c = x.prefix());
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(a, b, "the user turn is not part of the prefix");
        assert_ne!(a.hash, c.hash);
        assert!(a.tokens > 200 && c.tokens < 10, "{a:?} {c:?}");
        ask_of(
            r#"{"model":"m","messages":[{"role":"user","content":"no system"}]}"#,
            |x| assert_eq!(x.prefix(), None),
        );
    }

    #[test]
    fn user_and_context_tokens() {
        ask_of(
            r#"{"model":"m","user":"u-1","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}"#,
            |a| {
                assert_eq!(a.user(), Some("u-1"));
                assert!(a.context_tokens() > 100);
                assert_eq!(a.context_tokens(), a.prompt_tokens() + 100);
            },
        );
    }
}
