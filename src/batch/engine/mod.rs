//! The engine of the deferred tiers. One loop per replica: flush due groups into upstream
//! batches, advance every flush it leases (upload → create → poll → deliver), and answer
//! synchronously any job whose batch answer would come too late. Every step is recorded
//! in the store before the next upstream call, so a restart resumes where it stopped and
//! never submits a job twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::Notify;

use crate::account::{Accountant, Answer};
use crate::batch::accumulator::{self, GroupKey, Limits, Pending};
use crate::batch::client::{BatchApiError, BatchClient};
use crate::batch::openai::{self, Batch, LineOutcome, LineSplitter};
use crate::batch::{failpoint, new_id, now_ms};
use crate::forward::{self, Forwarder};
use crate::policy::PolicySet;
use crate::store::{
    Enqueued, Flush, FlushState, FlushUpdate, Job, JobResult, LedgerEntry, NewFlush, NewJob, Store,
    StoreError,
};
use crate::types::{Provider, Tier, Usage};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This replica's name: it owns the flushes it leases.
    pub owner: String,
    pub max_wait: Duration,
    pub max_requests: Option<u32>,
    pub poll_interval: Duration,
    /// Batch turnaround assumed until the ledger has observations.
    pub turnaround_prior: Duration,
    /// A job still unanswered this long before its deadline is sent synchronously.
    pub fallback_lead: Duration,
    /// Finished results are kept this long for the job endpoints and idempotent retries.
    pub result_retention: Duration,
    pub lease: Duration,
}

impl EngineConfig {
    /// The margins a batched job leaves before its deadline: the fallback lead, and one
    /// poll interval for the flush to be noticed, uploaded and created.
    pub fn batch_lead(&self) -> crate::triage::BatchLead {
        crate::triage::BatchLead {
            fallback: self.fallback_lead,
            submit: self.poll_interval,
        }
    }

    pub fn from_config(c: &crate::config::BatchConfig) -> EngineConfig {
        EngineConfig {
            owner: c.replica_id.clone(),
            max_wait: c.max_wait,
            max_requests: c.max_requests,
            poll_interval: c.poll_interval,
            turnaround_prior: c.turnaround_prior,
            fallback_lead: c.fallback_lead,
            result_retention: c.result_retention,
            lease: Duration::from_secs(60),
        }
    }
}

mod liveness;
mod message_batches;
mod results;

use liveness::Liveness;
pub use liveness::{NotReady, PROBE_TIMEOUT};

pub struct Engine {
    store: Arc<dyn Store>,
    client: BatchClient,
    forwarder: Arc<Forwarder>,
    accountant: Arc<Accountant>,
    policies: Arc<PolicySet>,
    cfg: EngineConfig,
    wake: Notify,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    turnaround: Mutex<HashMap<(Provider, String), Duration>>,
    /// Groups whose last batch failed as a whole (e.g. enqueued-token limit): not before.
    backoff: Mutex<HashMap<GroupKey, i64>>,
    /// Jobs whose synchronous fallback this process is sending.
    in_flight: Mutex<std::collections::HashSet<String>>,
    /// The loop's heartbeat, for readiness.
    liveness: Arc<Liveness>,
}

