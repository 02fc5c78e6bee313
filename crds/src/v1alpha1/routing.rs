//! How a route chooses among its targets: strategies, match rules, hedging, the response
//! cache and prompt-cache affinity.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{FallbackTarget, WeightedTarget};
use crate::Duration;

/// How the first target of a request is chosen; the others follow as the failover order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    /// `weighted` (default): a random split by `weight`. `priority`: the targets in their
    /// written order. `latency`: the target with the lowest recent time to first token
    /// (power of two choices). `cost`: the cheapest target for the request's estimated
    /// tokens, by the price table.
    #[serde(rename = "type", default)]
    pub kind: StrategyKind,
    /// `weighted` only: keep each value of a header (or each `user`) on one target, so a
    /// user sees one arm of an A/B split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
    /// `cost` only: skip targets whose recent 90th percentile time to first token is above
    /// this (targets without recent data qualify).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<Duration>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    #[default]
    Weighted,
    Priority,
    Latency,
    Cost,
}

/// What keeps a request on the same target as earlier ones: exactly one of `header` or
/// `user`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sticky {
    /// A request header, e.g. `x-session-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// The OpenAI `user` field of the request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<bool>,
}

/// A rule that sends the requests it matches to its own targets. Rules are tried in order;
/// the first match wins; a request no rule matches uses the route's targets.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteRule {
    /// Shown in the `x-modelroute-rule` response header, traces and the audit log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Every condition set here must hold.
    #[serde(rename = "match")]
    pub matches: RuleMatch,
    #[schemars(length(min = 1, max = 32))]
    pub targets: Vec<WeightedTarget>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub fallbacks: Vec<FallbackTarget>,
    /// Default: the route's strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

/// Conditions on a request. All that are set must hold.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleMatch {
    /// Request headers by name (case-insensitive), e.g. `x-tenant: {exact: acme}`. A header
    /// that is absent never matches.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// The OpenAI `user` field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<StringMatch>,
    /// The prompt's estimated token count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<TokenRange>,
    /// Whether the request offers tools (function calling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<bool>,
    /// Whether the request holds images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<bool>,
    /// Whether the request streams.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
}

/// A string test: exactly one of `exact`, `prefix`, `regex` (whole-value match) or `oneOf`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<String>>,
}

/// Bounds on the prompt's estimated token count: `atLeast` (inclusive) and `below`
/// (exclusive), so adjacent rules do not overlap.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_least: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub below: Option<u64>,
}

/// Starts the next target when the first has not answered after a delay; the first answer
/// wins and the other try is cancelled (its prompt still counted at its price).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Hedge {
    /// Wait this long for the first byte. With `percentile`: the wait until the first
    /// target has enough recent data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// Wait the first target's recent percentile (50-99) of time to first token, e.g. 95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 50, max = 99))]
    pub percentile: Option<u8>,
    /// At most this many hedged tries per 100 requests of the route. Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_percent: Option<u32>,
}

/// Keeps whole answers and serves identical requests from memory.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseCache {
    /// How long an answer is served. Default 5m.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// `deterministic` (default): only requests with `temperature: 0` or a `seed`.
    /// `always`: every request (the same question gets the same answer until the TTL).
    // Not an Option: a 1.20 API server refuses a nullable enum's `null` member.
    #[serde(default)]
    pub mode: CacheMode,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    #[default]
    Deterministic,
    Always,
}

/// Sends requests that share a long prompt prefix (system prompt and tools) to the same
/// target, so providers' prompt-caching discounts apply.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PromptAffinity {
    /// The prefix's estimated size from which it applies. Default 1024 (the smallest
    /// prompt OpenAI and Anthropic cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u64>,
}
