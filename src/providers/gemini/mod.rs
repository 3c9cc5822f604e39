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
    // Chat completions only: they are translated to generateContent (Batch Mode takes
    // nothing else that Sluice's callers speak).
    batch_endpoints: &[Endpoint::ChatCompletions],
    flex: false,
    // No per-batch request count is published (UNCONFIRMED): 100,000 keeps result files
    // manageable. An input file holds at most 2 GB; translated bodies can be somewhat
    // larger than the OpenAI ones the accumulator counts, so a quarter is kept in reserve.
    max_batch_requests: 100_000,
    max_batch_bytes: 1_500_000_000,
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
    caller == Endpoint::ChatCompletions && translate::request_from_openai(body).is_ok()
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
