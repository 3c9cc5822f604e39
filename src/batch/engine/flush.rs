//! The one flush state machine, for every provider:
//!
//! ```text
//! claimed ─(input file? upload)→ uploaded ─→ creating ─(create)→ submitted ─(poll…)→ ended
//!                                              │ crash: find the batch before creating again
//! ```
//!
//! Each state is recorded before the upstream call that leaves it, so a restart knows what
//! may already exist upstream: `creating` without a batch id is reconciled with
//! [`Adapter::find`] before any second create. The create itself runs under the lease
//! ([`Engine::fenced`]), so it cannot reach the provider after another replica took over.

use super::*;
use crate::providers::{BatchInput, Encoder, FlushRef, InputKind};

fn flush_ref(f: &Flush) -> FlushRef<'_> {
    FlushRef {
        id: &f.id,
        endpoint: f.endpoint,
        model: &f.model,
        job_count: f.job_count,
        created_at_ms: f.created_at_ms,
    }
}

/// Returns once `clock` reads `at_ms` or later: a timer on the system clock, the test's
/// advance on a manual one.
async fn sleep_until(clock: &crate::clock::Clock, at_ms: i64) {
    match clock {
        crate::clock::Clock::System => {
            let left = at_ms.saturating_sub(crate::clock::now_ms()).max(0) as u64;
            tokio::time::sleep(Duration::from_millis(left)).await;
        }
        crate::clock::Clock::Manual(m) => m.reached(at_ms).await,
    }
}

/// How a call under [`Engine::fenced`] ended.
enum Fenced<T> {
    Done(T),
    /// Half a lease passed since the lease was last renewed: the call was dropped.
    Deadline,
    /// Another replica took the flush over.
    LeaseLost,
}

/// When an inline create in flight must stop sending its input (unix ms; see
/// [`Engine::fenced`]), shared with the task that produces it.
#[derive(Clone)]
struct CreateDeadline(Arc<std::sync::atomic::AtomicI64>);

impl Default for CreateDeadline {
    /// None until the create starts.
    fn default() -> Self {
        CreateDeadline(Arc::new(i64::MAX.into()))
    }
}

impl CreateDeadline {
    const PASSED: &str = "the create's deadline passed while its input was sent";

    fn set(&self, at_ms: i64) {
        self.0.store(at_ms, std::sync::atomic::Ordering::SeqCst);
    }

