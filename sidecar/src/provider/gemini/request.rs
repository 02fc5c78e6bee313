//! OpenAI chat request -> Gemini `GenerateContentRequest` (spec.md §7).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::{is_generated_id, schema};
use crate::api::params::{
    ChatParams, Content, ContentPart, DataUrl, Message, ResponseFormat, Tool, ToolCall, ToolChoice,
};
use crate::error::ProxyError;

/// Gemini's stop sequence limit.
const MAX_STOP_SEQUENCES: usize = 5;
/// Gemini's function name limit (OpenAI allows 64).
const MAX_FUNCTION_NAME: usize = 63;

fn bad(message: impl Into<String>) -> ProxyError {
    ProxyError::BadRequest(message.into())
}

/// The request body as a JSON value (`chat_request` serializes it).
pub fn build(chat: &ChatParams, model: &str) -> Result<Value, ProxyError> {
    let mut body = Map::new();
    let (system, contents) = messages(&chat.messages)?;
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    body.insert("contents".into(), Value::Array(contents));
    if let Some(tools) = &chat.tools
        && !tools.is_empty()
    {
        body.insert(
            "tools".into(),
            json!([{"functionDeclarations": declarations(tools)?}]),
        );
    }
    if let Some(choice) = &chat.tool_choice {
        body.insert(
            "toolConfig".into(),
            json!({"functionCallingConfig": calling_config(choice, chat.tools.as_deref())?}),
        );
    }
    if chat.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(bad(
            "`logit_bias` is not supported by Gemini; remove it or route this request to another provider",
        ));
    }
    if chat.logprobs == Some(true) {
        return Err(bad(
            "`logprobs` is not supported by modelroute's Gemini translation",
        ));
    }
    let config = generation_config(chat, model)?;
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// `systemInstruction` parts, and `contents`.
fn messages(messages: &[Message]) -> Result<(Vec<Value>, Vec<Value>), ProxyError> {
    let mut system = Vec::new();
    let mut contents: Vec<Value> = Vec::new();
    // tool_call_id -> function name, from the assistant turns seen so far.
    let mut calls: HashMap<&str, &str> = HashMap::new();
    for (i, message) in messages.iter().enumerate() {
        match message {
            Message::System { content } | Message::Developer { content } => {
                system.extend(system_parts(content, i)?);
            }
            Message::User { content } => {
                push_user(&mut contents, user_parts(content, i)?);
            }
            Message::Assistant {
                content,
                tool_calls,
                extra_content,
                ..
            } => {
                let mut parts = Vec::new();
                if let Some(text) = content.as_ref().map(Content::text)
                    && !text.is_empty()
                {
                    parts.push(json!({"text": text}));
                }
                // A text answer's signature comes back on the message (spec §7.1 item 3).
                if let Some(sig) = signature(extra_content.as_ref())
                    && let Some(Value::Object(last)) = parts.last_mut()
                {
                    last.insert("thoughtSignature".into(), Value::String(sig.into()));
                }
                for (j, call) in tool_calls.iter().enumerate() {
                    calls.insert(&call.id, &call.function.name);
                    parts.push(function_call(call, i, j)?);
                }
                if !parts.is_empty() {
                    contents.push(json!({"role": "model", "parts": parts}));
                }
            }
            Message::Tool {
                tool_call_id,
                content,
            } => {
                let Some(name) = calls.get(tool_call_id.as_str()) else {
                    return Err(bad(format!(
                        "messages[{i}]: tool_call_id `{tool_call_id}` has no matching assistant tool call earlier in the conversation"
                    )));
                };
                let mut response = json!({"name": name, "response": tool_result(content)});
                if !is_generated_id(tool_call_id) {
                    response["id"] = json!(tool_call_id);
                }
                push_user(&mut contents, vec![json!({"functionResponse": response})]);
            }
        }
    }
    Ok((system, contents))
}

/// Adds user parts, joining them to a user turn just before (tool results, then text):
/// all results of one model turn must be in one Content.
fn push_user(contents: &mut Vec<Value>, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    if let Some(last) = contents.last_mut()
        && last["role"] == "user"
        && let Some(have) = last["parts"].as_array_mut()
    {
        have.extend(parts);
        return;
    }
    contents.push(json!({"role": "user", "parts": parts}));
}

fn system_parts(content: &Content, i: usize) -> Result<Vec<Value>, ProxyError> {
    match content {
        Content::Text(t) => Ok(vec![json!({"text": t})]),
        Content::Parts(parts) => parts
            .iter()
            .map(|p| match p {
                ContentPart::Text { text } => Ok(json!({"text": text})),
                _ => Err(bad(format!(
                    "messages[{i}]: Gemini system instructions take text only"
                ))),
            })
            .collect(),
    }
}

fn user_parts(content: &Content, i: usize) -> Result<Vec<Value>, ProxyError> {
    match content {
        Content::Text(t) => Ok(vec![json!({"text": t})]),
        Content::Parts(parts) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| user_part(p, &format!("messages[{i}].content[{j}]")))
            .collect(),
    }
}

