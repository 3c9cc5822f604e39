//! The top-level request fields each simulated endpoint accepts. Real providers refuse
//! any other field with a 400, so the simulator does too: a field the gateway adds by
//! mistake then fails a test instead of passing silently.
//!
//! OpenAI lists come from openai-openapi.yaml (the request schema's `properties`,
//! including its `allOf` parents); Anthropic and Google lists from the reference (2.2,
//! 3.5) plus the provider's public API docs.

use std::fmt;

use serde::Deserializer;
use serde::de::{IgnoredAny, MapAccess, Visitor};
use serde_json::Value;

use super::anthropic::AnthError;
use super::error::ApiError;

/// `CreateChatCompletionRequest` with `CreateModelResponseProperties` and
/// `ModelResponseProperties`.
pub const CHAT: &[&str] = &[
    "audio",
    "frequency_penalty",
    "function_call",
    "functions",
    "logit_bias",
    "logprobs",
    "max_completion_tokens",
    "max_tokens",
    "messages",
    "metadata",
    "modalities",
    "model",
    "moderation",
    "n",
    "parallel_tool_calls",
    "prediction",
    "presence_penalty",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning_effort",
    "response_format",
    "safety_identifier",
    "seed",
    "service_tier",
    "stop",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "user",
    "verbosity",
    "web_search_options",
];

/// `CreateCompletionRequest`.
pub const COMPLETIONS: &[&str] = &[
    "best_of",
    "echo",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "max_tokens",
    "model",
    "n",
    "presence_penalty",
    "prompt",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "suffix",
    "temperature",
    "top_p",
    "user",
];

/// `CreateEmbeddingRequest`.
pub const EMBEDDINGS: &[&str] = &["dimensions", "encoding_format", "input", "model", "user"];

/// `CreateResponse` with its `allOf` parents.
pub const RESPONSES: &[&str] = &[
    "background",
    "context_management",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "moderation",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "prompt_cache_options",
    "prompt_cache_retention",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
];

/// `CreateBatchRequest`.
pub const BATCH_CREATE: &[&str] = &[
    "completion_window",
    "endpoint",
    "input_file_id",
    "metadata",
    "output_expires_after",
];

/// Anthropic `MessageCreateParams` (reference 2.2, generous with documented and beta
/// fields so that SDK traffic passes).
pub const ANTHROPIC_MESSAGES: &[&str] = &[
    "cache_control",
    "container",
    "context_management",
    "inference_geo",
    "max_tokens",
    "mcp_servers",
    "messages",
    "metadata",
    "model",
    "output_config",
    "output_format",
    "service_tier",
    "stop_sequences",
    "stream",
    "system",
    "temperature",
    "thinking",
    "tool_choice",
    "tools",
    "top_k",
    "top_p",
];

/// Anthropic `BatchCreateParams`.
pub const ANTHROPIC_BATCH_CREATE: &[&str] = &["requests"];

/// One entry of Anthropic `requests`.
pub const ANTHROPIC_BATCH_REQUEST: &[&str] = &["custom_id", "params"];

/// Gemini's OpenAI-compatible chat layer (reference 3.5). Confirmed there: `stream`,
/// `tools`, `response_format`, `service_tier`, `reasoning_effort`, `extra_body`; the
/// rest are the standard chat fields Google's compatibility docs show, UNCONFIRMED by
/// the reference. `prompt_cache_key` is deliberately absent: the layer answers
/// "Unknown name" for OpenAI-only fields.
pub const GOOGLE_CHAT: &[&str] = &[
    "extra_body",
    "frequency_penalty",
    "max_completion_tokens",
    "max_tokens",
    "messages",
    "model",
    "n",
    "presence_penalty",
    "reasoning_effort",
    "response_format",
    "seed",
    "service_tier",
    "stop",
    "stream",
    "stream_options",
    "temperature",
    "tool_choice",
    "tools",
    "top_p",
    "user",
];

/// Gemini's OpenAI-compatible embeddings layer; `model` and `input` confirmed (3.5),
/// `encoding_format` and `dimensions` UNCONFIRMED.
pub const GOOGLE_EMBEDDINGS: &[&str] = &["dimensions", "encoding_format", "input", "model"];

/// `POST /v1/moderations` (openapi `CreateModerationRequest`).
pub const MODERATIONS: &[&str] = &["input", "model"];