    fn passed(&self, clock: &crate::clock::Clock) -> bool {
        clock.now_ms() >= self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Engine {
    /// Advances every flush this replica leases, oldest first. Returns when to look again.
    ///
    /// A provider whose batches carry no metadata (Message Batches) can only recognise a
    /// batch whose create answer was lost by its size and creation time, so two such
    /// batches unrecorded at once could be mistaken for each other: of each such provider,
    /// one flush at a time may be between its create and its record, and the others wait.
    pub(super) async fn advance_all(
        &self,
        mut flushes: Vec<Flush>,
        now: i64,
    ) -> Result<i64, StoreError> {
        flushes.sort_by_key(|f| f.created_at_ms);
        let unmarked = |f: &Flush| {
            self.adapter(f.provider)
                .is_some_and(|a| !a.batches_carry_flush_id())
        };
        let mut creating: HashMap<Provider, String> = HashMap::new();
        for f in flushes.iter().filter(|f| f.state == FlushState::Creating) {
            if unmarked(f) {
                creating.entry(f.provider).or_insert_with(|| f.id.clone());
            }
        }
        let mut next = now + ms(self.cfg.poll_interval);
        for f in &flushes {
            let before_record = matches!(
                f.state,
                FlushState::Claimed | FlushState::Uploaded | FlushState::Creating
            );
            let in_turn = !(before_record && unmarked(f))
                || creating.get(&f.provider).is_none_or(|id| *id == f.id);
            if !in_turn {
                continue;
            }
            match self.advance(f, now).await {
                Ok(at) => next = next.min(at),
                Err(e) => {
                    tracing::warn!(flush = %f.id, error = %e, "batch step failed; will retry");
                    let retry = now + ms(self.cfg.poll_interval);
                    self.store
                        .update_flush(
                            &f.id,
                            FlushUpdate {
                                next_poll_at_ms: Some(retry),
                                ..FlushUpdate::default()
                            },
                        )
                        .await?;
                    next = next.min(retry);
                }
            }
            if before_record && unmarked(f) && !creating.contains_key(&f.provider) {
                // Its create got no answer: it stays between create and record.
                if self
                    .store
                    .flush(&f.id)
                    .await?
                    .is_some_and(|f| f.state == FlushState::Creating)
                {
                    creating.insert(f.provider, f.id.clone());
                }
            }
        }
        Ok(next)
    }

    /// Moves one flush forward as far as it can go now. Returns when to look again.
    pub(super) async fn advance(&self, f: &Flush, now: i64) -> Result<i64, EngineError> {
        if f.next_poll_at_ms > now {
            return Ok(f.next_poll_at_ms);
        }
        let Some(adapter) = self.adapter(f.provider) else {
            // Its key was removed since: the watchdog answers the jobs in time.
            return Ok(now + ms(self.cfg.poll_interval));
        };
        if f.state != FlushState::Ended && !self.still_held(f).await? {
            return Ok(now + ms(self.cfg.poll_interval));
        }
        match f.state {
            FlushState::Ended => Ok(now + ms(self.cfg.poll_interval)),
            FlushState::Submitted => {
                let Some(batch_id) = &f.batch_id else {
                    return Err(EngineError::Invariant(format!(
                        "flush {} submitted without a batch id",
                        f.id
                    )));
                };
                let b = adapter.get(batch_id).await?;
                self.polled(f, &b, now).await
            }
            FlushState::Creating => {
                // The batch may exist upstream although its id was never recorded.
                if let Some(b) = self.find_unrecorded(adapter, f).await? {
                    self.record_submitted(f, &b, now).await?;
                    return Ok(now + ms(self.cfg.poll_interval));
                }
                self.create(adapter, f, now).await
            }
            FlushState::Claimed | FlushState::Uploaded => self.create(adapter, f, now).await,
        }
    }

    /// The fence before each upstream step: renews this replica's lease on `f` if it still
    /// holds it. False (logged) when the lease lapsed, so another replica may have taken the
    /// flush over: this replica then neither calls the provider for it nor delivers it.
    async fn still_held(&self, f: &Flush) -> Result<bool, StoreError> {
        let now = self.now();
        let held = self
            .store
            .hold_flush(&f.id, &self.cfg.owner, now, now + ms(self.cfg.lease))
            .await?;
        if !held {
            tracing::warn!(flush = %f.id, owner = %self.cfg.owner, "flush lease lost; leaving the flush to its new owner");
        }
        Ok(held)
    }

    /// The first batch `find` offers that no other flush recorded.
    async fn find_unrecorded(
        &self,
        adapter: &Adapter,
        f: &Flush,
    ) -> Result<Option<UpstreamBatch>, EngineError> {
        for b in adapter.find(flush_ref(f)).await? {
            if !self.store.batch_recorded(&b.id).await? {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    /// Prepares the input (uploading it once, for providers that take a file) and creates
    /// the batch, under [`Engine::fenced`].
    async fn create(&self, adapter: &Adapter, f: &Flush, now: i64) -> Result<i64, EngineError> {
        let deadline = CreateDeadline::default();
        let (input, retry_state) = match adapter.input_kind() {
            InputKind::File => {
                let file_id = match &f.file_id {
                    Some(id) if f.state != FlushState::Claimed => id.clone(),
                    _ => self.upload(adapter, f).await?,
                };
                (BatchInput::File(file_id), FlushState::Uploaded)
            }
            InputKind::Inline => (
                BatchInput::Inline(self.stream_bodies(
                    f,
                    adapter.encoder(f.endpoint),
                    Some(deadline.clone()),
                )),
                FlushState::Claimed,
            ),
        };
        // The upload may have taken a while: the last look at the lease before the create.
        let renewed_at = self.now();
        if !self.still_held(f).await? {
            return Ok(now + ms(self.cfg.poll_interval));
        }
        self.store
            .update_flush(
                &f.id,
                FlushUpdate {
                    state: Some(FlushState::Creating),
                    ..FlushUpdate::default()
                },
            )
            .await?;
        failpoint("before_create");
        let call = adapter.create(flush_ref(f), input);
        match self.fenced(f, renewed_at, &deadline, call).await? {
            Fenced::Done(Ok(b)) => {
                failpoint("after_create");
                self.record_submitted(f, &b, now).await?;
                Ok(now + ms(self.cfg.poll_interval))
            }
            Fenced::Done(Err(e)) if e.is_retryable() => {
                self.back_off_create(f, &e, retry_state, now).await
            }
            Fenced::Done(Err(e)) => {
                // Rejected for good (e.g. 400): answer every job with the error.
                self.fail_all(f, &e.to_string(), now).await?;
                Ok(now)
            }
            Fenced::Deadline if self.still_held(f).await? => {
                // It may have reached the provider: reconciled before any second create.
                let e = BatchApiError::Transport {
                    provider: f.provider.as_str(),
                    reason: "batch create still unanswered half a lease after its lease \
                             was last renewed; abandoned"
                        .into(),
                };
                self.back_off_create(f, &e, retry_state, now).await
            }
            Fenced::Deadline | Fenced::LeaseLost => Ok(now + ms(self.cfg.poll_interval)),
        }
    }

    /// Runs `call` (a batch create) only while this replica provably holds `f`: the lease
    /// is renewed every quarter lease, and the call is dropped, its inline input cut off,
    /// once half a lease has passed since the last renewal (this replica or its store
    /// stalled). So whatever reaches the provider does so at least half a lease before
    /// another replica may take the flush over, and that replica finds the batch
    /// ([`Engine::find_unrecorded`]) instead of creating it again.
    async fn fenced<T>(
        &self,
        f: &Flush,
        renewed_at: i64,
        deadline: &CreateDeadline,
        call: impl Future<Output = T>,
    ) -> Result<Fenced<T>, StoreError> {
        let (clock, lease) = (&self.cfg.clock, ms(self.cfg.lease));
        let mut call = std::pin::pin!(call);
        let mut renewed = renewed_at;
        loop {
            let cutoff = renewed + lease / 2;
            deadline.set(cutoff);
            // Checked on every wake-up, before the call moves on: a process resumed after
            // a stall may be polled before its timers fire.
            let call_or_cutoff = std::future::poll_fn(|cx| {
                if clock.now_ms() >= cutoff {
                    return std::task::Poll::Ready(None);
                }
                call.as_mut().poll(cx).map(Some)
            });
            tokio::select! {
                biased;
                _ = sleep_until(clock, cutoff) => return Ok(Fenced::Deadline),
                _ = sleep_until(clock, renewed + lease / 4) => {
                    let at = clock.now_ms();
                    if !self.still_held(f).await? {
                        return Ok(Fenced::LeaseLost);
                    }
                    renewed = at;
                }
                out = call_or_cutoff => {
                    return Ok(out.map_or(Fenced::Deadline, Fenced::Done));
                }
            }
        }
    }

    /// Streams the flush's bodies into an input file; records it before anything else.
    async fn upload(&self, adapter: &Adapter, f: &Flush) -> Result<String, EngineError> {
        let rx = self.stream_bodies(f, adapter.encoder(f.endpoint), None);
        let id = adapter.upload(flush_ref(f), rx).await?;
        self.store
            .update_flush(
                &f.id,
                FlushUpdate {
                    state: Some(FlushState::Uploaded),
                    file_id: Some(id.clone()),
                    ..FlushUpdate::default()
                },
            )
            .await?;
        failpoint("after_upload");
        Ok(id)
    }

    /// A refused create (429 on enqueued-token limits, or an outage): back off and retry
    /// from `retry_state`, never drop. Returns when to try again.
    async fn back_off_create(
        &self,
        f: &Flush,
        e: &BatchApiError,
        retry_state: FlushState,
        now: i64,
    ) -> Result<i64, EngineError> {
        // No answer at all (timeout, reset) may mean the batch was created: reconcile
        // before creating again. A refusal with a status created nothing.
        let retry_state = match e {
            BatchApiError::Transport { .. } => FlushState::Creating,
            _ => retry_state,
        };
        let attempts = f.create_attempts + 1;
        let wait = crate::providers::create_backoff(e, self.cfg.poll_interval, attempts);
        tracing::warn!(flush = %f.id, error = %e, attempts, "batch create refused; backing off");
        let at = now + ms(wait);
        self.store
            .update_flush(
                &f.id,
                FlushUpdate {
                    state: Some(retry_state),
                    create_attempts: Some(attempts),
                    next_poll_at_ms: Some(at),
                    ..FlushUpdate::default()
                },
            )
            .await?;
        Ok(at)
    }

    /// After a poll: a terminal batch is finished, else the next poll is scheduled.
    async fn polled(&self, f: &Flush, b: &UpstreamBatch, now: i64) -> Result<i64, EngineError> {
        if b.is_terminal() {
            if !self.still_held(f).await? {
                return Ok(now + ms(self.cfg.poll_interval));
            }
            self.finish(f, b).await?;
            return Ok(now);
        }
        let at = now + ms(self.cfg.poll_interval);
        self.store
            .update_flush(
                &f.id,
                FlushUpdate {
                    upstream_status: Some(b.status.clone()),
                    next_poll_at_ms: Some(at),
                    ..FlushUpdate::default()
                },
            )
            .await?;
        Ok(at)
    }

    async fn record_submitted(
        &self,
        f: &Flush,
        b: &UpstreamBatch,
        now: i64,
    ) -> Result<(), EngineError> {
        self.store
            .update_flush(
                &f.id,
                FlushUpdate {
                    state: Some(FlushState::Submitted),
                    batch_id: Some(b.id.clone()),
                    upstream_status: Some(b.status.clone()),
                    submitted_at_ms: Some(now),
                    next_poll_at_ms: Some(now + ms(self.cfg.poll_interval)),
                    ..FlushUpdate::default()
                },
            )
            .await?;
        tracing::info!(flush = %f.id, batch = %b.id, "batch submitted");
        Ok(())
    }

    /// The flush's bodies, page by page from the store, formatted by `encoder`: a large
    /// batch never sits whole in memory. Past `deadline` (an inline create's), the input
    /// ends in an error, so the provider never receives it whole.
    fn stream_bodies(
        &self,
        f: &Flush,
        encoder: Encoder,
        deadline: Option<CreateDeadline>,
    ) -> crate::providers::FileChunks {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let store = self.store.clone();
        let clock = self.cfg.clock.clone();
        let liveness = self.liveness.clone();
        let flush_id = f.id.clone();
        // Ends when its reader (the upload or create call) is dropped, or at shutdown.
        self.tasks.spawn_until_stopped(async move {
            let head = encoder.head();
            if !head.is_empty() && tx.send(Ok(Bytes::from_static(head))).await.is_err() {
                return;
            }
            let mut after = None;
            let mut first = true;
            loop {
                let page = match store.flush_bodies(&flush_id, after, 500).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(Box::new(e) as crate::relay::BoxError)).await;
                        return;
                    }
                };
                let Some((last, _, _)) = page.last() else {
                    break;
                };
                if deadline.as_ref().is_some_and(|d| d.passed(&clock)) {
                    let _ = tx.send(Err(CreateDeadline::PASSED.into())).await;
                    return;
                }
                // A large input takes a while: progress, not a stuck loop.
                liveness.beat();
                after = Some(*last);
                let mut chunk = bytes::BytesMut::new();
                for (_, id, body) in &page {
                    encoder.encode(first, id, body, &mut chunk);
                    first = false;
                }
                if tx.send(Ok(chunk.freeze())).await.is_err() {
                    return;
                }
            }
            if deadline.as_ref().is_some_and(|d| d.passed(&clock)) {
                let _ = tx.send(Err(CreateDeadline::PASSED.into())).await;
                return;
            }
            let tail = encoder.tail();
            if !tail.is_empty() {
                let _ = tx.send(Ok(Bytes::from_static(tail))).await;
            }
        });
        rx
    }
}
