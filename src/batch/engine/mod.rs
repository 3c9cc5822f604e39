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
use tokio_util::sync::CancellationToken;

use crate::account::{Accountant, Answer};
use crate::batch::accumulator::{self, GroupKey, Limits, Pending};
use crate::batch::{failpoint, new_id};
use crate::forward::{self, Forwarder};
use crate::lifecycle::Tasks;
use crate::policy::PolicySet;
use crate::providers::{Adapter, BatchApiError, LineOutcome, UpstreamBatch};
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
    /// Where the engine reads the time (the system clock, or a test's).
    pub clock: crate::clock::Clock,
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
            lease: c.lease,
            clock: crate::clock::Clock::System,
        }
    }
}

mod census;
mod explicit;
mod flush;
mod liveness;
mod results;
mod schedule;
#[cfg(test)]
mod tests;

pub use census::Observed;
use liveness::Liveness;
pub use liveness::{NotReady, PROBE_TIMEOUT};

pub struct Engine {
    store: Arc<dyn Store>,
    /// The Batch API of every configured provider that has one.
    adapters: Vec<(Provider, Adapter)>,
    forwarder: Arc<Forwarder>,
    accountant: Arc<Accountant>,
    policies: Arc<PolicySet>,
    cfg: EngineConfig,
    wake: Notify,
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
    /// Observed turnaround as the store has it (see `census`), by provider, then model:
    /// looked up by `&str` on every request, without a copy.
    turnaround: Mutex<HashMap<Provider, HashMap<String, Observed>>>,
    /// Groups whose last batch failed as a whole (e.g. enqueued-token limit): not before.
    backoff: Mutex<HashMap<GroupKey, i64>>,
    /// Jobs whose synchronous fallback this process is sending.
    in_flight: Mutex<std::collections::HashSet<String>>,
    /// The loop's heartbeat, for readiness.
    liveness: Arc<Liveness>,
    /// Every task the engine starts (fallbacks, input producers, held streams): shutdown
    /// waits for them; stopping them makes fallbacks hand their jobs back.
    tasks: Tasks,
    /// Cancelled when shutdown begins: held callers are released ([`WaitError::ShuttingDown`]).
    released: CancellationToken,
    /// A pass over client-created batches (`explicit`) is running.
    explicit_running: std::sync::atomic::AtomicBool,
}

/// Why [`Engine::wait_done`] returned without an answer.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gateway is shutting down. The job is durable and will be answered (after a
    /// restart, or by another replica): its caller polls it or retries with its key.
    #[error(
        "shutting down; job {job} is kept and will be answered: GET /sluice/v1/jobs/{job}/result, \
         or retry with the same Idempotency-Key"
    )]
    ShuttingDown { job: String },
}

impl From<WaitError> for crate::error::GatewayError {
    fn from(e: WaitError) -> Self {
        crate::error::GatewayError::NotReady {
            reason: e.to_string(),
        }
    }
}

