//! Anthropic error envelope → OpenAI error envelope (see the table in the parent).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Envelope {
    error: AnthropicError,
}

#[derive(Deserialize)]
struct AnthropicError {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Serialize)]
struct OpenAiEnvelope<'a> {
    error: OpenAiError<'a>,
}

#[derive(Serialize)]
struct OpenAiError<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<()>,
    code: Option<&'static str>,
}

/// Anthropic `error.type` (and message) → OpenAI (`type`, `code`).
fn map_kind<'a>(kind: &'a str, message: &str) -> (&'a str, Option<&'static str>) {
    match kind {
        "invalid_request_error" => ("invalid_request_error", None),
        "authentication_error" => ("invalid_request_error", Some("invalid_api_key")),
        "permission_error" => ("invalid_request_error", Some("permission_denied")),
        "not_found_error" => ("invalid_request_error", Some("not_found")),
        "conflict_error" => ("invalid_request_error", Some("conflict")),
        "request_too_large" => ("invalid_request_error", Some("request_too_large")),
        "billing_error" => ("insufficient_quota", Some("insufficient_quota")),
        "rate_limit_error" => {
            let kind = if message.to_ascii_lowercase().contains("token") {
                "tokens"
            } else {
                "requests"
            };
            (kind, Some("rate_limit_exceeded"))
        }
        "api_error" => ("server_error", None),
        "overloaded_error" => ("server_error", Some("overloaded")),
        "timeout_error" => ("server_error", Some("timeout")),
        other => (other, None),
    }
}

/// The OpenAI `{"error": {...}}` envelope for an Anthropic error envelope (`{"type": "error",
/// "error": {...}}`), as JSON bytes. The caller keeps the HTTP status.
pub fn error_to_openai(anthropic_body: &[u8]) -> Bytes {
    let parsed = serde_json::from_slice::<Envelope>(anthropic_body).ok();
    let fallback;
    let (message, kind, code) = match &parsed {
        Some(Envelope { error }) => {
            let (kind, code) = map_kind(&error.kind, &error.message);
            (error.message.as_str(), kind, code)
        }
        None => {
            fallback = format!(
                "the Anthropic API returned an unreadable error: {}",
                String::from_utf8_lossy(anthropic_body)
            );
            (fallback.as_str(), "server_error", None)
        }
    };
    let envelope = OpenAiEnvelope {
        error: OpenAiError {
            message,
            kind,
            param: None,
            code,
        },
    };
    // Serializing plain strings and options cannot fail; keep a constant just in case.
    serde_json::to_vec(&envelope).map_or_else(
        |_| Bytes::from_static(br#"{"error":{"message":"upstream error","type":"server_error","param":null,"code":null}}"#),
        Bytes::from,
    )
}
