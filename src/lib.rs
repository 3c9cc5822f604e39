//! Sluice: an OpenAI-compatible LLM gateway that triages every request by how long its
//! caller can wait, and prices every answer.
//!
//! ```text
//! server → gateway::ingress (identify, x-sla, body, inspect, route: one `Call`)
//!        → gateway::plan (triage: pure; cache key; the provider's bodies)
//!        → gateway::execute ─┬→ response cache
//!                            ├→ forward (interactive, flex) → upstream → provider
//!                            └→ gateway::defer → store ← batch::engine → providers::Adapter → Batch API
//!        → gateway::respond (the caller's API, x-sluice-* headers, one record) → account
//!          deliver (held / async / SSE for deferred jobs) ← store
//! ```
//!
//! The provider seam is `providers`: everything that differs between providers is behind its
//! functions and its `Adapter` enum. Leaves: `types`, `error`, `duration`, `metrics`, `config`,
//! `clock`, `lifecycle` (the owner of background tasks: a stop token and a tracker). Pure
//! stages: `policy`, `sla`, `triage`, `inspect`, `usage`, `pricing`, `synth`,
//! `batch::accumulator`, the wire formats and translation in `providers`. I/O: `upstream`,
//! `forward`, `relay`, `gateway`, `deliver`, `server`, `batch::engine`, `providers::control`,
//! `store`, `account`. Tools: `simulate`, `estimate`, `demo`, `cli`. `tests/layers.rs` checks
//! that imports only point down this list.

// House rules (README "House rules"): outside tests, no unwrap or expect — an error is
// typed and handled, never a panic on input.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
// Background work is spawned on a `lifecycle::Tasks` (a TaskTracker), never bare, so that
// shutdown can stop and wait for it (`clippy.toml` names the banned calls).
#![cfg_attr(not(test), deny(clippy::disallowed_methods))]

pub mod account;
pub mod batch;
pub mod cli;
pub mod client_hints;
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
pub mod lifecycle;
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