/// How often the jobs of held callers are re-checked together (see [`Engine::wait_done`]).
pub const RECHECK_HELD: Duration = Duration::from_secs(30);

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
        adapters: Vec<(Provider, Adapter)>,
        forwarder: Arc<Forwarder>,
        accountant: Arc<Accountant>,
        policies: Arc<PolicySet>,
        cfg: EngineConfig,
    ) -> Engine {
        Engine {
            store,
            adapters,
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
            tasks: Tasks::new("engine"),
            released: CancellationToken::new(),
            explicit_running: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The engine's background tasks (fallbacks, input producers, held streams). Its owner
    /// stops them at the drain deadline: fallbacks then hand their jobs back.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// The accountant the engine records answers with (its ledger is flushed last).
    pub fn accountant(&self) -> &Arc<Accountant> {
        &self.accountant
    }

    /// Shutdown began: every held caller is released now, and later ones at once
    /// ([`WaitError::ShuttingDown`]); their jobs stay durable.
    pub fn release_waiters(&self) {
        self.released.cancel();
    }

    /// How long a fallback claim lasts unless renewed: the flush lease, but at most half
    /// the fallback lead, so a job whose replica died mid-call is retaken (after at most
    /// this plus a poll) with time left for its own call before the deadline.
    fn fallback_lease(&self) -> Duration {
        self.cfg.lease.min(self.cfg.fallback_lead / 2)
    }

    /// `Ok` when the deferred tiers can work now: the loop runs and makes progress, and
    /// the store answers and takes a write within [`PROBE_TIMEOUT`].
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.liveness.check(self.cfg.poll_interval)?;
        let probe = async {
            self.store.ping().await?;
            self.store.probe_write(self.now()).await
        };
        tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .map_err(|_| NotReady::StoreTimeout(PROBE_TIMEOUT))??;
        Ok(())
    }

    fn now(&self) -> i64 {
        self.cfg.clock.now_ms()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Whether the batch tier can serve this provider now.
    pub fn batches(&self, p: Provider) -> bool {
        self.adapter(p).is_some()
    }

    fn adapter(&self, p: Provider) -> Option<&Adapter> {
        self.adapters.iter().find(|(q, _)| *q == p).map(|(_, a)| a)
    }

    /// Observed p95 batch turnaround for a provider and model, or the prior.
    pub fn turnaround_p95(&self, provider: Provider, model: &str) -> Duration {
        lock(&self.turnaround)
            .get(&provider)
            .and_then(|m| m.get(model))
            .map_or(self.cfg.turnaround_prior, |o| o.triage_p95)
    }

    /// Makes a job durable, then lets the scheduler know.
    pub async fn submit(&self, job: NewJob) -> Result<Enqueued, StoreError> {
        let r = self.store.enqueue(job).await?;
        failpoint("after_enqueue");
        self.wake.notify_one();
        Ok(r)
    }

    /// Waits until the job is done, or until shutdown begins. A held caller has no timer of
    /// its own and reads the store only when woken: by this replica's completion of the
    /// job, or by the replica's sweep, which learns of other replicas' answers in one query per
    /// sweep ([`Engine::sweep_loop`]) and re-checks every held job in one query every
    /// [`RECHECK_HELD`]. Waiting costs the store O(answers), not O(held callers).
    pub async fn wait_done(&self, id: &str) -> Result<Job, WaitError> {
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
                None => return Err(StoreError::Query(format!("job {id} vanished")).into()),
            }
            // Looked once more after the release, so an answer already in is delivered.
            if self.released.is_cancelled() {
                return Err(WaitError::ShuttingDown { job: id.to_owned() });
            }
            tokio::select! {
                _ = notified => {}
                _ = self.released.cancelled() => {}
            }
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
            *since = self.now() - 1_000;
            return Ok(());
        }
        // Overlap a little: completion times come from other replicas' clocks.
        for (id, at) in self.store.completed_since(*since - 1_000).await? {
            self.notify(&id);
            *since = (*since).max(at);
        }
        Ok(())
    }

    /// Wakes the local waiters whose jobs are done, asked for all of them at once: the
    /// correctness path behind the wake-ups, for an answer whose completion time (another
    /// replica's clock) fell before what [`Engine::wake_completed`] looks at.
    async fn recheck_held(&self) -> Result<(), StoreError> {
        let held: Vec<String> = lock(&self.waiters).keys().cloned().collect();
        if held.is_empty() {
            return Ok(());
        }
        for id in self.store.done_among(&held).await? {
            self.notify(&id);
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
            // The sweep and the census never end; the loop ends at shutdown, and they with it.
            tokio::select! {
                _ = self.clone().run_loop(shutdown) => {}
                _ = self.sweep_loop() => {}
                _ = self.census_loop() => {}
            }
        }
    }

    /// This replica's one sweep for its held callers: answers other replicas stored, pushed
    /// as they commit where the store can ([`Store::completion_feed`]), read in one query
    /// every `poll_interval` (50 ms to 1 s), and every held job re-checked in one query
    /// every [`RECHECK_HELD`].
    async fn sweep_loop(&self) {
        let every = self
            .cfg
            .poll_interval
            .clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut completed_seen = self.now();
        let mut last_recheck = self.now();
        // Other replicas' answers pushed as they commit, where the store can push them.
        let mut feed = match self.store.completion_feed().await {
            Ok(feed) => feed,
            Err(e) => {
                tracing::warn!(error = %e, "deferred tier: no completion notifications, sweeping only");
                None
            }
        };
        let mut sweep = tokio::time::interval(every);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let pushed = async {
                match feed.as_mut() {
                    Some(f) => f.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                id = pushed => {
                    match id {
                        Ok(id) => self.notify(&id),
                        Err(e) => {
                            tracing::warn!(error = %e, "deferred tier: completion notifications lost, sweeping only");
                            feed = None;
                        }
                    }
                    continue;
                }
                _ = sweep.tick() => {}
            }
            if let Err(e) = self.wake_completed(&mut completed_seen).await {
                tracing::warn!(error = %e, "deferred tier: cannot read recent completions");
            }
            if self.now() - last_recheck >= ms(RECHECK_HELD) {
                last_recheck = self.now();
                if let Err(e) = self.recheck_held().await {
                    tracing::warn!(error = %e, "deferred tier: cannot re-check held jobs");
                }
            }
        }
    }

    async fn run_loop(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_purge = 0i64;
        // Wakes by new jobs are coalesced: one scan of the queue serves many arrivals.
        let min_gap = self.cfg.poll_interval.min(Duration::from_millis(100));
        loop {
            self.liveness.beat();

            let next = match self.tick().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "deferred tier: store error, retrying");
                    self.now() + 1_000
                }
            };
            self.liveness.beat();
            let now = self.now();
            if now - last_purge > 60_000 {
                last_purge = now;
                let before = now - ms(self.cfg.result_retention);
                if let Err(e) = self.store.purge(before, census::REPORT_WINDOW).await {
                    tracing::warn!(error = %e, "purging old results failed");
                }
                let fold = crate::store::ledger::fold_before(now);
                if let Err(e) = self.store.compact_ledger(fold).await {
                    tracing::warn!(error = %e, "folding old ledger minutes into hours failed");
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
        let now = self.now();
        let mut next = now + ms(self.cfg.poll_interval);

        // 1. Flush due groups.
        next = next.min(self.flush_due(now).await?);

        // 2. Advance every flush this replica holds.
        let flushes = self
            .store
            .lease_flushes(&self.cfg.owner, now, now + ms(self.cfg.lease))
            .await?;
        next = next.min(self.advance_all(flushes, now).await?);

        // 3. The watchdog: answer in time what the batch would answer late.
        let lead = ms(self.cfg.fallback_lead);
        for job in self.store.due_before(now + lead).await? {
            if job.result.is_none() {
                let engine = self.clone();
                self.tasks
                    .spawn(async move { engine.fallback(job, "deadline").await });
            }
        }

        // 4. Price the client-created batches that ended (in the background: downloads).
        self.price_explicit_soon();
        Ok(next)
    }
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
