//! Equivalent requests share a key; every difference that can change the answer does not.

use super::*;

fn chat(body: &str) -> CacheKey {
    key_of("chat", "gpt-4o", false, body.as_bytes()).expect("a JSON object")
}

#[track_caller]
fn same(a: &str, b: &str) {
    assert_eq!(chat(a), chat(b), "\n{a}\n{b}\nshould share a key");
}

#[track_caller]
fn differ(a: &str, b: &str) {
    assert_ne!(chat(a), chat(b), "\n{a}\n{b}\nshould not share a key");
}

const BASE: &str = r#"{"model":"gpt-4o","temperature":0,"messages":[
    {"role":"system","content":"Be brief."},
    {"role":"user","content":"Name a colour."}]}"#;

#[test]
fn field_order_does_not_matter_at_any_depth() {
    same(
        r#"{"model":"m","temperature":0,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{},"b":{}}}}}]}"#,
        r#"{"tools":[{"function":{"parameters":{"properties":{"b":{},"a":{}},"type":"object"},"name":"f"},"type":"function"}],"temperature":0,"model":"m"}"#,
    );
    same(
        BASE,
        r#"{"messages":[{"content":"Be brief.","role":"system"},
            {"content":"Name a colour.","role":"user"}],"temperature":0,"model":"gpt-4o"}"#,
    );
}

#[test]
fn unicode_forms_do_not_matter() {
    let nfc = r#"{"messages":[{"role":"user","content":"caf\u00e9"}],"caf\u00e9":1}"#;
    let nfd = r#"{"messages":[{"role":"user","content":"cafe\u0301"}],"cafe\u0301":1}"#;
    same(nfc, nfd);
    // The same, written as UTF-8 rather than escapes.
    same(
        "{\"messages\":[{\"role\":\"user\",\"content\":\"caf\u{e9}\"}]}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"cafe\u{301}\"}]}",
    );
}

#[test]
fn whitespace_around_message_text_does_not_matter() {
    // OpenAI and Anthropic string content.
    same(
        r#"{"messages":[{"role":"user","content":"hi"}]}"#,
        r#"{"messages":[{"role":"user","content":"  hi\n\n"}]}"#,
    );
    // Content parts and Anthropic blocks.
    same(
        r#"{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#,
        r#"{"messages":[{"role":"user","content":[{"type":"text","text":"\thi "}]}]}"#,
    );
    // Anthropic's system, as a string and as blocks.
    same(r#"{"system":"Be brief."}"#, r#"{"system":" Be brief.\n"}"#);
    same(
        r#"{"system":[{"type":"text","text":"Be brief."}]}"#,
        r#"{"system":[{"type":"text","text":"Be brief.\n"}]}"#,
    );
    // Gemini's contents and system instruction (both spellings).
    same(
        r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"systemInstruction":{"parts":[{"text":"Be brief."}]}}"#,
        r#"{"contents":[{"role":"user","parts":[{"text":" hi\n"}]}],"systemInstruction":{"parts":[{"text":"Be brief. "}]}}"#,
    );
    same(
        r#"{"system_instruction":{"parts":[{"text":"Be brief."}]}}"#,
        r#"{"system_instruction":{"parts":[{"text":"\nBe brief."}]}}"#,
    );
}

