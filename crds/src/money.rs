//! Money as exact integers: USD amounts in micro-USD, token prices in pico-USD per token.
//!
//! Budgets are compared and summed across a fleet, so amounts must add up exactly: no `f64`
//! holds them. An amount is written as a decimal with at most 6 decimals and kept in micro-USD
//! (10⁻⁶ USD) in a `u64`, enough for 18 trillion USD.
//!
//! Prices are written in USD per 1M tokens, the way providers publish them, also with at most
//! 6 decimals, and kept as micro-USD per 1M tokens, which is the same integer as pico-USD
//! (10⁻¹² USD) per token. `tokens × price` is then an exact integer of pico-USD for every
//! price that can be written (nano-USD per token could not hold $0.0375 per 1M, 37.5 nano-USD);
//! [`Usd::from_picos_ceil`] turns such a cost into an amount, rounding up so spend is never
//! under-counted (by at most 1 micro-USD per conversion).

mod nano;

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use nano::NanoUsd;

/// An amount of US dollars, exact to the micro-dollar. Written as a whole number (`500`) or a
/// decimal string with at most 6 decimals (`"12.50"`), never negative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(u64);

/// A price in USD per 1M tokens (written as a number such as `2.5`, at most 6 decimals, from 0
/// to 1,000,000), kept exactly as pico-USD per token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenPrice(u64);

/// Why a written amount or price is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoneyError(String);

/// Micro-units in one unit: 6 decimals.
const MICROS: u64 = 1_000_000;
/// Pico-USD in one micro-USD.
const PICOS_PER_MICRO: u128 = 1_000_000;
/// The highest price, in USD per 1M tokens. It keeps every price within 13 significant digits,
/// so the `f64` a JSON or YAML number arrives as prints back as exactly the decimal written.
const MAX_PRICE_USD: u64 = 1_000_000;

// === impl Usd ===

impl Usd {
    pub const ZERO: Self = Self(0);

    pub const fn from_micros(micros: u64) -> Self {
        Self(micros)
    }

    /// The amount in micro-USD.
    pub const fn micros(self) -> u64 {
        self.0
    }

    /// The amount holding `picos` pico-USD, rounded up to the micro-USD (saturating at the
    /// largest amount): the conversion for a cost computed with [`TokenPrice::cost_picos`].
    pub fn from_picos_ceil(picos: u128) -> Self {
        let micros = picos.div_ceil(PICOS_PER_MICRO);
        Self(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    pub const fn checked_add(self, other: Self) -> Option<Self> {
        match self.0.checked_add(other.0) {
            Some(sum) => Some(Self(sum)),
            None => None,
        }
    }

    pub const fn saturating_add(self, other: Self) -> Self {
        Self(self.0.saturating_add(other.0))
    }

    pub const fn saturating_sub(self, other: Self) -> Self {
        Self(self.0.saturating_sub(other.0))
    }

    /// `percent`% of the amount, rounded down.
    pub fn percent(self, percent: u32) -> Self {
        let part = u128::from(self.0) * u128::from(percent) / 100;
        Self(u64::try_from(part).unwrap_or(u64::MAX))
    }
}

impl FromStr for Usd {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_micros(s, "amounts are kept in micro-USD").map(Self)
    }
}

impl fmt::Display for Usd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_micros(f, self.0)
    }
}

impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UsdVisitor)
    }
}

struct UsdVisitor;

impl Visitor<'_> for UsdVisitor {
    type Value = Usd;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an amount of USD: a whole number or a decimal string such as \"12.50\"")
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Usd, E> {
        s.parse().map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Usd, E> {
        v.checked_mul(MICROS)
            .map(Usd)
            .ok_or_else(|| E::custom(format!("{v} USD is too large")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Usd, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("{v}: an amount must not be negative"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Usd, E> {
        // The CRD types an amount as integer-or-string (like a Kubernetes quantity), so the
        // API server refuses `12.5`; refusing it here too keeps a file that works with
        // `--config` working in a cluster, and keeps floating point away from money.
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 {
            return parse_micros(&format!("{v}"), "amounts are kept in micro-USD")
                .map(Usd)
                .map_err(E::custom);
        }
        if v.is_finite() && v >= 0.0 {
            return Err(E::custom(format!(
                "write a fractional amount as a string, e.g. \"{v}\" (an exact decimal; \
                 the API server accepts only whole numbers or strings here)"
            )));
        }
        Err(E::custom(format!(
            "{v} is not an amount: it must be a finite number, not negative"
        )))
    }
}

impl JsonSchema for Usd {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Usd".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // An integer or a string, like a Kubernetes quantity: `minimum` applies to integers,
        // `pattern` to strings. (No `anyOf` of the two types: kube's structural rewrite would
        // empty it, as it does for k8s-openapi's IntOrString.) No description, so the
        // field's own is kept.
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "minimum": 0,
            "pattern": "^[0-9]+(\\.[0-9]{1,6})?$"
        })
    }
}

// === impl TokenPrice ===

impl TokenPrice {
    pub const ZERO: Self = Self(0);

    pub const fn from_picos_per_token(picos: u64) -> Self {
        Self(picos)
    }

    /// The price in pico-USD per token, which is also micro-USD per 1M tokens.
    pub const fn picos_per_token(self) -> u64 {
        self.0
    }

    /// What `tokens` tokens cost, exactly, in pico-USD.
    pub fn cost_picos(self, tokens: u64) -> u128 {
        u128::from(self.0) * u128::from(tokens)
    }
}

impl FromStr for TokenPrice {
    type Err = MoneyError;

    /// Reads USD per 1M tokens, e.g. `2.5` or `0.0375`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let micros = parse_micros(s, "prices are kept in micro-USD per 1M tokens")?;
        if micros > MAX_PRICE_USD * MICROS {
            return Err(MoneyError(format!(
                "{} USD per 1M tokens is above the highest price, {MAX_PRICE_USD}",
                s.trim()
            )));
        }
        Ok(Self(micros))
    }
}

