//! The one clock of the deferred tiers, in unix milliseconds. The engine reads time only
//! through a [`Clock`], so its tests hold time still and move it by hand ([`Clock::manual`]):
//! deadlines, leases, back-offs and polls then happen exactly when a test says. (Tokio's
//! paused time cannot serve here: it auto-advances while the store's worker threads run,
//! which fires the connection pool's timeouts.)

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
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

/// A test's time, and the tasks waiting for it to move ([`Manual::reached`]).
#[derive(Debug, Default)]
pub struct Manual {
    ms: AtomicI64,
    waiting: Mutex<Vec<Waker>>,
}

impl Manual {
    /// Ready once this clock reads `at_ms` or later: woken by [`Clock::advance`].
    pub fn reached(&self, at_ms: i64) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |cx| {
            if self.ms.load(Ordering::SeqCst) >= at_ms {
                return Poll::Ready(());
            }
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if !waiting.iter().any(|w| w.will_wake(cx.waker())) {
                waiting.push(cx.waker().clone());
            }
            drop(waiting);
            // Looked again once registered, so an advance in between is not missed.
            if self.ms.load(Ordering::SeqCst) >= at_ms {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
    }
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
            waiting: Mutex::default(),
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
            let waiting = std::mem::take(&mut *m.waiting.lock().unwrap_or_else(|p| p.into_inner()));
            waiting.into_iter().for_each(Waker::wake);
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

    fn manual(c: &Clock) -> Arc<Manual> {
        match c {
            Clock::Manual(m) => m.clone(),
            Clock::System => unreachable!("a manual clock"),
        }
    }

    #[tokio::test]
    async fn sleeping_on_a_manual_clock_ends_when_it_is_moved_past() {
        let c = Clock::manual_at(1_000);
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { manual(&c).reached(5_000).await }
        });
        c.advance(Duration::from_millis(3_000));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "woke at 4000, before 5000");
        c.advance(Duration::from_millis(1_000));
        sleeper.await.unwrap();
        // Already past: at once.
        manual(&c).reached(0).await;
    }
}
