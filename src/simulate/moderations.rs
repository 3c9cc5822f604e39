//! `POST /v1/moderations`: one result per input (a string, an array of strings, or one
//! multi-modal array), by a fixed rule: a text that mentions "kill" is flagged `violence`.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Meta;
use super::body::Reply;
use super::error::ApiError;
use super::text::content_text;

/// Every category of a moderation result (openapi `CreateModerationResponse`, all required).
const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

const DEFAULT_MODEL: &str = "omni-moderation-latest";

#[derive(Deserialize)]
struct Request {
    input: Option<Value>,
    model: Option<String>,
}

pub fn handle(meta: &Meta, body: &[u8]) -> Result<Reply, ApiError> {
    let req: Request = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let texts: Vec<String> = match req.input {
        None | Some(Value::Null) => return Err(ApiError::missing("input")),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .into_iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect(),
        // Multi-modal: one input made of text and image parts.
        Some(v @ Value::Array(_)) => vec![content_text(Some(&v)).into_owned()],
        Some(_) => {
            return Err(ApiError::invalid(
                "Invalid type for 'input': expected a string, an array of strings or an array of input objects.",
                Some("input"),
                Some("invalid_type"),
            ));
        }
    };
    let model = req.model.unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    Reply::json(&json!({
        "id": format!("modr-sim{}", meta.seq),
        "model": model,
        "results": texts.iter().map(|t| result(t)).collect::<Vec<_>>(),
    }))
}

fn result(text: &str) -> Value {
    let violent = text.to_ascii_lowercase().contains("kill");
    let (mut flags, mut scores, mut applied) = (Map::new(), Map::new(), Map::new());
    for c in CATEGORIES {
        let hit = violent && c == "violence";
        flags.insert(c.into(), hit.into());
        scores.insert(c.into(), json!(if hit { 0.91 } else { 0.0001 }));
        applied.insert(c.into(), json!(["text"]));
    }
    json!({
        "flagged": violent,
        "categories": flags,
        "category_scores": scores,
        "category_applied_input_types": applied,
    })
}
