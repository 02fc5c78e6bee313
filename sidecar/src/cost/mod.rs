//! What a request cost: token usage × price, in integer nano-USD.
//!
//! - [`usage`] turns each provider's usage object into one [`TokenUsage`], whose parts are
//!   disjoint so each is billed once at its own rate.
//! - [`prices`] is the built-in price table (`prices.yaml`, see docs/pricing.md) and the
//!   lookup rules: exact model name, then a documented alias or dated snapshot.
//! - [`cost`] multiplies the two; [`estimate_tokens`] stands in for a usage the provider
//!   did not send, and marks the cost as estimated.
//!
//! Money is an integer number of nano-USD (10⁻⁹ USD), never a float. Budgets add millions
//! of tiny amounts across sidecars and the operator and compare the sum with a limit: float
//! addition rounds differently depending on order and magnitude, so two replicas summing
//! the same costs would disagree and a total could drift past a limit that it "equals".
//! Integers add exactly and associatively, travel over protobuf and JSON without loss, and
//! a `u64` of nano-USD holds 18 billion USD. Rates are integers too: pico-USD per token
//! (USD per million tokens × 10⁶), enough for six decimals of a per-million price.

mod estimate;
pub mod prices;
pub mod usage;

use std::fmt;
use std::ops::{Add, AddAssign};

pub use estimate::{IMAGE_TOKENS, estimate_request_tokens, estimate_tokens};
pub use prices::{PriceTable, PriceTableError, Vendor};
pub use usage::{TokenUsage, UsageFormat};

/// A price per token in pico-USD (10⁻¹² USD): a provider's "USD per million tokens" × 10⁶.
/// `$2.50 / MTok` is `Rate(2_500_000)`; `$0.003625 / MTok` is `Rate(3_625)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u64);

/// Why a per-million price cannot be a [`Rate`].
#[derive(Clone, Copy, Debug, PartialEq, thiserror::Error)]
pub enum RateError {
    #[error("{0} is not a price: it must be a finite number from 0 to {max}", max = Rate::MAX_USD_PER_MILLION)]
    OutOfRange(f64),
    #[error(
        "{0} has more than 6 decimals: prices are kept to a millionth of a dollar per million tokens"
    )]
    TooPrecise(f64),
}

/// The rates of one price band, per token of each kind (see [`TokenUsage`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// Prompt tokens that neither hit nor fill a cache.
    pub input: Rate,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: Rate,
    /// Prompt tokens written to the cache at its default lifetime (Anthropic: 5 minutes;
    /// OpenAI from GPT-5.6 on). The input rate where a provider charges nothing extra.
    pub cache_write: Rate,
    /// Prompt tokens written to Anthropic's 1-hour cache. Equals `cache_write` elsewhere.
    pub cache_write_1h: Rate,
    /// Generated tokens, visible or reasoning.
    pub output: Rate,
}

/// Rates that replace the base ones for the whole request once its prompt is longer than
/// `above` tokens (Gemini 2.5 Pro above 200K, GPT-5.4 above 272K, Claude Haiku 5.5 above
/// 100K). The prompt counts input, cache reads and cache writes, as the providers do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    pub above: u64,
    pub rates: Rates,
}

/// What one model costs: base rates and, for some models, dearer rates for long prompts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Price {
    pub base: Rates,
    /// Ascending by `above`; the last tier whose threshold the prompt exceeds applies.
    pub tiers: Vec<Tier>,
}

/// The cost of one request in nano-USD (10⁻⁹ USD), and whether it rests on estimated
/// token counts rather than the provider's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cost {
    pub nano_usd: u64,
    /// Some usage behind this amount was estimated ([`estimate_tokens`]), not reported.
    pub estimated: bool,
}

