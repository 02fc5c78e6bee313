//! Price overrides: what a provider's models cost, where the built-in price table is wrong
//! or has no entry (self-hosted servers, negotiated rates, new models).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ModelRouteSpec;
use crate::TokenPrice;

/// The price of one model of one provider of this ModelRoute. Prices are numbers in USD per
/// 1M tokens, from 0 to 1,000,000, with at most 6 decimals.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PriceOverride {
    /// Name of a provider of this ModelRoute.
    pub provider: String,
    /// The upstream model name, or `*` for every model of the provider that has no entry of
    /// its own.
    #[schemars(length(min = 1))]
    pub model: String,
    /// Prompt tokens, USD per 1M.
    pub input: TokenPrice,
    /// Prompt tokens read from the provider's prompt cache, USD per 1M. Default: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<TokenPrice>,
    /// Completion tokens (reasoning included), USD per 1M.
    pub output: TokenPrice,
}

/// The model name of a [`PriceOverride`] that covers every model of its provider.
pub const ANY_MODEL: &str = "*";

// === impl PriceOverride ===

impl PriceOverride {
    /// The price of cached prompt tokens: `cachedInput`, else `input`.
    pub fn cached_input(&self) -> TokenPrice {
        self.cached_input.unwrap_or(self.input)
    }
}

// === impl ModelRouteSpec ===

impl ModelRouteSpec {
    /// The override pricing `model` of provider `provider` (a provider name of this
    /// ModelRoute): the entry naming the model, else the provider's `*` entry.
    pub fn price_override(&self, provider: &str, model: &str) -> Option<&PriceOverride> {
        let of_provider = || self.pricing.iter().filter(|p| p.provider == provider);
        of_provider()
            .find(|p| p.model == model)
            .or_else(|| of_provider().find(|p| p.model == ANY_MODEL))
    }
}
