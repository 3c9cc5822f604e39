//! `POST /v1/messages` (reference 2.2): validation, the deterministic answer, the `Message`
//! object and its named-event SSE stream.
//!
//! The answer is `Simulated answer to: <last user text>` (per word, truncated to
//! `max_tokens` words → `stop_reason: max_tokens`; `max_tokens: 0` answers no content).
//! With `tools` it is one `tool_use` block (`toolu_sim…`, `stop_reason: tool_use`) when
//! `tool_choice` is `any` (the first tool) or `tool` (that one), or when it is `auto`
//! (default) and the last user text mentions a tool (the first such; same rule as chat,
//! see `tools.rs`). Its `input` is the instance of the tool's `input_schema` (`schema.rs`).

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::anthropic::AnthError;
use super::anthropic_cache;
use super::body::{Reply, sse_event};
use super::chat::ANSWER_PREFIX;
use super::fields;
use super::schema;
use super::text::{Answer, last_user_text, tokens};
use super::tools::{json_pieces, mentions};
use super::{Meta, Simulator};

/// The `Message` object.
#[derive(Serialize, Debug, Clone)]
pub struct Message {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: String,
    content: Vec<Block>,
    stop_reason: &'static str,
    stop_sequence: Option<String>,
    usage: Usage,
}

#[derive(Serialize, Debug, Clone)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
}

/// The `usage` of a `Message`.
#[derive(Serialize, Debug, Clone, Copy)]
struct Usage {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
    service_tier: &'static str,
}

#[derive(Serialize, Debug, Clone, Copy)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

/// `tool_choice`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Choice<'a> {
    Auto,
    Any,
    Tool(&'a str),
    None,
}

/// A validated request.
struct Request<'a> {
    model: &'a str,
    max_tokens: u64,
    messages: &'a [Value],
    tools: &'a [Value],
    choice: Choice<'a>,
    stream: bool,
}

fn bad(message: String) -> AnthError {
    AnthError::invalid(message)
}

fn validate(req: &Map<String, Value>) -> Result<Request<'_>, AnthError> {
    let model = match req.get("model") {
        None => return Err(bad("model: Field required".into())),
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        Some(_) => return Err(bad("model: Input should be a non-empty string".into())),
    };
    let max_tokens = match req.get("max_tokens") {
        None => return Err(bad("max_tokens: Field required".into())),
        Some(v) => v.as_u64().ok_or_else(|| {
            bad("max_tokens: Input should be an integer greater than or equal to 0".into())
        })?,
    };
    let messages = match req.get("messages") {
        None => return Err(bad("messages: Field required".into())),
        Some(Value::Array(m)) if m.is_empty() => {
            return Err(bad("messages: at least one message is required".into()));
        }
        Some(Value::Array(m)) => m.as_slice(),
        Some(_) => return Err(bad("messages: Input should be a valid list".into())),
    };
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(Value::as_str) {
            Some("user" | "assistant") => {}
            _ => {
                return Err(bad(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                )));
            }
        }
        match m.get("content") {
            Some(Value::String(_)) => {}
            Some(Value::Array(parts)) => {
                if let Some(j) = parts.iter().position(|p| p["type"].as_str().is_none()) {
                    return Err(bad(format!(
                        "messages.{i}.content.{j}: Input should be a content block with a 'type'"
                    )));
                }
            }
            _ => return Err(bad(format!("messages.{i}.content: Field required"))),
        }
    }
    match req.get("system") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(Value::Array(parts))
            if parts
                .iter()
                .all(|p| p["type"] == "text" && p["text"].is_string()) => {}
        Some(_) => {
            return Err(bad(
                "system: Input should be a string or a list of text blocks".into(),
            ));
        }
    }
    if let Some(t) = req.get("temperature").filter(|t| !t.is_null()) {
        if !t.as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)) {
            return Err(bad(
                "temperature: Input should be a number between 0 and 1".into()
            ));
        }
    }
    let tools = match req.get("tools") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(t)) => t.as_slice(),
        Some(_) => return Err(bad("tools: Input should be a valid list".into())),
    };
    if let Some(i) = tools.iter().position(|t| !t["name"].is_string()) {
        return Err(bad(format!("tools.{i}.name: Field required")));
    }
    let choice = tool_choice(req.get("tool_choice"), tools)?;
    let stream = match req.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("stream: Input should be a valid boolean".into())),
    };
    Ok(Request {
        model,
        max_tokens,
        messages,
        tools,
        choice,
        stream,
    })
}

fn tool_choice<'a>(value: Option<&'a Value>, tools: &[Value]) -> Result<Choice<'a>, AnthError> {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(Choice::Auto);
    };
    let choice = match v["type"].as_str() {
        Some("auto") => Choice::Auto,
        Some("any") => Choice::Any,
        Some("none") => Choice::None,
        Some("tool") => match v["name"].as_str() {
            Some(name) if tools.iter().any(|t| t["name"] == name) => Choice::Tool(name),
            Some(name) => {
                return Err(bad(format!(
                    "tool_choice.name: Tool '{name}' not found in 'tools'"
                )));
            }
            None => return Err(bad("tool_choice.tool.name: Field required".into())),
        },
        _ => {
            return Err(bad(
                "tool_choice: Input tag found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'".into(),
            ));
        }
    };
    if matches!(choice, Choice::Any | Choice::Tool(_)) && tools.is_empty() {
        return Err(bad(
            "tool_choice: tool_choice may only be specified while providing tools.".into(),
        ));
    }
    Ok(choice)
}

