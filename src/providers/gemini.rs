//! Google Gemini, reached through its OpenAI-compatible endpoint (`/openai` below the
//! base URL, bearer key), interactive only for now: its Batch Mode is the next adapter.

use crate::types::Endpoint;

use super::Capabilities;

pub const CAPABILITIES: Capabilities = Capabilities {
    batch_endpoints: &[],
    flex: false,
    max_batch_requests: 0,
    max_batch_bytes: 0,
};

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
