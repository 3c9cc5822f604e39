//! `POST /v1/chat/completions` (reference 1.3, 1.4); tool calls and structured outputs
//! follow the rules of `tools.rs`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::{Reply, SSE_DONE, json_bytes, sse_data};
use super::cache::Prompt;
use super::error::ApiError;
use super::text::{Answer, last_user_text, message_tokens, tokens, tokens_of_len, write_canonical};
use super::tools::{self, Output, json_pieces};
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
    tool_choice: Option<Value>,
    response_format: Option<Value>,
}

/// `stream_options` of chat and legacy completions.
#[derive(Deserialize, Default)]
pub struct StreamOptions {
    /// Adds a final usage chunk.
    pub include_usage: Option<bool>,
}

/// The `service_tier` reported for a requested one (reference 1.5): `auto` (the project's
/// default, which is `default` here), `default`, an absent tier and values the simulator does
/// not know → `default`; `flex`, `scale` and `ultrafast` → themselves; `priority` and `fast`
/// (synonyms) → `priority` on GPT-5.6 and earlier models, `fast` on GPT-6 models. A
/// downgraded request (`x-sim-fault: downgrade`, the ramp-rate limit; `ultrafast` in a
/// region without it) is served and reported at `default`.
pub fn answered_tier(requested: Option<&str>, model: &str, downgrade: bool) -> &'static str {
    match requested {
        Some("flex") => "flex",
        Some("scale") => "scale",
        Some("priority" | "fast" | "ultrafast") if downgrade => "default",
        Some("priority" | "fast") if model.starts_with("gpt-6") => "fast",
        Some("priority" | "fast") => "priority",
        Some("ultrafast") => "ultrafast",
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
    /// `null` when the message is a tool call.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
    refusal: (),
    annotations: [(); 0],
}

/// `ChatCompletionMessageToolCall`, or in a stream `ChatCompletionMessageToolCallChunk`
/// (`index`; `id`, `type` and `function.name` only in the first chunk of a call).
#[derive(Serialize)]
struct ToolCall<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: Function<'a>,
}

#[derive(Serialize)]
struct Function<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
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

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    /// Absent, `null` (the opening chunk of a tool call) or a piece of text.
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCall<'a>; 1]>,
    /// `null` in the opening chunk of a tool call, as OpenAI sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    refusal: Option<()>,
}

