//! Providers: where requests go and how they authenticate.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// One upstream endpoint.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.kind != 'azure-openai' || has(self.baseUrl)", "message": "azure-openai needs baseUrl, e.g. https://my-resource.openai.azure.com"},
    {"rule": "self.kind == 'mock' || !has(self.mock)", "message": "only providers of kind mock take mock settings"},
    {"rule": "self.kind != 'mock' || (!has(self.baseUrl) && !has(self.apiKey))", "message": "a mock provider takes no baseUrl or apiKey"}
]))]
pub struct ProviderSpec {
    /// Unique within the ModelRoute; routes refer to it.
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,
    /// The wire protocol the endpoint speaks.
    pub kind: ProviderKind,
    /// Base URL the API paths are appended to, e.g. `https://api.openai.com/v1`.
    /// Defaults to the provider's public endpoint where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Where the API key comes from. Optional for servers that need none (vLLM, Ollama).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeySource>,
    /// Extra headers sent on every upstream request (e.g. `OpenAI-Organization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// How long to wait for a TCP + TLS connection. Default 5s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// Azure OpenAI: the `api-version` query parameter (default `2024-10-21`).
    /// Anthropic: the `anthropic-version` header (default `2023-06-01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Ask OpenAI-compatible servers for a usage chunk on streams
    /// (`stream_options.include_usage`), so tokens are counted. Default true; set false
    /// for servers that reject the field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_usage: Option<bool>,
    /// Behaviour of the built-in `mock` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockSpec>,
    /// What the provider account allows, per sidecar: a request that finds no room waits
    /// up to `maxQueue`, then moves on to the route's next target, instead of being sent
    /// to collect a 429.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<ProviderRateLimit>,
}

/// A provider account's limits (see [`ProviderSpec::rate_limit`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderRateLimit {
    /// Requests per minute, at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u32>,
    /// Tokens per minute (prompt estimate plus `max_tokens`, as providers count them
    /// before answering), at least 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u32>,
    /// How long a request may wait for room. Default 1s; `0s` moves on at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<Duration>,
}

/// The wire protocol a provider speaks.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ProviderKind {
    /// OpenAI, and every OpenAI-compatible server: DeepSeek, Mistral, Groq, Together,
    /// Fireworks, OpenRouter, vLLM, Ollama, Qwen compatible mode.
    #[serde(rename = "openai")]
    OpenAi,
    /// Azure OpenAI: deployment URLs, the `api-key` header and an `api-version`.
    #[serde(rename = "azure-openai")]
    AzureOpenAi,
    /// Anthropic's Messages API.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google's Gemini API (generateContent).
    #[serde(rename = "gemini")]
    Gemini,
    /// The built-in deterministic responder, for quickstarts, demos and tests.
    #[serde(rename = "mock")]
    Mock,
}

// === impl ProviderKind ===

impl ProviderKind {
    /// The public endpoint used when `baseUrl` is not set (Azure has none: every
    /// resource has its own).
    pub fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com/v1"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com/v1beta"),
            Self::AzureOpenAi | Self::Mock => None,
        }
    }
}

/// Exactly one source for an API key, in the style of a Kubernetes `EnvVarSource`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.env), has(self.file), has(self.value), has(self.secretRef)].filter(x, x).size() == 1", "message": "set exactly one of env, file, value or secretRef"}
]))]
pub struct ApiKeySource {
    /// Name of an environment variable of the sidecar process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Path of a file holding the key (trailing whitespace is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The key itself. For local experiments only: it then lives in the YAML.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A key of a Secret in the ModelRoute's own namespace (resolved by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// A key within a Secret of the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// The Secret's name (an Opaque Secret in the ModelRoute's namespace).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret's data.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// How the built-in mock provider answers.
///
/// Replies are deterministic: the same request always gets the same text, so demos and
/// tests can assert on it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockSpec {
    /// Fixed reply text. Default: a sentence that echoes the last user message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// Delay before the response starts. Default 0s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Duration>,
    /// Delay between streamed chunks. Default 0s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_delay: Option<Duration>,
    /// Words per streamed chunk. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub words_per_chunk: Option<u32>,
    /// Fail some requests on purpose, to try out retries and fallbacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<MockFailure>,
}

/// A deterministic failure: every `every`-th request fails the way `mode` says.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MockFailure {
    pub mode: MockFailureMode,
    /// HTTP status for `mode: status`. Default 503.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// `Retry-After` sent with the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<Duration>,
    /// Fail one request in this many (1 = all). Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u32>,
}

/// How a mock failure shows itself.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MockFailureMode {
    /// Answer with an error status and an OpenAI-shaped error body.
    Status,
    /// Never answer.
    Hang,
    /// Start a stream and stop halfway without finishing it.
    CutStream,
}
