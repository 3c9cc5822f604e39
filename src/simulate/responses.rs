//! `POST /v1/responses`: a minimal Responses API (non-streaming and SSE). A response
//! created with `store` (the default) is kept for `GET /v1/responses/{id}` and its input
//! items (`stored_responses.rs`).
//!
//! The response object carries every key the openapi `Response` schema marks required
//! (id, object, created_at, error, incomplete_details, instructions, model, tools, output,
//! parallel_tool_calls, metadata, tool_choice, temperature, top_p) plus status, usage etc.
//! Streams emit the full event sequence the official SDK's stream accumulator expects:
//! created, in_progress, output_item.added, content_part.added, output_text.delta (one per
//! word), output_text.done, content_part.done, output_item.done, completed/incomplete.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::body::{Reply, json_bytes, sse_event};
use super::cache::Prompt;
use super::chat::{ANSWER_PREFIX, answered_tier, token_limit};
use super::error::ApiError;
use super::text::{Answer, last_user_text, message_tokens, tokens, write_canonical};
use super::{Meta, Simulator};

#[derive(Deserialize)]
struct ResponsesRequest {
    model: Option<String>,
    input: Option<Value>,
    instructions: Option<Value>,
    stream: Option<bool>,
    max_output_tokens: Option<i64>,
    service_tier: Option<String>,
    tools: Option<Value>,
    tool_choice: Option<Value>,
    temperature: Option<Value>,
    top_p: Option<Value>,
    metadata: Option<Value>,
    store: Option<bool>,
    previous_response_id: Option<String>,
    parallel_tool_calls: Option<bool>,
    text: Option<Value>,
    user: Option<String>,
}

#[derive(Serialize, Clone, Copy)]
struct Usage {
    input_tokens: u64,
    input_tokens_details: InputDetails,
    output_tokens: u64,
    output_tokens_details: OutputDetails,
    total_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct InputDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct OutputDetails {
    reasoning_tokens: u64,
}

#[derive(Serialize, Clone, Copy)]
struct Incomplete {
    reason: &'static str,
}

#[derive(Serialize, Clone, Copy)]
struct Reasoning {
    effort: (),
    summary: (),
}

#[derive(Serialize, Clone, Copy)]
struct OutputText<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    text: &'a str,
    annotations: [(); 0],
    logprobs: [(); 0],
}

#[derive(Serialize, Clone, Copy)]
struct OutputMessage<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: &'a str,
    status: &'a str,
    role: &'static str,
    content: &'a [OutputText<'a>],
}

#[derive(Serialize)]
struct ResponseObject<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    status: &'a str,
    completed_at: Option<u64>,
    error: (),
    incomplete_details: Option<Incomplete>,
    instructions: Option<&'a Value>,
    max_output_tokens: Option<u64>,
    model: &'a str,
    output: &'a [OutputMessage<'a>],
    parallel_tool_calls: bool,
    previous_response_id: Option<&'a str>,
    reasoning: Reasoning,
    service_tier: &'a str,
    store: bool,
    temperature: &'a Value,
    text: &'a Value,
    tool_choice: &'a Value,
    tools: &'a Value,
    top_p: &'a Value,
    truncation: &'static str,
    usage: Option<Usage>,
    user: Option<&'a str>,
    metadata: &'a Value,
}

#[derive(Serialize, Default)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a ResponseObject<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    item: Option<OutputMessage<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    part: Option<OutputText<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logprobs: Option<[(); 0]>,
    sequence_number: u64,
}

