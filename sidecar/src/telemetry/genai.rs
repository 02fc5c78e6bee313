//! Names from the OpenTelemetry GenAI semantic conventions, shared by spans and metrics.

use modelroute_crds::v1alpha1::ProviderKind;

use crate::provider::{Operation, Provider};

/// `gen_ai.operation.name`.
pub fn operation_name(operation: Operation) -> &'static str {
    match operation {
        Operation::Chat => "chat",
        Operation::Embeddings => "embeddings",
    }
}

/// `gen_ai.provider.name`: the conventions' well-known value for the provider behind the
/// endpoint (OpenAI-compatible APIs by their host), else the kind.
pub fn provider_name(provider: &Provider) -> &'static str {
    const HOSTS: &[(&str, &str)] = &[
        ("api.deepseek.com", "deepseek"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.groq.com", "groq"),
        ("api.x.ai", "x_ai"),
        ("api.perplexity.ai", "perplexity"),
        ("dashscope", "alibaba.dashscope"),
    ];
    match provider.kind {
        ProviderKind::AzureOpenAi => "azure.ai.openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::Mock => "modelroute.mock",
        ProviderKind::OpenAi => HOSTS
            .iter()
            .find(|(host, _)| provider.endpoint.contains(host))
            .map_or("openai", |(_, name)| name),
    }
}
