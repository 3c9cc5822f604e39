//! Whether the engine can serve the deferred tiers now, for `/readyz`: its loop is running
//! and making progress (a heartbeat), and the store takes a write.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::store::StoreError;

/// A loop that has not beaten for this long is stuck, however short its poll interval:
/// under it, one step may legitimately take a while (a large batch file, a slow store).
pub const STALE_FLOOR: Duration = Duration::from_secs(60);

/// Longest a readiness write may take: an orchestrator's probe gives up after a few seconds.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NotReady {
    #[error("the batch engine is not running")]
    EngineStopped,
    #[error("the batch engine has made no progress for {age_secs} s (stuck after {limit_secs} s)")]
    EngineStale { age_secs: u64, limit_secs: u64 },
    #[error("the store does not accept writes: {0}")]
    StoreWrite(#[from] StoreError),
    #[error("the store did not take a write within {} s", .0.as_secs())]
    StoreTimeout(Duration),
}

/// How long without a heartbeat means stuck: three poll intervals, at least [`STALE_FLOOR`].
pub fn stale_after(poll_interval: Duration) -> Duration {
    poll_interval.saturating_mul(3).max(STALE_FLOOR)
}

/// Whether a loop whose last heartbeat is `age` old still counts as alive.
pub fn check_age(age: Duration, poll_interval: Duration) -> Result<(), NotReady> {
    let limit = stale_after(poll_interval);
    if age > limit {
        return Err(NotReady::EngineStale {
            age_secs: age.as_secs(),
            limit_secs: limit.as_secs(),
        });
    }
    Ok(())
}

/// The loop's heartbeat and how many loops run (0 before the first and after the last).
#[derive(Debug)]
pub struct Liveness {
    origin: Instant,
    beat_ms: AtomicU64,
    running: AtomicUsize,
}

impl Default for Liveness {
    fn default() -> Self {
        Liveness {
            origin: Instant::now(),
            beat_ms: AtomicU64::new(0),
            running: AtomicUsize::new(0),
        }
    }
}

impl Liveness {
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Progress: called by the loop each pass and by long steps as they go.
    pub fn beat(&self) {
        self.beat_ms.store(self.elapsed_ms(), Ordering::Relaxed);
    }

    /// A loop starts; it counts as running until the guard drops (its task ended, was
    /// dropped, or panicked).
    pub fn start(self: &Arc<Self>) -> Running {
        self.beat();
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(Arc::clone(self))
    }

    /// `Ok` while a loop runs and beat within [`stale_after`] `poll_interval`.
    pub fn check(&self, poll_interval: Duration) -> Result<(), NotReady> {
        if self.running.load(Ordering::Acquire) == 0 {
            return Err(NotReady::EngineStopped);
        }
        let age = self
            .elapsed_ms()
            .saturating_sub(self.beat_ms.load(Ordering::Relaxed));
        check_age(Duration::from_millis(age), poll_interval)
    }
}

/// Held by a running loop; see [`Liveness::start`].
#[derive(Debug)]
pub struct Running(Arc<Liveness>);

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                "the batch engine loop panicked: the deferred tiers stop, /readyz fails"
            );
        }
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLL: Duration = Duration::from_millis(50);

    #[test]
    fn staleness_is_three_polls_with_a_floor() {
        assert_eq!(stale_after(POLL), STALE_FLOOR);
        assert_eq!(
            stale_after(Duration::from_secs(30)),
            Duration::from_secs(90)
        );
        assert!(check_age(Duration::from_secs(90), Duration::from_secs(30)).is_ok());
        let e = check_age(Duration::from_secs(91), Duration::from_secs(30)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the batch engine has made no progress for 91 s (stuck after 90 s)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_loop_is_alive_while_it_runs_and_beats() {
        let l = Arc::new(Liveness::default());
        assert!(matches!(l.check(POLL), Err(NotReady::EngineStopped)));
        let running = l.start();
        assert!(l.check(POLL).is_ok());
        tokio::time::advance(STALE_FLOOR).await;
        assert!(l.check(POLL).is_ok());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(matches!(l.check(POLL), Err(NotReady::EngineStale { .. })));
        l.beat();
        assert!(l.check(POLL).is_ok());
        drop(running);
        assert!(matches!(l.check(POLL), Err(NotReady::EngineStopped)));
    }

    #[tokio::test]
    async fn a_panicking_loop_stops_counting_as_running() {
        let l = Arc::new(Liveness::default());
        let running = l.start();
        let task = tokio::spawn(async move {
            let _running = running;
            panic!("boom");
        });
        assert!(task.await.is_err());
        assert!(matches!(l.check(POLL), Err(NotReady::EngineStopped)));
    }
}
