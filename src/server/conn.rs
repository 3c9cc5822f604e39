//! Connection bookkeeping: whether a connection has a request in flight, how long it has
//! been idle, and the cap on open connections.
//!
//! A request is in flight from the moment hyper calls the service until its response body
//! has ended or been dropped, so a held deferred request or an hours-long SSE stream is never
//! idle. Bytes on the wire do not count as activity: HTTP/2 PING/PONG (ours included) would
//! otherwise keep a connection with no stream open forever.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::Instant;

/// How long a connection may stay without a request in flight.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From accept until the first request head (TLS handshake and protocol detection included).
    pub first_request: Duration,
    /// After a request ended, until the next one starts.
    pub idle: Duration,
}

struct State {
    /// Shared with every connection, so `idle_since` values compare across connections.
    epoch: Instant,
    in_flight: AtomicUsize,
    /// Service calls ever started; zero while the first request head is still awaited.
    calls: AtomicU64,
    /// When the last request ended (or the connection was accepted), µs since `epoch`.
    idle_since: AtomicU64,
    evicted: AtomicBool,
    /// Set by the watchdog when its timer may fire later than a request's end would make the
    /// deadline (before the first request, if `first_request` is longer than `idle`): only
    /// then does a request's end wake it. Otherwise no request start or end wakes it.
    wake_on_idle: AtomicBool,
    /// Wakes the watchdog on eviction, or when the connection goes idle and it asked.
    wake: Notify,
}

impl State {
    fn now(&self) -> u64 {
        micros(Instant::now().saturating_duration_since(self.epoch))
    }

    fn instant(&self, micros: u64) -> Instant {
        self.epoch + Duration::from_micros(micros)
    }

