//! A token count for text when the provider reports none.
//!
//! A real tokenizer was measured and left out: `tiktoken-rs` 0.12 embeds its BPE tables
//! (o200k_base alone is 3.6 MB of the 7 MB it compiles in), grows a process by 46 MiB
//! once o200k_base is loaded (the sidecar idles at 7 MiB) and takes 0.24 s to load it. It
//! would also be exact only for OpenAI models: Claude and Gemini use other vocabularies.
//! This estimate is a single pass over the bytes with no allocation, tuned to stay at or
//! above OpenAI's o200k_base and cl100k_base counts on prose, code, JSON, numbers,
//! Cyrillic and CJK text (typically 1.0-1.5x; measurements in docs/pricing.md), since an
//! estimate feeds budgets and must not under-count.

/// The kind of the run of bytes being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Run {
    None,
    Lower,
    Upper,
    Digit,
    Space,
    /// ASCII punctuation and symbols.
    Symbol,
    /// Letters of 2-byte UTF-8 scripts (accented Latin, Greek, Cyrillic, Hebrew, Arabic).
    Wide,
}

/// An upper estimate of the tokens `text` makes, for usage a provider did not report.
///
/// Tokenizers cut words into pieces of about four letters, numbers into groups of three
/// digits, punctuation into pairs, and give CJK characters a token or more each; so: a
/// run of ASCII letters (a capital may start it) costs one token per 4 letters, a run of
/// digits one per 3 digits plus one for its separator, a run of ASCII symbols one per 2,
/// a letter of a 2-byte script half a token, a 3-byte character (CJK, kana, Hangul) one
/// and a half, a 4-byte one (emoji) two, and a run of two or more whitespace characters
/// one. Meant for text: base64 and other random strings come out lower than a tokenizer
/// counts them, so callers leave images and audio out.
pub fn estimate_tokens(text: &str) -> u64 {
    estimate_bytes(text.as_bytes())
}

/// [`estimate_tokens`] over UTF-8 bytes (a request body, not copied into a `str`).
fn estimate_bytes(bytes: &[u8]) -> u64 {
    // Counted in quarter tokens, rounded up at the end.
    let mut quarters: u64 = 0;
    let mut run = Run::None;
    let mut len: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let (next, width) = CLASS[usize::from(bytes[i])];
        let continues = match (run, next) {
            // "Hello": a capital starts a word; mixed-script words stay one run.
            (Run::Upper, Run::Lower)
            | (Run::Lower | Run::Upper, Run::Wide)
            | (Run::Wide, Run::Lower) => true,
            (held, next) => held == next && held != Run::None,
        };
        if !continues {
            quarters += close(run, len);
            len = 0;
        }
        run = next;
        // A letter of a 2-byte script weighs two ASCII letters.
        len += if next == Run::Wide { 2 } else { 1 };
        quarters += match (next, width) {
            (Run::None, 3) => 6,
            (Run::None, 4) => 8,
            _ => 0,
        };
        i += usize::from(width);
        if matches!(next, Run::Wide | Run::None) {
            continue;
        }
        // The rest of an ASCII run in one tight loop: each byte of the same kind only
        // lengthens it (this is most of any text, and the branch above is not cheap).
        let rest = bytes[i..]
            .iter()
            .take_while(|b| CLASS[usize::from(**b)].0 == next)
            .count();
        len += rest as u64;
        i += rest;
    }
    quarters += close(run, len);
    quarters.div_ceil(4)
}

/// Each byte's run kind and the width of the character it starts (a table: this runs
/// over every request body under a budget or rate limit).
const CLASS: [(Run, u8); 256] = {
    let mut table = [(Run::Symbol, 1); 256];
    let mut b = 0;
    while b < 256 {
        #[expect(clippy::cast_possible_truncation, reason = "b < 256")]
        let byte = b as u8;
        table[b] = match byte {
            b'a'..=b'z' => (Run::Lower, 1),
            b'A'..=b'Z' => (Run::Upper, 1),
            b'0'..=b'9' => (Run::Digit, 1),
            b' ' | b'\t' | b'\n' | b'\r' => (Run::Space, 1),
            0xC0..=0xDF => (Run::Wide, 2),
            0xE0..=0xEF => (Run::None, 3),
            0xF0..=0xFF => (Run::None, 4),
            // Continuation bytes: never at a char boundary of valid UTF-8.
            0x80..=0xBF => (Run::None, 1),
            _ => (Run::Symbol, 1),
        };
        b += 1;
    }
    table
};

/// Quarter tokens for a finished run of `len` characters (2-byte letters weigh 2).
/// What an inline image (a `data:` URL) is reserved at: above what the providers charge
/// for one image at its largest (OpenAI high detail 1,105-1,445 tokens for 2048 px,
/// Anthropic about 1,600 for 1.15 megapixels, Gemini 258 per tile).
pub const IMAGE_TOKENS: u64 = 1_600;

