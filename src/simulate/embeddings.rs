//! `POST /v1/embeddings` (`CreateEmbeddingResponse`).

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::body::{Reply, json_bytes};
use super::error::{ApiError, splitmix};
use super::text::tokens;
use super::{Meta, Simulator};

/// Default vector length.
pub const DEFAULT_DIMENSIONS: usize = 1536;

/// Largest accepted `dimensions`.
const MAX_DIMENSIONS: usize = 8192;

/// Largest accepted number of inputs in one request.
const MAX_INPUTS: usize = 2048;

#[derive(Deserialize)]
struct EmbeddingRequest {
    model: Option<String>,
    input: Option<Value>,
    encoding_format: Option<String>,
    dimensions: Option<i64>,
}

#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<Embedding>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// One input to embed.
enum Input<'a> {
    Text(&'a str),
    Tokens(&'a [Value]),
}

impl Input<'_> {
    fn tokens(&self) -> u64 {
        match self {
            Input::Text(s) => tokens(s),
            Input::Tokens(t) => t.len() as u64,
        }
    }

    fn seed(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        match self {
            Input::Text(s) => {
                h.update(b"t");
                h.update(s.as_bytes());
            }
            Input::Tokens(ts) => {
                h.update(b"i");
                for t in *ts {
                    h.update(t.as_u64().unwrap_or(0).to_le_bytes());
                }
            }
        }
        h.finalize().into()
    }
}

fn inputs(input: Option<&Value>) -> Result<Vec<Input<'_>>, ApiError> {
    let bad = || {
        ApiError::invalid(
            "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
            Some("input"),
            Some("invalid_value"),
        )
    };
    let tokens = |arr: &[Value]| !arr.is_empty() && arr.iter().all(Value::is_u64);
    let list = match input {
        None | Some(Value::Null) => return Err(ApiError::missing("input")),
        Some(Value::String(s)) if !s.is_empty() => vec![Input::Text(s)],
        Some(Value::Array(items)) if tokens(items) => vec![Input::Tokens(items)],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.is_empty() => Ok(Input::Text(s)),
                Value::Array(arr) if tokens(arr) => Ok(Input::Tokens(arr)),
                _ => Err(bad()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad()),
    };
    if list.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            format!(
                "Invalid 'input': array too long. Expected an array with maximum length {MAX_INPUTS}."
            ),
            Some("input"),
            Some("array_above_max_length"),
        ));
    }
    Ok(list)
}

/// A deterministic unit vector of `dims` values derived from `seed`.
pub fn vector(seed: [u8; 32], dims: usize) -> Vec<f32> {
    let mut first = [0u8; 8];
    first.copy_from_slice(&seed[..8]);
    let mut state = u64::from_le_bytes(first);
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            // 24 random bits mapped to [-1, 1).
            (splitmix(state) >> 40) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// Handles one embeddings request body.
pub fn handle(_sim: &Simulator, _meta: &Meta, body: &[u8]) -> Result<Reply, ApiError> {
    let req: EmbeddingRequest =
        serde_json::from_slice(body).map_err(|e| ApiError::from_json(&e))?;
    let model = match req.model.as_deref() {
        Some(m) if !m.is_empty() => m,
        _ => return Err(ApiError::missing("model")),
    };
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                format!(
                    "Invalid value for 'encoding_format': '{other}'. Expected 'float' or 'base64'."
                ),
                Some("encoding_format"),
                Some("invalid_value"),
            ));
        }
    };
    let dims = match req.dimensions {
        None => DEFAULT_DIMENSIONS,
        Some(d) => match usize::try_from(d) {
            Ok(d @ 1..=MAX_DIMENSIONS) => d,
            _ => {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid 'dimensions': expected a value between 1 and {MAX_DIMENSIONS}, but got {d} instead."
                    ),
                    Some("dimensions"),
                    Some("invalid_value"),
                ));
            }
        },
    };
    let inputs = inputs(req.input.as_ref())?;
    let prompt_tokens = inputs.iter().map(Input::tokens).sum();
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let v = vector(input.seed(), dims);
            let embedding = if base64 {
                let mut raw = Vec::with_capacity(v.len() * 4);
                v.iter()
                    .for_each(|x| raw.extend_from_slice(&x.to_le_bytes()));
                Vector::Base64(base64::engine::general_purpose::STANDARD.encode(raw))
            } else {
                Vector::Float(v)
            };
            Embedding {
                object: "embedding",
                index,
                embedding,
            }
        })
        .collect();
    let resp = EmbeddingList {
        object: "list",
        data,
        model,
        usage: Usage {
            prompt_tokens,
            total_tokens: prompt_tokens,
        },
    };
    Ok(Reply::Json(json_bytes(&resp)?))
}
