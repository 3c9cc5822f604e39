//! Lifecycle: every background task has an owner that can stop it and wait for it.
//!
//! A [`Tasks`] is one component's tasks: a [`CancellationToken`] that asks them to stop (or
//! to hand their work back) and a [`TaskTracker`] that counts them until they end. The
//! component spawns only through it; whoever shuts the component down stops it and waits,
//! with a deadline, and learns how many tasks were still running if the deadline passed.
//!
//! One shutdown (`cli::run_app`), bounded by [`SHUTDOWN_TIMEOUT`] from the signal:
//!
//! ```text
//! signal ─→ listener closed, idle connections closed; engine loop asked to stop; held
//!    │      deferred callers released (503 naming their durable job, see `Engine::wait_done`)
//!    │      requests in flight (interactive, flex, SSE relays) and fallbacks run on
//!    ├─ drain deadline (5/6 of the timeout): connections still open are cut; fallbacks
//!    │      hand their claim back (retaken at once by the next tick anywhere); the loop is
//!    │      dropped mid-tick if it has not stopped (the flush state machine is crash-safe)
//!    └─ exit deadline (the timeout): the ledger has written every entry recorded, the
//!           store's writer has committed everything queued and closed its connection
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{
    CancellationToken, WaitForCancellationFuture, WaitForCancellationFutureOwned,
};
use tokio_util::task::TaskTracker;

/// From the shutdown signal to exit, at most: the default termination grace of common
/// orchestrators (Kubernetes, Docker), so a clean shutdown is never cut by a SIGKILL.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The two deadlines of one shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Until then, work in flight may finish; after it, what is left is cut or handed back.
    pub drain: Instant,
    /// Everything has ended (ledger written, store closed), or is abandoned, by then.
    pub exit: Instant,
}

impl Deadlines {
    /// The deadlines of a shutdown that began at `start`: the first 5/6 of `timeout` to
    /// drain (25 s of 30 s), the last sixth to hand back and flush.
    pub fn after(start: Instant, timeout: Duration) -> Deadlines {
        Deadlines {
            drain: start + timeout.mul_f64(5.0 / 6.0),
            exit: start + timeout,
        }
    }
}

/// Tasks still running at a deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{open} {name} task(s) still running at the shutdown deadline")]
pub struct Unfinished {
    pub name: &'static str,
    pub open: usize,
}

/// One component's background tasks: spawned here, stopped and awaited by its owner.
#[derive(Debug, Clone)]
pub struct Tasks {
    name: &'static str,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl Tasks {
    /// `name` says what the tasks are, in logs ("connection", "ledger writer", ...).
    pub fn new(name: &'static str) -> Tasks {
        Tasks {
            name,
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
        }
    }

    /// Spawns a tracked task that runs to its end; it should watch [`Tasks::stopped`] if it
    /// can run long.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Spawns a tracked task that is dropped (at its next await) once the tasks are stopped.
    pub fn spawn_until_stopped<F>(&self, task: F) -> JoinHandle<()>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let stop = self.stop.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = task => {}
            }
        })
    }

    /// The token the tasks watch; cancelled by [`Tasks::stop`].
    pub fn token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Asks every task to stop (or hand its work back).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }

    /// Resolves once the tasks are asked to stop.
    pub fn stopped(&self) -> WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    /// Tasks running now.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Waits, without asking them to stop, until every task has ended or `deadline`.
    /// Tasks spawned later are still tracked, but a wait that returned does not see them.
    pub async fn wait(&self, deadline: Instant) -> Result<(), Unfinished> {
        self.tracker.close();
        match tokio::time::timeout_at(deadline, self.tracker.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(Unfinished {
                name: self.name,
                open: self.tracker.len(),
            }),
        }
    }

    /// Stops the tasks and waits until every one has ended, or `deadline`.
    pub async fn shutdown(&self, deadline: Instant) -> Result<(), Unfinished> {
        self.stop();
        self.wait(deadline).await
    }

    /// Waits until no task runs, then keeps accepting new ones: for drivers that step a
    /// component and look at the result (tests).
    #[cfg(test)]
    pub async fn settle(&self) {
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }
}

/// Runs `task` until `cut` is cancelled, then drops it: the wrapper for work whose owner
/// cannot wait past a deadline (a connection, an HTTP/2 stream, a loop mid-step). Its
/// output is dropped.
pub fn until_cut<F: Future>(cut: CancellationToken, task: F) -> UntilCut<F> {
    UntilCut {
        race: Race::new(task, cut.cancelled_owned()),
    }
}

pin_project_lite::pin_project! {
    /// [`until_cut`]'s future. A struct rather than an `async fn`: an async fn's state
    /// keeps its argument beside the future it awaits (rust-lang/rust#62958), so each such
    /// wrapper would double the task it wraps: a held request's HTTP/2 stream task, say.
    pub struct UntilCut<F> {
        #[pin]
        race: Race<F, WaitForCancellationFutureOwned>,
    }
}

impl<F: Future> Future for UntilCut<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().race.poll(cx).map(drop)
    }
}

/// Which side of a [`Race`] finished first.
pub enum Won<M, G> {
    Main(M),
    Guard(G),
}

