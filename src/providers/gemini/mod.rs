//! Google Gemini. Interactive requests go to its OpenAI-compatible endpoint (`/openai`
//! below the base URL, bearer key) unchanged. Deferred chat completions go through its
//! native Batch Mode at half price (`x-goog-api-key`, [`Batches`]): translated to
//! `GenerateContentRequest`s ([`translate`]) on the way in, and the answers back to OpenAI
//! chat completions ([`batch_for_caller`]) on the way out.

use bytes::Bytes;
use http::header::HeaderName;

use super::Capabilities;
use crate::types::Endpoint;

pub mod batch;
pub mod batch_wire;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
pub mod translate;

pub use batch::Batches;

pub const CAPABILITIES: Capabilities = Capabilities {
    // Chat completions, translated to generateContent, and native generateContent
    // requests as they are; the same for Batch Mode and Vertex AI batch prediction.
    batch_endpoints: &[Endpoint::ChatCompletions, Endpoint::GenerateContent],
    flex: false,
    // No per-batch request count is published for Batch Mode (UNCONFIRMED): 100,000 keeps
    // result files manageable. Bytes: what fits both backends — Batch Mode's 2 GB file and
    // Vertex's 1 GB input, less a reserve for the translated bodies (larger than the OpenAI
    // ones the accumulator counts) and each line's envelope and labels.
    max_batch_requests: 100_000,
    max_batch_bytes: 900_000_000,
};

/// The native API's credential header (the OpenAI-compatible endpoint takes a bearer key).
pub const KEY_HEADER: HeaderName = HeaderName::from_static("x-goog-api-key");

pub fn path(upstream: Endpoint) -> Option<&'static str> {
    match upstream {
        Endpoint::ChatCompletions => Some("/openai/chat/completions"),
        Endpoint::Completions => Some("/openai/completions"),
        Endpoint::Embeddings => Some("/openai/embeddings"),
        Endpoint::Responses => Some("/openai/responses"),
        Endpoint::Messages => None,
        // The native API (x-goog-api-key, see `providers::credentials_for`).
        Endpoint::GenerateContent => Some(super::GENERATE_CONTENT),
    }
}

/// Whether a caller's request can go through Batch Mode: only chat completions that
/// translate (the rest is served interactively, where the OpenAI-compatible endpoint takes
/// them as they are).
pub fn batchable(caller: Endpoint, body: &[u8]) -> bool {
    match caller {
        Endpoint::GenerateContent => true,
        Endpoint::ChatCompletions => translate::request_from_openai(body).is_ok(),
        _ => false,
    }
}

/// The `GenerateContentRequest` a batch line carries for a caller's body: a chat completion
/// translated, a native request without its service tier (which a batch line must not
/// carry, provider-apis.md 3.2). One that does not translate (the gateway batches only
/// those that do, [`batchable`]) becomes empty `contents`, which Google answers with a
/// per-request `INVALID_ARGUMENT` instead of refusing the whole batch.
pub fn batch_request(caller: Endpoint, body: &[u8]) -> Vec<u8> {
    const EMPTY: &[u8] = br#"{"contents":[]}"#;
    match caller {
        Endpoint::GenerateContent => without_service_tier(body).unwrap_or_else(|| body.to_vec()),
        _ => translate::request_from_openai(body).unwrap_or_else(|_| EMPTY.to_vec()),
    }
}

/// `body` without a top-level `service_tier` / `serviceTier`, or `None` if it has neither
/// (then it is sent as it is).
fn without_service_tier(body: &[u8]) -> Option<Vec<u8>> {
    let finder = memchr::memmem::Finder::new(b"ervice");
    finder.find(body)?;
    let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body).ok()?;
    let removed = v.remove("service_tier").is_some() | v.remove("serviceTier").is_some();
    removed.then(|| serde_json::to_vec(&v).ok()).flatten()
}

/// A Batch Mode result (a native `GenerateContentResponse`, or a Google error envelope) as
/// the OpenAI answer the caller of `model` expects.
pub fn batch_for_caller(
    caller: Endpoint,
    status: u16,
    body: &[u8],
    model: &str,
    created: i64,
) -> Result<Bytes, String> {
    if caller != Endpoint::ChatCompletions {
        return Ok(Bytes::copy_from_slice(body));
    }
    if (200..300).contains(&status) {
        translate::response_to_openai(body, model, created)
    } else {
        Ok(translate::error_to_openai(body))
    }
}
