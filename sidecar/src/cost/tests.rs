//! Cost arithmetic: each kind of token at its rate, bands, rounding, money formatting.

use super::*;

fn usd(usd_per_million: f64) -> Rate {
    Rate::from_usd_per_million(usd_per_million).unwrap()
}

/// Claude Sonnet 4.5's rates, with its band above 200K prompt tokens.
fn sonnet() -> Price {
    Price {
        base: Rates {
            input: usd(3.0),
            cached_input: usd(0.30),
            cache_write: usd(3.75),
            cache_write_1h: usd(6.0),
            output: usd(15.0),
        },
        tiers: vec![Tier {
            above: 200_000,
            rates: Rates {
                input: usd(6.0),
                cached_input: usd(0.60),
                cache_write: usd(7.50),
                cache_write_1h: usd(12.0),
                output: usd(22.50),
            },
        }],
    }
}

fn flat(input: f64, cached: f64, output: f64) -> Price {
    Price::flat(Rates {
        input: usd(input),
        cached_input: usd(cached),
        cache_write: usd(input),
        cache_write_1h: usd(input),
        output: usd(output),
    })
}

#[test]
fn rates_are_exact_integers() {
    assert_eq!(usd(2.5).pico_usd_per_token(), 2_500_000);
    assert_eq!(usd(0.075).pico_usd_per_token(), 75_000);
    assert_eq!(usd(0.003625).pico_usd_per_token(), 3_625);
    assert_eq!(usd(0.0).pico_usd_per_token(), 0);
    assert_eq!(usd(75.0).pico_usd_per_token(), 75_000_000);
    assert_eq!(usd(2.5).to_string(), "$2.5/MTok");
    assert_eq!(usd(0.003625).to_string(), "$0.003625/MTok");
    assert_eq!(usd(15.0).to_string(), "$15/MTok");
}