/// The tool the answer calls, if any.
fn pick_tool<'a>(req: &Request<'a>, last_user: &str) -> Option<&'a Value> {
    let first = req.tools.first()?;
    match req.choice {
        Choice::None => None,
        Choice::Any => Some(first),
        Choice::Tool(name) => req.tools.iter().find(|t| t["name"] == name),
        Choice::Auto => req
            .tools
            .iter()
            .find(|t| t["name"].as_str().is_some_and(|n| mentions(last_user, n))),
    }
}

/// Validates a Messages request and answers it; returns the message and whether the
/// request asked for a stream. `tier` is the answered `usage.service_tier`.
pub fn create(
    sim: &Simulator,
    body: &Value,
    meta: &Meta,
    tier: &'static str,
) -> Result<(Message, bool), AnthError> {
    let obj = body
        .as_object()
        .ok_or_else(|| bad("Request body must be a JSON object".into()))?;
    let req = validate(obj)?;
    let blocks = anthropic_cache::blocks(obj)?;
    let split =
        sim.anthropic_cache
            .account(req.model, &blocks, sim.config.anthropic_cache_min_tokens);
    let last_user = last_user_text(req.messages);
    let (content, output_tokens, stop_reason) = if req.max_tokens == 0 {
        (Vec::new(), 0, "max_tokens")
    } else if let Some(tool) = pick_tool(&req, &last_user) {
        let input = schema::instance(&tool["input_schema"]);
        let name = tool["name"].as_str().unwrap_or_default().to_owned();
        let output = tokens(&name) + tokens(&input.to_string());
        let block = Block::ToolUse {
            id: format!("toolu_sim{}{}", sim.tag, meta.seq),
            name,
            input,
        };
        (vec![block], output, "tool_use")
    } else {
        let answer = Answer::new(ANSWER_PREFIX, &last_user, Some(req.max_tokens));
        let stop = if answer.finish_reason == "length" {
            "max_tokens"
        } else {
            "end_turn"
        };
        (vec![Block::Text { text: answer.text }], answer.words, stop)
    };
    let message = Message {
        id: format!("msg_sim{}{}", sim.tag, meta.seq),
        kind: "message",
        role: "assistant",
        model: req.model.to_owned(),
        content,
        stop_reason,
        stop_sequence: None,
        usage: Usage {
            input_tokens: split.input,
            cache_creation_input_tokens: split.creation(),
            cache_read_input_tokens: split.read,
            cache_creation: CacheCreation {
                ephemeral_5m_input_tokens: split.creation_5m,
                ephemeral_1h_input_tokens: split.creation_1h,
            },
            output_tokens,
            service_tier: tier,
        },
    };
    Ok((message, req.stream))
}

/// Handles one `POST /v1/messages` body.
pub fn handle(sim: &Simulator, body: &[u8], seq: u64) -> Result<Reply, AnthError> {
    let value: Value = crate::strict_json::parse(body)
        .map_err(|e| bad(format!("There was an error parsing the body: {e}")))?;
    fields::check_anthropic(&value, fields::ANTHROPIC_MESSAGES, "")?;
    let meta = Meta {
        seq,
        created: super::unix_now(),
        downgrade: false,
    };
    let (message, stream) = create(sim, &value, &meta, "standard")?;
    if stream {
        Ok(Reply::Sse(stream_frames(&message)?))
    } else {
        Reply::json(&message).map_err(|e| AnthError::from_api(&e))
    }
}

fn event(name: &str, value: &Value) -> Result<Bytes, AnthError> {
    sse_event(name, value).map_err(|e| AnthError::from_api(&e))
}

/// The named-event SSE sequence of a message (reference 2.2), one event per frame.
fn stream_frames(m: &Message) -> Result<Vec<Bytes>, AnthError> {
    let mut frames = Vec::with_capacity(16);
    let mut usage = serde_json::to_value(m.usage).map_err(|e| bad(e.to_string()))?;
    usage["output_tokens"] = json!(m.usage.output_tokens.min(1));
    let start = json!({
        "type": "message_start",
        "message": {
            "id": m.id, "type": "message", "role": "assistant", "model": m.model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage,
        },
    });
    frames.push(event("message_start", &start)?);
    let ping = json!({"type": "ping"});
    if m.content.is_empty() {
        frames.push(event("ping", &ping)?);
    }
    for (index, block) in m.content.iter().enumerate() {
        let (opening, deltas): (Value, Vec<Value>) = match block {
            Block::Text { text } => {
                let answer = Answer {
                    text: text.clone(),
                    words: 0,
                    finish_reason: "stop",
                };
                let deltas = answer
                    .pieces()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect();
                (json!({"type": "text", "text": ""}), deltas)
            }
            Block::ToolUse { id, name, input } => {
                let raw = input.to_string();
                let deltas = json_pieces(&raw)
                    .into_iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect();
                let opening = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                (opening, deltas)
            }
        };
        let start =
            json!({"type": "content_block_start", "index": index, "content_block": opening});
        frames.push(event("content_block_start", &start)?);
        if index == 0 {
            frames.push(event("ping", &ping)?);
        }
        for delta in deltas {
            let d = json!({"type": "content_block_delta", "index": index, "delta": delta});
            frames.push(event("content_block_delta", &d)?);
        }
        let stop = json!({"type": "content_block_stop", "index": index});
        frames.push(event("content_block_stop", &stop)?);
    }
    let delta = json!({
        "type": "message_delta",
        "delta": {"stop_reason": m.stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": m.usage.output_tokens},
    });
    frames.push(event("message_delta", &delta)?);
    frames.push(event("message_stop", &json!({"type": "message_stop"}))?);
    Ok(frames)
}
