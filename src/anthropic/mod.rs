//! Anthropic: the Messages API wire format, translation from and to OpenAI chat
//! completions, and automatic prompt-cache breakpoints. Pure: no I/O here.

pub mod cache;
pub mod relay;
pub mod translate;