pin_project_lite::pin_project! {
    /// `main` raced against `guard`, the guard polled only when its own waker fired (and once at
    /// the start). A connection's future is woken several times per request by its sockets,
    /// while its watchdog and cancellation fire once in its life: `select!` polls every branch
    /// on every wake (each poll of a registered `Notified` or token takes its lock), a cost
    /// measurable per request at saturation. The guard wins a tie, as a cancellation should.
    pub struct Race<M, G> {
        #[pin]
        main: M,
        guard: Pin<Box<G>>,
        signal: Arc<GuardSignal>,
        // `signal` as a waker, built once.
        guard_waker: std::task::Waker,
    }
}

struct GuardSignal {
    woken: AtomicBool,
    parent: futures_util::task::AtomicWaker,
}

impl std::task::Wake for GuardSignal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.parent.wake();
    }
}

impl<M: Future, G: Future> Race<M, G> {
    pub fn new(main: M, guard: G) -> Self {
        let signal = Arc::new(GuardSignal {
            woken: AtomicBool::new(true),
            parent: futures_util::task::AtomicWaker::new(),
        });
        Race {
            main,
            guard: Box::pin(guard),
            guard_waker: std::task::Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<M: Future, G: Future> Future for Race<M, G> {
    type Output = Won<M::Output, G::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        // Registered before the flag is read: a wake-up after the read finds this waker.
        this.signal.parent.register(cx.waker());
        if this.signal.woken.swap(false, Ordering::AcqRel) {
            let mut guard_cx = Context::from_waker(this.guard_waker);
            if let Poll::Ready(v) = this.guard.as_mut().poll(&mut guard_cx) {
                return Poll::Ready(Won::Guard(v));
            }
        }
        match this.main.poll(cx) {
            Poll::Ready(v) => Poll::Ready(Won::Main(v)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connection's case: its main future is woken again and again, its guard never;
    /// the guard is polled once, at the start.
    #[tokio::test]
    async fn a_race_polls_its_guard_only_when_the_guard_is_woken() {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (fire, mut fired) = tokio::sync::oneshot::channel::<()>();
        let guard = {
            let polls = polls.clone();
            std::future::poll_fn(move |cx| {
                polls.fetch_add(1, Ordering::SeqCst);
                Pin::new(&mut fired).poll(cx)
            })
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
        let main = Box::pin(async move {
            let mut n = 0;
            while rx.recv().await.is_some() {
                n += 1;
                if n == 50 {
                    break;
                }
            }
            n
        });
        let race = tokio::spawn(Race::new(main, guard));
        for i in 0..50 {
            tx.send(i).unwrap();
            tokio::task::yield_now().await;
        }
        assert!(matches!(race.await.unwrap(), Won::Main(50)));
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        drop(fire);
    }

    #[tokio::test]
    async fn a_fired_guard_wins_the_race() {
        let (fire, fired) = tokio::sync::oneshot::channel::<()>();
        let race = tokio::spawn(Race::new(std::future::pending::<()>(), fired));
        tokio::task::yield_now().await;
        fire.send(()).unwrap();
        assert!(matches!(race.await.unwrap(), Won::Guard(Ok(()))));
    }

    #[test]
    fn the_drain_gets_five_sixths_of_the_timeout() {
        let t0 = Instant::now();
        let d = Deadlines::after(t0, SHUTDOWN_TIMEOUT);
        assert_eq!(d.drain - t0, Duration::from_secs(25));
        assert_eq!(d.exit - t0, Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_watch_the_token_end_within_the_deadline() {
        let tasks = Tasks::new("test");
        for _ in 0..3 {
            let t = tasks.clone();
            tasks.spawn(async move { t.stopped().await });
        }
        tasks.spawn_until_stopped(std::future::pending());
        assert_eq!(tasks.len(), 4);
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(5);
        assert_eq!(tasks.shutdown(deadline).await, Ok(()));
        // Paused time moves only when every task sleeps: nothing waited for the deadline.
        assert_eq!(Instant::now(), t0);
        assert!(tasks.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_ignores_the_token_is_reported_at_the_deadline() {
        let tasks = Tasks::new("stubborn");
        tasks.spawn(std::future::pending::<()>());
        tasks.spawn(async {});
        let deadline = Instant::now() + Duration::from_secs(5);
        let e = tasks.shutdown(deadline).await.unwrap_err();
        assert_eq!(
            e,
            Unfinished {
                name: "stubborn",
                open: 1
            }
        );
        assert_eq!(
            Instant::now(),
            deadline,
            "waited exactly until the deadline"
        );
        assert_eq!(
            e.to_string(),
            "1 stubborn task(s) still running at the shutdown deadline"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn until_cut_drops_the_task_when_cut() {
        let cut = CancellationToken::new();
        let tasks = Tasks::new("cut");
        tasks.spawn(until_cut(cut.clone(), std::future::pending::<()>()));
        cut.cancel();
        let deadline = Instant::now() + Duration::from_secs(1);
        assert_eq!(tasks.wait(deadline).await, Ok(()));
    }

    #[tokio::test]
    async fn settle_waits_for_every_task_and_keeps_tracking() {
        let tasks = Tasks::new("settle");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn(async move {
            let _ = rx.await;
        });
        tx.send(()).unwrap();
        tasks.settle().await;
        assert!(tasks.is_empty());
        tasks.spawn(std::future::pending::<()>());
        assert_eq!(tasks.len(), 1);
    }
}