/// The cost of `usage` at `price`.
///
/// Each kind of token is billed once at its own rate: cached input at the cached rate (it
/// is not also counted as input), cache writes at the write rate, reasoning at the output
/// rate. The band is chosen by the prompt's size ([`TokenUsage::prompt_tokens`]) and then
/// applies to every token of the request, as the providers bill it.
///
/// The products are exact in pico-USD and summed before one conversion to nano-USD that
/// rounds up: spend is never under-counted, and over-counted by less than one nano-USD per
/// request (rounding each part separately would add up to six).
pub fn cost(usage: &TokenUsage, price: &Price) -> Cost {
    let rates = price.rates_for(usage.prompt_tokens());
    let pico = [
        (usage.input, rates.input),
        (usage.cached_input, rates.cached_input),
        (usage.cache_write, rates.cache_write),
        (usage.cache_write_1h, rates.cache_write_1h),
        (usage.output, rates.output),
        (usage.reasoning, rates.output),
    ]
    .into_iter()
    .fold(0u128, |sum, (tokens, rate)| {
        sum.saturating_add(u128::from(tokens) * u128::from(rate.0))
    });
    Cost {
        nano_usd: u64::try_from(pico.div_ceil(1_000)).unwrap_or(u64::MAX),
        estimated: usage.estimated,
    }
}

// === impl Rate ===

impl Rate {
    pub const ZERO: Rate = Rate(0);
    /// The largest per-million price accepted; far above any model's (the dearest are in
    /// the hundreds), it keeps typos like a missing decimal point out.
    pub const MAX_USD_PER_MILLION: f64 = 100_000.0;

    /// A rate from a provider's "USD per million tokens", e.g. `2.5` for `$2.50 / MTok`.
    /// Six decimals at most: the table keeps exact integers, never rounded prices.
    pub fn from_usd_per_million(usd: f64) -> Result<Rate, RateError> {
        if !usd.is_finite() || !(0.0..=Self::MAX_USD_PER_MILLION).contains(&usd) {
            return Err(RateError::OutOfRange(usd));
        }
        let pico = usd * 1e6;
        let whole = pico.round();
        // A decimal with six places lands within float noise of an integer.
        if (pico - whole).abs() > 1e-3 {
            return Err(RateError::TooPrecise(usd));
        }
        // 0 <= whole <= 1e11, checked above: the cast is exact.
        Ok(Rate(whole as u64))
    }

    /// Pico-USD per token.
    pub fn pico_usd_per_token(self) -> u64 {
        self.0
    }

    /// A rate of `pico` pico-USD per token (a ModelRoute's `pricing`, already exact).
    pub const fn from_pico_usd_per_token(pico: u64) -> Rate {
        Rate(pico)
    }
}

impl fmt::Display for Rate {
    /// `$2.5/MTok`, exact: integer arithmetic, trailing zeros trimmed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}/MTok", decimal(self.0, 1_000_000))
    }
}

// === impl Price ===

impl Price {
    /// A price with one band for every prompt size.
    pub fn flat(base: Rates) -> Price {
        Price {
            base,
            tiers: Vec::new(),
        }
    }

    /// The rates for a request whose prompt has `prompt_tokens` tokens.
    pub fn rates_for(&self, prompt_tokens: u64) -> &Rates {
        self.tiers
            .iter()
            .rev()
            .find(|t| prompt_tokens > t.above)
            .map_or(&self.base, |t| &t.rates)
    }
}

// === impl Cost ===

impl Cost {
    pub const ZERO: Cost = Cost {
        nano_usd: 0,
        estimated: false,
    };

    /// The amount in USD, for display and metrics only; accounting stays in nano-USD.
    pub fn usd(self) -> f64 {
        self.nano_usd as f64 / 1e9
    }
}

impl Add for Cost {
    type Output = Cost;

    /// Saturates instead of wrapping; estimated if either part is.
    fn add(self, other: Cost) -> Cost {
        Cost {
            nano_usd: self.nano_usd.saturating_add(other.nano_usd),
            estimated: self.estimated || other.estimated,
        }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        *self = *self + other;
    }
}

impl std::iter::Sum for Cost {
    fn sum<I: Iterator<Item = Cost>>(iter: I) -> Cost {
        iter.fold(Cost::ZERO, Add::add)
    }
}

impl fmt::Display for Cost {
    /// `$0.0123` or `$0.0123 (estimated)`, exact to the nano-USD.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}", decimal(self.nano_usd, 1_000_000_000))?;
        if self.estimated {
            f.write_str(" (estimated)")?;
        }
        Ok(())
    }
}

/// `value / scale` as a decimal without trailing zeros; `scale` is a power of ten.
fn decimal(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = scale.ilog10() as usize;
    let fraction = format!("{fraction:0digits$}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