#[test]
fn other_strings_keep_their_whitespace() {
    differ(r#"{"stop":["\n"]}"#, r#"{"stop":[""]}"#);
    differ(r#"{"stop":"\n"}"#, r#"{"stop":""}"#);
    differ(r#"{"input":"hi"}"#, r#"{"input":"hi "}"#);
    differ(
        r#"{"messages":[{"role":"user","content":"hi","name":"a"}]}"#,
        r#"{"messages":[{"role":"user","content":"hi","name":"a "}]}"#,
    );
    // A `text` or `content` field elsewhere is not message text.
    differ(r#"{"text":"a"}"#, r#"{"text":"a "}"#);
    differ(
        r#"{"response_format":{"content":"a"}}"#,
        r#"{"response_format":{"content":"a "}}"#,
    );
}

#[test]
fn number_spelling_does_not_matter() {
    same(r#"{"max_tokens":1}"#, r#"{"max_tokens":1.0}"#);
    same(r#"{"max_tokens":1}"#, r#"{"max_tokens":1e0}"#);
    same(r#"{"top_p":0.5}"#, r#"{"top_p":5e-1}"#);
    same(r#"{"temperature":0}"#, r#"{"temperature":-0.0}"#);
    same(r#"{"max_tokens":1000}"#, r#"{"max_tokens":1e3}"#);
    differ(r#"{"top_p":0.5}"#, r#"{"top_p":0.50001}"#);
    differ(r#"{"max_tokens":1}"#, r#"{"max_tokens":"1"}"#);
}

#[test]
fn fields_that_never_change_the_answer_are_ignored() {
    same(
        BASE,
        r#"{"model":"gpt-4o","temperature":0,"messages":[
            {"role":"system","content":"Be brief."},
            {"role":"user","content":"Name a colour."}],
            "user":"alice","metadata":{"run":"7"},"store":true,"stream":true,
            "service_tier":"flex"}"#,
    );
    // Only at the top: a tool's parameter called `user` is part of the request.
    differ(
        r#"{"tools":[{"function":{"parameters":{"user":1}}}]}"#,
        r#"{"tools":[{"function":{"parameters":{}}}]}"#,
    );
}

#[test]
fn every_semantic_difference_changes_the_key() {
    let variants = [
        BASE.replace("Name a colour.", "Name a color."),
        BASE.replace(r#""temperature":0"#, r#""temperature":0.1"#),
        BASE.replace(
            r#""temperature":0"#,
            r#""temperature":0,"tools":[{"type":"function","function":{"name":"f"}}]"#,
        ),
        BASE.replace(r#""temperature":0"#, r#""temperature":0,"stop":["\n"]"#),
        BASE.replace(r#""temperature":0"#, r#""temperature":0,"seed":1"#),
        BASE.replace(
            r#""temperature":0"#,
            r#""temperature":0,"stream_options":{}"#,
        ),
        BASE.replace("Name a colour.", "Name a  colour."),
        BASE.replace(r#""role":"user""#, r#""role":"assistant""#),
        r#"{"model":"gpt-4o","temperature":0,"messages":[
            {"role":"user","content":"Name a colour."},
            {"role":"system","content":"Be brief."}]}"#
            .to_string(),
    ];
    let base = chat(BASE);
    for variant in &variants {
        assert_ne!(
            chat(variant),
            base,
            "\n{variant}\nshould not share the base's key"
        );
    }
}

#[test]
fn endpoint_model_and_stream_are_part_of_the_key() {
    let key = |kind, model, stream| key_of(kind, model, stream, BASE.as_bytes()).expect("JSON");
    let base = key("chat", "gpt-4o", false);
    assert_eq!(base, chat(BASE));
    assert_ne!(base, key("anthropic", "gpt-4o", false));
    assert_ne!(base, key("chat", "gpt-4o-mini", false));
    assert_ne!(base, key("chat", "gpt-4o", true));
    // Length prefixes: fields cannot run into each other.
    assert_ne!(key("chat", "x", false), key("chatx", "", false));
}

#[test]
fn a_body_that_is_not_a_json_object_has_no_key() {
    let err = key_of("chat", "m", false, b"{").expect_err("not JSON");
    assert!(matches!(err, KeyError::NotJson(_)), "{err:?}");
    let err = key_of("chat", "m", false, b"[1]").expect_err("an array");
    assert!(matches!(err, KeyError::NotAnObject), "{err:?}");
}

#[test]
fn debug_prints_a_short_hex() {
    let shown = format!("{:?}", chat("{}"));
    assert_eq!(shown.len(), "CacheKey()".len() + 16, "{shown}");
    assert!(shown.starts_with("CacheKey("), "{shown}");
}

#[test]
fn deterministic_requests() {
    let yes = [
        r#"{"temperature":0}"#,
        r#"{"temperature":0.0,"top_p":0.9}"#,
        r#"{"temperature":0.7,"seed":42}"#,
        r#"{"seed":0}"#,
        r#"{"generationConfig":{"temperature":0}}"#,
        r#"{"generationConfig":{"seed":7}}"#,
        r#"{"generation_config":{"temperature":0}}"#,
    ];
    let no = [
        r#"{}"#,
        r#"{"temperature":1}"#,
        r#"{"temperature":0.1}"#,
        r#"{"temperature":null}"#,
        r#"{"temperature":0.2,"seed":null}"#,
        r#"{"generationConfig":{"temperature":0.5}}"#,
        r#"{"generationConfig":{"seed":null}}"#,
        r#"{"temperature":"0"}"#,
        "not json",
    ];
    for body in yes {
        assert!(deterministic(body.as_bytes()), "{body} is deterministic");
    }
    for body in no {
        assert!(
            !deterministic(body.as_bytes()),
            "{body} is not deterministic"
        );
    }
}
