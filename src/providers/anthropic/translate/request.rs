//! OpenAI chat-completions request → Anthropic Messages request (see the table in the parent).

use serde_json::{Map, Value, json};

use super::{DEFAULT_MAX_TOKENS, TranslateError};

/// An Anthropic Messages request, translated from an OpenAI chat-completions request.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicRequest {
    /// The `POST /v1/messages` body.
    pub body: Value,
    /// The client asked for a stream (`stream: true`, also set in `body`).
    pub stream: bool,
    /// The client asked for the final usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
    /// The requested model, unchanged.
    pub model: String,
}

type Result<T> = std::result::Result<T, TranslateError>;

fn invalid(message: impl Into<String>) -> TranslateError {
    TranslateError::Invalid(message.into())
}

fn unsupported(param: impl Into<String>, message: impl Into<String>) -> TranslateError {
    TranslateError::unsupported(param, message)
}

/// OpenAI chat-completions request body → Anthropic Messages request body (JSON bytes).
/// `stream` is carried over. Returns also whether the client asked for stream usage.
pub fn request_to_anthropic(openai_body: &[u8]) -> Result<AnthropicRequest> {
    let top = match serde_json::from_slice::<Value>(openai_body) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err(invalid("the request body must be a JSON object")),
        Err(e) => return Err(invalid(format!("the request body is not valid JSON: {e}"))),
    };
    let fields = Fields::read(top)?;

    let model = fields
        .model
        .ok_or_else(|| invalid("missing required parameter 'model'"))?;
    let messages = fields
        .messages
        .ok_or_else(|| invalid("missing required parameter 'messages'"))?;
    let (system, turns) = translate_messages(messages)?;

    let mut body = Map::new();
    body.insert("model".into(), Value::String(model.clone()));
    let max_tokens = fields
        .max_completion_tokens
        .or(fields.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    body.insert("max_tokens".into(), max_tokens.into());
    if let Some(system) = system {
        body.insert("system".into(), system);
    }
    body.insert("messages".into(), Value::Array(turns));
    if fields.stream {
        body.insert("stream".into(), Value::Bool(true));
    }
    if let Some(t) = fields.temperature {
        body.insert("temperature".into(), t);
    }
    if let Some(p) = fields.top_p {
        body.insert("top_p".into(), p);
    }
    if !fields.stop.is_empty() {
        body.insert("stop_sequences".into(), fields.stop.into());
    }
    let tools = match fields.tools {
        Some(tools) => translate_tools(tools)?,
        None => Vec::new(),
    };
    let tool_choice = translate_tool_choice(
        fields.tool_choice,
        fields.parallel_tool_calls,
        !tools.is_empty(),
    )?;
    if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = tool_choice {
        body.insert("tool_choice".into(), choice);
    }
    if let Some(user) = fields.safety_identifier.or(fields.user) {
        body.insert("metadata".into(), json!({ "user_id": user }));
    }

    Ok(AnthropicRequest {
        body: Value::Object(body),
        stream: fields.stream,
        include_usage: fields.include_usage,
        model,
    })
}

/// The top-level fields that translate into something; everything else is checked and
/// either ignored or rejected while reading.
#[derive(Default)]
struct Fields {
    model: Option<String>,
    messages: Option<Vec<Value>>,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<u32>,
    max_completion_tokens: Option<u32>,
    temperature: Option<Value>,
    top_p: Option<Value>,
    stop: Vec<String>,
    tools: Option<Vec<Value>>,
    tool_choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    user: Option<String>,
    safety_identifier: Option<String>,
}