fn user_part(part: &ContentPart, at: &str) -> Result<Value, ProxyError> {
    match part {
        ContentPart::Text { text } => Ok(json!({"text": text})),
        ContentPart::Refusal { refusal } => Ok(json!({"text": refusal})),
        ContentPart::ImageUrl { image_url } => {
            let url = image_url.url.as_str();
            if url.starts_with("data:") {
                let Some(data) = DataUrl::parse(url) else {
                    return Err(bad(format!(
                        "{at}: image data URLs must be `data:<media type>;base64,<data>`"
                    )));
                };
                return inline(data.media_type, data.base64, at);
            }
            if url.starts_with("https://") || url.starts_with("http://") {
                // Gemini fetches public and pre-signed URLs itself (fileData.fileUri);
                // the gateway downloads nothing, so it adds no SSRF surface.
                let mut file = json!({"fileUri": url});
                if let Some(mime) = mime_from_extension(url) {
                    file["mimeType"] = json!(mime);
                }
                return Ok(json!({"fileData": file}));
            }
            Err(bad(format!(
                "{at}: image URLs must be data: or http(s): URLs"
            )))
        }
        ContentPart::InputAudio { input_audio } => {
            let (Some(data), Some(format)) = (
                input_audio.get("data").and_then(Value::as_str),
                input_audio.get("format").and_then(Value::as_str),
            ) else {
                return Err(bad(format!("{at}: input_audio needs `data` and `format`")));
            };
            inline(&format!("audio/{format}"), data, at)
        }
        ContentPart::File { file } => {
            let Some(url) = file.get("file_data").and_then(Value::as_str) else {
                return Err(bad(format!(
                    "{at}: Gemini needs the file's data (`file_data`); OpenAI file ids mean nothing to it"
                )));
            };
            let Some(data) = DataUrl::parse(url) else {
                return Err(bad(format!(
                    "{at}: `file_data` must be `data:<media type>;base64,<data>`"
                )));
            };
            inline(data.media_type, data.base64, at)
        }
    }
}

fn inline(mime: &str, data: &str, at: &str) -> Result<Value, ProxyError> {
    let valid = !data.is_empty()
        && data
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(&b));
    if !valid {
        return Err(bad(format!("{at}: the inline data is not base64")));
    }
    Ok(json!({"inlineData": {"mimeType": mime, "data": data}}))
}

fn mime_from_extension(url: &str) -> Option<&'static str> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

/// `extra_content.google.thought_signature`, Google's OpenAI-compatible carrier.
fn signature(extra: Option<&Value>) -> Option<&str> {
    extra?.get("google")?.get("thought_signature")?.as_str()
}

fn function_call(call: &ToolCall, i: usize, j: usize) -> Result<Value, ProxyError> {
    let raw = call.function.arguments.trim();
    let args: Value = if raw.is_empty() {
        json!({})
    } else {
        serde_json::from_str(raw).map_err(|e| {
            bad(format!(
                "messages[{i}].tool_calls[{j}].function.arguments is not valid JSON: {e}"
            ))
        })?
    };
    if !args.is_object() {
        return Err(bad(format!(
            "messages[{i}].tool_calls[{j}].function.arguments must be a JSON object"
        )));
    }
    let mut fc = json!({"name": call.function.name, "args": args});
    if !is_generated_id(&call.id) {
        fc["id"] = json!(call.id);
    }
    let mut part = json!({"functionCall": fc});
    if let Some(sig) = signature(call.extra_content.as_ref()) {
        part["thoughtSignature"] = json!(sig);
    }
    Ok(part)
}

/// A tool message's content as `functionResponse.response`, which must be an object.
fn tool_result(content: &Content) -> Value {
    let text = content.text();
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(obj)) => Value::Object(obj),
        Ok(other) => json!({"result": other}),
        Err(_) => json!({"result": text}),
    }
}

fn declarations(tools: &[Tool]) -> Result<Vec<Value>, ProxyError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.kind != "function" {
                return Err(bad(format!(
                    "tools[{i}]: Gemini supports function tools only, not `{}`",
                    tool.kind
                )));
            }
            let f = &tool.function;
            check_name(&f.name, &format!("tools[{i}].function.name"))?;
            let mut decl = json!({"name": f.name});
            if let Some(d) = &f.description {
                decl["description"] = json!(d);
            }
            if let Some(params) = &f.parameters {
                let at = format!("tools[{i}].function.parameters");
                let converted = schema::convert(params, &at)?;
                if converted.get("type").and_then(Value::as_str) != Some("OBJECT") {
                    return Err(bad(format!(
                        "{at}: Gemini needs function parameters of type object"
                    )));
                }
                // Gemini refuses an OBJECT with empty properties: no parameters at all.
                let has_properties = converted
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty());
                if has_properties {
                    decl["parameters"] = converted;
                }
            }
            Ok(decl)
        })
        .collect()
}

