//! Anthropic Messages SSE events → OpenAI `chat.completion.chunk` events (see the table in
//! the parent).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::response::Block;
use super::{OpenAiUsage, TokenCounts, TranslateError, finish_reason};

/// Stateful stream translator: feed each Anthropic SSE event (event name + data JSON), get
/// zero or more OpenAI chunk events (`data: {...}\n\n`) back; `finish()` yields the final
/// chunks (usage chunk if asked) and `data: [DONE]\n\n`.
#[derive(Debug)]
pub struct StreamTranslator {
    created: i64,
    include_usage: bool,
    /// `chatcmpl-` + the Anthropic message id, from `message_start`.
    id: String,
    model: String,
    usage: Option<TokenCounts>,
    /// Anthropic content-block index → (OpenAI tool-call index, arguments sent so far).
    tools: Vec<(u64, u32, bool)>,
    finished: bool,
    errored: bool,
}

#[derive(Deserialize)]
struct MessageStart {
    message: StartMessage,
}

#[derive(Deserialize)]
struct StartMessage {
    id: String,
    model: String,
    #[serde(default)]
    usage: Option<TokenCounts>,
}

#[derive(Deserialize)]
struct BlockStart<'a> {
    index: u64,
    #[serde(borrow)]
    content_block: Block<'a>,
}

#[derive(Deserialize)]
struct BlockDelta {
    index: u64,
    delta: DeltaBody,
}

#[derive(Deserialize)]
struct DeltaBody {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
}

#[derive(Deserialize)]
struct BlockStop {
    index: u64,
}

#[derive(Deserialize)]
struct MessageDelta {
    delta: MessageDeltaBody,
    #[serde(default)]
    usage: Option<PartialUsage>,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

/// `message_delta.usage`: cumulative counts; only the fields present replace earlier ones.
#[derive(Deserialize)]
struct PartialUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "crate::usage::lenient_served_tier")]
    service_tier: Option<crate::types::ServedTier>,
}

#[derive(Deserialize)]
struct EventType<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: Option<()>,
    choices: &'a [ChunkChoice<'a>],
    /// Absent unless usage was asked for; then `null` except in the usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<OpenAiUsage>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

const DONE: &[u8] = b"data: [DONE]\n\n";

fn parse<'a, T: Deserialize<'a>>(event: &str, data: &'a [u8]) -> Result<T, TranslateError> {
    serde_json::from_slice(data).map_err(|e| {
        TranslateError::Invalid(format!("unreadable Anthropic stream event '{event}': {e}"))
    })
}

/// `data: <json>\n\n`.
fn sse<T: Serialize>(value: &T) -> Result<Bytes, TranslateError> {
    let mut out = b"data: ".to_vec();
    serde_json::to_writer(&mut out, value)
        .map_err(|e| TranslateError::Invalid(format!("could not write a chunk: {e}")))?;
    out.extend_from_slice(b"\n\n");
    Ok(Bytes::from(out))
}

impl StreamTranslator {
    pub fn new(created: i64, include_usage: bool) -> Self {
        StreamTranslator {
            created,
            include_usage,
            id: String::new(),
            model: String::new(),
            usage: None,
            tools: Vec::new(),
            finished: false,
            errored: false,
        }
    }

