//! The built-in table, the lookup rules and the checks that keep typos out of it.

use modelroute_crds::v1alpha1::ProviderKind;

use super::*;
use crate::cost::Rate;

fn table() -> &'static PriceTable {
    PriceTable::builtin().unwrap()
}

fn usd(usd_per_million: f64) -> Rate {
    Rate::from_usd_per_million(usd_per_million).unwrap()
}

fn resolved(vendor: Vendor, model: &str) -> Option<&'static str> {
    table().resolve(vendor, model).map(|(name, _)| name)
}

#[test]
fn builtin_table_parses_and_lists_every_vendor() {
    for vendor in Vendor::ALL {
        let prices = table()
            .vendor(vendor)
            .unwrap_or_else(|| panic!("{vendor} missing"));
        assert!(prices.models().count() > 0, "{vendor} lists no model");
        assert!(prices.source.starts_with("https://"), "{vendor}");
        assert!(is_date(&prices.taken), "{vendor}: {}", prices.taken);
    }
}

#[test]
fn embedding_models_cost_their_input_only() {
    let price = table()
        .vendor(Vendor::OpenAi)
        .unwrap()
        .models()
        .find(|(m, _)| *m == "text-embedding-3-small")
        .map(|(_, p)| p.clone())
        .unwrap();
    // $0.02 per million input tokens: a million tokens embedded cost 0.02 USD.
    let usage = crate::cost::TokenUsage::from_json(
        crate::cost::UsageFormat::OpenAiChat,
        &serde_json::json!({"prompt_tokens": 1_000_000, "total_tokens": 1_000_000}),
    )
    .unwrap();
    let cost = crate::cost::cost(&usage, &price);
    assert_eq!(cost.nano_usd, 20_000_000);
    assert!(!cost.estimated);
}

#[test]
fn every_builtin_price_is_sane() {
    for vendor in Vendor::ALL {
        for (model, price) in table().vendor(vendor).unwrap().models() {
            let bands = std::iter::once(&price.base).chain(price.tiers.iter().map(|t| &t.rates));
            for rates in bands {
                assert!(rates.input > Rate::ZERO, "{vendor}/{model}");
                let embedding = model.contains("embedding");
                assert!(
                    rates.output >= rates.input || (embedding && rates.output == Rate::ZERO),
                    "{vendor}/{model}: output < input"
                );
                assert!(
                    rates.cached_input <= rates.input,
                    "{vendor}/{model}: cached > input"
                );
                assert!(
                    rates.cache_write >= rates.input,
                    "{vendor}/{model}: write < input"
                );
                assert!(
                    rates.cache_write_1h >= rates.cache_write,
                    "{vendor}/{model}"
                );
                assert!(check_rates(rates).is_empty(), "{vendor}/{model}");
            }
            for pair in price.tiers.windows(2) {
                assert!(
                    pair[0].above < pair[1].above,
                    "{vendor}/{model}: tiers unsorted"
                );
            }
        }
    }
}

#[test]
fn builtin_prices_as_listed() {
    let gpt4o = table().lookup(Vendor::OpenAi, "gpt-4o").unwrap();
    assert_eq!(gpt4o.base.input, usd(2.50));
    assert_eq!(gpt4o.base.cached_input, usd(1.25));
    assert_eq!(
        gpt4o.base.cache_write,
        usd(2.50),
        "no write fee: the input rate"
    );
    assert_eq!(gpt4o.base.output, usd(10.0));

    let opus = table()
        .lookup(Vendor::Anthropic, "claude-opus-4-5")
        .unwrap();
    assert_eq!(opus.base.cache_write, usd(6.25));
    assert_eq!(opus.base.cache_write_1h, usd(10.0));
    assert_eq!(opus.base.cached_input, usd(0.50));

    let pro = table().lookup(Vendor::Gemini, "gemini-2.5-pro").unwrap();
    assert_eq!(pro.rates_for(200_000).input, usd(1.25));
    assert_eq!(pro.rates_for(200_001).input, usd(2.50));
    assert_eq!(pro.rates_for(200_001).output, usd(15.0));
    assert_eq!(pro.rates_for(200_001).cached_input, usd(0.25));

    let haiku = table()
        .lookup(Vendor::Anthropic, "claude-haiku-5-5")
        .unwrap();
    assert_eq!(haiku.rates_for(100_001).output, usd(2.50));
}

#[test]
fn exact_names_win_over_the_snapshot_rule() {
    // The first gpt-4o snapshot has its own (older, higher) price.
    assert_eq!(
        resolved(Vendor::OpenAi, "gpt-4o-2024-05-13"),
        Some("gpt-4o-2024-05-13")
    );
    assert_ne!(
        table().lookup(Vendor::OpenAi, "gpt-4o-2024-05-13"),
        table().lookup(Vendor::OpenAi, "gpt-4o")
    );
}