impl Fields {
    fn read(top: Map<String, Value>) -> Result<Fields> {
        let mut f = Fields::default();
        for (key, value) in top {
            if value.is_null() {
                continue;
            }
            let k = key.as_str();
            match k {
                "model" => f.model = Some(string(value, k)?),
                "messages" => match value {
                    Value::Array(items) => f.messages = Some(items),
                    _ => return Err(invalid("'messages' must be an array")),
                },
                "stream" => f.stream = boolean(&value, k)?,
                "stream_options" => f.include_usage = stream_options(value)?,
                "max_tokens" => f.max_tokens = Some(count(&value, k)?),
                "max_completion_tokens" => f.max_completion_tokens = Some(count(&value, k)?),
                "temperature" => {
                    let t = number(&value, k)?;
                    if t > 1.0 {
                        return Err(unsupported(
                            k,
                            format!(
                                "temperature {t} is not supported: Anthropic models accept 0 to 1"
                            ),
                        ));
                    }
                    if t < 0.0 {
                        return Err(invalid(format!("'temperature' must be >= 0, got {t}")));
                    }
                    f.temperature = Some(value);
                }
                "top_p" => {
                    number(&value, k)?;
                    f.top_p = Some(value);
                }
                "stop" => f.stop = stop(value)?,
                "tools" => match value {
                    Value::Array(items) => f.tools = Some(items),
                    _ => return Err(invalid("'tools' must be an array")),
                },
                "tool_choice" => f.tool_choice = Some(value),
                "parallel_tool_calls" => f.parallel_tool_calls = Some(boolean(&value, k)?),
                "user" => f.user = Some(string(value, k)?),
                "safety_identifier" => f.safety_identifier = Some(string(value, k)?),
                // Hints that do not change the answer.
                "prompt_cache_key"
                | "prompt_cache_retention"
                | "prompt_cache_options"
                | "metadata" => {}
                "store" => reject_unless(k, &value, &json!(false))?,
                "service_tier" => {
                    if !matches!(value.as_str(), Some("auto" | "default")) {
                        return Err(unsupported(
                            k,
                            format!(
                                "service_tier {value} is not supported for Anthropic models (only auto and default)"
                            ),
                        ));
                    }
                }
                "n" => reject_unless(k, &value, &json!(1))?,
                "logprobs" => reject_unless(k, &value, &json!(false))?,
                "top_logprobs" => reject_unless(k, &value, &json!(0))?,
                "logit_bias" => reject_unless(k, &value, &json!({}))?,
                "response_format" => reject_unless(k, &value, &json!({"type": "text"}))?,
                "modalities" => reject_unless(k, &value, &json!(["text"]))?,
                "reasoning_effort" => reject_unless(k, &value, &json!("none"))?,
                "verbosity" => reject_unless(k, &value, &json!("medium"))?,
                "presence_penalty" | "frequency_penalty" => {
                    if number(&value, k)? != 0.0 {
                        return Err(not_supported(k));
                    }
                }
                "audio" | "prediction" | "seed" | "web_search_options" | "moderation"
                | "functions" | "function_call" => return Err(not_supported(k)),
                _ => {
                    return Err(unsupported(
                        k,
                        format!("unknown parameter '{k}' is not supported for Anthropic models"),
                    ));
                }
            }
        }
        Ok(f)
    }
}

fn not_supported(param: &str) -> TranslateError {
    unsupported(
        param,
        format!("'{param}' is not supported for Anthropic models"),
    )
}

/// Accepts `value` only when it equals the OpenAI default `accepted` (a no-op).
fn reject_unless(param: &str, value: &Value, accepted: &Value) -> Result<()> {
    let same = match (value, accepted) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => value == accepted,
    };
    if same {
        Ok(())
    } else {
        Err(unsupported(
            param,
            format!("'{param}' = {value} is not supported for Anthropic models"),
        ))
    }
}

fn string(value: Value, param: &str) -> Result<String> {
    match value {
        Value::String(s) => Ok(s),
        other => Err(invalid(format!("'{param}' must be a string, got {other}"))),
    }
}

fn boolean(value: &Value, param: &str) -> Result<bool> {
    value
        .as_bool()
        .ok_or_else(|| invalid(format!("'{param}' must be a boolean, got {value}")))
}

fn number(value: &Value, param: &str) -> Result<f64> {
    value
        .as_f64()
        .ok_or_else(|| invalid(format!("'{param}' must be a number, got {value}")))
}

fn count(value: &Value, param: &str) -> Result<u32> {
    value
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            invalid(format!(
                "'{param}' must be a non-negative integer, got {value}"
            ))
        })
}

fn stream_options(value: Value) -> Result<bool> {
    let Value::Object(opts) = value else {
        return Err(invalid("'stream_options' must be an object"));
    };
    let mut include_usage = false;
    for (key, v) in opts {
        match key.as_str() {
            _ if v.is_null() => {}
            "include_usage" => include_usage = boolean(&v, "stream_options.include_usage")?,
            // Anthropic sends no obfuscation padding, so there is nothing to turn off.
            "include_obfuscation" => {
                boolean(&v, "stream_options.include_obfuscation")?;
            }
            other => return Err(not_supported(&format!("stream_options.{other}"))),
        }
    }
    Ok(include_usage)
}