    /// Translates one Anthropic SSE event. `event` is the SSE `event:` name; when empty,
    /// the `type` field of `data` is used.
    pub fn event(&mut self, event: &str, data: &[u8]) -> Result<Vec<Bytes>, TranslateError> {
        if self.finished {
            return Ok(Vec::new());
        }
        let kind = if event.is_empty() {
            parse::<EventType>(event, data)?.kind
        } else {
            event.into()
        };
        let kind = kind.as_ref();
        match kind {
            "message_start" => {
                let start: MessageStart = parse(kind, data)?;
                self.id = format!("chatcmpl-{}", start.message.id);
                self.model = start.message.model;
                self.usage = Some(start.message.usage.unwrap_or_default());
                let delta = Delta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..Delta::default()
                };
                Ok(vec![self.chunk(delta, None)?])
            }
            "content_block_start" => {
                let start: BlockStart = parse(kind, data)?;
                let block = start.content_block;
                match block.kind.as_str() {
                    "text" => match block.text.as_deref() {
                        Some(text) if !text.is_empty() => Ok(vec![self.text(text)?]),
                        _ => Ok(Vec::new()),
                    },
                    "tool_use" => {
                        let index = u32::try_from(self.tools.len()).unwrap_or(u32::MAX);
                        self.tools.push((start.index, index, false));
                        let call = ToolCallDelta {
                            index,
                            id: Some(block.id.as_deref().unwrap_or_default()),
                            kind: Some("function"),
                            function: FunctionDelta {
                                name: Some(block.name.as_deref().unwrap_or_default()),
                                arguments: "",
                            },
                        };
                        Ok(vec![self.tool_chunk(call)?])
                    }
                    _ => Ok(Vec::new()),
                }
            }
            "content_block_delta" => {
                let delta: BlockDelta = parse(kind, data)?;
                match delta.delta.kind.as_str() {
                    "text_delta" => match delta.delta.text.as_deref() {
                        Some(text) if !text.is_empty() => Ok(vec![self.text(text)?]),
                        _ => Ok(Vec::new()),
                    },
                    "input_json_delta" => {
                        let partial = delta.delta.partial_json.unwrap_or_default();
                        if partial.is_empty() {
                            return Ok(Vec::new());
                        }
                        let Some(tool) = self.tools.iter_mut().find(|t| t.0 == delta.index) else {
                            return Ok(Vec::new());
                        };
                        tool.2 = true;
                        let index = tool.1;
                        Ok(vec![self.arguments(index, &partial)?])
                    }
                    _ => Ok(Vec::new()),
                }
            }
            "content_block_stop" => {
                let stop: BlockStop = parse(kind, data)?;
                match self.tools.iter().find(|t| t.0 == stop.index) {
                    // A call without input still needs valid JSON arguments.
                    Some(&(_, index, false)) => Ok(vec![self.arguments(index, "{}")?]),
                    _ => Ok(Vec::new()),
                }
            }
            "message_delta" => {
                let delta: MessageDelta = parse(kind, data)?;
                if let Some(u) = delta.usage {
                    let usage = self.usage.get_or_insert_with(TokenCounts::default);
                    let fields = [
                        (&mut usage.input_tokens, u.input_tokens),
                        (&mut usage.output_tokens, u.output_tokens),
                        (
                            &mut usage.cache_creation_input_tokens,
                            u.cache_creation_input_tokens,
                        ),
                        (
                            &mut usage.cache_read_input_tokens,
                            u.cache_read_input_tokens,
                        ),
                    ];
                    for (field, value) in fields {
                        if let Some(v) = value {
                            *field = v;
                        }
                    }
                    if u.service_tier.is_some() {
                        usage.service_tier = u.service_tier;
                    }
                }
                let reason = finish_reason(delta.delta.stop_reason.as_deref());
                Ok(vec![self.chunk(Delta::default(), Some(reason))?])
            }
            "message_stop" => Ok(self.finish()),
            "error" => {
                self.errored = true;
                let envelope = super::error_to_openai(data);
                let mut out = Vec::with_capacity(envelope.len() + 8);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&envelope);
                out.extend_from_slice(b"\n\n");
                Ok(vec![Bytes::from(out)])
            }
            // ping, and events added after this was written.
            _ => Ok(Vec::new()),
        }
    }

    /// The end of the stream: the usage chunk (when asked for, and no error was sent) and
    /// `data: [DONE]`. Only the first call (or `message_stop`) yields anything.
    pub fn finish(&mut self) -> Vec<Bytes> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let mut out = Vec::with_capacity(2);
        if self.include_usage && !self.errored {
            if let Some(usage) = self.usage {
                let chunk = Chunk {
                    id: &self.id,
                    object: "chat.completion.chunk",
                    created: self.created,
                    model: &self.model,
                    system_fingerprint: None,
                    choices: &[],
                    usage: Some(Some(usage.to_openai())),
                };
                if let Ok(bytes) = sse(&chunk) {
                    out.push(bytes);
                }
            }
        }
        out.push(Bytes::from_static(DONE));
        out
    }

    /// The `usage.service_tier` Anthropic reported (in `message_start`, or a later
    /// `message_delta`), for pricing.
    pub fn served_tier(&self) -> Option<crate::types::ServedTier> {
        self.usage.and_then(|u| u.service_tier)
    }

    /// Usage seen so far in OpenAI shape (`prompt_tokens` includes cache read + write tokens,
    /// `prompt_tokens_details.cached_tokens` = cache read) — for the gateway's accounting.
    pub fn usage(&self) -> Option<serde_json::Value> {
        self.usage
            .and_then(|u| serde_json::to_value(u.to_openai()).ok())
    }

    fn chunk(
        &self,
        delta: Delta<'_>,
        finish_reason: Option<&'static str>,
    ) -> Result<Bytes, TranslateError> {
        let choices = [ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason,
        }];
        sse(&Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices: &choices,
            usage: self.include_usage.then_some(None),
        })
    }

    fn text(&self, text: &str) -> Result<Bytes, TranslateError> {
        let delta = Delta {
            content: Some(text),
            ..Delta::default()
        };
        self.chunk(delta, None)
    }

    fn tool_chunk(&self, call: ToolCallDelta<'_>) -> Result<Bytes, TranslateError> {
        let delta = Delta {
            tool_calls: Some([call]),
            ..Delta::default()
        };
        self.chunk(delta, None)
    }

    fn arguments(&self, index: u32, arguments: &str) -> Result<Bytes, TranslateError> {
        self.tool_chunk(ToolCallDelta {
            index,
            id: None,
            kind: None,
            function: FunctionDelta {
                name: None,
                arguments,
            },
        })
    }
}
