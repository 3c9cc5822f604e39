//! `POST /v1/messages/count_tokens` (Anthropic): `{"input_tokens": N}` for a Messages
//! request without `max_tokens`, counted as the Messages route counts its input (its
//! prompt blocks: tools, system, messages; cached or not).

use serde_json::{Value, json};

use super::anthropic::AnthError;
use super::anthropic_cache;
use super::body::Reply;
use super::fields;

pub fn handle(body: &[u8]) -> Result<Reply, AnthError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| AnthError::invalid(format!("Invalid JSON body: {e}")))?;
    let obj = value
        .as_object()
        .ok_or_else(|| AnthError::invalid("Request body must be a JSON object"))?;
    fields::check_anthropic(&value, fields::ANTHROPIC_COUNT_TOKENS, "")?;
    match obj.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        None => return Err(AnthError::invalid("model: Field required")),
        Some(_) => return Err(AnthError::invalid("model: Input should be a valid string")),
    }
    match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        None => return Err(AnthError::invalid("messages: Field required")),
        Some(_) => {
            return Err(AnthError::invalid(
                "messages: Input should be a non-empty list",
            ));
        }
    }
    let input = anthropic_cache::total_tokens(&anthropic_cache::blocks(obj)?);
    Reply::json(&json!({"input_tokens": input})).map_err(|e| AnthError::from_api(&e))
}
