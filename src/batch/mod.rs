//! The deferred tiers: the accumulator decides what goes out together, the engine moves
//! jobs through the store and the provider's Batch API, the watchdog answers in time.

pub mod accumulator;
pub mod engine;

use std::sync::OnceLock;

/// `job_` / `flush_` + 32 random hex digits.
pub fn new_id(prefix: &str) -> String {
    let mut buf = [0u8; 16];
    // getrandom cannot fail on the platforms Sluice runs on; fall back to time + counter.
    if getrandom::fill(&mut buf).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        buf[..8].copy_from_slice(&t.to_le_bytes());
        buf[8..].copy_from_slice(&N.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    }
    format!("{prefix}_{}", hex::encode(buf))
}

pub use crate::clock::now_ms;

/// Crash-test hook: with `SLUICE_FAILPOINT=<name>`, the process aborts (like `kill -9`: no
/// destructors, no flush) when it reaches that point. Names: `after_enqueue`,
/// `after_claim`, `after_upload`, `before_create`, `after_create`, `mid_delivery`.
pub fn failpoint(name: &str) {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    let point = POINT.get_or_init(|| {
        std::env::var("SLUICE_FAILPOINT")
            .ok()
            .filter(|s| !s.is_empty())
    });
    if point.as_deref() == Some(name) {
        eprintln!("sluice: failpoint {name} reached, aborting");
        std::process::abort();
    }
}