fn ms(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these small maps cannot leave them inconsistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        client: BatchClient,
        forwarder: Arc<Forwarder>,
        accountant: Arc<Accountant>,
        policies: Arc<PolicySet>,
        cfg: EngineConfig,
    ) -> Engine {
        Engine {
            store,
            client,
            forwarder,
            accountant,
            policies,
            cfg,
            wake: Notify::new(),
            waiters: Mutex::new(HashMap::new()),
            turnaround: Mutex::new(HashMap::new()),
            backoff: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(std::collections::HashSet::new()),
            liveness: Arc::new(Liveness::default()),
        }
    }

    /// `Ok` when the deferred tiers can work now: the loop runs and makes progress, and
    /// the store answers and takes a write within [`PROBE_TIMEOUT`].
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.liveness.check(self.cfg.poll_interval)?;
        let probe = async {
            self.store.ping().await?;
            self.store.probe_write(now_ms()).await
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .map_err(|_| NotReady::StoreTimeout(PROBE_TIMEOUT))??;
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Whether the batch tier can serve this provider now.
    pub fn batches(&self, p: Provider) -> bool {
        self.client.supports(p)
    }

    /// Observed p95 batch turnaround for a provider and model, or the prior.
    pub fn turnaround_p95(&self, provider: Provider, model: &str) -> Duration {
        lock(&self.turnaround)
            .get(&(provider, model.to_owned()))
            .copied()
            .unwrap_or(self.cfg.turnaround_prior)
    }

    /// Makes a job durable, then lets the scheduler know.
    pub async fn submit(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        let r = self.store.enqueue(job).await?;
        failpoint("after_enqueue");
        self.wake.notify_one();
        Ok(r)
    }

    /// Waits until the job is done (woken by this replica, or found by polling the store,
    /// which another replica may have written).
    pub async fn wait_done(&self, id: &str) -> Result<Job, StoreError> {
        let poll = self
            .cfg
            .poll_interval
            .clamp(Duration::from_millis(50), Duration::from_secs(2));
        loop {
            let n = lock(&self.waiters)
                .entry(id.to_owned())
                .or_insert_with(|| Arc::new(Notify::new()))
                .clone();
            let notified = n.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.store.job(id).await? {
                Some(job) if job.result.is_some() => return Ok(job),
                Some(_) => {}
                None => return Err(StoreError::Query(format!("job {id} vanished"))),
            }
            let _ = tokio::time::timeout(poll, notified).await;
        }
    }

    fn notify(&self, id: &str) {
        if let Some(n) = lock(&self.waiters).remove(id) {
            n.notify_waiters();
        }
    }

    /// Wakes local waiters of jobs any replica completed since the last look.
    async fn wake_completed(&self, since: &mut i64) -> Result<(), StoreError> {
        if lock(&self.waiters).is_empty() {
            *since = now_ms() - 1_000;
            return Ok(());
        }
        // Overlap a little: completion times come from other replicas' clocks.
        for (id, at) in self.store.completed_since(*since - 1_000).await? {
            self.notify(&id);
            *since = (*since).max(at);
        }
        Ok(())
    }

    /// The loop, until `shutdown` resolves. It counts as running (for readiness) from this
    /// call, not from the first poll of the future, until the future ends or is dropped.
    pub fn run(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> impl std::future::Future<Output = ()> {
        let running = self.liveness.start();
        async move {
            let _running = running;
            self.run_loop(shutdown).await
        }
    }

    async fn run_loop(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_purge = 0i64;
        let mut completed_seen = now_ms();
        // Wakes by new jobs are coalesced: one scan of the queue serves many arrivals.
        let min_gap = self.cfg.poll_interval.min(Duration::from_millis(100));
        loop {
            self.liveness.beat();
            if let Err(e) = self.wake_completed(&mut completed_seen).await {
                tracing::warn!(error = %e, "deferred tier: cannot read recent completions");
            }
            let next = match self.tick().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "deferred tier: store error, retrying");
                    now_ms() + 1_000
                }
            };
            self.liveness.beat();
            let now = now_ms();
            if now - last_purge > 60_000 {
                last_purge = now;
                if let Err(e) = self.store.purge(now - ms(self.cfg.result_retention)).await {
                    tracing::warn!(error = %e, "purging old results failed");
                }
            }
            let sleep = Duration::from_millis(
                (next - now).clamp(10, ms(self.cfg.poll_interval).max(10)) as u64,
            );
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.wake.notified() => {
                    tokio::select! {
                        _ = &mut shutdown => return,
                        _ = tokio::time::sleep(min_gap) => {}
                    }
                }
                _ = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn route_limits(&self, route: &str) -> (Option<Duration>, Option<u32>) {
        // Route names are per client; a name shared by clients takes the strictest setting.
        let mut wait: Option<Duration> = None;
        let mut max: Option<u32> = None;
        for r in self
            .policies
            .clients()
            .iter()
            .flat_map(|c| c.routes.iter())
            .filter(|r| &*r.name == route)
        {
            wait = match (wait, r.batch_max_wait) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            max = match (max, r.batch_max_requests) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        (wait, max)
    }

    /// One pass: flush, advance flushes, fallbacks. Returns when to look again (unix ms).
    pub async fn tick(self: &Arc<Self>) -> Result<i64, StoreError> {
        let now = now_ms();
        let mut next = now + ms(self.cfg.poll_interval);

        // 1. Flush due groups.
        let queued = self.store.queued().await?;
        let mut depth: HashMap<(Provider, &str), f64> = HashMap::new();
        let mut group_max: HashMap<GroupKey, u32> = HashMap::new();
        let backoff = lock(&self.backoff).clone();
        let mut pending = Vec::with_capacity(queued.len());
        for q in &queued {
            *depth.entry((q.provider, q.model.as_str())).or_default() += 1.0;
            if q.tier != Tier::Batch || !self.client.supports(q.provider) {
                continue;
            }
            let key = GroupKey {
                provider: q.provider,
                endpoint: q.endpoint,
                model: q.model.clone(),
            };
            let (wait, max) = self.route_limits(&q.route);
            let by_wait = q.created_at_ms + ms(wait.unwrap_or(self.cfg.max_wait));
            // The same margins triage used to defer it (`BatchLead`), so the answer is in
            // before the watchdog would send the job synchronously.
            let lead = self.cfg.batch_lead();
            let by_deadline = q.deadline_ms
                - ms(self.turnaround_p95(q.provider, &q.model))
                - ms(lead.fallback)
                - ms(lead.submit);
            let mut flush_by = by_wait.min(by_deadline);
            if let Some(&until) = backoff.get(&key) {
                flush_by = flush_by.max(until);
            }
            if let Some(m) = max.or(self.cfg.max_requests) {
                let e = group_max.entry(key.clone()).or_insert(m);
                *e = (*e).min(m);
            }
            pending.push(Pending {
                id: q.id.clone(),
                key,
                body_bytes: q.body_bytes,
                prefix: q.prefix.clone(),
                created_at_ms: q.created_at_ms,
                flush_by_ms: flush_by,
            });
        }
        let m = self.accountant.metrics();
        m.batch_queue_depth.reset();
        for ((p, model), n) in depth {
            m.batch_queue_depth
                .with_label_values(&[p.as_str(), self.accountant.model_label(model)])
                .add(n);
        }
        let plans = accumulator::plan(&pending, now, |k| {
            let base = Limits::for_provider(k.provider);
            Limits {
                max_requests: group_max
                    .get(k)
                    .map_or(base.max_requests, |&m| (m as usize).min(base.max_requests)),
                max_bytes: base.max_bytes,
            }
        });
        let planned: std::collections::HashSet<&str> = plans
            .iter()
            .flat_map(|p| p.job_ids.iter().map(String::as_str))
            .collect();
        if let Some(t) = accumulator::next_due(
            &pending
                .iter()
                .filter(|p| !planned.contains(p.id.as_str()))
                .cloned()
                .collect::<Vec<_>>(),
        ) {
            next = next.min(t);
        }
        for plan in plans {
            let flush = NewFlush {
                id: new_id("flush"),
                provider: plan.key.provider,
                endpoint: plan.key.endpoint,
                model: plan.key.model.clone(),
                created_at_ms: now,
            };
            let claimed = self
                .store
                .claim_flush(
                    flush,
                    &plan.job_ids,
                    &self.cfg.owner,
                    now + ms(self.cfg.lease),
                )
                .await?;
            tracing::info!(model = %plan.key.model, jobs = claimed.len(), reason = ?plan.reason, "flushing a batch group");
            failpoint("after_claim");
        }

        // 2. Advance every flush this replica holds.
        for f in self
            .store
            .lease_flushes(&self.cfg.owner, now, now + ms(self.cfg.lease))
            .await?
        {
            match self.advance(&f, now).await {
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
        }

        // 3. The watchdog: answer in time what the batch would answer late.
        let lead = ms(self.cfg.fallback_lead);
        for job in self.store.due_before(now + lead).await? {
            if job.result.is_none() {
                let engine = self.clone();
                tokio::spawn(async move { engine.fallback(job, "deadline").await });
            }
        }
        Ok(next)
    }

    /// Moves one flush forward as far as it can go now. Returns when to look again.
    async fn advance(&self, f: &Flush, now: i64) -> Result<i64, EngineError> {
        if f.next_poll_at_ms > now {
            return Ok(f.next_poll_at_ms);
        }
        if f.provider == Provider::Anthropic {
            return self.advance_message_batch(f, now).await;
        }
        let mut state = f.state;
        let mut file_id = f.file_id.clone();
        if state == FlushState::Claimed || (state == FlushState::Uploaded && file_id.is_none()) {
            let id = self.upload(f).await?;
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
            file_id = Some(id);
            state = FlushState::Uploaded;
        }
        if state == FlushState::Creating {
            // The batch may exist upstream although its id was never recorded.
            if let Some(b) = self.find_batch(f).await? {
                self.record_submitted(f, &b, now).await?;
                return Ok(now + ms(self.cfg.poll_interval));
            }
            state = FlushState::Uploaded;
        }
        if state == FlushState::Uploaded {
            let Some(file_id) = file_id else {
                return Err(EngineError::Invariant(format!(
                    "flush {} uploaded without a file id",
                    f.id
                )));
            };
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
            match self
                .client
                .create(
                    f.provider,
                    openai::create_request(&file_id, f.endpoint, &f.id),
                )
                .await
            {
                Ok(b) => {
                    failpoint("after_create");
                    self.record_submitted(f, &b, now).await?;
                    return Ok(now + ms(self.cfg.poll_interval));
                }
                Err(e) if e.is_retryable() => {
                    return self.back_off_create(f, &e, FlushState::Uploaded, now).await;
                }
                Err(e) => {
                    // Rejected for good (e.g. 400): answer every job with the error.
                    self.fail_all(f, &e.to_string(), now).await?;
                    return Ok(now);
                }
            }
        }
        if state == FlushState::Submitted {
            let Some(batch_id) = &f.batch_id else {
                return Err(EngineError::Invariant(format!(
                    "flush {} submitted without a batch id",
                    f.id
                )));
            };
            let b = self.client.get(f.provider, batch_id).await?;
            return self.polled(f, &b, now).await;
        }
        Ok(now + ms(self.cfg.poll_interval))
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
        let attempts = f.create_attempts + 1;
        let wait = match e {
            BatchApiError::Status {
                retry_after: Some(r),
                ..
            } => *r,
            _ => self.cfg.poll_interval * 2u32.saturating_pow(attempts.min(6)),
        };
        tracing::warn!(flush = %f.id, error = %e, attempts, "batch create refused; backing off");
        let at = now + ms(wait.min(Duration::from_secs(900)));
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
    async fn polled(&self, f: &Flush, b: &Batch, now: i64) -> Result<i64, EngineError> {
        if b.is_terminal() {
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

    async fn record_submitted(&self, f: &Flush, b: &Batch, now: i64) -> Result<(), EngineError> {
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

    /// Lists the provider's batches for one carrying this flush's id in its metadata.
    async fn find_batch(&self, f: &Flush) -> Result<Option<Batch>, EngineError> {
        let mut after: Option<String> = None;
        // Newest first: a batch created just before a crash is on the first pages.
        for _ in 0..20 {
            let page = self.client.list(f.provider, after.as_deref()).await?;
            if let Some(b) = page
                .data
                .iter()
                .find(|b| b.flush_id() == Some(f.id.as_str()))
            {
                return Ok(Some(b.clone()));
            }
            if !page.has_more {
                break;
            }
            after = page
                .last_id
                .or_else(|| page.data.last().map(|b| b.id.clone()));
        }
        Ok(None)
    }

    /// Streams the flush's bodies from the store into a multipart upload.
    async fn upload(&self, f: &Flush) -> Result<String, EngineError> {
        let endpoint = f.endpoint;
        let rx = self.stream_bodies(f, Vec::new(), Vec::new(), move |first, id, body, out| {
            let _ = first;
            out.extend_from_slice(&openai::input_line(id, endpoint, body));
        });
        let filename = format!("{}.jsonl", f.id);
        Ok(self.client.upload(f.provider, &filename, rx).await?)
    }

    /// The flush's bodies, page by page from the store, formatted by `line` between `head`
    /// and `tail`: a large batch never sits whole in memory.
    fn stream_bodies(
        &self,
        f: &Flush,
        head: Vec<u8>,
        tail: Vec<u8>,
        line: impl Fn(bool, &str, &[u8], &mut bytes::BytesMut) + Send + 'static,
    ) -> crate::batch::client::FileChunks {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let store = self.store.clone();
        let liveness = self.liveness.clone();
        let flush_id = f.id.clone();
        tokio::spawn(async move {
            if !head.is_empty() && tx.send(Ok(Bytes::from(head))).await.is_err() {
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
                // A large input file takes a while: progress, not a stuck loop.
                liveness.beat();
                after = Some(*last);
                let mut chunk = bytes::BytesMut::new();
                for (_, id, body) in &page {
                    line(first, id, body, &mut chunk);
                    first = false;
                }
                if tx.send(Ok(chunk.freeze())).await.is_err() {
                    return;
                }
            }
            if !tail.is_empty() {
                let _ = tx.send(Ok(Bytes::from(tail))).await;
            }
        });
        rx
    }
}

/// A gateway error in the shape the job's API uses.
fn error_body(e: &crate::error::GatewayError, endpoint: crate::types::Endpoint) -> Bytes {
    Bytes::from(match endpoint {
        crate::types::Endpoint::Messages => e.to_anthropic_json(),
        _ => e.to_openai_json(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Api(#[from] BatchApiError),
    #[error("{0}")]
    Invariant(String),
}
