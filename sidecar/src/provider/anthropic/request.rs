//! OpenAI chat request -> Anthropic Messages request.
//!
//! Never silently changes meaning: what Anthropic cannot express (`n > 1`, logprobs,
//! penalties, `temperature > 1`, audio) is refused with a 400 naming the parameter, before
//! any upstream is called.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::JSON_TOOL;
use crate::api::params::{
    ChatParams, Content, ContentPart, DataUrl, Message, ResponseFormat, ToolCall, ToolChoice,
};
use crate::error::ProxyError;

/// Image types the Messages API accepts in a base64 source.
const IMAGE_TYPES: &[&str] = &["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Messages being built: consecutive turns of one role are merged into one message,
/// because the API wants user and assistant to alternate.
#[derive(Default)]
struct Turns {
    messages: Vec<Value>,
    /// Ids of the tool calls of the latest assistant turn, not yet answered.
    open_calls: Vec<String>,
}

// === impl Turns ===

impl Turns {
    fn push(&mut self, role: &str, mut blocks: Vec<Value>) {
        if let Some(last) = self.messages.last_mut()
            && last["role"] == role
        {
            let content = match last["content"].take() {
                Value::String(text) => vec![json!({"type": "text", "text": text})],
                Value::Array(prev) => prev,
                _ => Vec::new(),
            };
            let mut merged = content;
            merged.append(&mut blocks);
            last["content"] = Value::Array(merged);
            return;
        }
        self.messages
            .push(json!({"role": role, "content": Value::Array(blocks)}));
    }

    /// A single text as the string form, which is what the documented examples send.
    fn push_text(&mut self, role: &str, text: String) {
        if self.messages.last().is_some_and(|m| m["role"] == role) {
            self.push(role, vec![json!({"type": "text", "text": text})]);
        } else {
            self.messages.push(json!({"role": role, "content": text}));
        }
    }
}

/// An OpenAI chat request as an Anthropic Messages request body.
///
/// `model` is the upstream model id; `stream` adds `"stream": true`. Errors are the
/// client's (400) and name the offending parameter.
pub fn chat_request(chat: &ChatParams, model: &str, stream: bool) -> Result<Bytes, ProxyError> {
    let body = build(chat, model, stream)?;
    serde_json::to_vec(&body)
        .map(Bytes::from)
        .map_err(|e| ProxyError::BadRequest(format!("cannot encode the request: {e}")))
}

fn build(chat: &ChatParams, model: &str, stream: bool) -> Result<Value, ProxyError> {
    refuse_unsupported(chat)?;
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let max_tokens = chat
        .max_output_tokens()
        .unwrap_or_else(|| default_max_tokens(model));
    body.insert("max_tokens".into(), json!(max_tokens));

    let (system, messages) = messages(&chat.messages)?;
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    body.insert("messages".into(), Value::Array(messages));

    if let Some(t) = chat.temperature {
        if !(0.0..=1.0).contains(&t) {
            return Err(bad(
                "temperature",
                format!("{t} is outside Anthropic's range 0..1 (OpenAI's 0..2 cannot be mapped)"),
            ));
        }
        body.insert("temperature".into(), json!(t));
    }
    if let Some(p) = chat.top_p {
        body.insert("top_p".into(), json!(p));
    }
    if let Some(k) = chat.top_k {
        body.insert("top_k".into(), json!(k));
    }
    let stops = chat.stop_sequences();
    if stops.iter().any(|s| s.trim().is_empty()) {
        return Err(bad(
            "stop",
            "Anthropic only honours stop sequences with non-whitespace text".into(),
        ));
    }
    if !stops.is_empty() {
        body.insert("stop_sequences".into(), json!(stops));
    }
    if let Some(user) = &chat.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }

    let thinking = thinking(chat, model, max_tokens)?;
    let manual_thinking = thinking
        .as_ref()
        .is_some_and(|(t, _)| t["type"] == "enabled");
    let mut output_config = Map::new();
    if let Some((thinking, effort)) = thinking {
        body.insert("thinking".into(), thinking);
        if let Some(effort) = effort {
            output_config.insert("effort".into(), json!(effort));
        }
    }

    tools(chat, manual_thinking, &mut body)?;
    match &chat.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let Some(schema) = &json_schema.schema else {
                return Err(bad(
                    "response_format.json_schema.schema",
                    "a schema is required".into(),
                ));
            };
            output_config.insert(
                "format".into(),
                json!({"type": "json_schema", "schema": schema}),
            );
        }
        Some(ResponseFormat::JsonObject) => {
            if body.contains_key("tools") || chat.tool_choice.is_some() {
                return Err(bad(
                    "response_format",
                    "json_object is emulated with a forced tool and cannot be combined with tools or tool_choice; use json_schema".into(),
                ));
            }
            if manual_thinking {
                return Err(bad(
                    "response_format",
                    "json_object forces a tool call, which Anthropic refuses with manual (budget) thinking".into(),
                ));
            }
            body.insert(
                "tools".into(),
                json!([{
                    "name": JSON_TOOL,
                    "description": "Respond with a JSON object.",
                    "input_schema": {"type": "object"},
                }]),
            );
            body.insert(
                "tool_choice".into(),
                json!({"type": "tool", "name": JSON_TOOL}),
            );
        }
    }
    if !output_config.is_empty() {
        body.insert("output_config".into(), Value::Object(output_config));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    Ok(Value::Object(body))
}