    fn evict(&self) {
        self.evicted.store(true, SeqCst);
        self.wake.notify_one();
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(SeqCst) == 0 && !self.evicted.load(SeqCst)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The open connections, and the cap on them.
pub struct Registry {
    epoch: Instant,
    cap: usize,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<State>>>,
}

impl Registry {
    pub fn new(cap: usize) -> Arc<Registry> {
        Arc::new(Registry {
            epoch: Instant::now(),
            cap: cap.max(1),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<State>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a just-accepted connection. At the cap, the longest-idle connection is
    /// evicted to make room (as nginx reuses keep-alive connections), so a flood of silent
    /// sockets cannot lock out new clients. If every connection has a request in flight,
    /// `None`: the caller closes the new connection at once rather than queueing it, so the
    /// client learns immediately and the fd is not held.
    pub fn admit(self: &Arc<Self>) -> Option<Conn> {
        let mut open = self.lock();
        if open.len() >= self.cap && !evict_idlest(&mut open) {
            return None;
        }
        let state = Arc::new(State {
            epoch: self.epoch,
            in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            idle_since: AtomicU64::new(micros(
                Instant::now().saturating_duration_since(self.epoch),
            )),
            evicted: AtomicBool::new(false),
            wake_on_idle: AtomicBool::new(true),
            wake: Notify::new(),
        });
        let id = self.next_id.fetch_add(1, SeqCst);
        open.insert(id, state.clone());
        Some(Conn {
            registry: self.clone(),
            id,
            state,
        })
    }

    /// Evicts the longest-idle connection (accept hit the fd limit); false if none is idle.
    pub fn evict_idlest(&self) -> bool {
        evict_idlest(&mut self.lock())
    }
}

/// A linear scan, only when full: it keeps the per-request path free of any lock, which
/// matters more than an O(n) pass over at most `max_connections` atomics at the cap.
fn evict_idlest(open: &mut HashMap<u64, Arc<State>>) -> bool {
    let victim = open
        .iter()
        .filter(|(_, s)| s.is_idle())
        .min_by_key(|(_, s)| s.idle_since.load(SeqCst))
        .map(|(id, _)| *id);
    match victim.and_then(|id| open.remove(&id)) {
        Some(state) => {
            state.evict();
            true
        }
        None => false,
    }
}

/// One admitted connection; leaves the registry when dropped.
pub struct Conn {
    registry: Arc<Registry>,
    id: u64,
    state: Arc<State>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Conn {
    /// The handle the service uses to mark requests in flight.
    pub fn calls(&self) -> Calls {
        Calls(self.state.clone())
    }

    /// Resolves when the connection should be closed: no request in flight for
    /// `first_request` after accept (before any request) or for `idle` after the last
    /// request ended, or evicted.
    pub async fn idle_expired(&self, t: Timeouts) {
        self.wait_idle(
            None,
            |calls| {
                if calls == 0 { t.first_request } else { t.idle }
            },
        )
        .await
    }

    /// Resolves once no request has been in flight for `grace` from now on, or on eviction:
    /// the bound on a connection asked to close gracefully (a peer that never answers the
    /// HTTP/2 GOAWAY's PING would otherwise hold it).
    pub async fn idle_for(&self, grace: Duration) {
        let floor = self.state.now();
        self.wait_idle(Some(floor), |_| grace).await
    }

    async fn wait_idle(&self, floor: Option<u64>, limit: impl Fn(u64) -> Duration) {
        let s = &self.state;
        // One timer for the connection's life, never woken by a request's start or end:
        // waking the connection's task twice per request re-polled the whole connection
        // future each time. While a request is in flight the deadline is at least `limit`
        // from now (it is counted from the request's end), so the timer is armed that far
        // out and, if it fires with a request still in flight, re-armed. Firing early just
        // recomputes and re-arms once.
        let timer = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(timer);
        let mut armed: Option<Instant> = None;
        loop {
            if s.evicted.load(SeqCst) {
                return;
            }
            let now = Instant::now();
            let calls = s.calls.load(SeqCst);
            let since = s.idle_since.load(SeqCst).max(floor.unwrap_or(0));
            let mut deadline = s.instant(since) + limit(calls);
            if s.in_flight.load(SeqCst) > 0 {
                deadline = deadline.max(now + limit(calls));
            } else if now >= deadline {
                return;
            }
            if armed.is_none_or(|at| at > deadline || at <= now) {
                timer.as_mut().reset(deadline);
                armed = Some(deadline);
            }
            // A request that ends from now on makes the deadline `limit(calls.max(1))` after
            // its end at the earliest; a timer armed later than that would fire late.
            let late = armed.is_some_and(|at| at > now + limit(calls.max(1)));
            s.wake_on_idle.store(late, SeqCst);
            tokio::select! {
                _ = &mut timer => armed = None,
                _ = s.wake.notified() => {}
            }
        }
    }
}

/// Counts this connection's requests in flight.
#[derive(Clone)]
pub struct Calls(Arc<State>);

impl Calls {
    /// Marks a service call started; it stays in flight until the guard drops.
    pub fn start(&self) -> InFlight {
        self.0.calls.fetch_add(1, SeqCst);
        self.0.in_flight.fetch_add(1, SeqCst);
        InFlight(self.0.clone())
    }
}

/// One request in flight.
pub struct InFlight(Arc<State>);

impl Drop for InFlight {
    fn drop(&mut self) {
        // Stamped before the decrement, so a watchdog that sees zero in flight reads a
        // fresh idle start, never the previous one.
        self.0.idle_since.store(self.0.now(), SeqCst);
        if self.0.in_flight.fetch_sub(1, SeqCst) == 1 && self.0.wake_on_idle.load(SeqCst) {
            self.0.wake.notify_one();
        }
    }
}

/// A response body that keeps its request in flight until it ends or is dropped.
pub struct Tracked<B> {
    inner: B,
    guard: Option<InFlight>,
}

impl<B> Tracked<B> {
    pub fn new(inner: B, guard: InFlight) -> Self {
        Tracked {
            inner,
            guard: Some(guard),
        }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            this.guard = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// File descriptors kept back from the connection cap for upstream connections, the store,
/// the listener and the runtime: a quarter of the limit, between 32 and 1024.
fn fd_headroom(nofile: u64) -> u64 {
    (nofile / 4).clamp(32, 1024)
}

/// The connection cap that fits under a file descriptor limit of `nofile`.
pub fn cap_within(requested: usize, nofile: u64) -> usize {
    let room = nofile.saturating_sub(fd_headroom(nofile));
    requested
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1)
}

/// `max_connections`, lowered (with a warning) to fit the process's `RLIMIT_NOFILE`, after
/// raising its soft limit toward the hard one as far as the cap needs (as Go's runtime does).
/// Past the fd limit accept fails with EMFILE and nobody new gets in, so the cap must bind first.
pub fn connection_cap(requested: usize) -> usize {
    let Some(nofile) = raise_nofile(requested) else {
        return requested;
    };
    let cap = cap_within(requested, nofile);
    if cap < requested {
        tracing::warn!(
            max_connections = requested,
            effective = cap,
            rlimit_nofile = nofile,
            "max_connections lowered to fit the open-file limit (raise `ulimit -n`)"
        );
    }
    cap
}

/// Raises the soft `RLIMIT_NOFILE` as far as `requested` connections need (never past the
/// hard limit); returns the soft limit now in force, `None` if it cannot be read.
#[cfg(unix)]
fn raise_nofile(requested: usize) -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    // The headroom never exceeds 1024, so this much always fits the whole cap.
    let want = u64::try_from(requested)
        .unwrap_or(u64::MAX)
        .saturating_add(1024);
    if lim.rlim_cur < want && lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: want.min(lim.rlim_max),
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = raised.rlim_cur;
        }
    }
    Some(lim.rlim_cur)
}

#[cfg(not(unix))]
fn raise_nofile(_requested: usize) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        first_request: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    /// Whether `f` has resolved after `after` of (paused) time.
    async fn done_after(f: impl std::future::Future<Output = ()>, after: Duration) -> bool {
        tokio::time::timeout(after, f).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_gets_the_first_request_timeout() {
        let reg = Registry::new(8);
        let conn = reg.admit().unwrap();
        assert!(!done_after(conn.idle_expired(T), Duration::from_millis(9_999)).await);
        let conn = reg.admit().unwrap();
        assert!(done_after(conn.idle_expired(T), Duration::from_millis(10_001)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_end_of_the_last_request() {
        let reg = Registry::new(8);
        let conn = reg.admit().unwrap();
        let calls = conn.calls();
        let watch = conn.idle_expired(T);
        tokio::pin!(watch);
        let req = calls.start();
        // In flight far past both timeouts: a held request is never cut.
        assert!(!done_after(watch.as_mut(), Duration::from_secs(3 * 3600)).await);
        drop(req);
        assert!(!done_after(watch.as_mut(), Duration::from_millis(59_999)).await);
        assert!(done_after(watch.as_mut(), Duration::from_millis(2)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_keeps_its_request_in_flight_until_it_ends() {
        use http_body_util::BodyExt;
        let reg = Registry::new(8);
        let conn = reg.admit().unwrap();
        let body = Tracked::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"x")),
            conn.calls().start(),
        );
        assert_eq!(conn.state.in_flight.load(SeqCst), 1);
        let _ = body.collect().await;
        assert_eq!(conn.state.in_flight.load(SeqCst), 0);
        assert_eq!(conn.state.calls.load(SeqCst), 1);
        // Now the idle timeout applies, not the first-request one.
        assert!(!done_after(conn.idle_expired(T), Duration::from_secs(30)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_timeout_shorter_than_the_first_request_one_still_binds() {
        // The watchdog armed for the first-request deadline (60 s) must not outlive an idle
        // timeout of 5 s counted from the first request's end.
        let t = Timeouts {
            first_request: Duration::from_secs(60),
            idle: Duration::from_secs(5),
        };
        let reg = Registry::new(8);
        let conn = reg.admit().unwrap();
        let watch = conn.idle_expired(t);
        tokio::pin!(watch);
        assert!(!done_after(watch.as_mut(), Duration::from_secs(1)).await);
        let req = conn.calls().start();
        assert!(!done_after(watch.as_mut(), Duration::from_secs(1)).await);
        drop(req);
        assert!(!done_after(watch.as_mut(), Duration::from_millis(4_999)).await);
        assert!(done_after(watch.as_mut(), Duration::from_millis(2)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_keep_re_arming_the_timer_without_waking_it() {
        let reg = Registry::new(8);
        let conn = reg.admit().unwrap();
        let calls = conn.calls();
        let watch = conn.idle_expired(T);
        tokio::pin!(watch);
        // Back-to-back requests, each shorter than the idle timeout, over several timeouts.
        for _ in 0..10 {
            let req = calls.start();
            assert!(!done_after(watch.as_mut(), Duration::from_secs(50)).await);
            drop(req);
            assert!(!done_after(watch.as_mut(), Duration::from_secs(50)).await);
        }
        assert!(!conn.state.wake_on_idle.load(SeqCst));
        assert!(done_after(watch.as_mut(), Duration::from_secs(11)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn grace_counts_from_the_close_request() {
        let reg = Registry::new(8);
        let conn = reg.admit().unwrap();
        tokio::time::advance(Duration::from_secs(5)).await;
        let grace = Duration::from_secs(1);
        assert!(!done_after(conn.idle_for(grace), Duration::from_millis(999)).await);
        let req = conn.calls().start();
        assert!(!done_after(conn.idle_for(grace), Duration::from_secs(5)).await);
        drop(req);
        assert!(done_after(conn.idle_for(grace), Duration::from_millis(1_001)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_cap_the_longest_idle_connection_is_evicted() {
        let reg = Registry::new(3);
        let tick = || tokio::time::advance(Duration::from_millis(1));
        let a = reg.admit().unwrap();
        tick().await;
        let b = reg.admit().unwrap();
        tick().await;
        let c = reg.admit().unwrap();
        tick().await;
        // `a` is busy, so `b` has been idle the longest.
        let busy_a = a.calls().start();
        let d = reg.admit().unwrap();
        assert!(b.state.evicted.load(SeqCst));
        assert!(!c.state.evicted.load(SeqCst));
        assert!(done_after(b.idle_expired(T), Duration::ZERO).await);
        assert_eq!(reg.len(), 3);
        // The evicted one already left the count; dropping it changes nothing.
        drop(b);
        assert_eq!(reg.len(), 3);
        // Every connection busy: the newcomer is refused.
        let _busy_c = c.calls().start();
        let _busy_d = d.calls().start();
        assert!(reg.admit().is_none());
        drop(busy_a);
        assert!(reg.admit().is_some());
        assert!(a.state.evicted.load(SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn evict_idlest_frees_one_idle_connection() {
        let reg = Registry::new(100);
        let a = reg.admit().unwrap();
        let _busy = a.calls().start();
        assert!(!reg.evict_idlest());
        let b = reg.admit().unwrap();
        assert!(reg.evict_idlest());
        assert!(b.state.evicted.load(SeqCst));
        assert_eq!(reg.len(), 1);
    }

    #[test]
    fn the_cap_fits_under_the_fd_limit() {
        assert_eq!(cap_within(10_000, 1 << 20), 10_000);
        assert_eq!(cap_within(10_000, 1024), 768);
        assert_eq!(cap_within(10_000, 256), 192);
        assert_eq!(cap_within(10_000, 20_000), 10_000);
        assert_eq!(cap_within(10_000, 10), 1);
        assert_eq!(cap_within(32, 256), 32);
    }
}
