use super::*;

fn usd(s: &str) -> Usd {
    s.parse().expect("a valid amount")
}

#[test]
fn amounts_parse_exactly_to_micro_usd() {
    for (text, micros) in [
        ("0", 0),
        ("500", 500_000_000),
        ("12.5", 12_500_000),
        ("12.50", 12_500_000),
        ("0.000001", 1),
        ("0.1", 100_000),
        (" 7.25 ", 7_250_000),
        ("007", 7_000_000),
        ("18446744073709.551615", u64::MAX),
    ] {
        assert_eq!(usd(text).micros(), micros, "{text}");
    }
}

#[test]
fn bad_amounts_are_refused_with_the_reason() {
    for (text, why) in [
        ("0.0000001", "more than 6 decimals"),
        ("-1", "negative"),
        ("1e3", "not a decimal"),
        (".5", "not a decimal"),
        ("5.", "not a decimal"),
        ("", "not a decimal"),
        ("NaN", "not a decimal"),
        ("$5", "not a decimal"),
        ("1,5", "not a decimal"),
        ("18446744073709.551616", "too large"),
        ("99999999999999999999999", "too large"),
    ] {
        let err = text.parse::<Usd>().expect_err(text).to_string();
        assert!(err.contains(why), "{text}: {err}");
    }
}

#[test]
fn amounts_display_as_the_shortest_decimal_and_round_trip() {
    for text in ["0", "500", "12.5", "0.000001", "18446744073709.551615"] {
        assert_eq!(usd(text).to_string(), text);
    }
    assert_eq!(usd("12.50").to_string(), "12.5");
}

#[test]
fn amounts_read_from_whole_numbers_or_strings_never_fractions() {
    let read = |yaml: &str| serde_saphyr::from_str::<Usd>(yaml).map_err(|e| e.to_string());
    assert_eq!(read("500"), Ok(usd("500")));
    assert_eq!(read("\"0.25\""), Ok(usd("0.25")));
    assert_eq!(read("'1'"), Ok(usd("1")));
    let err = read("0.25").expect_err("a fractional number");
    assert!(err.contains("as a string"), "{err}");
    let err = read("-3").expect_err("negative");
    assert!(err.contains("negative"), "{err}");
    for nan in [".nan", ".inf", "-.inf"] {
        assert!(read(nan).is_err(), "{nan}");
    }
    // The API server's JSON arrives through serde_json.
    let json = |s: &str| serde_json::from_str::<Usd>(s).map_err(|e| e.to_string());
    assert_eq!(json("500"), Ok(usd("500")));
    assert_eq!(json("\"500.000001\""), Ok(usd("500.000001")));
    assert!(json("0.5").is_err());
    assert!(json("-1").is_err());
    assert_eq!(
        serde_json::to_string(&usd("12.50")).ok(),
        Some("\"12.5\"".into())
    );
}

#[test]
fn amount_arithmetic_saturates_or_checks() {
    assert_eq!(
        Usd::from_micros(u64::MAX).checked_add(usd("0.000001")),
        None
    );
    assert_eq!(
        Usd::from_micros(u64::MAX).saturating_add(usd("1")),
        Usd::from_micros(u64::MAX)
    );
    assert_eq!(usd("1").saturating_sub(usd("2")), Usd::ZERO);
    assert_eq!(usd("500").percent(1), usd("5"));
    assert_eq!(usd("0.000099").percent(1), Usd::ZERO, "rounded down");
    assert_eq!(usd("0.5").percent(80), usd("0.4"));
}

#[test]
fn prices_are_pico_usd_per_token_and_costs_are_exact() {
    let price = |s: &str| s.parse::<TokenPrice>().expect("a valid price");
    assert_eq!(price("2.5").picos_per_token(), 2_500_000);
    // $0.0375 per 1M tokens: 37.5 nano-USD per token, which nano-USD could not hold.
    assert_eq!(price("0.0375").picos_per_token(), 37_500);
    assert_eq!(price("0.000001").picos_per_token(), 1);
    assert_eq!(price("0.0375").cost_picos(1_000), 37_500_000);
    // 37.5 micro-USD is counted as 38: spend is never under-counted.
    assert_eq!(
        Usd::from_picos_ceil(price("0.0375").cost_picos(1_000)),
        Usd::from_micros(38)
    );
    // 1M tokens at $10 per 1M is exactly $10.
    assert_eq!(
        Usd::from_picos_ceil(price("10").cost_picos(1_000_000)),
        usd("10")
    );
    assert_eq!(Usd::from_picos_ceil(u128::MAX), Usd::from_micros(u64::MAX));
    let highest = price("1000000").cost_picos(u64::MAX);
    assert!(highest > u128::from(u64::MAX), "no overflow in u128");
}

#[test]
fn prices_read_from_numbers_exactly() {
    let read = |yaml: &str| serde_saphyr::from_str::<TokenPrice>(yaml).map_err(|e| e.to_string());
    let price = |s: &str| s.parse::<TokenPrice>().expect("a valid price");
    assert_eq!(read("2.5"), Ok(price("2.5")));
    assert_eq!(read("10"), Ok(price("10")));
    assert_eq!(read("0"), Ok(TokenPrice::ZERO));
    assert_eq!(read("0.0375"), Ok(price("0.0375")));
    for (yaml, why) in [
        ("0.0000001", "more than 6 decimals"),
        ("1e-7", "more than 6 decimals"),
        ("-1", "negative"),
        ("-0.5", "negative"),
        (".nan", "finite"),
        (".inf", "finite"),
        ("1000000.000001", "highest price"),
        ("\"2.5\"", "as a number"),
    ] {
        let err = read(yaml).expect_err(yaml);
        assert!(err.contains(why), "{yaml}: {err}");
    }
    assert_eq!(
        serde_json::to_string(&price("0.0375")).ok(),
        Some("0.0375".into())
    );
}

#[test]
fn every_writable_price_survives_the_trip_through_an_f64() {
    // Decimals with at most 6 places up to the highest price: a JSON or YAML parser turns
    // each into the nearest f64; it must come back as the same number of pico-USD, and be
    // written back the same way.
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut samples: Vec<u64> = (0..2_000)
        .chain(999_999_998_000..=1_000_000_000_000)
        .collect();
    for _ in 0..200_000 {
        // xorshift: spread samples over every magnitude up to 10^12 micro-USD per 1M.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let digits = (x % 12) as u32 + 1;
        samples.push(x % 10u64.pow(digits));
    }
    for micros in samples {
        let written = TokenPrice::from_picos_per_token(micros).to_string();
        let read: TokenPrice = serde_json::from_str(&written).expect(&written);
        assert_eq!(read.picos_per_token(), micros, "{written}");
        let back = serde_json::to_string(&read).expect("serialize");
        let again: TokenPrice = serde_json::from_str(&back).expect(&back);
        assert_eq!(again, read, "{written} -> {back}");
    }
}
