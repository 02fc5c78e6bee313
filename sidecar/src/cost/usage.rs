//! Each provider's usage object, normalized into one [`TokenUsage`].
//!
//! The providers count the same things differently (sources in testdata/README.md):
//! - OpenAI Chat Completions: `prompt_tokens` INCLUDES `prompt_tokens_details.cached_tokens`
//!   and `cache_write_tokens`; `completion_tokens` includes
//!   `completion_tokens_details.reasoning_tokens`. DeepSeek, an OpenAI-compatible server,
//!   reports its cache hits as `prompt_cache_hit_tokens` instead.
//! - OpenAI Responses: the same with `input_tokens`, `input_tokens_details`, `output_tokens`,
//!   `output_tokens_details`.
//! - Anthropic Messages: `input_tokens` EXCLUDES `cache_read_input_tokens` and
//!   `cache_creation_input_tokens` (the prompt is their sum); `cache_creation` splits the
//!   writes by lifetime (5 minutes, 1 hour); `output_tokens` includes thinking.
//! - Gemini `usageMetadata`: `promptTokenCount` INCLUDES `cachedContentTokenCount`;
//!   `candidatesTokenCount` EXCLUDES `thoughtsTokenCount`, which is billed as output;
//!   `toolUsePromptTokenCount` comes on top of the prompt.
//!
//! Counts a provider leaves out or sends as `null` are zero; a count that contradicts its
//! total (more cached tokens than prompt tokens) leaves the rest at zero, never wraps.

use serde::Deserialize;
use serde_json::Value;

/// What a request used, in parts that do not overlap, so that each is billed exactly once
/// at its own rate. The prompt is `input + cached_input + cache_write + cache_write_1h`;
/// the generated text is `output + reasoning`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenUsage {
    /// Prompt tokens billed at the full input rate: neither read from nor written to a
    /// cache. Includes Gemini's tool-use prompt tokens.
    pub input: u64,
    /// Prompt tokens read from the provider's prompt cache, billed at the cached-input
    /// rate (OpenAI `cached_tokens`, Anthropic `cache_read_input_tokens`, Gemini
    /// `cachedContentTokenCount`, DeepSeek `prompt_cache_hit_tokens`).
    pub cached_input: u64,
    /// Prompt tokens written to the cache at its default lifetime, billed at the cache-write
    /// rate (Anthropic's 5-minute writes; OpenAI `cache_write_tokens`).
    pub cache_write: u64,
    /// Prompt tokens written to Anthropic's 1-hour cache, billed at the 1-hour write rate.
    pub cache_write_1h: u64,
    /// Generated tokens other than reasoning, billed at the output rate.
    pub output: u64,
    /// Reasoning ("thinking") tokens: generated, billed at the output rate, mostly not
    /// shown to the client.
    pub reasoning: u64,
    /// The counts were estimated ([`estimate_tokens`](super::estimate_tokens)) because the
    /// provider sent none; a cost from them is marked estimated.
    pub estimated: bool,
}

/// The usage objects this module reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageFormat {
    /// `usage` of an OpenAI Chat Completions response or final stream chunk (also Azure
    /// OpenAI and OpenAI-compatible servers such as DeepSeek and Mistral).
    OpenAiChat,
    /// `usage` of an OpenAI Responses API response.
    OpenAiResponses,
    /// `usage` of an Anthropic Messages response (see [`AnthropicUsage::merge`] for
    /// streams).
    Anthropic,
    /// `usageMetadata` of a Gemini `generateContent` response or stream chunk.
    Gemini,
}

/// `usage` of OpenAI Chat Completions, and of the servers that copy it.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChatCompletionsUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptTokensDetails>,
    completion_tokens_details: Option<CompletionTokensDetails>,
    /// DeepSeek's name for cached prompt tokens.
    prompt_cache_hit_tokens: Option<u64>,
}

/// `usage` of the OpenAI Responses API.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResponsesUsage {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    input_tokens_details: Option<PromptTokensDetails>,
    output_tokens_details: Option<CompletionTokensDetails>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
struct PromptTokensDetails {
    cached_tokens: Option<u64>,
    cache_write_tokens: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
struct CompletionTokensDetails {
    reasoning_tokens: Option<u64>,
}

/// `usage` of an Anthropic Messages response, or of a stream's `message_start` /
/// `message_delta` events (combine those with [`AnthropicUsage::merge`]).
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AnthropicUsage {
    input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_creation: Option<AnthropicCacheCreation>,
    output_tokens: Option<u64>,
    output_tokens_details: Option<AnthropicOutputDetails>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
struct AnthropicCacheCreation {
    ephemeral_5m_input_tokens: Option<u64>,
    ephemeral_1h_input_tokens: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default)]
struct AnthropicOutputDetails {
    thinking_tokens: Option<u64>,
}

/// Gemini's `usageMetadata`.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GeminiUsage {
    prompt_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    thoughts_token_count: Option<u64>,
    tool_use_prompt_token_count: Option<u64>,
}

// === impl TokenUsage ===

impl TokenUsage {
    /// Reads a provider's usage object: the value of `usage` (Gemini: `usageMetadata`).
    /// Fails on a value that is not such an object, e.g. a negative or fractional count.
    pub fn from_json(format: UsageFormat, usage: &Value) -> Result<TokenUsage, serde_json::Error> {
        // serde would also read a struct from an array of its fields in order.
        if !usage.is_object() {
            return Err(serde::de::Error::custom("a usage must be a JSON object"));
        }
        Ok(match format {
            UsageFormat::OpenAiChat => ChatCompletionsUsage::deserialize(usage)?.into(),
            UsageFormat::OpenAiResponses => ResponsesUsage::deserialize(usage)?.into(),
            UsageFormat::Anthropic => AnthropicUsage::deserialize(usage)?.into(),
            UsageFormat::Gemini => GeminiUsage::deserialize(usage)?.into(),
        })
    }