fn stop(value: Value) -> Result<Vec<String>> {
    let list = match value {
        Value::String(s) => vec![s],
        Value::Array(items) => items
            .into_iter()
            .map(|v| string(v, "stop[]"))
            .collect::<Result<Vec<_>>>()?,
        other => {
            return Err(invalid(format!(
                "'stop' must be a string or an array of strings, got {other}"
            )));
        }
    };
    if list.iter().any(|s| s.trim().is_empty()) {
        return Err(unsupported(
            "stop",
            "empty or whitespace-only stop sequences are not supported for Anthropic models",
        ));
    }
    Ok(list)
}

// ---------------------------------------------------------------------------------------
// Messages

/// `messages` → (`system`, Anthropic `messages`).
fn translate_messages(messages: Vec<Value>) -> Result<(Option<Value>, Vec<Value>)> {
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in messages.into_iter().enumerate() {
        let Value::Object(mut m) = message else {
            return Err(invalid(format!("messages[{i}] must be an object")));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => r.clone(),
            _ => return Err(invalid(format!("messages[{i}].role must be a string"))),
        };
        let content = m.remove("content").unwrap_or(Value::Null);
        let (role, blocks) = match role.as_str() {
            "system" | "developer" => {
                system.extend(text_blocks(content, &format!("messages[{i}].content"))?);
                continue;
            }
            "user" => {
                let blocks = user_blocks(content, i)?;
                if blocks.is_empty() {
                    return Err(invalid(format!(
                        "messages[{i}].content must not be empty for Anthropic models"
                    )));
                }
                ("user", blocks)
            }
            "assistant" => {
                let blocks = assistant_blocks(content, m, i)?;
                if blocks.is_empty() {
                    continue;
                }
                ("assistant", blocks)
            }
            "tool" => ("user", vec![tool_result(content, &m, i)?]),
            "function" => {
                return Err(unsupported(
                    format!("messages[{i}].role"),
                    "role 'function' is not supported for Anthropic models; use 'tool' messages",
                ));
            }
            other => {
                return Err(invalid(format!(
                    "messages[{i}].role: unknown role '{other}'"
                )));
            }
        };
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns.is_empty() {
        return Err(invalid(
            "'messages' must contain at least one user or assistant message",
        ));
    }
    let turns = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == "user" {
                // Anthropic wants tool results before anything else in a user turn.
                blocks
                    .sort_by_key(|b| b.get("type").and_then(Value::as_str) != Some("tool_result"));
            }
            json!({ "role": role, "content": compact_content(blocks) })
        })
        .collect();
    let system = match system.len() {
        0 => None,
        _ => Some(compact_content(system)),
    };
    Ok((system, turns))
}

/// One text block → its string; otherwise the block array.
fn compact_content(mut blocks: Vec<Value>) -> Value {
    if blocks.len() == 1 && blocks[0].get("type").and_then(Value::as_str) == Some("text") {
        if let Some(text) = blocks[0].get_mut("text") {
            return text.take();
        }
    }
    Value::Array(blocks)
}

fn text_block(text: String) -> Value {
    json!({ "type": "text", "text": text })
}

/// Content that may only hold text (system, developer, tool): string or `text` parts.
/// Empty texts are dropped.
fn text_blocks(content: Value, param: &str) -> Result<Vec<Value>> {
    match content {
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![text_block(s)]),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.into_iter().enumerate() {
                let part_param = format!("{param}[{j}]");
                let (kind, mut part) = part_kind(part, &part_param)?;
                if kind != "text" {
                    return Err(unsupported(
                        part_param,
                        format!("content part type '{kind}' is not supported here"),
                    ));
                }
                push_text(&mut out, &mut part, &part_param, "text")?;
            }
            Ok(out)
        }
        Value::Null => Err(invalid(format!("'{param}' is required"))),
        other => Err(invalid(format!(
            "'{param}' must be a string or an array of content parts, got {other}"
        ))),
    }
}

fn part_kind(part: Value, param: &str) -> Result<(String, Map<String, Value>)> {
    let Value::Object(part) = part else {
        return Err(invalid(format!("'{param}' must be an object")));
    };
    match part.get("type") {
        Some(Value::String(kind)) => Ok((kind.clone(), part)),
        _ => Err(invalid(format!("'{param}.type' must be a string"))),
    }
}

/// Moves the string at `part[key]` into a text block (skipped when empty).
fn push_text(
    out: &mut Vec<Value>,
    part: &mut Map<String, Value>,
    param: &str,
    key: &str,
) -> Result<()> {
    match part.remove(key) {
        Some(Value::String(s)) if s.is_empty() => Ok(()),
        Some(Value::String(s)) => {
            out.push(text_block(s));
            Ok(())
        }
        _ => Err(invalid(format!("'{param}.{key}' must be a string"))),
    }
}

