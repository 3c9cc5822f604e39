//! `POST /v1/completions` (legacy text completions, `CreateCompletionResponse`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::body::{Reply, SSE_DONE, json_bytes, sse_data};
use super::chat::{StreamOptions, choice_count, token_limit};
use super::error::ApiError;
use super::text::{Answer, tokens};
use super::{Meta, Simulator};

/// Prefix of every simulated legacy completion.
pub const COMPLETION_PREFIX: &str = "Simulated completion of:";

/// Default `max_tokens` of the legacy endpoint.
const DEFAULT_MAX_TOKENS: u64 = 16;

#[derive(Deserialize)]
struct CompletionRequest {
    model: Option<String>,
    prompt: Option<Value>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<i64>,
    max_tokens: Option<i64>,
}

#[derive(Serialize, Debug, Clone, Copy)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: &'static str,
    choices: &'a [TextChoice<'a>],
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

#[derive(Serialize)]
struct TextChoice<'a> {
    text: &'a str,
    index: u32,
    logprobs: (),
    finish_reason: Option<&'a str>,
}

/// The fields shared by every object of one answer.
#[derive(Clone, Copy)]
struct Head<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
}

impl<'a> Head<'a> {
    fn object<'b>(
        self,
        choices: &'b [TextChoice<'b>],
        usage: Option<Option<Usage>>,
    ) -> TextCompletion<'b>
    where
        'a: 'b,
    {
        TextCompletion {
            id: self.id,
            object: "text_completion",
            created: self.created,
            model: self.model,
            system_fingerprint: "fp_sim",
            choices,
            usage,
        }
    }
}

/// The prompts of a request as (quoted text, tokens) pairs.
fn prompts(prompt: Option<&Value>) -> Result<Vec<(String, u64)>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "Invalid 'prompt': expected a string, an array of strings, an array of tokens or an array of token arrays.",
            Some("prompt"),
            Some("invalid_type"),
        )
    };
    let token_text = |arr: &[Value]| -> Result<(String, u64), ApiError> {
        if arr.iter().all(Value::is_u64) {
            Ok((format!("{} tokens", arr.len()), arr.len() as u64))
        } else {
            Err(bad())
        }
    };
    match prompt {
        None | Some(Value::Null) => Ok(vec![("<|endoftext|>".to_owned(), 1)]),
        Some(Value::String(s)) => Ok(vec![(s.clone(), tokens(s))]),
        Some(Value::Array(items)) if items.is_empty() => Err(bad()),
        Some(Value::Array(items)) if items.iter().all(Value::is_u64) => {
            Ok(vec![token_text(items)?])
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok((s.clone(), tokens(s))),
                Value::Array(arr) if !arr.is_empty() => token_text(arr),
                _ => Err(bad()),
            })
            .collect(),
        Some(_) => Err(bad()),
    }
}

/// Handles one legacy completion request body.
pub fn handle(_sim: &Simulator, meta: &Meta, body: &[u8]) -> Result<Reply, ApiError> {
    let req: CompletionRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = match req.model.as_deref() {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::missing("model")),
    };
    let n = choice_count(req.n)?;
    let limit = token_limit(req.max_tokens, "max_tokens")?.unwrap_or(DEFAULT_MAX_TOKENS);
    let prompts = prompts(req.prompt.as_ref())?;
    let answers: Vec<Answer> = prompts
        .iter()
        .map(|(text, _)| Answer::new(COMPLETION_PREFIX, text, Some(limit)))
        .collect();
    let prompt_tokens: u64 = prompts.iter().map(|(_, t)| t).sum();
    let completion_tokens: u64 = answers.iter().map(|a| a.words).sum::<u64>() * u64::from(n);
    let usage = Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
    };
    let id = format!("cmpl-sim{}", meta.seq);
    // Choice i*n + j answers prompt i.
    let indexed = || {
        answers
            .iter()
            .flat_map(move |a| (0..n).map(move |_| a))
            .zip(0u32..)
    };
    let head = Head {
        id: &id,
        created: meta.created,
        model,
    };

    if !req.stream.unwrap_or(false) {
        let choices: Vec<TextChoice<'_>> = indexed()
            .map(|(a, index)| TextChoice {
                text: &a.text,
                index,
                logprobs: (),
                finish_reason: Some(a.finish_reason),
            })
            .collect();
        return Ok(Reply::Json(json_bytes(
            &head.object(&choices, Some(Some(usage))),
        )?));
    }

    let include_usage = req
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    let chunk_usage = include_usage.then_some(None);
    let mut frames: Vec<Bytes> = Vec::new();
    for (a, index) in indexed() {
        for piece in a.pieces() {
            let choice = TextChoice {
                text: piece,
                index,
                logprobs: (),
                finish_reason: None,
            };
            frames.push(sse_data(&head.object(&[choice], chunk_usage))?);
        }
        let last = TextChoice {
            text: "",
            index,
            logprobs: (),
            finish_reason: Some(a.finish_reason),
        };
        frames.push(sse_data(&head.object(&[last], chunk_usage))?);
    }
    if include_usage {
        frames.push(sse_data(&head.object(&[], Some(Some(usage))))?);
    }
    frames.push(Bytes::from_static(SSE_DONE));
    Ok(Reply::Sse(frames))
}