/// OpenAI parameters with no Anthropic counterpart, refused rather than dropped.
fn refuse_unsupported(chat: &ChatParams) -> Result<(), ProxyError> {
    if chat.n.is_some_and(|n| n > 1) {
        return Err(bad(
            "n",
            "Anthropic returns one choice per request; n must be 1".into(),
        ));
    }
    if chat.logprobs == Some(true) || chat.top_logprobs.is_some_and(|n| n > 0) {
        return Err(bad(
            "logprobs",
            "Anthropic does not return log probabilities".into(),
        ));
    }
    for (name, value) in [
        ("presence_penalty", chat.presence_penalty),
        ("frequency_penalty", chat.frequency_penalty),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(bad(name, "Anthropic has no penalty parameters".into()));
        }
    }
    if chat.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(bad("logit_bias", "Anthropic has no logit bias".into()));
    }
    Ok(())
}

/// `max_tokens` when the client gave none.
///
/// Anthropic requires `max_tokens`; OpenAI's absent value means "as long as the model
/// allows". The model's documented maximum output keeps that meaning, and costs nothing:
/// billing counts generated tokens and output rate limits ignore `max_tokens`. A small
/// constant (1024, 4096) silently truncates long answers and tool calls midway, the
/// most reported bug of other gateways. Unknown models get 4096, which every Claude model
/// accepts. Table from the models overview (platform.claude.com, 2026-08).
fn default_max_tokens(model: &str) -> u64 {
    let m = model.to_ascii_lowercase();
    let has = |parts: &[&str]| parts.iter().any(|p| m.contains(p));
    if has(&[
        "opus-5",
        "sonnet-5",
        "fable-5",
        "mythos",
        "opus-4-8",
        "opus-4-7",
        "opus-4-6",
        "sonnet-4-6",
    ]) {
        128_000
    } else if has(&["opus-4-5", "sonnet-4-5", "haiku-4-5", "3-7-sonnet"]) {
        64_000
    } else if has(&["opus-4"]) {
        32_000
    } else if has(&["sonnet-4"]) {
        64_000
    } else if has(&["3-5-sonnet", "3-5-haiku"]) {
        8_192
    } else {
        4_096
    }
}

