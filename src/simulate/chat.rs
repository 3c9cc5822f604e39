//! `POST /v1/chat/completions` (reference 1.3, 1.4).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::{Reply, SSE_DONE, json_bytes, sse_data};
use super::cache::Prompt;
use super::error::ApiError;
use super::text::{Answer, last_user_text, message_tokens, tokens_of_len, write_canonical};
use super::{Meta, Simulator};

/// Prefix of every simulated chat answer.
pub const ANSWER_PREFIX: &str = "Simulated answer to:";

const FINGERPRINT: &str = "fp_sim";

#[derive(Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<Value>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<i64>,
    max_completion_tokens: Option<i64>,
    max_tokens: Option<i64>,
    service_tier: Option<String>,
    tools: Option<Value>,
}

/// `stream_options` of chat and legacy completions.
#[derive(Deserialize, Default)]
pub struct StreamOptions {
    /// Adds a final usage chunk.
    pub include_usage: Option<bool>,
}

/// The `service_tier` answered for a requested one.
pub fn answered_tier(requested: Option<&str>) -> &'static str {
    match requested {
        Some("flex") => "flex",
        Some("priority" | "fast") => "priority",
        _ => "default",
    }
}

/// Validates an optional token limit (must be >= 1).
pub fn token_limit(value: Option<i64>, param: &'static str) -> Result<Option<u64>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) if v >= 1 => Ok(Some(v.unsigned_abs())),
        Some(v) => Err(ApiError::invalid(
            format!(
                "Invalid '{param}': integer below minimum value. Expected a value >= 1, but got {v} instead."
            ),
            Some(param),
            Some("integer_below_min_value"),
        )),
    }
}

/// Validates `n` (1..=128, default 1).
pub fn choice_count(n: Option<i64>) -> Result<u32, ApiError> {
    match n {
        None => Ok(1),
        Some(v @ 1..=128) => Ok(u32::try_from(v).unwrap_or(1)),
        Some(v) if v < 1 => Err(ApiError::invalid(
            format!(
                "Invalid 'n': integer below minimum value. Expected a value >= 1, but got {v} instead."
            ),
            Some("n"),
            Some("integer_below_min_value"),
        )),
        Some(v) => Err(ApiError::invalid(
            format!(
                "Invalid 'n': integer above maximum value. Expected a value <= 128, but got {v} instead."
            ),
            Some("n"),
            Some("integer_above_max_value"),
        )),
    }
}

/// Chat `usage` (`CompletionUsage`).
#[derive(Serialize, Debug, Clone, Copy)]
pub struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptDetails,
    completion_tokens_details: CompletionDetails,
}

#[derive(Serialize, Debug, Clone, Copy)]
struct PromptDetails {
    cached_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize, Debug, Clone, Copy)]
struct CompletionDetails {
    reasoning_tokens: u64,
    audio_tokens: u64,
    accepted_prediction_tokens: u64,
    rejected_prediction_tokens: u64,
}

impl ChatUsage {
    fn new(prompt: u64, completion: u64, cached: u64) -> Self {
        Self {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: PromptDetails {
                cached_tokens: cached,
                audio_tokens: 0,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: 0,
                audio_tokens: 0,
                accepted_prediction_tokens: 0,
                rejected_prediction_tokens: 0,
            },
        }
    }
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    usage: ChatUsage,
    service_tier: &'a str,
    system_fingerprint: &'static str,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: Message<'a>,
    logprobs: (),
    finish_reason: &'a str,
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    content: &'a str,
    refusal: (),
    annotations: [(); 0],
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    service_tier: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [ChunkChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<ChatUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// Handles one chat completion request body.
pub fn handle(sim: &Simulator, meta: &Meta, body: &[u8]) -> Result<Reply, ApiError> {
    let req: ChatRequest = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = match req.model.as_deref() {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::missing("model")),
    };
    let messages = req
        .messages
        .as_deref()
        .ok_or_else(|| ApiError::missing("messages"))?;
    if messages.is_empty() {
        return Err(ApiError::invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        ));
    }
    if messages.iter().any(|m| !m.is_object()) {
        return Err(ApiError::invalid(
            "Invalid type for 'messages': every message must be an object.",
            Some("messages"),
            Some("invalid_type"),
        ));
    }
    let n = choice_count(req.n)?;
    let limit = match req.max_completion_tokens {
        Some(_) => token_limit(req.max_completion_tokens, "max_completion_tokens")?,
        None => token_limit(req.max_tokens, "max_tokens")?,
    };

