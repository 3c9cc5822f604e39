//! Anthropic `Message` → OpenAI `chat.completion` (see the table in the parent).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{OpenAiUsage, TokenCounts, TranslateError, compact_json, finish_reason};

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    model: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    content: Vec<&'a RawValue>,
    #[serde(default)]
    stop_reason: Option<String>,
    usage: TokenCounts,
}

/// One content block; only the fields Sluice uses. A plain struct (not a tagged enum) so
/// `input` can stay raw and keep its key order.
#[derive(Deserialize)]
pub(super) struct Block<'a> {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) text: Option<String>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default, borrow)]
    pub(super) input: Option<&'a RawValue>,
}

#[derive(Serialize)]
struct ChatCompletion<'a> {
    id: String,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: OpenAiUsage,
    system_fingerprint: Option<()>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: ResponseMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct ResponseMessage<'a> {
    role: &'static str,
    content: Option<String>,
    refusal: Option<()>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCall<'a>>,
    annotations: [(); 0],
}

#[derive(Serialize)]
struct ToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: FunctionCall<'a>,
}

#[derive(Serialize)]
struct FunctionCall<'a> {
    name: &'a str,
    arguments: String,
}

fn invalid(e: impl std::fmt::Display) -> TranslateError {
    TranslateError::Invalid(format!("the Anthropic response could not be read: {e}"))
}

/// Anthropic Message JSON → OpenAI `chat.completion` JSON bytes. `created` is passed in.
pub fn response_to_openai(anthropic_body: &[u8], created: i64) -> Result<Bytes, TranslateError> {
    let message: Message = serde_json::from_slice(anthropic_body).map_err(invalid)?;
    let blocks = message
        .content
        .iter()
        .map(|raw| serde_json::from_str::<Block>(raw.get()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(invalid)?;

    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in &blocks {
        match block.kind.as_str() {
            "text" => text
                .get_or_insert_with(String::new)
                .push_str(block.text.as_deref().unwrap_or_default()),
            "tool_use" => tool_calls.push(ToolCall {
                id: block.id.as_deref().unwrap_or_default(),
                kind: "function",
                function: FunctionCall {
                    name: block.name.as_deref().unwrap_or_default(),
                    arguments: block
                        .input
                        .map_or_else(|| "{}".to_owned(), |raw| compact_json(raw.get())),
                },
            }),
            // thinking, redacted_thinking, server tool blocks: never requested.
            _ => {}
        }
    }
    if text.is_none() && tool_calls.is_empty() {
        text = Some(String::new());
    }

    let completion = ChatCompletion {
        id: format!("chatcmpl-{}", message.id),
        object: "chat.completion",
        created,
        model: &message.model,
        choices: [Choice {
            index: 0,
            message: ResponseMessage {
                role: "assistant",
                content: text,
                refusal: None,
                tool_calls,
                annotations: [],
            },
            logprobs: None,
            finish_reason: finish_reason(message.stop_reason.as_deref()),
        }],
        usage: message.usage.to_openai(),
        system_fingerprint: None,
    };
    serde_json::to_vec(&completion)
        .map(Bytes::from)
        .map_err(invalid)
}