fn user_blocks(content: Value, i: usize) -> Result<Vec<Value>> {
    let param = format!("messages[{i}].content");
    let Value::Array(parts) = content else {
        return text_blocks(content, &param);
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.into_iter().enumerate() {
        let part_param = format!("{param}[{j}]");
        let (kind, mut part) = part_kind(part, &part_param)?;
        match kind.as_str() {
            "text" => push_text(&mut out, &mut part, &part_param, "text")?,
            "image_url" => out.push(image_block(&mut part, &part_param)?),
            "input_audio" => {
                return Err(unsupported(
                    part_param,
                    "audio input ('input_audio') is not supported for Anthropic models",
                ));
            }
            "file" => {
                return Err(unsupported(
                    part_param,
                    "file input ('file') is not supported for Anthropic models",
                ));
            }
            other => {
                return Err(unsupported(
                    part_param,
                    format!("content part type '{other}' is not supported for Anthropic models"),
                ));
            }
        }
    }
    Ok(out)
}

const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

fn image_block(part: &mut Map<String, Value>, param: &str) -> Result<Value> {
    // `image_url` is `{url, detail}`; some clients send the URL string itself.
    let url = match part.remove("image_url") {
        Some(Value::Object(mut obj)) => obj.remove("url"),
        other => other,
    };
    let Some(Value::String(url)) = url else {
        return Err(invalid(format!("'{param}.image_url.url' must be a string")));
    };
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(invalid(format!(
                "'{param}.image_url.url' is not a valid data URL"
            )));
        };
        let mut meta_parts = meta.split(';');
        let media_type = meta_parts.next().unwrap_or_default().to_ascii_lowercase();
        if !meta_parts.any(|p| p.eq_ignore_ascii_case("base64")) {
            return Err(unsupported(
                format!("{param}.image_url.url"),
                "only base64 data URLs are supported for images",
            ));
        }
        if !IMAGE_TYPES.contains(&media_type.as_str()) {
            return Err(unsupported(
                format!("{param}.image_url.url"),
                format!(
                    "image type '{media_type}' is not supported for Anthropic models (jpeg, png, gif, webp)"
                ),
            ));
        }
        return Ok(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }));
    }
    let lower = url.get(..8).unwrap_or(&url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(invalid(format!(
        "'{param}.image_url.url' must be an http(s) URL or a base64 data URL"
    )))
}

fn assistant_blocks(content: Value, mut m: Map<String, Value>, i: usize) -> Result<Vec<Value>> {
    let param = format!("messages[{i}]");
    for key in ["function_call", "audio"] {
        if m.get(key).is_some_and(|v| !v.is_null()) {
            return Err(not_supported(&format!("{param}.{key}")));
        }
    }
    let mut out = Vec::new();
    match content {
        Value::Null => {}
        Value::Array(parts) => {
            for (j, part) in parts.into_iter().enumerate() {
                let part_param = format!("{param}.content[{j}]");
                let (kind, mut part) = part_kind(part, &part_param)?;
                match kind.as_str() {
                    "text" => push_text(&mut out, &mut part, &part_param, "text")?,
                    "refusal" => push_text(&mut out, &mut part, &part_param, "refusal")?,
                    other => {
                        return Err(unsupported(
                            part_param,
                            format!("content part type '{other}' is not supported here"),
                        ));
                    }
                }
            }
        }
        other => out.extend(text_blocks(other, &format!("{param}.content"))?),
    }
    match m.remove("refusal") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s.is_empty() => {}
        Some(Value::String(s)) => out.push(text_block(s)),
        Some(_) => return Err(invalid(format!("'{param}.refusal' must be a string"))),
    }
    match m.remove("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) => {
            for (j, call) in calls.into_iter().enumerate() {
                out.push(tool_use(call, &format!("{param}.tool_calls[{j}]"))?);
            }
        }
        Some(_) => return Err(invalid(format!("'{param}.tool_calls' must be an array"))),
    }
    Ok(out)
}