/// An upper estimate of the prompt tokens of a request body (JSON as the client sent it):
/// [`estimate_tokens`] over the text, with each `data:` URL (an inline image or audio)
/// counted as [`IMAGE_TOKENS`] instead of as its base64. JSON punctuation and field names
/// are counted too, so this stays above what the provider will count.
pub fn estimate_request_tokens(body: &[u8]) -> u64 {
    let mut total = 0;
    let mut rest = body;
    while let Some(at) = memchr::memmem::find(rest, b"\"data:") {
        total += estimate_bytes(&rest[..at]) + IMAGE_TOKENS;
        // Skip to the end of the string: the next unescaped quote.
        let after = &rest[at + 1..];
        let end = memchr::memchr(b'"', after).map_or(after.len(), |e| e + 1);
        rest = &after[end..];
    }
    total + estimate_bytes(rest)
}

fn close(run: Run, len: u64) -> u64 {
    match run {
        Run::Lower | Run::Upper | Run::Wide => len.div_ceil(4) * 4,
        Run::Digit => (len.div_ceil(3) + 1) * 4,
        Run::Symbol => len.div_ceil(2) * 4,
        Run::Space if len > 1 => 4,
        Run::Space | Run::None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_images_count_as_an_image_not_as_their_base64() {
        let base64 = "iVBORw0KGgo".repeat(50_000);
        let with_image = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":[{{"type":"text","text":"What is this?"}},{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{base64}"}}}}]}}]}}"#
        );
        let without = with_image.replace(&format!("data:image/png;base64,{base64}"), "");
        let n = estimate_request_tokens(with_image.as_bytes());
        let text_only = estimate_request_tokens(without.as_bytes());
        // The same but for the image (and the quotes around the URL, a token at most).
        assert!(
            n <= text_only + IMAGE_TOKENS && n + 1 >= text_only + IMAGE_TOKENS,
            "{n} vs {text_only}"
        );
        assert!(n < 1_800, "{n}");
        // An unterminated data URL still ends the count.
        assert!(estimate_request_tokens(b"{\"x\":\"data:abc") >= IMAGE_TOKENS);
    }

    /// Texts with their token counts under OpenAI's o200k_base and cl100k_base, measured
    /// with tiktoken-rs 0.12.1 (docs/pricing.md); the estimate must reach the larger.
    const MEASURED: &[(&str, u64, u64)] = &[
        ("Hello!", 2, 2),
        (
            "The quick brown fox jumps over the lazy dog. A sidecar next to each app pod serves an OpenAI-compatible API on localhost, routes every call to the right provider and exports Prometheus metrics.",
            40,
            39,
        ),
        (
            "fn main() {\n    let table = PriceTable::builtin()?;\n    for (name, price) in table.iter() {\n        println!(\"{name}: {}\", price.base.input);\n    }\n}\n",
            39,
            38,
        ),
        (
            "{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}],\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
            35,
            34,
        ),
        (
            "Invoice 2026-11-22: 3 items, 1299.95 EUR, order #48213, ref 00731-551-2048; totals 17 42 380 9001 123456789.",
            50,
            50,
        ),
        (
            "Um die API zu verwenden, senden Sie eine POST-Anfrage mit Ihrem Schlüssel im Header. Größere Änderungen werden später übernommen.",
            26,
            34,
        ),
        (
            "Считывайте ключ из переменной окружения, никогда не встраивайте его напрямую в код.",
            21,
            34,
        ),
        (
            "下表所列模型价格以百万tokens为单位。我们将根据模型输入和输出的总 token 数进行计量计费。",
            29,
            35,
        ),
        (
            "現在のラインナップとの比較。東京は晴れです。明日は雨が降るでしょう。",
            22,
            40,
        ),
        ("Ship it 🚀🎉 — thanks! 👍", 10, 13),
        (
            "| model | input | output |\n|---|---|---|\n| gpt-4o | $2.50 | $10.00 |\n| claude-sonnet-4-5 | $3 | $15 |\n",
            47,
            48,
        ),
    ];

    #[test]
    fn never_below_measured_tokenizers() {
        for (text, o200k, cl100k) in MEASURED {
            let estimate = estimate_tokens(text);
            let actual = (*o200k).max(*cl100k);
            assert!(estimate >= actual, "{estimate} < {actual} for {text:?}");
            assert!(
                estimate * 4 <= actual * 7,
                "{estimate} is more than 1.75x {actual} for {text:?}"
            );
        }
    }

    #[test]
    fn counts_by_piece() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("   "), 1);
        assert_eq!(estimate_tokens("word"), 1);
        assert_eq!(estimate_tokens("words"), 2);
        assert_eq!(estimate_tokens("Hello world"), 4, "two 5-letter words");
        assert_eq!(
            estimate_tokens("12345"),
            3,
            "two groups of digits and a separator"
        );
        assert_eq!(estimate_tokens("!?"), 1, "symbols go in pairs");
        assert_eq!(estimate_tokens("東京"), 3, "1.5 tokens per CJK character");
        assert_eq!(estimate_tokens("🚀"), 2);
        assert_eq!(
            estimate_tokens("Köln"),
            2,
            "a 2-byte letter counts twice in its word"
        );
    }

    #[test]
    fn long_text_scales_linearly() {
        let one = estimate_tokens("The quick brown fox jumps over the lazy dog. ");
        let many = estimate_tokens(&"The quick brown fox jumps over the lazy dog. ".repeat(1000));
        assert_eq!(many, one * 1000);
    }
}