    /// Usage counted by [`estimate_tokens`](super::estimate_tokens) because the provider
    /// reported none.
    pub fn estimated(input: u64, output: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            estimated: true,
            ..TokenUsage::default()
        }
    }

    /// The prompt's size as the providers measure it for long-prompt prices: every input
    /// token, cached or not.
    pub fn prompt_tokens(&self) -> u64 {
        self.input
            .saturating_add(self.cached_input)
            .saturating_add(self.cache_write)
            .saturating_add(self.cache_write_1h)
    }

    /// Each count the larger of the two: streams report cumulative counts, some in pieces
    /// (Anthropic: the prompt at the start, the output at the end).
    pub fn merge(self, other: TokenUsage) -> TokenUsage {
        TokenUsage {
            input: self.input.max(other.input),
            cached_input: self.cached_input.max(other.cached_input),
            cache_write: self.cache_write.max(other.cache_write),
            cache_write_1h: self.cache_write_1h.max(other.cache_write_1h),
            output: self.output.max(other.output),
            reasoning: self.reasoning.max(other.reasoning),
            estimated: self.estimated || other.estimated,
        }
    }

    /// Every generated token, reasoning included.
    pub fn output_tokens(&self) -> u64 {
        self.output.saturating_add(self.reasoning)
    }

    /// Usage from a prompt total with its cache reads and writes inside it, and a
    /// completion total with its reasoning inside it: the OpenAI shapes.
    fn from_totals(
        prompt: u64,
        cached: u64,
        written: u64,
        completion: u64,
        reasoning: u64,
    ) -> TokenUsage {
        TokenUsage {
            input: prompt.saturating_sub(cached).saturating_sub(written),
            cached_input: cached,
            cache_write: written,
            output: completion.saturating_sub(reasoning),
            reasoning,
            ..TokenUsage::default()
        }
    }
}

impl From<ChatCompletionsUsage> for TokenUsage {
    fn from(u: ChatCompletionsUsage) -> TokenUsage {
        let prompt = u.prompt_tokens_details.unwrap_or_default();
        let completion = u.completion_tokens_details.unwrap_or_default();
        TokenUsage::from_totals(
            u.prompt_tokens.unwrap_or(0),
            prompt
                .cached_tokens
                .or(u.prompt_cache_hit_tokens)
                .unwrap_or(0),
            prompt.cache_write_tokens.unwrap_or(0),
            u.completion_tokens.unwrap_or(0),
            completion.reasoning_tokens.unwrap_or(0),
        )
    }
}

impl From<ResponsesUsage> for TokenUsage {
    fn from(u: ResponsesUsage) -> TokenUsage {
        let input = u.input_tokens_details.unwrap_or_default();
        let output = u.output_tokens_details.unwrap_or_default();
        TokenUsage::from_totals(
            u.input_tokens.unwrap_or(0),
            input.cached_tokens.unwrap_or(0),
            input.cache_write_tokens.unwrap_or(0),
            u.output_tokens.unwrap_or(0),
            output.reasoning_tokens.unwrap_or(0),
        )
    }
}

impl From<AnthropicUsage> for TokenUsage {
    fn from(u: AnthropicUsage) -> TokenUsage {
        // `cache_creation_input_tokens` is the sum of the lifetimes in `cache_creation`;
        // without the split, every write is a 5-minute one (the default lifetime).
        let split = u.cache_creation.unwrap_or_default();
        let written = u.cache_creation_input_tokens.unwrap_or(0);
        let cache_write_1h = split.ephemeral_1h_input_tokens.unwrap_or(0);
        let cache_write = written
            .saturating_sub(cache_write_1h)
            .max(split.ephemeral_5m_input_tokens.unwrap_or(0));
        let reasoning = u
            .output_tokens_details
            .unwrap_or_default()
            .thinking_tokens
            .unwrap_or(0);
        TokenUsage {
            input: u.input_tokens.unwrap_or(0),
            cached_input: u.cache_read_input_tokens.unwrap_or(0),
            cache_write,
            cache_write_1h,
            output: u.output_tokens.unwrap_or(0).saturating_sub(reasoning),
            reasoning,
            estimated: false,
        }
    }
}

impl From<GeminiUsage> for TokenUsage {
    fn from(u: GeminiUsage) -> TokenUsage {
        let cached_input = u.cached_content_token_count.unwrap_or(0);
        let prompt = u
            .prompt_token_count
            .unwrap_or(0)
            .saturating_sub(cached_input);
        TokenUsage {
            input: prompt.saturating_add(u.tool_use_prompt_token_count.unwrap_or(0)),
            cached_input,
            output: u.candidates_token_count.unwrap_or(0),
            reasoning: u.thoughts_token_count.unwrap_or(0),
            ..TokenUsage::default()
        }
    }
}

// === impl AnthropicUsage ===

impl AnthropicUsage {
    /// Folds a later stream event's usage into this one. `message_start` carries the
    /// input side; each `message_delta` repeats cumulative counts (never increments), so a
    /// count present in `later` replaces the one held.
    pub fn merge(&mut self, later: &AnthropicUsage) {
        fn take(held: &mut Option<u64>, later: Option<u64>) {
            if later.is_some() {
                *held = later;
            }
        }
        take(&mut self.input_tokens, later.input_tokens);
        take(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        take(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        take(&mut self.output_tokens, later.output_tokens);
        if later.cache_creation.is_some() {
            self.cache_creation = later.cache_creation;
        }
        if later.output_tokens_details.is_some() {
            self.output_tokens_details = later.output_tokens_details;
        }
    }
}

#[cfg(test)]
#[path = "usage_tests.rs"]
mod tests;