fn tool_use(call: Value, param: &str) -> Result<Value> {
    let Value::Object(mut call) = call else {
        return Err(invalid(format!("'{param}' must be an object")));
    };
    match call.get("type").and_then(Value::as_str) {
        Some("function") | None => {}
        Some(other) => {
            return Err(unsupported(
                format!("{param}.type"),
                format!("tool call type '{other}' is not supported for Anthropic models"),
            ));
        }
    }
    let id = string(
        call.remove("id").unwrap_or_default(),
        &format!("{param}.id"),
    )?;
    let Some(Value::Object(mut function)) = call.remove("function") else {
        return Err(invalid(format!("'{param}.function' must be an object")));
    };
    let name = string(
        function.remove("name").unwrap_or_default(),
        &format!("{param}.function.name"),
    )?;
    let arguments = string(
        function.remove("arguments").unwrap_or_default(),
        &format!("{param}.function.arguments"),
    )?;
    let input: Value = if arguments.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(&arguments).map_err(|e| {
            invalid(format!(
                "'{param}.function.arguments' is not valid JSON: {e}"
            ))
        })?
    };
    if !input.is_object() {
        return Err(invalid(format!(
            "'{param}.function.arguments' must be a JSON object"
        )));
    }
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_result(content: Value, m: &Map<String, Value>, i: usize) -> Result<Value> {
    let Some(Value::String(id)) = m.get("tool_call_id") else {
        return Err(invalid(format!(
            "'messages[{i}].tool_call_id' must be a string"
        )));
    };
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    let content = match content {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(Value::String(s)),
        other => {
            let blocks = text_blocks(other, &format!("messages[{i}].content"))?;
            (!blocks.is_empty()).then_some(Value::Array(blocks))
        }
    };
    if let (Some(content), Some(obj)) = (content, block.as_object_mut()) {
        obj.insert("content".into(), content);
    }
    Ok(block)
}

// ---------------------------------------------------------------------------------------
// Tools

fn translate_tools(tools: Vec<Value>) -> Result<Vec<Value>> {
    let mut out = Vec::with_capacity(tools.len());
    for (i, tool) in tools.into_iter().enumerate() {
        let param = format!("tools[{i}]");
        let Value::Object(mut tool) = tool else {
            return Err(invalid(format!("'{param}' must be an object")));
        };
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(unsupported(
                    format!("{param}.type"),
                    format!("tool type '{other}' is not supported for Anthropic models"),
                ));
            }
            None => return Err(invalid(format!("'{param}.type' must be a string"))),
        }
        let Some(Value::Object(mut function)) = tool.remove("function") else {
            return Err(invalid(format!("'{param}.function' must be an object")));
        };
        let name = string(
            function.remove("name").unwrap_or_default(),
            &format!("{param}.function.name"),
        )?;
        let mut def = Map::new();
        def.insert("name".into(), Value::String(name));
        match function.remove("description") {
            None | Some(Value::Null) => {}
            Some(Value::String(d)) => {
                def.insert("description".into(), Value::String(d));
            }
            Some(_) => {
                return Err(invalid(format!(
                    "'{param}.function.description' must be a string"
                )));
            }
        }
        let schema = match function.remove("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema,
            Some(_) => {
                return Err(invalid(format!(
                    "'{param}.function.parameters' must be an object"
                )));
            }
        };
        def.insert("input_schema".into(), schema);
        out.push(Value::Object(def));
    }
    Ok(out)
}

fn translate_tool_choice(
    choice: Option<Value>,
    parallel_tool_calls: Option<bool>,
    has_tools: bool,
) -> Result<Option<Value>> {
    let mut out = match choice {
        None => None,
        Some(Value::String(mode)) => match mode.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            other => {
                return Err(invalid(format!(
                    "'tool_choice' must be auto, required, none or a named function, got '{other}'"
                )));
            }
        },
        Some(Value::Object(obj)) => match obj.get("type").and_then(Value::as_str) {
            Some("function") => {
                let name = obj
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| invalid("'tool_choice.function.name' must be a string"))?;
                Some(json!({"type": "tool", "name": name}))
            }
            Some(other) => {
                return Err(unsupported(
                    "tool_choice",
                    format!("tool_choice type '{other}' is not supported for Anthropic models"),
                ));
            }
            None => return Err(invalid("'tool_choice.type' must be a string")),
        },
        Some(other) => {
            return Err(invalid(format!(
                "'tool_choice' must be a string or an object, got {other}"
            )));
        }
    };
    if !has_tools {
        // Anthropic refuses a tool_choice without tools; auto and none mean nothing then.
        return match out {
            Some(c) if !matches!(c["type"].as_str(), Some("auto" | "none")) => {
                Err(invalid("'tool_choice' requires 'tools' to be specified"))
            }
            _ => Ok(None),
        };
    }
    if parallel_tool_calls == Some(false) {
        let choice = out.get_or_insert_with(|| json!({"type": "auto"}));
        if choice["type"] != "none" {
            if let Some(obj) = choice.as_object_mut() {
                obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
            }
        }
    }
    Ok(out)
}