fn check_name(name: &str, at: &str) -> Result<(), ProxyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_FUNCTION_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(bad(format!(
            "{at}: Gemini function names are 1-{MAX_FUNCTION_NAME} characters of a-z, A-Z, 0-9, _ and -, starting with a letter or _ (got `{name}`)"
        )))
    }
}

fn calling_config(choice: &ToolChoice, tools: Option<&[Tool]>) -> Result<Value, ProxyError> {
    Ok(match choice {
        ToolChoice::Mode(mode) => match mode.as_str() {
            "auto" => json!({"mode": "AUTO"}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            other => {
                return Err(bad(format!(
                    "tool_choice: unknown mode `{other}` (auto, none, required or a function)"
                )));
            }
        },
        ToolChoice::Named { function } => {
            let known = tools
                .unwrap_or_default()
                .iter()
                .any(|t| t.function.name == function.name);
            if !known {
                return Err(bad(format!(
                    "tool_choice names the function `{}`, which is not in `tools`",
                    function.name
                )));
            }
            json!({"mode": "ANY", "allowedFunctionNames": [function.name]})
        }
    })
}

fn generation_config(chat: &ChatParams, model: &str) -> Result<Map<String, Value>, ProxyError> {
    let mut c = Map::new();
    let stops = chat.stop_sequences();
    if stops.len() > MAX_STOP_SEQUENCES {
        return Err(bad(format!(
            "`stop`: Gemini takes at most {MAX_STOP_SEQUENCES} stop sequences"
        )));
    }
    if !stops.is_empty() {
        c.insert("stopSequences".into(), json!(stops));
    }
    if let Some(n) = chat.max_output_tokens() {
        c.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(t) = chat.temperature {
        c.insert("temperature".into(), json!(t));
    }
    if let Some(p) = chat.top_p {
        c.insert("topP".into(), json!(p));
    }
    if let Some(k) = chat.top_k {
        c.insert("topK".into(), json!(k));
    }
    if let Some(seed) = chat.seed {
        let Ok(seed) = i32::try_from(seed) else {
            return Err(bad("`seed`: Gemini takes a 32-bit seed"));
        };
        c.insert("seed".into(), json!(seed));
    }
    if let Some(n) = chat.n {
        c.insert("candidateCount".into(), json!(n));
    }
    if let Some(p) = chat.presence_penalty {
        c.insert("presencePenalty".into(), json!(p));
    }
    if let Some(p) = chat.frequency_penalty {
        c.insert("frequencyPenalty".into(), json!(p));
    }
    match &chat.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            c.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            c.insert("responseMimeType".into(), json!("application/json"));
            if let Some(s) = &json_schema.schema {
                c.insert(
                    "responseSchema".into(),
                    schema::convert(s, "response_format.json_schema.schema")?,
                );
            }
        }
    }
    if let Some(thinking) = thinking_config(chat, model)? {
        c.insert("thinkingConfig".into(), thinking);
    }
    Ok(c)
}

/// `reasoning_effort`, overridden by Google's OpenAI-compatible extension
/// `extra_body.google.thinking_config` (`thinking_budget`, `thinking_level`,
/// `include_thoughts`), also accepted as a top-level `google` field.
fn thinking_config(chat: &ChatParams, model: &str) -> Result<Option<Value>, ProxyError> {
    let mut config = Map::new();
    if let Some(effort) = &chat.reasoning_effort {
        let gemini3 = model.starts_with("gemini-3");
        let (key, value) = match (gemini3, effort.as_str()) {
            (true, "none" | "minimal") => ("thinkingLevel", json!("minimal")),
            (true, level @ ("low" | "medium" | "high")) => ("thinkingLevel", json!(level)),
            (false, "none" | "minimal") => ("thinkingBudget", json!(0)),
            (false, "low") => ("thinkingBudget", json!(1024)),
            (false, "medium") => ("thinkingBudget", json!(8192)),
            (false, "high") => ("thinkingBudget", json!(24576)),
            (_, other) => {
                return Err(bad(format!(
                    "`reasoning_effort`: unknown value `{other}` (none, minimal, low, medium, high)"
                )));
            }
        };
        config.insert(key.into(), value);
    }
    let google = chat
        .extra
        .get("extra_body")
        .and_then(|e| e.get("google"))
        .or_else(|| chat.extra.get("google"));
    if let Some(tc) = google.and_then(|g| g.get("thinking_config")) {
        for (from, to) in [
            ("thinking_budget", "thinkingBudget"),
            ("thinking_level", "thinkingLevel"),
            ("include_thoughts", "includeThoughts"),
        ] {
            if let Some(v) = tc.get(from) {
                if to != "includeThoughts" {
                    config.remove("thinkingBudget");
                    config.remove("thinkingLevel");
                }
                config.insert(to.into(), v.clone());
            }
        }
        if tc.get("thinking_budget").is_some() && tc.get("thinking_level").is_some() {
            return Err(bad(
                "google.thinking_config: give thinking_budget or thinking_level, not both",
            ));
        }
    }
    Ok((!config.is_empty()).then_some(Value::Object(config)))
}
