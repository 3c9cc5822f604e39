//! `GET /v1/models` and `GET /v1/models/{id}`.

use bytes::Bytes;
use serde::Serialize;

use super::body::json_bytes;
use super::error::ApiError;

/// The models the simulator lists.
pub const MODELS: &[&str] = &[
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-5",
    "gpt-5-mini",
    "o3",
    "o4-mini",
    "text-embedding-3-small",
    "text-embedding-3-large",
];

/// Fixed `created` timestamp of every listed model.
const CREATED: u64 = 1_700_000_000;

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

fn model(id: &str) -> Model<'_> {
    Model {
        id,
        object: "model",
        created: CREATED,
        owned_by: "sluice-sim",
    }
}

/// The model list body.
pub fn list() -> Result<Bytes, ApiError> {
    json_bytes(&ModelList {
        object: "list",
        data: MODELS.iter().map(|id| model(id)).collect(),
    })
}

/// One model object, or 404 `model_not_found`.
pub fn get(id: &str) -> Result<Bytes, ApiError> {
    match MODELS.iter().find(|m| **m == id) {
        Some(m) => json_bytes(&model(m)),
        None => Err(ApiError::model_not_found(id)),
    }
}
