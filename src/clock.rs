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
    Manual(Arc<Manual>),
}

/// A test's time, and a wake-up for those sleeping on it ([`Clock::sleep_until`]).
#[derive(Debug, Default)]
pub struct Manual {
    ms: AtomicI64,
    moved: tokio::sync::Notify,
}

impl Clock {
    /// A clock stopped at the current wall-clock time.
    pub fn manual() -> Clock {
        Clock::manual_at(now_ms())
    }

    /// A clock stopped at `ms`.
    pub fn manual_at(ms: i64) -> Clock {
        Clock::Manual(Arc::new(Manual {
            ms: AtomicI64::new(ms),
            moved: tokio::sync::Notify::new(),
        }))
    }

    pub fn now_ms(&self) -> i64 {
        match self {
            Clock::System => now_ms(),
            Clock::Manual(m) => m.ms.load(Ordering::SeqCst),
        }
    }

    /// Moves a manual clock on; the system clock moves by itself.
    pub fn advance(&self, by: Duration) {
        if let Clock::Manual(m) = self {
            m.ms.fetch_add(
                by.as_millis().min(i64::MAX as u128) as i64,
                Ordering::SeqCst,
            );
            m.moved.notify_waiters();
        }
    }

    /// Returns once this clock reads `at_ms` or later: a timer on the system clock, the
    /// test's advance on a manual one.
    pub async fn sleep_until(&self, at_ms: i64) {
        match self {
            Clock::System => {
                let left = at_ms.saturating_sub(now_ms()).max(0) as u64;
                tokio::time::sleep(Duration::from_millis(left)).await;
            }
            Clock::Manual(m) => loop {
                // Registered before the read, so an advance in between is not missed.
                let mut moved = std::pin::pin!(m.moved.notified());
                moved.as_mut().enable();
                if m.ms.load(Ordering::SeqCst) >= at_ms {
                    return;
                }
                moved.await;
            },
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

    #[tokio::test]
    async fn sleeping_on_a_manual_clock_ends_when_it_is_moved_past() {
        let c = Clock::manual_at(1_000);
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { c.sleep_until(5_000).await }
        });
        c.advance(Duration::from_millis(3_000));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke at 4000, before 5000");
        c.advance(Duration::from_millis(1_000));
        sleeper.await.unwrap();
        // Already past: at once.
        c.sleep_until(0).await;
    }
}
