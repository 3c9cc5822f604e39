//! Sluice: an OpenAI-compatible LLM gateway that triages every request by how long its
//! caller can wait, and prices every answer.
//!
//! ```text
//! server → gateway (identify, parse once) → triage (pure) ─┬→ response cache
//!                                                           ├→ forward (interactive, flex) → upstream → provider
//!                                                           └→ defer → store ← batch engine → Batch API
//!        respond (one exit: response + metrics, once) ← relay (SSE) / answer / deliver ← account
//! ```
//!
//! Leaves: `types`, `error`, `duration`, `metrics`, `config`. Pure stages: `policy`, `sla`,
//! `triage`, `inspect`, `usage`, `pricing`, `synth`, `batch::accumulator`, `batch::openai`,
//! `anthropic`. I/O: `upstream`, `forward`, `relay`, `gateway`, `deliver`, `server`,
//! `batch::{client, engine}`, `store`. Tools: `simulate`, `estimate`, `demo`, `cli`.

// House rules (README "House rules"): outside tests, no unwrap or expect — an error is
// typed and handled, never a panic on input.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod account;
pub mod batch;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deliver;
pub mod demo;
pub mod duration;
pub mod error;
pub mod estimate;
pub mod forward;
pub mod gateway;
pub mod inspect;
pub mod metrics;
pub mod policy;
pub mod prefer;
pub mod pricing;
pub mod providers;
pub mod relay;
pub mod response_cache;
pub mod server;
pub mod simulate;
pub mod sla;
pub mod store;
pub mod strict_json;
pub mod synth;
pub mod triage;
pub mod types;
pub mod upstream;
pub mod usage;
