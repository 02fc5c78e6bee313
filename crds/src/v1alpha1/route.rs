//! Routes: model aliases mapped onto provider targets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{
    CircuitBreakerPolicy, Hedge, PromptAffinity, ResponseCache, RetryPolicy, RouteRule, Strategy,
    Timeouts,
};

/// A model alias and where its requests go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// The `model` the application sends, e.g. `gpt-4o` or `chat-default`.
    pub model: String,
    /// Targets sharing the traffic by weight. A failing target's requests move on to the
    /// other targets, then down the fallback chain.
    #[schemars(length(min = 1, max = 32))]
    pub targets: Vec<WeightedTarget>,
    /// Tried in order once every target has failed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub fallbacks: Vec<FallbackTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Timeouts>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreakerPolicy>,
    /// How the first target is chosen. Default: `weighted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
    /// Ordered rules on headers, `user` and request properties that send the requests they
    /// match to other targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub rules: Vec<RouteRule>,
    /// Start the next target when the first is slow to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<Hedge>,
    /// Serve identical requests from memory (opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<ResponseCache>,
    /// Keep requests sharing a long prompt prefix on one target (opt-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_affinity: Option<PromptAffinity>,
}

/// A provider and the model name it knows, with a share of the traffic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedTarget {
    /// Name of a provider of this ModelRoute.
    pub provider: String,
    /// The model name sent upstream.
    pub model: String,
    /// Relative share of traffic. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub weight: Option<u32>,
    /// The model's context window in tokens: a request whose prompt and `max_tokens` do not
    /// fit skips this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_window: Option<u64>,
}

/// A provider and model tried when the targets have failed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FallbackTarget {
    pub provider: String,
    pub model: String,
    /// As for targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_window: Option<u64>,
}