/// Whether the model takes `thinking: {type: "adaptive"}` plus `output_config.effort`
/// (else only manual `enabled` thinking with a token budget).
fn adaptive_thinking(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    [
        "opus-5",
        "sonnet-5",
        "fable-5",
        "mythos",
        "opus-4-8",
        "opus-4-7",
        "opus-4-6",
        "sonnet-4-6",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// The `thinking` object and any `output_config.effort`.
///
/// An explicit `thinking` object (not OpenAI's; Anthropic's own compat layer accepts it
/// too) is passed verbatim. Else `reasoning_effort` picks adaptive thinking with that
/// effort on models that have it, or a budget (1024 / 2048 / 4096 tokens, LiteLLM's
/// defaults) on older ones. Without either, no `thinking` key at all: sending
/// `disabled` unasked breaks models whose thinking is always on.
fn thinking(
    chat: &ChatParams,
    model: &str,
    max_tokens: u64,
) -> Result<Option<(Value, Option<&'static str>)>, ProxyError> {
    if let Some(explicit) = chat.extra.get("thinking") {
        if !explicit.is_object() {
            return Err(bad("thinking", "must be an object".into()));
        }
        return Ok(Some((explicit.clone(), None)));
    }
    let Some(effort) = chat.reasoning_effort.as_deref() else {
        return Ok(None);
    };
    if effort == "none" {
        return Ok(Some((json!({"type": "disabled"}), None)));
    }
    if adaptive_thinking(model) {
        let effort = match effort {
            "minimal" | "low" => "low",
            "medium" => "medium",
            "high" => "high",
            "xhigh" => "xhigh",
            "max" => "max",
            other => return Err(bad("reasoning_effort", format!("unknown value {other:?}"))),
        };
        // Summarized, so `reasoning_content` has text (newer models default to omitted).
        let thinking = json!({"type": "adaptive", "display": "summarized"});
        return Ok(Some((thinking, Some(effort))));
    }
    let budget: u64 = match effort {
        "minimal" | "low" => 1024,
        "medium" => 2048,
        "high" => 4096,
        other => {
            return Err(bad(
                "reasoning_effort",
                format!("{other:?} is not available on {model} (low, medium or high)"),
            ));
        }
    };
    if budget >= max_tokens {
        return Err(bad(
            "max_tokens",
            format!(
                "reasoning_effort {effort} needs a thinking budget of {budget} tokens, which must be below max_tokens ({max_tokens})"
            ),
        ));
    }
    Ok(Some((
        json!({"type": "enabled", "budget_tokens": budget}),
        None,
    )))
}

/// `tools`, `tool_choice` and `parallel_tool_calls`.
fn tools(
    chat: &ChatParams,
    manual_thinking: bool,
    body: &mut Map<String, Value>,
) -> Result<(), ProxyError> {
    let Some(tools) = chat.tools.as_ref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(bad(
                &format!("tools[{i}].type"),
                format!(
                    "only function tools can be sent to Anthropic, not {:?}",
                    tool.kind
                ),
            ));
        }
        let f = &tool.function;
        if f.name == JSON_TOOL {
            return Err(bad(
                &format!("tools[{i}].function.name"),
                format!(
                    "the name {JSON_TOOL:?} is reserved by the gateway (response_format json_object)"
                ),
            ));
        }
        let schema = f
            .parameters
            .clone()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        if schema.get("type").is_some_and(|t| t != "object") {
            return Err(bad(
                &format!("tools[{i}].function.parameters"),
                "Anthropic tool input schemas must be of type object".into(),
            ));
        }
        let mut def = Map::new();
        def.insert("name".into(), json!(f.name));
        if let Some(d) = &f.description {
            def.insert("description".into(), json!(d));
        }
        def.insert("input_schema".into(), schema);
        if f.strict == Some(true) {
            def.insert("strict".into(), json!(true));
        }
        out.push(Value::Object(def));
    }
    body.insert("tools".into(), Value::Array(out));

    let mut choice = match &chat.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "none" => Some(json!({"type": "none"})),
            "required" => Some(json!({"type": "any"})),
            other => return Err(bad("tool_choice", format!("unknown value {other:?}"))),
        },
        Some(ToolChoice::Named { function }) => {
            Some(json!({"type": "tool", "name": function.name}))
        }
    };
    let forced = choice
        .as_ref()
        .is_some_and(|c| c["type"] == "any" || c["type"] == "tool");
    if forced && manual_thinking {
        return Err(bad(
            "tool_choice",
            "Anthropic refuses forced tool use (required or a named tool) with manual (budget) thinking".into(),
        ));
    }
    if chat.parallel_tool_calls == Some(false) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let Some(choice) = choice {
        body.insert("tool_choice".into(), choice);
    }
    Ok(())
}