/// Top-level keys of a generation request (openapi `CreateImageRequest`).
pub const IMAGE_GENERATIONS: &[&str] = &[
    "background",
    "model",
    "moderation",
    "n",
    "output_compression",
    "output_format",
    "partial_images",
    "prompt",
    "quality",
    "response_format",
    "size",
    "stream",
    "style",
    "user",
];

/// Top-level keys of a speech request (openapi `CreateSpeechRequest`).
pub const SPEECH: &[&str] = &[
    "input",
    "instructions",
    "model",
    "response_format",
    "speed",
    "stream_format",
    "voice",
];

/// `POST /v1/messages/count_tokens` (Anthropic): a Messages request without `max_tokens`.
pub const ANTHROPIC_COUNT_TOKENS: &[&str] = &[
    "mcp_servers",
    "messages",
    "model",
    "system",
    "thinking",
    "tool_choice",
    "tools",
];

/// The first top-level key of the JSON object `body` (in document order) that is not in
/// `allowed`. `None` when every key is allowed or when `body` is not valid JSON or not an
/// object: the endpoint's own parser reports malformed bodies.
pub fn unknown(body: &[u8], allowed: &[&str]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let found = de.deserialize_any(FirstUnknown(allowed)).ok()?;
    de.end().ok()?;
    found
}

/// The first key of `value` not in `allowed` (`None` for non-objects).
pub fn unknown_in<'v>(value: &'v Value, allowed: &[&str]) -> Option<&'v str> {
    value
        .as_object()?
        .keys()
        .map(String::as_str)
        .find(|k| !allowed.contains(k))
}

/// OpenAI's 400 `unknown_parameter` for the first field of `body` not in `allowed`.
pub fn check_openai(body: &[u8], allowed: &[&str]) -> Result<(), ApiError> {
    match unknown(body, allowed) {
        None => Ok(()),
        Some(name) => Err(ApiError::invalid_at(
            format!("Unrecognized request argument supplied: {name}"),
            name,
            Some("unknown_parameter"),
        )),
    }
}

/// Anthropic's 400 for an extra field; `at` is the pydantic-style location prefix
/// (`""` at the top level, `"requests.0.params."` inside a batch).
pub fn check_anthropic(value: &Value, allowed: &[&str], at: &str) -> Result<(), AnthError> {
    match unknown_in(value, allowed) {
        None => Ok(()),
        Some(name) => Err(AnthError::invalid(format!(
            "{at}{name}: Extra inputs are not permitted"
        ))),
    }
}

/// Scans keys without building values, so the check costs little on large bodies; the
/// whole object is still read so that a syntax error later on is not hidden.
struct FirstUnknown<'a>(&'a [&'a str]);

impl<'de> Visitor<'de> for FirstUnknown<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut first = None;
        while let Some(key) = map.next_key::<String>()? {
            if first.is_none() && !self.0.contains(&key.as_str()) {
                first = Some(key);
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_unknown_key_in_document_order() {
        let body = br#"{"model":"m","zeta":1,"alpha":{"x":[1,2]}}"#;
        assert_eq!(unknown(body, &["model"]).as_deref(), Some("zeta"));
        assert_eq!(unknown(body, &["model", "zeta", "alpha"]), None);
    }

    #[test]
    fn odd_bodies_are_left_to_the_handler() {
        for body in [&b"[1]"[..], b"null", b"\"x\"", b"{", b"", b"{\"a\":}"] {
            assert_eq!(unknown(body, &[]), None, "{body:?}");
        }
        // Escaped keys are compared unescaped; explicit nulls of known fields pass.
        assert_eq!(unknown(br#"{"mo\u0064el":null}"#, &["model"]), None);
        assert_eq!(
            unknown_in(&serde_json::json!({"model": null, "x": 1}), &["model"]),
            Some("x")
        );
        assert_eq!(unknown_in(&serde_json::json!([1]), &[]), None);
    }

    #[test]
    fn lists_are_sorted_and_unique() {
        for list in [
            CHAT,
            COMPLETIONS,
            EMBEDDINGS,
            RESPONSES,
            BATCH_CREATE,
            ANTHROPIC_MESSAGES,
            GOOGLE_CHAT,
            GOOGLE_EMBEDDINGS,
            MODERATIONS,
            IMAGE_GENERATIONS,
            SPEECH,
            ANTHROPIC_COUNT_TOKENS,
        ] {
            assert!(list.windows(2).all(|w| w[0] < w[1]), "{list:?}");
        }
    }
}
