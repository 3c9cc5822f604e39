//! `POST /v1/images/generations` (JSON), `/v1/images/edits` and `/v1/images/variations`
//! (multipart): `n` copies of one fixed 1×1 PNG, as `b64_json` (GPT Image models, or
//! `response_format: b64_json`) or as a `url`, with token `usage` for GPT Image models.

use http::request::Parts;
use serde::Deserialize;
use serde_json::json;

use super::Meta;
use super::body::Reply;
use super::error::ApiError;
use super::multipart::Form;
use super::text::tokens;

/// A transparent 1×1 PNG.
pub const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/// Output tokens of one generated image (a fixed figure).
const IMAGE_TOKENS: u64 = 272;

#[derive(Deserialize)]
struct Generation {
    prompt: Option<String>,
    model: Option<String>,
    n: Option<u64>,
    response_format: Option<String>,
}

/// What an image request asks, whatever its encoding.
struct Ask {
    prompt: String,
    model: String,
    n: u64,
    response_format: Option<String>,
    /// Bytes of the input images (edits, variations).
    image_bytes: usize,
}

pub fn generations(meta: &Meta, body: &[u8]) -> Result<Reply, ApiError> {
    let req: Generation = serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let prompt = req.prompt.ok_or_else(|| ApiError::missing("prompt"))?;
    answer(
        meta,
        Ask {
            prompt,
            model: req.model.unwrap_or_else(|| "dall-e-2".into()),
            n: req.n.unwrap_or(1),
            response_format: req.response_format,
            image_bytes: 0,
        },
    )
}

/// Edits (`image` and `prompt` required) and variations (`image` required).
pub fn from_form(meta: &Meta, parts: &Parts, body: &[u8], edit: bool) -> Result<Reply, ApiError> {
    let form = Form::from_request(parts, body)?;
    let images: usize = form
        .0
        .iter()
        .filter(|p| p.name == "image" || p.name == "image[]")
        .map(|p| p.data.len())
        .sum();
    if images == 0 {
        return Err(ApiError::missing("image"));
    }
    let prompt = match form.text("prompt") {
        Some(p) => p,
        None if edit => return Err(ApiError::missing("prompt")),
        None => String::new(),
    };
    let n = match form.text("n") {
        None => 1,
        Some(n) => n.parse().map_err(|_| {
            ApiError::invalid(
                "Invalid 'n': expected an integer.",
                Some("n"),
                Some("invalid_type"),
            )
        })?,
    };
    answer(
        meta,
        Ask {
            prompt,
            model: form.text("model").unwrap_or_else(|| "dall-e-2".into()),
            n,
            response_format: form.text("response_format"),
            image_bytes: images,
        },
    )
}

fn answer(meta: &Meta, ask: Ask) -> Result<Reply, ApiError> {
    if !(1..=10).contains(&ask.n) {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'n': integer must be between 1 and 10, got {}.",
                ask.n
            ),
            Some("n"),
            Some("integer_out_of_range"),
        ));
    }
    let gpt_image = ask.model.starts_with("gpt-image");
    let b64 = gpt_image || ask.response_format.as_deref() == Some("b64_json");
    let item = |i: u64| {
        if b64 {
            json!({"b64_json": PNG_B64})
        } else {
            json!({"url": format!("https://sim.invalid/images/img-sim{}-{i}.png", meta.seq)})
        }
    };
    let mut out = json!({
        "created": meta.created,
        "data": (0..ask.n).map(item).collect::<Vec<_>>(),
    });
    if gpt_image {
        let text = tokens(&ask.prompt);
        let image = super::text::tokens_of_len(ask.image_bytes);
        let output = IMAGE_TOKENS * ask.n;
        out["usage"] = json!({
            "total_tokens": text + image + output,
            "input_tokens": text + image,
            "output_tokens": output,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        });
    }
    Reply::json(&out)
}
