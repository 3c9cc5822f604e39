//! OpenAI chat completions <-> Anthropic Messages translation, so OpenAI SDK clients can use
//! `claude-*` models through Anthropic's native API (which, unlike Anthropic's own OpenAI
//! compatibility layer, supports prompt caching). Pure: bytes in, bytes out, no I/O, no clock.
//!
//! Unlike Anthropic's compatibility layer, which silently ignores what it cannot honour, this
//! module rejects every field that would change the answer with a 400 naming the field
//! ([`TranslateError::Unsupported`]); only hints that do not change the answer are ignored.
//! A field set to `null` or to its OpenAI default (`n: 1`, `logprobs: false`,
//! `presence_penalty: 0`, ...) is accepted as absent.
//!
//! ## Request: OpenAI `POST /v1/chat/completions` → Anthropic `POST /v1/messages`
//!
//! | OpenAI field | Anthropic | notes |
//! |---|---|---|
//! | `model` | `model` | unchanged |
//! | `messages[]` role `system`, `developer` | `system` | hoisted to the front in order, wherever they appear (as Anthropic's compat layer does); one text → string, more → array of text blocks; only `text` parts |
//! | `messages[]` role `user` | `user` turn | string or parts: `text` → text block; `image_url` with a base64 `data:` URL → `image` block with `source.type: base64` (jpeg, png, gif, webp); http(s) URL → `source.type: url`; `detail` ignored; `input_audio`, `file` → **rejected** |
//! | `messages[]` role `assistant` | `assistant` turn | `content` (string, `text` / `refusal` parts) and `refusal` → text blocks; `tool_calls[]` → `tool_use {id, name, input}` (`input` = parsed `arguments`; unparsable → 400); `function_call`, `audio`, custom tool calls → **rejected**; a message with no content is dropped; a final assistant turn becomes Anthropic prefill |
//! | `messages[]` role `tool` | `user` turn | `tool_result {tool_use_id: tool_call_id, content}` (string, or text parts → text blocks); placed before other blocks of the same user turn |
//! | `messages[]` role `function` | — | **rejected** (deprecated; use `tool`) |
//! | `messages[].name` | — | ignored (Anthropic has no participant names) |
//! | consecutive same-role turns | one turn | merged (`tool` + `user` both become `user`); a turn of one text block is sent as a string |
//! | empty text | — | empty text blocks are dropped (Anthropic rejects them); a `user` message left empty → 400 |
//! | `tools[]` `type: function` | `tools[]` | `{name, description, input_schema: parameters}` (`input_schema` defaults to an empty object schema); `strict` ignored, as Anthropic's compat layer does; other tool types (`custom`) → **rejected** |
//! | `tool_choice` | `tool_choice` | `auto` → `{type: auto}`, `required` → `{type: any}`, `none` → `{type: none}`, `{type: function, function: {name}}` → `{type: tool, name}`; `allowed_tools`, `custom` → **rejected**; without tools `auto`/`none` are dropped, others → 400 |
//! | `parallel_tool_calls: false` | `tool_choice.disable_parallel_tool_use: true` | creates `{type: auto}` when no `tool_choice`; not added to `none`; `true` is the default |
//! | `max_completion_tokens`, `max_tokens` | `max_tokens` | `max_completion_tokens` wins; neither → [`DEFAULT_MAX_TOKENS`] |
//! | `temperature` | `temperature` | 0..=1; above 1 → **rejected** (Anthropic caps at 1) |
//! | `top_p` | `top_p` | unchanged |
//! | `stop` (string or array) | `stop_sequences` | an empty or whitespace-only sequence → **rejected** (Anthropic refuses them) |
//! | `stream` | `stream` | unchanged; also returned as [`AnthropicRequest::stream`] |
//! | `stream_options.include_usage` | — | returned as [`AnthropicRequest::include_usage`] (final usage chunk); `include_obfuscation` ignored (no obfuscation field is sent) |
//! | `safety_identifier`, else `user` | `metadata.user_id` | |
//! | `prompt_cache_key`, `prompt_cache_retention`, `prompt_cache_options` | — | ignored: OpenAI cache-routing hints (the gateway sets `prompt_cache_key` itself); Anthropic caching uses `cache_control` breakpoints |
//! | `metadata` (OpenAI's) | — | ignored: dashboard tags, no effect on the answer |
//! | `store` | — | `false` ignored; `true` → **rejected** (nothing would be stored) |
//! | `service_tier` | — | `auto`, `default` ignored; `flex`, `scale`, `priority`, ... → **rejected** |
//! | `n` | — | 1 accepted; other values → **rejected** |
//! | `reasoning_effort` | — | `none` accepted; other values → **rejected** (no thinking through this path) |
//! | `verbosity` | — | `medium` (the default) accepted; others → **rejected** |
//! | `response_format` | — | `{type: text}` accepted; `json_object`, `json_schema` → **rejected** |
//! | `modalities` | — | `["text"]` accepted; others → **rejected** |
//! | `logprobs`, `top_logprobs`, `logit_bias`, `presence_penalty`, `frequency_penalty` | — | default (`false`, `0`, `{}`, `0`, `0`) accepted; anything else → **rejected** |
//! | `audio`, `prediction`, `seed`, `web_search_options`, `moderation`, `functions`, `function_call` | — | **rejected** when set |
//! | any other field | — | **rejected**, naming the field |
//!
//! ## Response: Anthropic `Message` → OpenAI `chat.completion`
//!
//! | Anthropic | OpenAI | notes |
//! |---|---|---|
//! | `id` | `id` | `chatcmpl-` + Anthropic id |
//! | — | `object`, `created`, `system_fingerprint` | `chat.completion`, passed in, `null` |
//! | `model` | `model` | |
//! | `text` blocks | `choices[0].message.content` | concatenated; `null` when there is no text but tool calls; `refusal: null`, `annotations: []` |
//! | `tool_use` blocks | `choices[0].message.tool_calls[]` | `{id, type: function, function: {name, arguments: compact JSON of input}}` (key order kept) |
//! | `thinking`, `redacted_thinking`, other blocks | — | dropped (never requested) |
//! | `stop_reason` | `finish_reason` | `end_turn`, `stop_sequence`, `pause_turn` → `stop`; `max_tokens`, `model_context_window_exceeded` → `length`; `tool_use` → `tool_calls`; `refusal` → `content_filter` |
//! | `usage` | `usage` | `prompt_tokens` = `input_tokens` + `cache_creation_input_tokens` + `cache_read_input_tokens`; `completion_tokens` = `output_tokens`; `total_tokens`; `prompt_tokens_details: {cached_tokens: cache_read, cache_write_tokens: cache_creation}` |
//!
//! ## Stream: Anthropic SSE events → OpenAI `chat.completion.chunk`s
//!
//! Every chunk has the same `id`, `created`, `model`, `object: chat.completion.chunk`,
//! `system_fingerprint: null`, and `"usage": null` when usage was asked for.
//!
//! | Anthropic event | OpenAI chunk |
//! |---|---|
//! | `message_start` | `delta: {role: assistant, content: ""}`; records id, model, input/cache usage |
//! | `content_block_start` `text` | content chunk if the block starts with text |
//! | `content_block_start` `tool_use` | `delta.tool_calls: [{index, id, type: function, function: {name, arguments: ""}}]` (`index` counts tool calls from 0) |
//! | `content_block_delta` `text_delta` | `delta.content` |
//! | `content_block_delta` `input_json_delta` | `delta.tool_calls: [{index, function: {arguments: partial}}]` |
//! | `content_block_stop` | nothing, or `arguments: "{}"` for a tool call that got no input |
//! | `message_delta` | `delta: {}` with `finish_reason` (as above); usage updated (`output_tokens`, input/cache fields if present) |
//! | `message_stop` | end: the usage chunk (`choices: []`) if asked, then `data: [DONE]` (same as [`StreamTranslator::finish`], which then yields nothing more) |
//! | `error` | `data: {"error": {...}}` (mapped like [`error_to_openai`]; OpenAI SDKs raise on it); the end then sends only `[DONE]` |
//! | `ping`, thinking / signature / citation deltas, unknown events | nothing |
//!
//! ## Errors: Anthropic error envelope → OpenAI error envelope (HTTP status kept by the caller)
//!
//! | Anthropic `error.type` | OpenAI `type` | OpenAI `code` |
//! |---|---|---|
//! | `invalid_request_error` | `invalid_request_error` | `null` |
//! | `authentication_error` | `invalid_request_error` | `invalid_api_key` |
//! | `permission_error` | `invalid_request_error` | `permission_denied` |
//! | `not_found_error` | `invalid_request_error` | `not_found` |
//! | `conflict_error` | `invalid_request_error` | `conflict` |
//! | `request_too_large` | `invalid_request_error` | `request_too_large` |
//! | `billing_error` | `insufficient_quota` | `insufficient_quota` |
//! | `rate_limit_error` | `tokens` if the message mentions tokens, else `requests` | `rate_limit_exceeded` |
//! | `api_error` | `server_error` | `null` |
//! | `overloaded_error` | `server_error` | `overloaded` |
//! | `timeout_error` | `server_error` | `timeout` |
//! | other | unchanged | `null` |
//!
//! `message` is kept, `param` is `null`. A body that is not an Anthropic error envelope becomes
//! a `server_error` carrying the body text.