/// What every choice of an answer says (all choices are the same).
enum Said<'a> {
    /// The text answer, streamed word by word.
    Text(&'a Answer),
    /// Structured content, streamed in pieces.
    Json(String),
    /// A function tool call.
    Call { name: &'a str, arguments: String },
}

/// `text` cut to the bytes of `limit` tokens (on a character boundary).
fn truncate(text: &mut String, limit: u64) {
    let mut end = usize::try_from(limit.saturating_mul(4)).unwrap_or(usize::MAX);
    if end < text.len() {
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

impl<'a> Said<'a> {
    /// The answer for `output`, cut to `limit`: `(said, completion tokens per choice,
    /// finish_reason)`.
    fn new(
        output: Output<'a>,
        answer: &'a Answer,
        last_user: &str,
        limit: Option<u64>,
    ) -> (Self, u64, &'static str) {
        let limit = limit.unwrap_or(u64::MAX);
        match output {
            Output::Text => (Said::Text(answer), answer.words, answer.finish_reason),
            Output::JsonObject => {
                let text = Answer::new(ANSWER_PREFIX, last_user, None).text;
                Self::json(serde_json::json!({ "answer": text }).to_string(), limit)
            }
            Output::Json(json) => Self::json(json, limit),
            Output::Call {
                name,
                mut arguments,
            } => {
                let used = tokens(name) + tokens(&arguments);
                if used > limit {
                    truncate(&mut arguments, limit.saturating_sub(tokens(name)));
                    (Said::Call { name, arguments }, limit, "length")
                } else {
                    (Said::Call { name, arguments }, used, "tool_calls")
                }
            }
        }
    }

    fn json(mut json: String, limit: u64) -> (Self, u64, &'static str) {
        let used = tokens(&json);
        if used > limit {
            truncate(&mut json, limit);
            (Said::Json(json), limit, "length")
        } else {
            (Said::Json(json), used, "stop")
        }
    }

    fn message(&'a self, call_id: &'a str) -> Message<'a> {
        let (content, tool_calls) = match self {
            Said::Text(answer) => (Some(answer.text.as_str()), None),
            Said::Json(json) => (Some(json.as_str()), None),
            Said::Call { name, arguments } => (
                None,
                Some([ToolCall {
                    index: None,
                    id: Some(call_id),
                    kind: Some("function"),
                    function: Function {
                        name: Some(name),
                        arguments,
                    },
                }]),
            ),
        };
        Message {
            role: "assistant",
            content,
            tool_calls,
            refusal: (),
            annotations: [],
        }
    }
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
    let last_user = last_user_text(messages);
    let output = tools::plan(
        req.tools.as_ref(),
        req.tool_choice.as_ref(),
        req.response_format.as_ref(),
        &last_user,
    )?;

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

    let answer = Answer::new(ANSWER_PREFIX, &last_user, limit);
    let (said, completion, finish_reason) = Said::new(output, &answer, &last_user, limit);
    let usage = ChatUsage::new(prompt_tokens, completion * u64::from(n), cached);
    let head = Head {
        id: &format!("chatcmpl-sim{}", meta.seq),
        call_id: &format!("call_sim{}{}", sim.tag, meta.seq),
        created: meta.created,
        model,
        tier: answered_tier(req.service_tier.as_deref(), model, meta.downgrade),
    };

    if req.stream.unwrap_or(false) {
        let include_usage = req
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        let frames = stream_frames(&head, n, &said, finish_reason, usage, include_usage)?;
        return Ok(Reply::Sse(frames));
    }

    let ids: Vec<String> = (0..n).map(|i| head.call_id_of(i)).collect();
    let choices = ids
        .iter()
        .zip(0..)
        .map(|(call_id, index)| Choice {
            index,
            message: said.message(call_id),
            logprobs: (),
            finish_reason,
        })
        .collect();
    let resp = Completion {
        id: head.id,
        object: "chat.completion",
        created: head.created,
        model,
        choices,
        usage,
        service_tier: head.tier,
        system_fingerprint: FINGERPRINT,
    };
    Ok(Reply::Json(json_bytes(&resp)?))
}

/// What every chunk of one answer repeats.
struct Head<'a> {
    id: &'a str,
    /// Tool call ids are this plus the choice index.
    call_id: &'a str,
    created: u64,
    model: &'a str,
    tier: &'a str,
}

impl Head<'_> {
    fn call_id_of(&self, index: u32) -> String {
        format!("{}_{index}", self.call_id)
    }

    fn chunk(
        &self,
        choices: &[ChunkChoice<'_>],
        usage: Option<Option<ChatUsage>>,
    ) -> Result<Bytes, ApiError> {
        sse_data(&Chunk {
            id: self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            service_tier: self.tier,
            system_fingerprint: FINGERPRINT,
            choices,
            usage,
        })
    }
}

fn stream_frames(
    head: &Head<'_>,
    n: u32,
    said: &Said<'_>,
    finish_reason: &str,
    usage: ChatUsage,
    include_usage: bool,
) -> Result<Vec<Bytes>, ApiError> {
    let pieces: Vec<&str> = match said {
        Said::Text(answer) => answer.pieces().collect(),
        Said::Json(json) => json_pieces(json),
        Said::Call { arguments, .. } => json_pieces(arguments),
    };
    let mut frames = Vec::with_capacity((pieces.len() + 2) * n as usize + 2);
    let no_usage = include_usage.then_some(None);
    for index in 0..n {
        let call_id = head.call_id_of(index);
        let piece = |delta: Delta<'_>, finish_reason: Option<&str>| {
            head.chunk(
                &[ChunkChoice {
                    index,
                    delta,
                    logprobs: (),
                    finish_reason,
                }],
                no_usage,
            )
        };
        let opening = match said {
            Said::Call { name, .. } => Delta {
                role: Some("assistant"),
                content: Some(None),
                tool_calls: Some([ToolCall {
                    index: Some(0),
                    id: Some(&call_id),
                    kind: Some("function"),
                    function: Function {
                        name: Some(name),
                        arguments: "",
                    },
                }]),
                refusal: Some(()),
            },
            _ => Delta {
                role: Some("assistant"),
                content: Some(Some("")),
                ..Delta::default()
            },
        };
        frames.push(piece(opening, None)?);
        for p in &pieces {
            let delta = match said {
                Said::Call { .. } => Delta {
                    tool_calls: Some([ToolCall {
                        index: Some(0),
                        id: None,
                        kind: None,
                        function: Function {
                            name: None,
                            arguments: p,
                        },
                    }]),
                    ..Delta::default()
                },
                _ => Delta {
                    content: Some(Some(p)),
                    ..Delta::default()
                },
            };
            frames.push(piece(delta, None)?);
        }
        frames.push(piece(Delta::default(), Some(finish_reason))?);
    }
    if include_usage {
        frames.push(head.chunk(&[], Some(Some(usage)))?);
    }
    frames.push(Bytes::from_static(SSE_DONE));
    Ok(frames)
}
