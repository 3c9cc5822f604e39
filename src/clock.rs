//! The one clock of the deferred tiers, in unix milliseconds. The engine reads time only
//! through a [`Clock`], so its tests hold time still and move it by hand ([`Clock::manual`]):
//! deadlines, leases, back-offs and polls then happen exactly when a test says. (Tokio's
//! paused time cannot serve here: it auto-advances while the store's worker threads run,
//! which fires the connection pool's timeouts.)

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Wall-clock time now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The system clock.
    #[default]
    System,
    /// Stands still until advanced.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    /// A clock stopped at the current wall-clock time.
    pub fn manual() -> Clock {
        Clock::Manual(Arc::new(AtomicI64::new(now_ms())))
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock on; the system clock moves by itself.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(t) = self {
            t.fetch_add(
                by.as_millis().min(i64::MAX as u128) as i64,
                Ordering::SeqCst,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let c = Clock::manual();
        let a = c.now_ms();
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(c.now_ms(), a);
        c.advance(Duration::from_secs(3600));
        assert_eq!(c.now_ms(), a + 3_600_000);
        assert!(Clock::System.now_ms() >= a);
    }
}
