//! Every usage shape read from the providers' documented examples (testdata/, see its
//! README), plus the edge cases the providers' schemas allow.

use serde_json::{Value, json};

use super::*;
use crate::cost::{PriceTable, Vendor, cost};

fn fixture(name: &str) -> Value {
    let path = format!("{}/src/cost/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The usage object of a fixture response.
fn usage_of(name: &str, format: UsageFormat) -> (TokenUsage, Value) {
    let response = fixture(name);
    let key = match format {
        UsageFormat::Gemini => "usageMetadata",
        _ => "usage",
    };
    let raw = response[key].clone();
    let usage = TokenUsage::from_json(format, &raw).unwrap_or_else(|e| panic!("{name}: {e}"));
    (usage, raw)
}

fn tokens(raw: &Value, pointer: &str) -> u64 {
    raw.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

#[test]
fn openai_chat_documented_example() {
    let (usage, _) = usage_of("openai_chat_response.json", UsageFormat::OpenAiChat);
    assert_eq!(
        usage,
        TokenUsage {
            input: 19,
            output: 10,
            ..Default::default()
        }
    );
}

#[test]
fn openai_chat_cached_tokens_are_inside_prompt_tokens() {
    let (usage, _) = usage_of("openai_chat_cached_reasoning.json", UsageFormat::OpenAiChat);
    assert_eq!(
        usage,
        TokenUsage {
            input: 86,
            cached_input: 1_920,
            output: 276,
            reasoning: 1_024,
            ..Default::default()
        }
    );
}

#[test]
fn openai_chat_cache_writes_are_inside_prompt_tokens() {
    let (usage, _) = usage_of("openai_chat_cache_write.json", UsageFormat::OpenAiChat);
    assert_eq!(
        usage,
        TokenUsage {
            input: 500,
            cached_input: 400,
            cache_write: 100,
            output: 500,
            ..Default::default()
        }
    );
}

#[test]
fn azure_openai_uses_the_chat_shape() {
    let (usage, _) = usage_of(
        "azure_chat_completion_response.json",
        UsageFormat::OpenAiChat,
    );
    assert_eq!(
        usage,
        TokenUsage {
            input: 12,
            output: 7,
            ..Default::default()
        }
    );
}

#[test]
fn deepseek_cache_hits_have_their_own_field() {
    let (usage, _) = usage_of("deepseek_chat_cache.json", UsageFormat::OpenAiChat);
    assert_eq!(
        usage,
        TokenUsage {
            input: 176,
            cached_input: 1_024,
            output: 50,
            reasoning: 250,
            ..Default::default()
        }
    );
}

#[test]
fn openai_responses_documented_reasoning_example() {
    let (usage, _) = usage_of(
        "openai_responses_reasoning.json",
        UsageFormat::OpenAiResponses,
    );
    assert_eq!(
        usage,
        TokenUsage {
            input: 81,
            output: 203,
            reasoning: 832,
            ..Default::default()
        }
    );
}

#[test]
fn openai_responses_cached_tokens_are_inside_input_tokens() {
    let (usage, _) = usage_of("openai_responses_cached.json", UsageFormat::OpenAiResponses);
    assert_eq!(
        usage,
        TokenUsage {
            input: 129,
            cached_input: 11_904,
            output: 44,
            ..Default::default()
        }
    );
}

#[test]
fn anthropic_cache_fields_are_outside_input_tokens() {
    // The documented 1-hour-TTL example: writes split 148 (5 min) + 100 (1 h).
    let (usage, _) = usage_of("anthropic_usage_cache.json", UsageFormat::Anthropic);
    assert_eq!(
        usage,
        TokenUsage {
            input: 2_048,
            cached_input: 1_800,
            cache_write: 148,
            cache_write_1h: 100,
            output: 503,
            ..Default::default()
        }
    );
    assert_eq!(usage.prompt_tokens(), 4_096, "the documented total input");
}

#[test]
fn anthropic_documented_full_shape() {
    // cache_creation reports 0 + 0 but cache_creation_input_tokens 2051: the writes are
    // billed anyway, at the default 5-minute rate.
    let (usage, _) = usage_of("anthropic_usage_full_shape.json", UsageFormat::Anthropic);
    assert_eq!(
        usage,
        TokenUsage {
            input: 2_095,
            cached_input: 2_051,
            cache_write: 2_051,
            output: 503,
            ..Default::default()
        }
    );
    let (plain, _) = usage_of("anthropic_text_response.json", UsageFormat::Anthropic);
    assert_eq!(
        plain,
        TokenUsage {
            input: 12,
            output: 6,
            ..Default::default()
        }
    );
}

#[test]
fn anthropic_thinking_is_split_from_output() {
    let usage = TokenUsage::from_json(
        UsageFormat::Anthropic,
        &json!({"input_tokens": 10, "output_tokens": 900, "output_tokens_details": {"thinking_tokens": 700}}),
    )
    .unwrap();
    assert_eq!((usage.output, usage.reasoning), (200, 700));
}

#[test]
fn anthropic_stream_usage_merges_start_and_cumulative_deltas() {
    let path = format!(
        "{}/src/cost/testdata/anthropic_stream_cache_usage.sse",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut merged = AnthropicUsage::default();
    let mut events = 0;
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let event: Value = serde_json::from_str(data).unwrap();
        let usage = match event["type"].as_str() {
            Some("message_start") => &event["message"]["usage"],
            Some("message_delta") => &event["usage"],
            _ => continue,
        };
        merged.merge(&AnthropicUsage::deserialize(usage).unwrap());
        events += 1;
    }
    assert!(events >= 2);
    assert_eq!(
        TokenUsage::from(merged),
        TokenUsage {
            input: 2_048,
            cached_input: 1_800,
            cache_write: 248,
            output: 503,
            ..Default::default()
        }
    );
}

#[test]
fn anthropic_merge_keeps_what_a_later_event_leaves_out() {
    let mut start: AnthropicUsage = serde_json::from_value(
        json!({"input_tokens": 25, "cache_read_input_tokens": 5, "output_tokens": 1}),
    )
    .unwrap();
    let delta: AnthropicUsage = serde_json::from_value(json!({"output_tokens": 15})).unwrap();
    start.merge(&delta);
    let usage = TokenUsage::from(start);
    assert_eq!(
        (usage.input, usage.cached_input, usage.output),
        (25, 5, 15),
        "output replaced (cumulative), input kept"
    );
}

#[test]
fn gemini_prompt_includes_cached_and_thoughts_are_output() {
    let (usage, _) = usage_of("gemini_usage_cached_thoughts.json", UsageFormat::Gemini);
    assert_eq!(
        usage,
        TokenUsage {
            input: 3_808,
            cached_input: 8_192,
            output: 50,
            reasoning: 300,
            ..Default::default()
        }
    );
    let (calls, _) = usage_of("gemini_function_call_response.json", UsageFormat::Gemini);
    assert_eq!((calls.input, calls.output, calls.reasoning), (83, 14, 104));
    let (text, _) = usage_of("gemini_text_response.json", UsageFormat::Gemini);
    assert_eq!((text.input, text.output), (14, 10));
}

#[test]
fn gemini_tool_use_prompt_is_more_input() {
    let usage = TokenUsage::from_json(
        UsageFormat::Gemini,
        &json!({"promptTokenCount": 100, "toolUsePromptTokenCount": 40, "candidatesTokenCount": 5}),
    )
    .unwrap();
    assert_eq!((usage.input, usage.prompt_tokens()), (140, 140));
}

#[test]
fn parts_add_up_to_the_providers_totals() {
    for (name, format, prompt, completion) in [
        (
            "openai_chat_response.json",
            UsageFormat::OpenAiChat,
            "/prompt_tokens",
            "/completion_tokens",
        ),
        (
            "openai_chat_cached_reasoning.json",
            UsageFormat::OpenAiChat,
            "/prompt_tokens",
            "/completion_tokens",
        ),
        (
            "openai_chat_cache_write.json",
            UsageFormat::OpenAiChat,
            "/prompt_tokens",
            "/completion_tokens",
        ),
        (
            "deepseek_chat_cache.json",
            UsageFormat::OpenAiChat,
            "/prompt_tokens",
            "/completion_tokens",
        ),
        (
            "openai_responses_reasoning.json",
            UsageFormat::OpenAiResponses,
            "/input_tokens",
            "/output_tokens",
        ),
        (
            "openai_responses_cached.json",
            UsageFormat::OpenAiResponses,
            "/input_tokens",
            "/output_tokens",
        ),
        (
            "anthropic_usage_cache.json",
            UsageFormat::Anthropic,
            "",
            "/output_tokens",
        ),
        (
            "gemini_usage_cached_thoughts.json",
            UsageFormat::Gemini,
            "/promptTokenCount",
            "",
        ),
    ] {
        let (usage, raw) = usage_of(name, format);
        let expected_prompt = match format {
            UsageFormat::Anthropic => {
                tokens(&raw, "/input_tokens")
                    + tokens(&raw, "/cache_read_input_tokens")
                    + tokens(&raw, "/cache_creation_input_tokens")
            }
            _ => tokens(&raw, prompt),
        };
        let expected_output = match format {
            UsageFormat::Gemini => {
                tokens(&raw, "/candidatesTokenCount") + tokens(&raw, "/thoughtsTokenCount")
            }
            _ => tokens(&raw, completion),
        };
        assert_eq!(usage.prompt_tokens(), expected_prompt, "{name} prompt");
        assert_eq!(usage.output_tokens(), expected_output, "{name} output");
        let total = tokens(&raw, "/total_tokens").max(tokens(&raw, "/totalTokenCount"));
        if total > 0 {
            assert_eq!(
                usage.prompt_tokens() + usage.output_tokens(),
                total,
                "{name} total"
            );
        }
    }
}

#[test]
fn missing_and_null_counts_are_zero() {
    let usage = TokenUsage::from_json(
        UsageFormat::OpenAiChat,
        &json!({"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
                "prompt_tokens_details": null,
                "completion_tokens_details": {"reasoning_tokens": null}}),
    )
    .unwrap();
    assert_eq!((usage.input, usage.output), (5, 3));
    for format in [
        UsageFormat::OpenAiChat,
        UsageFormat::OpenAiResponses,
        UsageFormat::Anthropic,
        UsageFormat::Gemini,
    ] {
        assert_eq!(
            TokenUsage::from_json(format, &json!({})).unwrap(),
            TokenUsage::default()
        );
    }
}

#[test]
fn contradictory_counts_never_wrap() {
    let usage = TokenUsage::from_json(
        UsageFormat::OpenAiChat,
        &json!({"prompt_tokens": 10, "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 50},
                "completion_tokens_details": {"reasoning_tokens": 9}}),
    )
    .unwrap();
    assert_eq!(
        usage,
        TokenUsage {
            input: 0,
            cached_input: 50,
            output: 0,
            reasoning: 9,
            ..Default::default()
        }
    );
}

#[test]
fn malformed_counts_are_errors() {
    for bad in [
        json!({"prompt_tokens": -1}),
        json!({"prompt_tokens": 1.5}),
        json!({"prompt_tokens": "12"}),
        json!([1, 2]),
    ] {
        assert!(
            TokenUsage::from_json(UsageFormat::OpenAiChat, &bad).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn documented_examples_cost_what_the_price_lists_say() {
    let table = PriceTable::builtin().unwrap();
    let priced = |name: &str, format, vendor, model: &str| {
        let (usage, _) = usage_of(name, format);
        cost(&usage, table.lookup(vendor, model).unwrap()).nano_usd
    };
    // 2048 × $3 + 1800 × $0.30 + 148 × $3.75 + 100 × $6 + 503 × $15, per million.
    assert_eq!(
        priced(
            "anthropic_usage_cache.json",
            UsageFormat::Anthropic,
            Vendor::Anthropic,
            "claude-sonnet-4-5-20250929"
        ),
        15_384_000
    );
    // 3808 × $1.25 + 8192 × $0.125 + (50 + 300) × $10, per million.
    assert_eq!(
        priced(
            "gemini_usage_cached_thoughts.json",
            UsageFormat::Gemini,
            Vendor::Gemini,
            "gemini-2.5-pro"
        ),
        9_284_000
    );
    // 86 × $1.10 + 1920 × $0.275 + 1300 × $4.40, per million.
    assert_eq!(
        priced(
            "openai_chat_cached_reasoning.json",
            UsageFormat::OpenAiChat,
            Vendor::OpenAi,
            "o4-mini-2025-04-16"
        ),
        94_600 + 528_000 + 5_720_000
    );
    // 176 × $0.30 + 1024 × $0.006 + 300 × $1.20, per million (DeepSeek's peak rates).
    assert_eq!(
        priced(
            "deepseek_chat_cache.json",
            UsageFormat::OpenAiChat,
            Vendor::DeepSeek,
            "deepseek-flash"
        ),
        52_800 + 6_144 + 360_000
    );
}