mod error;
#[cfg(test)]
mod proptests;
mod request;
mod response;
mod stream;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_request;
#[cfg(test)]
mod tests_stream;

pub use error::error_to_openai;
pub use request::{AnthropicRequest, request_to_anthropic};
pub use response::response_to_openai;
pub use stream::StreamTranslator;

/// Why a request or response could not be translated.
#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    /// The client used a field or value Anthropic cannot honour; `param` names it
    /// (`temperature`, `messages[2].content[0]`, ...). Maps to a 400.
    #[error("{message}")]
    Unsupported { param: String, message: String },
    /// The body is malformed (not JSON, wrong types, missing fields).
    #[error("{0}")]
    Invalid(String),
}

impl TranslateError {
    /// The request field the error is about, when there is one.
    pub fn param(&self) -> Option<&str> {
        match self {
            TranslateError::Unsupported { param, .. } => Some(param),
            TranslateError::Invalid(_) => None,
        }
    }

    pub(crate) fn unsupported(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError::Unsupported {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// Default max_tokens when the client sets neither max_tokens nor max_completion_tokens.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Token counts in Anthropic terms; [`TokenCounts::to_openai`] gives the OpenAI `usage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
struct TokenCounts {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    cache_creation_input_tokens: u64,
    #[serde(default, deserialize_with = "null_as_zero")]
    cache_read_input_tokens: u64,
    /// `usage.service_tier` (`standard`, `priority`, `batch`), for pricing; not translated.
    #[serde(default, deserialize_with = "crate::usage::lenient_served_tier")]
    service_tier: Option<crate::types::ServedTier>,
}

fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    <Option<u64> as serde::Deserialize>::deserialize(d).map(Option::unwrap_or_default)
}

/// OpenAI `usage` object.
#[derive(Debug, Clone, Copy, serde::Serialize)]
struct OpenAiUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: PromptTokensDetails,
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
struct PromptTokensDetails {
    cached_tokens: u64,
    cache_write_tokens: u64,
}

impl TokenCounts {
    fn to_openai(self) -> OpenAiUsage {
        let prompt = self
            .input_tokens
            .saturating_add(self.cache_creation_input_tokens)
            .saturating_add(self.cache_read_input_tokens);
        OpenAiUsage {
            prompt_tokens: prompt,
            completion_tokens: self.output_tokens,
            total_tokens: prompt.saturating_add(self.output_tokens),
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: self.cache_read_input_tokens,
                cache_write_tokens: self.cache_creation_input_tokens,
            },
        }
    }
}

/// Anthropic `stop_reason` → OpenAI `finish_reason`.
fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// The JSON text without insignificant whitespace, key order and escapes kept as they are.
/// `raw` must be valid JSON (it comes from a parsed `RawValue`).
fn compact_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\n' | '\r' | '\t') {
            out.push(c);
        }
    }
    out
}