#[test]
fn rates_refuse_nonsense() {
    for bad in [-1.0, f64::NAN, f64::INFINITY, 1e9] {
        assert!(
            matches!(
                Rate::from_usd_per_million(bad),
                Err(RateError::OutOfRange(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(
        Rate::from_usd_per_million(0.0000001),
        Err(RateError::TooPrecise(0.0000001))
    );
}

#[test]
fn a_million_of_each_costs_the_listed_price() {
    let price = Price::flat(sonnet().base);
    let per_million = |usage: TokenUsage| cost(&usage, &price).nano_usd;
    let m = 1_000_000;
    assert_eq!(
        per_million(TokenUsage {
            input: m,
            ..Default::default()
        }),
        3_000_000_000
    );
    assert_eq!(
        per_million(TokenUsage {
            cached_input: m,
            ..Default::default()
        }),
        300_000_000
    );
    assert_eq!(
        per_million(TokenUsage {
            cache_write: m,
            ..Default::default()
        }),
        3_750_000_000
    );
    assert_eq!(
        per_million(TokenUsage {
            cache_write_1h: m,
            ..Default::default()
        }),
        6_000_000_000
    );
    assert_eq!(
        per_million(TokenUsage {
            output: m,
            ..Default::default()
        }),
        15_000_000_000
    );
}

#[test]
fn cached_input_is_billed_once_at_the_cached_rate() {
    // gpt-4o: 2006 prompt tokens of which 1920 cached; 300 out. $2.5/MTok is 2.5 µUSD a
    // token.
    let usage = TokenUsage {
        input: 86,
        cached_input: 1_920,
        output: 300,
        ..Default::default()
    };
    // 86 × 2.5 + 1920 × 1.25 + 300 × 10 = 215 + 2400 + 3000 = 5615 µUSD
    assert_eq!(cost(&usage, &flat(2.5, 1.25, 10.0)).nano_usd, 5_615_000);
}

#[test]
fn cache_writes_are_billed_at_their_lifetime_rate() {
    // At Sonnet 4.5's rates: writes for 5 minutes cost 1.25x input, for an hour 2x.
    let usage = TokenUsage {
        input: 1_000,
        cached_input: 2_000,
        cache_write: 300,
        cache_write_1h: 400,
        output: 500,
        ..Default::default()
    };
    // 1000 × 3 + 2000 × 0.3 + 300 × 3.75 + 400 × 6 + 500 × 15 µUSD
    // = 3000 + 600 + 1125 + 2400 + 7500 = 14625 µUSD
    assert_eq!(cost(&usage, &sonnet()).nano_usd, 14_625_000);
}

#[test]
fn reasoning_is_billed_at_the_output_rate() {
    let price = flat(1.10, 0.275, 4.40);
    let visible = TokenUsage {
        output: 1_035,
        ..Default::default()
    };
    let split = TokenUsage {
        output: 203,
        reasoning: 832,
        ..Default::default()
    };
    assert_eq!(cost(&visible, &price), cost(&split, &price));
    assert_eq!(cost(&split, &price).nano_usd, 4_554_000);
}

#[test]
fn the_band_follows_the_whole_prompt_and_prices_the_whole_request() {
    let price = sonnet();
    let at = |input: u64, cached_input: u64| {
        cost(
            &TokenUsage {
                input,
                cached_input,
                output: 1_000,
                ..Default::default()
            },
            &price,
        )
        .nano_usd
    };
    // Exactly 200K is still the base band ("≤ 200K"): 200000 × 3 + 1000 × 15 µUSD.
    assert_eq!(at(200_000, 0), 615_000_000);
    // One more token moves every token, output included, to the long band.
    assert_eq!(at(200_001, 0), 1_200_006_000 + 22_500_000);
    // Cache reads count toward the prompt's size: 150K + 50K001 cached is above 200K.
    assert_eq!(at(150_000, 50_001), 900_000_000 + 30_000_600 + 22_500_000);
    assert_eq!(price.rates_for(200_000), &price.base);
    assert_eq!(price.rates_for(200_001), &price.tiers[0].rates);
}

#[test]
fn several_bands_pick_the_highest_threshold_passed() {
    let mut price = flat(1.0, 0.1, 2.0);
    for (above, input) in [(100, 2.0), (1_000, 3.0)] {
        price.tiers.push(Tier {
            above,
            rates: Rates {
                input: usd(input),
                ..price.base
            },
        });
    }
    assert_eq!(price.rates_for(100).input, usd(1.0));
    assert_eq!(price.rates_for(101).input, usd(2.0));
    assert_eq!(price.rates_for(1_000).input, usd(2.0));
    assert_eq!(price.rates_for(5_000).input, usd(3.0));
}

#[test]
fn rounds_up_once_so_spend_is_never_under_counted() {
    // At $0.0005/MTok one token costs 500 pico-USD, half a nano-USD: billed as 1.
    let price = flat(0.0005, 0.0001, 0.0003);
    let one = TokenUsage {
        input: 1,
        ..Default::default()
    };
    assert_eq!(cost(&one, &price).nano_usd, 1);
    // Parts are summed in pico-USD before the one rounding: 500 + 100 + 300 = 900 pico
    // is 1 nano-USD, where rounding each part would bill 3.
    let three = TokenUsage {
        input: 1,
        cached_input: 1,
        output: 1,
        ..Default::default()
    };
    assert_eq!(cost(&three, &price).nano_usd, 1);
    // An exact amount is not rounded: 20 × 500 pico = 10 nano.
    let twenty = TokenUsage {
        input: 20,
        ..Default::default()
    };
    assert_eq!(cost(&twenty, &price).nano_usd, 10);
    assert_eq!(cost(&TokenUsage::default(), &price), Cost::ZERO);
}

#[test]
fn huge_counts_saturate_instead_of_wrapping() {
    let usage = TokenUsage {
        input: u64::MAX,
        output: u64::MAX,
        ..Default::default()
    };
    assert_eq!(cost(&usage, &sonnet()).nano_usd, u64::MAX);
}

#[test]
fn estimated_usage_gives_an_estimated_cost() {
    let price = flat(2.5, 1.25, 10.0);
    let estimated = cost(&TokenUsage::estimated(1_000, 100), &price);
    assert!(estimated.estimated);
    assert_eq!(estimated.nano_usd, 3_500_000);
    let reported = cost(
        &TokenUsage {
            input: 1_000,
            output: 100,
            ..Default::default()
        },
        &price,
    );
    assert!(!reported.estimated);
    assert!(
        (estimated + reported).estimated,
        "a sum with an estimate is estimated"
    );
}

#[test]
fn costs_add_exactly_and_print_exactly() {
    let one = Cost {
        nano_usd: 1,
        estimated: false,
    };
    let total: Cost = std::iter::repeat_n(one, 1_000_000).sum();
    assert_eq!(total.nano_usd, 1_000_000);
    assert_eq!(total.to_string(), "$0.001");
    let mut c = Cost::ZERO;
    c += Cost {
        nano_usd: 12_345_678_901,
        estimated: true,
    };
    assert_eq!(c.to_string(), "$12.345678901 (estimated)");
    assert_eq!(Cost::ZERO.to_string(), "$0");
    assert!((c.usd() - 12.345678901).abs() < 1e-9);
    let max = Cost {
        nano_usd: u64::MAX,
        estimated: false,
    };
    assert_eq!((max + c).nano_usd, u64::MAX);
}