/// The `system` blocks and the `messages`.
fn messages(input: &[Message]) -> Result<(Vec<Value>, Vec<Value>), ProxyError> {
    let mut system = Vec::new();
    let mut turns = Turns::default();
    for (i, message) in input.iter().enumerate() {
        match message {
            // Hoisted in order, like Anthropic's own compat layer; whitespace-only text
            // would be refused upstream.
            Message::System { content } | Message::Developer { content } => {
                for text in texts(content) {
                    if !text.trim().is_empty() {
                        system.push(json!({"type": "text", "text": text}));
                    }
                }
            }
            Message::User { content } => {
                turns.open_calls.clear();
                match content {
                    Content::Text(text) => {
                        if text.trim().is_empty() {
                            return Err(bad(
                                &format!("messages[{i}].content"),
                                "Anthropic refuses empty user messages".into(),
                            ));
                        }
                        turns.push_text("user", text.clone());
                    }
                    Content::Parts(parts) => {
                        let blocks = parts_to_blocks(parts, &format!("messages[{i}].content"))?;
                        if blocks.is_empty() {
                            return Err(bad(
                                &format!("messages[{i}].content"),
                                "Anthropic refuses empty user messages".into(),
                            ));
                        }
                        turns.push("user", blocks);
                    }
                }
            }
            Message::Assistant {
                content,
                tool_calls,
                thinking_blocks,
                ..
            } => {
                let mut blocks = replayable_thinking(thinking_blocks);
                let text_only = blocks.is_empty() && tool_calls.is_empty();
                match content {
                    Some(Content::Text(text)) if text_only && !text.is_empty() => {
                        turns.push_text("assistant", text.clone());
                        turns.open_calls.clear();
                        continue;
                    }
                    Some(content) => {
                        // Empty text blocks are refused upstream; refusal parts dropped.
                        for text in texts(content) {
                            if !text.is_empty() {
                                blocks.push(json!({"type": "text", "text": text}));
                            }
                        }
                    }
                    None => {}
                }
                turns.open_calls.clear();
                for (j, call) in tool_calls.iter().enumerate() {
                    blocks.push(tool_use(call, &format!("messages[{i}].tool_calls[{j}]"))?);
                    turns.open_calls.push(call.id.clone());
                }
                if !blocks.is_empty() {
                    turns.push("assistant", blocks);
                }
            }
            Message::Tool {
                tool_call_id,
                content,
            } => {
                if !turns.open_calls.contains(tool_call_id) {
                    return Err(bad(
                        &format!("messages[{i}].tool_call_id"),
                        format!(
                            "{tool_call_id:?} answers no tool call of the preceding assistant message"
                        ),
                    ));
                }
                let mut result = Map::new();
                result.insert("type".into(), json!("tool_result"));
                result.insert("tool_use_id".into(), json!(tool_call_id));
                match content {
                    Content::Text(text) if text.is_empty() => {}
                    Content::Text(text) => {
                        result.insert("content".into(), json!(text));
                    }
                    Content::Parts(parts) => {
                        let blocks = parts_to_blocks(parts, &format!("messages[{i}].content"))?;
                        if !blocks.is_empty() {
                            result.insert("content".into(), Value::Array(blocks));
                        }
                    }
                }
                // Consecutive tool messages land in one user message, results first:
                // the API wants every result of a parallel batch in the next message.
                turns.push("user", vec![Value::Object(result)]);
            }
        }
    }
    Ok((system, turns.messages))
}