/// Handles one Responses API request body.
pub fn handle(sim: &Simulator, meta: &Meta, body: &[u8]) -> Result<Reply, ApiError> {
    let req: ResponsesRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = match req.model.as_deref() {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::missing("model")),
    };
    let limit = token_limit(req.max_output_tokens, "max_output_tokens")?;

    // Prompt items: a string input is one user message.
    let items: Vec<(&Value, u64)> = match &req.input {
        None | Some(Value::Null) => Vec::new(),
        Some(v @ Value::String(s)) => vec![(v, 4 + tokens(s))],
        Some(Value::Array(list)) => list.iter().map(|m| (m, message_tokens(m))).collect(),
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid type for 'input': expected a string or an array of input items.",
                Some("input"),
                Some("invalid_type"),
            ));
        }
    };
    let quoted = match &req.input {
        Some(Value::String(s)) => std::borrow::Cow::Borrowed(s.as_str()),
        Some(Value::Array(list)) => last_user_text(list),
        _ => std::borrow::Cow::Borrowed(""),
    };
    let instructions_text = match &req.instructions {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    let mut header = Vec::new();
    if let Some(tools) = &req.tools {
        write_canonical(tools, &mut header);
    }
    let header_tokens = tokens(instructions_text) + super::text::tokens_of_len(header.len());
    if let Some(instructions) = &req.instructions {
        header.push(0);
        write_canonical(instructions, &mut header);
    }
    let input_tokens = header_tokens + items.iter().map(|(_, t)| t).sum::<u64>();
    let cached = sim.cache.lookup_and_insert(
        &Prompt {
            model,
            header: &header,
            header_tokens,
            items: &items,
        },
        sim.config.cache_min_tokens,
    );

    let answer = Answer::new(ANSWER_PREFIX, &quoted, limit);
    let usage = Usage {
        input_tokens,
        input_tokens_details: InputDetails {
            cached_tokens: cached,
            cache_write_tokens: 0,
        },
        output_tokens: answer.words,
        output_tokens_details: OutputDetails {
            reasoning_tokens: 0,
        },
        total_tokens: input_tokens + answer.words,
    };
    let truncated = answer.finish_reason == "length";
    let final_status = if truncated { "incomplete" } else { "completed" };

    let id = format!("resp_sim{}", meta.seq);
    let msg_id = format!("msg_sim{}", meta.seq);
    let default_tools = json!([]);
    let default_text = json!({"format": {"type": "text"}});
    let default_choice = json!("auto");
    let default_one = json!(1.0);
    let default_metadata = json!({});
    let part = OutputText {
        kind: "output_text",
        text: &answer.text,
        annotations: [],
        logprobs: [],
    };
    let parts = [part];
    let message = OutputMessage {
        kind: "message",
        id: &msg_id,
        status: final_status,
        role: "assistant",
        content: &parts,
    };
    let outputs = [message];
    let base = |status, output, usage, done: bool| ResponseObject {
        id: &id,
        object: "response",
        created_at: meta.created,
        status,
        completed_at: (done && !truncated).then_some(meta.created),
        error: (),
        incomplete_details: (done && truncated).then_some(Incomplete {
            reason: "max_output_tokens",
        }),
        instructions: req.instructions.as_ref().filter(|v| !v.is_null()),
        max_output_tokens: limit,
        model,
        output,
        parallel_tool_calls: req.parallel_tool_calls.unwrap_or(true),
        previous_response_id: req.previous_response_id.as_deref(),
        reasoning: Reasoning {
            effort: (),
            summary: (),
        },
        service_tier: answered_tier(req.service_tier.as_deref(), model, meta.downgrade),
        store: req.store.unwrap_or(true),
        temperature: req.temperature.as_ref().unwrap_or(&default_one),
        text: req.text.as_ref().unwrap_or(&default_text),
        tool_choice: req.tool_choice.as_ref().unwrap_or(&default_choice),
        tools: req.tools.as_ref().unwrap_or(&default_tools),
        top_p: req.top_p.as_ref().unwrap_or(&default_one),
        truncation: "disabled",
        usage,
        user: req.user.as_deref(),
        metadata: req.metadata.as_ref().unwrap_or(&default_metadata),
    };
    let done = base(final_status, &outputs[..], Some(usage), true);
    let done_json = json_bytes(&done)?;
    if req.store.unwrap_or(true) {
        let input = super::stored_responses::input_items(req.input.as_ref(), meta.seq);
        sim.stored_responses.save(&id, done_json.clone(), input);
    }

    if !req.stream.unwrap_or(false) {
        return Ok(Reply::Json(done_json));
    }

    let started = base("in_progress", &[], None, false);
    let mut frames: Vec<Bytes> = Vec::new();
    let mut seq = 0u64;
    let mut push = |frames: &mut Vec<Bytes>, event: Event<'_>| -> Result<(), ApiError> {
        let event = Event {
            sequence_number: seq,
            ..event
        };
        seq += 1;
        frames.push(sse_event(event.kind, &event)?);
        Ok(())
    };
    for kind in ["response.created", "response.in_progress"] {
        push(
            &mut frames,
            Event {
                kind,
                response: Some(&started),
                ..Event::default()
            },
        )?;
    }
    let empty_parts: [OutputText<'_>; 0] = [];
    push(
        &mut frames,
        Event {
            kind: "response.output_item.added",
            output_index: Some(0),
            item: Some(OutputMessage {
                status: "in_progress",
                content: &empty_parts,
                ..message
            }),
            ..Event::default()
        },
    )?;
    let text_event = |kind| Event {
        kind,
        item_id: Some(&msg_id),
        output_index: Some(0),
        content_index: Some(0),
        ..Event::default()
    };
    push(
        &mut frames,
        Event {
            part: Some(OutputText { text: "", ..part }),
            ..text_event("response.content_part.added")
        },
    )?;
    for piece in answer.pieces() {
        push(
            &mut frames,
            Event {
                delta: Some(piece),
                logprobs: Some([]),
                ..text_event("response.output_text.delta")
            },
        )?;
    }
    push(
        &mut frames,
        Event {
            text: Some(&answer.text),
            logprobs: Some([]),
            ..text_event("response.output_text.done")
        },
    )?;
    push(
        &mut frames,
        Event {
            part: Some(part),
            ..text_event("response.content_part.done")
        },
    )?;
    push(
        &mut frames,
        Event {
            kind: "response.output_item.done",
            output_index: Some(0),
            item: Some(message),
            ..Event::default()
        },
    )?;
    push(
        &mut frames,
        Event {
            kind: if truncated {
                "response.incomplete"
            } else {
                "response.completed"
            },
            response: Some(&done),
            ..Event::default()
        },
    )?;
    Ok(Reply::Sse(frames))
}