impl fmt::Display for TokenPrice {
    /// USD per 1M tokens, e.g. `2.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_micros(f, self.0)
    }
}

impl Serialize for TokenPrice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Exact: both operands are integers an f64 holds (at most 10¹² micro-USD), and the
        // correctly rounded quotient prints back as the decimal that was written.
        let usd = self.0 as f64 / MICROS as f64;
        s.serialize_f64(usd)
    }
}

impl<'de> Deserialize<'de> for TokenPrice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TokenPriceVisitor)
    }
}

struct TokenPriceVisitor;

impl Visitor<'_> for TokenPriceVisitor {
    type Value = TokenPrice;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a price in USD per 1M tokens, a number such as 2.5")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<TokenPrice, E> {
        v.to_string().parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<TokenPrice, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("{v}: a price must not be negative"))),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<TokenPrice, E> {
        if !v.is_finite() || v < 0.0 {
            return Err(E::custom(format!(
                "{v} is not a price: it must be a finite number, not negative"
            )));
        }
        // `Display` prints the shortest decimal that reads back as the same f64. Every
        // price up to MAX_PRICE_USD with at most 6 decimals has at most 13 significant
        // digits, and every such decimal survives the trip through an f64, so this is the
        // number as written. (`1e-7` prints as `0.0000001` and is refused for its decimals.)
        format!("{v}").parse().map_err(E::custom)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<TokenPrice, E> {
        // The CRD types prices as numbers; refusing strings here too keeps `--config` files
        // and the API server in agreement.
        Err(E::custom(format!(
            "write the price as a number, e.g. {}, not a string",
            s.trim()
        )))
    }
}

impl JsonSchema for TokenPrice {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TokenPrice".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "minimum": 0,
            "maximum": MAX_PRICE_USD
        })
    }
}

// === impl MoneyError ===

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MoneyError {}

/// Reads a plain decimal (`12`, `12.5`, `0.000001`) into millionths, exactly.
fn parse_micros(s: &str, unit: &str) -> Result<u64, MoneyError> {
    parse_fixed(s, 6, unit)
}

/// Reads a plain decimal with at most `decimals` decimals into units of 10^-decimals,
/// exactly.
fn parse_fixed(s: &str, decimals: usize, unit: &str) -> Result<u64, MoneyError> {
    let t = s.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if t.starts_with('-') {
        return Err(MoneyError(format!("{t:?} must not be negative")));
    }
    if !digits(whole) || (t.contains('.') && !digits(frac)) {
        return Err(MoneyError(format!(
            "{t:?} is not a decimal number; write it like 12 or 12.50"
        )));
    }
    if frac.len() > decimals {
        return Err(MoneyError(format!(
            "{t:?} has more than {decimals} decimals ({unit})"
        )));
    }
    let too_large = || MoneyError(format!("{t:?} is too large"));
    let whole: u64 = whole.parse().map_err(|_| too_large())?;
    // Right-pad the decimals: with 6, "5" -> 500000 millionths.
    let frac: u64 = format!("{frac:0<decimals$}")
        .parse()
        .map_err(|_| too_large())?;
    whole
        .checked_mul(10u64.pow(decimals as u32))
        .and_then(|w| w.checked_add(frac))
        .ok_or_else(too_large)
}

/// Writes millionths as the shortest plain decimal: 12500000 -> `12.5`.
fn write_micros(f: &mut fmt::Formatter<'_>, micros: u64) -> fmt::Result {
    write_fixed(f, micros, 6)
}

/// Writes units of 10^-decimals as the shortest plain decimal.
fn write_fixed(f: &mut fmt::Formatter<'_>, units: u64, decimals: usize) -> fmt::Result {
    let scale = 10u64.pow(decimals as u32);
    let (whole, frac) = (units / scale, units % scale);
    if frac == 0 {
        return write!(f, "{whole}");
    }
    let frac = format!("{frac:0decimals$}");
    write!(f, "{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