/// The text of each text part (a string is one part).
fn texts(content: &Content) -> Vec<String> {
    match content {
        Content::Text(t) => vec![t.clone()],
        Content::Parts(parts) => parts
            .iter()
            .filter_map(|p| match p {
                ContentPart::Text { text } => Some(text.clone()),
                _ => None,
            })
            .collect(),
    }
}

/// User (or tool) content parts as Anthropic blocks; empty texts dropped.
fn parts_to_blocks(parts: &[ContentPart], at: &str) -> Result<Vec<Value>, ProxyError> {
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        match part {
            ContentPart::Text { text } => {
                if !text.is_empty() {
                    blocks.push(json!({"type": "text", "text": text}));
                }
            }
            ContentPart::ImageUrl { image_url } => {
                let at = format!("{at}[{j}].image_url");
                blocks.push(json!({"type": "image", "source": image_source(&image_url.url, &at)?}));
            }
            ContentPart::File { file } => {
                let pdf = file
                    .get("file_data")
                    .and_then(Value::as_str)
                    .and_then(DataUrl::parse)
                    .filter(|d| d.media_type == "application/pdf");
                let Some(pdf) = pdf else {
                    return Err(bad(
                        &format!("{at}[{j}]"),
                        "only PDF files sent inline as file_data (a base64 data URL) can be sent to Anthropic".into(),
                    ));
                };
                blocks.push(json!({"type": "document", "source": {
                    "type": "base64", "media_type": "application/pdf", "data": pdf.base64,
                }}));
            }
            ContentPart::InputAudio { .. } => {
                return Err(bad(
                    &format!("{at}[{j}]"),
                    "Anthropic does not accept audio input".into(),
                ));
            }
            ContentPart::Refusal { .. } => {}
        }
    }
    Ok(blocks)
}

/// A data URL becomes a base64 source, an http(s) URL a url source (Anthropic fetches
/// it; downloading here would only make the request bigger).
fn image_source(url: &str, at: &str) -> Result<Value, ProxyError> {
    if url.starts_with("data:") {
        let Some(data) = DataUrl::parse(url) else {
            return Err(bad(
                at,
                "data URLs must be base64 (data:<type>;base64,...)".into(),
            ));
        };
        if !IMAGE_TYPES.contains(&data.media_type) {
            return Err(bad(
                at,
                format!(
                    "Anthropic accepts {} images, not {}",
                    IMAGE_TYPES.join(", "),
                    data.media_type
                ),
            ));
        }
        return Ok(json!({"type": "base64", "media_type": data.media_type, "data": data.base64}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "url", "url": url}));
    }
    Err(bad(at, "images must be http(s) or base64 data URLs".into()))
}

/// An assistant tool call as a `tool_use` block. The arguments must parse to a JSON
/// object (empty means none); a string `input` would break every later turn upstream.
fn tool_use(call: &ToolCall, at: &str) -> Result<Value, ProxyError> {
    let args = call.function.arguments.trim();
    let input = if args.is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(args) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                return Err(bad(
                    &format!("{at}.function.arguments"),
                    "must be a JSON object".into(),
                ));
            }
            Err(e) => {
                return Err(bad(
                    &format!("{at}.function.arguments"),
                    format!("is not valid JSON: {e}"),
                ));
            }
        }
    };
    Ok(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}))
}

/// Thinking blocks returned by an earlier answer, to send back unchanged and in order.
/// Unsigned blocks are dropped (Anthropic refuses them); a signed block with empty text
/// (display "omitted") is kept.
fn replayable_thinking(blocks: &[Value]) -> Vec<Value> {
    blocks
        .iter()
        .filter(|b| match b.get("type").and_then(Value::as_str) {
            Some("thinking") => b
                .get("signature")
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty()),
            Some("redacted_thinking") => b.get("data").and_then(Value::as_str).is_some(),
            _ => false,
        })
        .cloned()
        .collect()
}

fn bad(param: &str, message: String) -> ProxyError {
    ProxyError::BadRequest(format!("{param}: {message}"))
}