#[test]
fn dated_snapshots_find_their_model() {
    for (vendor, snapshot, model) in [
        (Vendor::OpenAi, "gpt-4o-2024-08-06", "gpt-4o"),
        (Vendor::OpenAi, "gpt-4o-2024-11-20", "gpt-4o"),
        (Vendor::OpenAi, "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        (Vendor::OpenAi, "gpt-4.1-nano-2025-04-14", "gpt-4.1-nano"),
        (Vendor::OpenAi, "o4-mini-2025-04-16", "o4-mini"),
        (Vendor::OpenAi, "gpt-5-2025-08-07", "gpt-5"),
        (Vendor::OpenAi, "gpt-5.4-2026-03-05", "gpt-5.4"),
        (
            Vendor::Anthropic,
            "claude-sonnet-4-5-20250929",
            "claude-sonnet-4-5",
        ),
        (
            Vendor::Anthropic,
            "claude-haiku-4-5-20251001",
            "claude-haiku-4-5",
        ),
        (
            Vendor::Anthropic,
            "claude-opus-4-5-20251101",
            "claude-opus-4-5",
        ),
        (
            Vendor::Gemini,
            "gemini-2.5-flash-lite-001",
            "gemini-2.5-flash-lite",
        ),
    ] {
        assert_eq!(resolved(vendor, snapshot), Some(model), "{snapshot}");
    }
}

#[test]
fn documented_aliases_find_their_model() {
    assert_eq!(
        resolved(Vendor::DeepSeek, "deepseek-v4-flash"),
        Some("deepseek-flash")
    );
}

#[test]
fn near_misses_have_no_price() {
    for (vendor, model) in [
        (Vendor::OpenAi, "gpt-4o-mini-foo"),
        (Vendor::OpenAi, "GPT-4O"),
        (Vendor::OpenAi, "gpt-4o-2024-08"),
        (Vendor::OpenAi, "gpt-4o-20240806"),
        (Vendor::OpenAi, "gpt-4o-2024-08-06x"),
        (Vendor::OpenAi, "-2024-08-06"),
        (Vendor::OpenAi, "ft:gpt-4o-mini-2024-07-18:org::abc"),
        (Vendor::OpenAi, "gpt-6-sol"),
        (Vendor::Anthropic, "claude-sonnet-4"),
        (Vendor::Anthropic, "claude-sonnet-4-5-2025-09-29"),
        (Vendor::Anthropic, "claude-3-7-sonnet-20250219"),
        (Vendor::Gemini, "gemini-2.0-flash"),
        (Vendor::Gemini, "gemini-2.5-pro-preview-06-05"),
        (Vendor::Mistral, "mistral-large-latest"),
        (Vendor::DeepSeek, "deepseek-chat"),
        (Vendor::OpenAi, ""),
    ] {
        assert_eq!(resolved(vendor, model), None, "{vendor}/{model}");
    }
}

#[test]
fn prices_belong_to_their_vendor() {
    assert!(table().lookup(Vendor::OpenAi, "gpt-4o").is_some());
    assert!(table().lookup(Vendor::Anthropic, "gpt-4o").is_none());
    assert!(
        table()
            .lookup(Vendor::DeepSeek, "claude-sonnet-4-5")
            .is_none()
    );
    assert_eq!(resolved(Vendor::OpenAi, "claude-sonnet-4-5-20250929"), None);
}

#[test]
fn vendor_follows_kind_then_host() {
    use ProviderKind::*;
    for (kind, base_url, vendor) in [
        (OpenAi, None, Some(Vendor::OpenAi)),
        (
            OpenAi,
            Some("https://api.openai.com/v1"),
            Some(Vendor::OpenAi),
        ),
        (
            OpenAi,
            Some("https://api.deepseek.com/v1"),
            Some(Vendor::DeepSeek),
        ),
        (
            OpenAi,
            Some("https://api.deepseek.com"),
            Some(Vendor::DeepSeek),
        ),
        (
            OpenAi,
            Some("https://api.mistral.ai/v1"),
            Some(Vendor::Mistral),
        ),
        (OpenAi, Some("http://localhost:11434/v1"), None),
        (OpenAi, Some("http://vllm.ml.svc:8000/v1"), None),
        (OpenAi, Some("https://openrouter.ai/api/v1"), None),
        (
            AzureOpenAi,
            Some("https://my-resource.openai.azure.com"),
            Some(Vendor::OpenAi),
        ),
        (Anthropic, None, Some(Vendor::Anthropic)),
        (
            Anthropic,
            Some("https://api.anthropic.com/v1"),
            Some(Vendor::Anthropic),
        ),
        (
            Anthropic,
            Some("https://api.deepseek.com/anthropic"),
            Some(Vendor::DeepSeek),
        ),
        (
            Anthropic,
            Some("https://llm-proxy.internal/anthropic"),
            None,
        ),
        (Gemini, None, Some(Vendor::Gemini)),
        (
            Gemini,
            Some("https://generativelanguage.googleapis.com/v1beta"),
            Some(Vendor::Gemini),
        ),
        (Mock, None, None),
    ] {
        assert_eq!(Vendor::of(kind, base_url), vendor, "{kind:?} {base_url:?}");
    }
}

#[test]
fn hosts_are_cut_from_urls() {
    assert_eq!(host_of("https://api.openai.com/v1"), "api.openai.com");
    assert_eq!(host_of("http://localhost:8080"), "localhost");
    assert_eq!(host_of("https://api.mistral.ai?x=1"), "api.mistral.ai");
    assert_eq!(host_of("api.deepseek.com/v1"), "api.deepseek.com");
}

const VALID: &str = "
vendors:
  openai:
    source: https://example.com/pricing
    taken: 2026-11-22
    models:
      m: {input: 1, cachedInput: 0.5, output: 2}
";

#[test]
fn a_small_table_parses_with_defaults() {
    let table = PriceTable::parse(VALID).unwrap();
    let m = table.lookup(Vendor::OpenAi, "m").unwrap();
    assert_eq!(m.base.cached_input, usd(0.5));
    assert_eq!(m.base.cache_write, usd(1.0), "defaults to input");
    assert_eq!(m.base.cache_write_1h, usd(1.0), "defaults to cacheWrite");
    assert!(m.tiers.is_empty());
    assert!(table.vendor(Vendor::Anthropic).is_none());
}

#[test]
fn problems_name_the_field() {
    let with = |models: &str| {
        format!(
            "vendors:\n  openai:\n    source: https://example.com\n    taken: 2026-11-22\n    models:\n{models}"
        )
    };
    for (yaml, expected) in [
        (with("      m: {input: 2, cachedInput: 3, output: 4}"), "models.m: cachedInput $3/MTok is above input $2/MTok"),
        (with("      m: {input: 2, output: 1}"), "models.m: output $1/MTok is below input $2/MTok"),
        (with("      m: {input: 2, cacheWrite: 1, output: 4}"), "models.m: cacheWrite $1/MTok is below input"),
        (with("      m: {input: 2, cacheWrite: 3, cacheWrite1h: 2.5, output: 4}"), "cacheWrite1h $2.5/MTok is below cacheWrite"),
        (with("      m: {input: 0, output: 4}"), "models.m: input must be above 0"),
        (with("      m: {input: -1, output: 4}"), "models.m.input: -1 is not a price"),
        (with("      m: {input: 0.0000001, output: 4}"), "models.m.input: 0.0000001 has more than 6 decimals"),
        (with("      m: {input: 1, output: 2, tiers: [{above: 10, input: 2, output: 4}, {above: 5, input: 3, output: 6}]}"), "models.m.tiers[1].above: 5 must be above the previous band's 10"),
        (with("      m: {input: 1, output: 2, tiers: [{above: 10, input: 0.5, output: 4}]}"), "models.m.tiers[0]: a long-prompt band must not be cheaper"),
        (with("      m: {input: 1, output: 2, aliases: [n]}\n      n: {input: 1, output: 2}"), "`n` is both a model and an alias of `m`"),
        (with("      m: {input: 1, output: 2, aliases: [a]}\n      n: {input: 1, output: 2, aliases: [a]}"), "models.n.aliases: `a` is listed twice"),
        ("vendors:\n  acme:\n    source: https://a.example\n    taken: 2026-11-22\n    models: {}".into(), "vendors.acme: unknown vendor (known: openai, anthropic, gemini, mistral, deepseek)"),
        ("vendors:\n  openai:\n    source: http://a.example\n    taken: 2026-11-22\n    models: {}".into(), "vendors.openai.source: `http://a.example` is not an https URL"),
        ("vendors:\n  openai:\n    source: https://a.example\n    taken: 22/11/2026\n    models: {}".into(), "vendors.openai.taken: `22/11/2026` is not a date"),
        (with("      m: {input: 1, output: 2, cached: 0.5}"), "cached"),
    ] {
        let err = PriceTable::parse(&yaml).expect_err(&yaml);
        assert!(
            err.problems.iter().any(|p| p.contains(expected)),
            "expected `{expected}` in {:?}",
            err.problems
        );
    }
}

#[test]
fn dates_are_checked() {
    assert!(is_date("2026-11-22"));
    for bad in [
        "2026-13-01",
        "2026-00-10",
        "2026-11-32",
        "2026-1-22",
        "26-11-22",
        "2026/11/22",
    ] {
        assert!(!is_date(bad), "{bad}");
    }
}