    let mut header = Vec::new();
    if let Some(tools) = &req.tools {
        write_canonical(tools, &mut header);
    }
    let header_tokens = tokens_of_len(header.len());
    let items: Vec<(&Value, u64)> = messages.iter().map(|m| (m, message_tokens(m))).collect();
    let prompt_tokens = header_tokens + items.iter().map(|(_, t)| t).sum::<u64>();
    let cached = sim.cache.lookup_and_insert(
        &Prompt {
            model,
            header: &header,
            header_tokens,
            items: &items,
        },
        sim.config.cache_min_tokens,
    );

    let answer = Answer::new(ANSWER_PREFIX, &last_user_text(messages), limit);
    let usage = ChatUsage::new(prompt_tokens, answer.words * u64::from(n), cached);
    let id = format!("chatcmpl-sim{}", meta.seq);
    let tier = answered_tier(req.service_tier.as_deref());

    if req.stream.unwrap_or(false) {
        let include_usage = req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let frames = stream_frames(
            &id,
            meta.created,
            model,
            tier,
            n,
            &answer,
            usage,
            include_usage,
        )?;
        return Ok(Reply::Sse(frames));
    }

    let choices = (0..n)
        .map(|index| Choice {
            index,
            message: Message {
                role: "assistant",
                content: &answer.text,
                refusal: (),
                annotations: [],
            },
            logprobs: (),
            finish_reason: answer.finish_reason,
        })
        .collect();
    let resp = Completion {
        id: &id,
        object: "chat.completion",
        created: meta.created,
        model,
        choices,
        usage,
        service_tier: tier,
        system_fingerprint: FINGERPRINT,
    };
    Ok(Reply::Json(json_bytes(&resp)?))
}

#[allow(clippy::too_many_arguments)]
fn stream_frames(
    id: &str,
    created: u64,
    model: &str,
    tier: &str,
    n: u32,
    answer: &Answer,
    usage: ChatUsage,
    include_usage: bool,
) -> Result<Vec<Bytes>, ApiError> {
    let per_choice = usize::try_from(answer.words).unwrap_or(0) + 2;
    let mut frames = Vec::with_capacity(per_choice * n as usize + 2);
    let chunk = |choice: ChunkChoice<'_>| -> Result<Bytes, ApiError> {
        sse_data(&Chunk {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            service_tier: tier,
            system_fingerprint: FINGERPRINT,
            choices: &[choice],
            usage: include_usage.then_some(None),
        })
    };
    for index in 0..n {
        frames.push(chunk(ChunkChoice {
            index,
            delta: Delta {
                role: Some("assistant"),
                content: Some(""),
            },
            logprobs: (),
            finish_reason: None,
        })?);
        for piece in answer.pieces() {
            frames.push(chunk(ChunkChoice {
                index,
                delta: Delta {
                    role: None,
                    content: Some(piece),
                },
                logprobs: (),
                finish_reason: None,
            })?);
        }
        frames.push(chunk(ChunkChoice {
            index,
            delta: Delta {
                role: None,
                content: None,
            },
            logprobs: (),
            finish_reason: Some(answer.finish_reason),
        })?);
    }
    if include_usage {
        frames.push(sse_data(&Chunk {
            id,
            object: "chat.completion.chunk",
            created,
            model,
            service_tier: tier,
            system_fingerprint: FINGERPRINT,
            choices: &[],
            usage: Some(Some(usage)),
        })?);
    }
    frames.push(Bytes::from_static(SSE_DONE));
    Ok(frames)
}
