//! Amounts exact to the nano-USD: what the budget ledger counts and writes into status.
//!
//! Costs are computed in pico-USD and rounded up once to nano-USD (10⁻⁹ USD); the ledger
//! sums them in a `u64` (enough for 18 billion USD). Status shows them as decimal strings
//! with up to 9 decimals (`"12.345678901"`), so a restarted operator reads back exactly
//! what it wrote: no float ever holds a ledger amount.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{MoneyError, Usd, parse_fixed, write_fixed};

/// An amount of US dollars in nano-USD. Written as a decimal string with at most 9
/// decimals, e.g. `"0.000000001"` or `"500"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NanoUsd(u64);

/// Nano-USD in one micro-USD.
const NANOS_PER_MICRO: u64 = 1_000;

// === impl NanoUsd ===

impl NanoUsd {
    pub const ZERO: Self = Self(0);

    pub const fn from_nanos(nanos: u64) -> Self {
        Self(nanos)
    }

    pub const fn nanos(self) -> u64 {
        self.0
    }

    /// `usd` exactly (saturating at the largest amount, 18 billion USD).
    pub const fn from_usd(usd: Usd) -> Self {
        Self(usd.micros().saturating_mul(NANOS_PER_MICRO))
    }
}

impl From<Usd> for NanoUsd {
    fn from(usd: Usd) -> Self {
        Self::from_usd(usd)
    }
}

impl FromStr for NanoUsd {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_fixed(s, 9, "ledger amounts are kept in nano-USD").map(Self)
    }
}

impl fmt::Display for NanoUsd {
    /// The shortest plain decimal: 12500000000 -> `12.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_fixed(f, self.0, 9)
    }
}

impl Serialize for NanoUsd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NanoUsd {
    /// A string only: what [`Serialize`] writes (never a float).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for NanoUsd {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NanoUsd".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // No description, so the field's own is kept.
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[0-9]+(\\.[0-9]{1,9})?$"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nano_amounts_round_trip_exactly() {
        for (text, nanos) in [
            ("0", 0),
            ("0.000000001", 1),
            ("12.5", 12_500_000_000),
            ("12.345678901", 12_345_678_901),
            ("18446744073.709551615", u64::MAX),
        ] {
            let amount: NanoUsd = text.parse().expect(text);
            assert_eq!(amount.nanos(), nanos, "{text}");
            assert_eq!(amount.to_string(), text);
            let json = serde_json::to_string(&amount).expect("serializes");
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<NanoUsd>(&json).ok(), Some(amount));
        }
    }

    #[test]
    fn bad_nano_amounts_are_refused() {
        for text in ["0.0000000001", "-1", "1e3", "", "18446744073.709551616"] {
            assert!(text.parse::<NanoUsd>().is_err(), "{text}");
        }
        assert!(serde_json::from_str::<NanoUsd>("1.5").is_err(), "a float");
    }

    #[test]
    fn micro_amounts_convert_exactly() {
        let usd: Usd = "2.500001".parse().expect("an amount");
        assert_eq!(NanoUsd::from(usd).nanos(), 2_500_001_000);
        assert_eq!(NanoUsd::from(Usd::from_micros(u64::MAX)).nanos(), u64::MAX);
    }
}
