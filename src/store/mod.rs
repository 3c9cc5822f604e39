//! The durable store behind the deferred tiers: jobs, idempotency keys, flushes (upstream
//! batches), results and the cost ledger, behind one trait so an embedded SQLite store and
//! a shared PostgreSQL store are interchangeable.
//!
//! Designed for several gateway replicas sharing one store: work on a flush is owned by a
//! replica through a lease (`owner`, `lease_until_ms`) that another replica may take over
//! once it lapses; jobs are completed with compare-and-set, so a late batch line can never
//! overwrite a fallback answer. Times are unix milliseconds passed in by the caller: the
//! store never reads the clock, which keeps it deterministic under test.

pub mod ledger;
pub mod postgres;
mod rows;
pub mod sqlite;
mod url;

#[cfg(test)]
mod tests;

pub use url::redacted;

use async_trait::async_trait;
use bytes::Bytes;

use crate::types::{Endpoint, Provider, Tier, Usage};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store query failed: {0}")]
    Query(String),
    #[error("corrupt row in the store: {0}")]
    Corrupt(String),
    /// The URL names no store this build can open (unknown scheme, backend not built).
    #[error("unsupported URL: {0}")]
    UnsupportedUrl(String),
    /// The URL is malformed or names a database that cannot exist as given.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// An idempotency key is honoured for this long after its job was created.
pub(crate) const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// Where a deferred job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    /// Durable and waiting to be flushed.
    Queued,
    /// Assigned to a flush (an upstream batch being built, submitted or polled).
    Batched,
    /// A synchronous call is answering it instead (deadline fallback or flex).
    Fallback,
    /// Answered: the result is stored.
    Done,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Batched => "batched",
            JobState::Fallback => "fallback",
            JobState::Done => "done",
        }
    }
    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Batched,
            JobState::Fallback,
            JobState::Done,
        ]
        .into_iter()
        .find(|j| j.as_str() == s)
    }
}

/// A deferred request as accepted: everything needed to send it later, on any replica.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// `job_` + 32 hex digits; also the batch line's `custom_id`.
    pub id: String,
    pub client: String,
    pub route: String,
    pub idempotency_key: Option<String>,
    /// The implicit key its SDK's retries look it up by (`client_hints::retry_key`).
    pub retry_key: Option<String>,
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub model: String,
    /// The request body to send upstream (cache hints added, `stream` fields removed).
    pub body: Bytes,
    /// The client asked for an SSE stream; the answer is turned into one on delivery.
    pub stream: bool,
    /// The tier triage chose (`Batch` or `Flex`).
    pub tier: Tier,
    /// Prefix hash (hex) so requests sharing a prompt prefix are flushed together.
    pub prefix: Option<String>,
    pub created_at_ms: i64,
    /// The caller's deadline: the latest acceptable answer time.
    pub deadline_ms: i64,
}

/// A finished answer, byte-for-byte what a synchronous call would have returned.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub status: u16,
    pub body: Bytes,
    /// The tier that actually answered (`Batch`, `Flex`, or `Interactive` for a fallback).
    pub answered_by: Tier,
    pub usage: Option<Usage>,
    pub completed_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub client: String,
    pub route: String,
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub model: String,
    pub stream: bool,
    pub tier: Tier,
    pub state: JobState,
    pub flush_id: Option<String>,
    pub created_at_ms: i64,
    pub deadline_ms: i64,
    pub result: Option<JobResult>,
}

/// The accumulator's view of a queued job: no body, just what grouping and deadlines need.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub id: String,
    pub route: String,
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub model: String,
    pub body_bytes: u64,
    pub prefix: Option<String>,
    pub created_at_ms: i64,
    pub deadline_ms: i64,
    pub tier: Tier,
}

#[derive(Debug)]
pub enum Enqueued {
    /// Durable now; safe to acknowledge.
    Created,
    /// The same client already sent this `Idempotency-Key` within 24 h: that job.
    Existing(Box<Job>),
}

/// Progress of one flush (one upstream batch). Each step is recorded before the next
/// upstream call, so a restart knows exactly what may already exist upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushState {
    /// Jobs assigned; the input file is not uploaded yet.
    Claimed,
    /// Input file uploaded (`file_id` set).
    Uploaded,
    /// About to create the batch: it may exist upstream even without a `batch_id`;
    /// reconcile by listing batches and matching the flush id in their metadata.
    Creating,
    /// Batch created (`batch_id` set); being polled.
    Submitted,
    /// Terminal upstream status seen and every line delivered or requeued.
    Ended,
}

impl FlushState {
    pub fn as_str(self) -> &'static str {
        match self {
            FlushState::Claimed => "claimed",
            FlushState::Uploaded => "uploaded",
            FlushState::Creating => "creating",
            FlushState::Submitted => "submitted",
            FlushState::Ended => "ended",
        }
    }
    pub fn parse(s: &str) -> Option<FlushState> {
        [
            FlushState::Claimed,
            FlushState::Uploaded,
            FlushState::Creating,
            FlushState::Submitted,
            FlushState::Ended,
        ]
        .into_iter()
        .find(|f| f.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewFlush {
    /// `flush_` + 32 hex digits; sent upstream as batch metadata `sluice_flush`.
    pub id: String,
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub model: String,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Flush {
    pub id: String,
    pub provider: Provider,
    pub endpoint: Endpoint,
    pub model: String,
    pub state: FlushState,
    pub file_id: Option<String>,
    pub batch_id: Option<String>,
    /// The provider's last reported status (`in_progress`, `completed`, `expired`, ...).
    pub upstream_status: Option<String>,
    pub job_count: u32,
    pub created_at_ms: i64,
    pub submitted_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub owner: String,
    pub lease_until_ms: i64,
    /// When to poll next (backoff), unix ms.
    pub next_poll_at_ms: i64,
    /// Times creation was refused upstream (429 on create) so far.
    pub create_attempts: u32,
}

/// A change to a flush; `None` fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlushUpdate {
    pub state: Option<FlushState>,
    pub file_id: Option<String>,
    pub batch_id: Option<String>,
    pub upstream_status: Option<String>,
    pub submitted_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub next_poll_at_ms: Option<i64>,
    pub create_attempts: Option<u32>,
}

/// The flushes [`Store::purge`] deletes (parameters: before_ms, turnarounds_kept), in SQL
/// both engines run: ranked as the turnaround queries rank them; one never submitted is no
/// turnaround.
const PURGE_FLUSHES: &str = "DELETE FROM flushes WHERE id IN (\
       SELECT id FROM (\
         SELECT id, ended_at_ms, submitted_at_ms, ROW_NUMBER() OVER (\
           PARTITION BY provider, model, submitted_at_ms IS NULL \
           ORDER BY ended_at_ms DESC, id DESC) AS newest \
         FROM flushes WHERE state = 'ended' AND ended_at_ms IS NOT NULL\
       ) AS t WHERE t.ended_at_ms < $1 AND (t.submitted_at_ms IS NULL OR t.newest > $2)\
     ) AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.flush_id = flushes.id)";

/// One priced answer, as the ledger sums it (see [`ledger`]: rows are per-minute sums).
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerEntry {
    pub at_ms: i64,
    pub route: String,
    pub client: String,
    pub provider: Provider,
    /// The metric label (priced or configured name, or `other`).
    pub model: String,
    pub tier: Tier,
    pub status: u16,
    pub usage: Usage,
    pub cost_usd: f64,
    pub baseline_usd: f64,
    /// Savings by lever: batch, flex, prompt_cache, response_cache.
    pub savings_usd: [f64; 4],
    /// Spend nobody used (a batch line that finished after its fallback).
    pub wasted: bool,
}

/// `sluice report`: totals per route, client and tier.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub route: String,
    pub client: String,
    pub tier: Tier,
    pub requests: u64,
    pub cost_usd: f64,
    pub baseline_usd: f64,
    pub savings_usd: f64,
    pub wasted_usd: f64,
}

/// What every replica reads of the shared queue and batch history once per refresh, so
/// that all of them report the same queue depth and turnaround ([`Store::census`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Census {
    /// Jobs waiting to be flushed (`Queued`), by provider and model.
    pub queued: Vec<(Provider, String, u64)>,
    /// Flushes with a turnaround (submitted, then ended) that ended at or after the time
    /// asked for.
    pub ended: Vec<EndedFlush>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndedFlush {
    pub id: String,
    pub provider: Provider,
    pub model: String,
}

/// The newest turnarounds (ms, newest first) of one provider and model.
pub type Turnarounds = (Provider, String, Vec<i64>);

/// What a client created through the explicit Files and Batch APIs (passed through to the
/// provider under its key): files and batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectKind {
    File,
    Batch,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::Batch => "batch",
        }
    }
    pub fn parse(s: &str) -> Option<ObjectKind> {
        [ObjectKind::File, ObjectKind::Batch]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// The ownership record of an object a client created through the explicit Files and
/// Batch APIs: only that client may see it, and a batch's usage is priced into the ledger
/// once, under its client and route, when it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Owned {
    pub provider: Provider,
    pub kind: ObjectKind,
    /// The provider's id of the object.
    pub id: String,
    pub client: String,
    /// The route its usage is attributed to.
    pub route: String,
    pub created_at_ms: i64,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Makes the job durable (group-committed: concurrent calls share one fsync) unless
    /// the same client sent the same idempotency key within the last 24 h.
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued>;

    async fn job(&self, id: &str) -> Result<Option<Job>>;

    /// The newest job `client` created under the implicit `retry_key` at or after
    /// `since_ms`: the job an SDK retry of the same call attaches to.
    async fn retried(&self, client: &str, retry_key: &str, since_ms: i64) -> Result<Option<Job>>;

    /// The request body of a job (for a synchronous fallback).
    async fn job_body(&self, id: &str) -> Result<Option<Bytes>>;

    /// Every job in `Queued` state (no bodies), oldest first: the accumulator's input.
    async fn queued(&self) -> Result<Vec<QueuedJob>>;

    /// Job ids as any replica completes them, pushed by the database where it can (PostgreSQL
    /// `LISTEN/NOTIFY`): a hint that wakes a held caller on this replica at once. `None`
    /// where the backend cannot push (SQLite: one process, whose completions wake their
    /// callers in-process). Hints may be lost (a dropped connection); the sweep of
    /// [`Store::completed_since`] and [`Store::done_among`] stays the correctness path.
    async fn completion_feed(&self) -> Result<Option<Box<dyn CompletionFeed>>> {
        Ok(None)
    }

    /// Which of `ids` are done (in no particular order): the one query in which a replica
    /// re-checks every job it holds a caller for, so a missed wake-up delays an answer by
    /// at most that check's interval, whatever the number of held callers.
    async fn done_among(&self, ids: &[String]) -> Result<Vec<String>>;

    /// Ids and completion times of jobs completed at or after `since_ms`, oldest first: how a
    /// replica learns of answers another replica stored, to wake its own held connections.
    async fn completed_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>>;

    /// Jobs not `Done` whose deadline is at or before `before_ms` (the watchdog's input).
    async fn due_before(&self, before_ms: i64) -> Result<Vec<Job>>;

    /// Atomically creates the flush (state `Claimed`, owned by `owner` until
    /// `lease_until_ms`) and moves those of `job_ids` still `Queued` into it, remembering
    /// their order (same-prefix requests adjacent) as their position in the flush.
    /// Returns the ids actually claimed (another replica may have taken some).
    async fn claim_flush(
        &self,
        flush: NewFlush,
        job_ids: &[String],
        owner: &str,
        lease_until_ms: i64,
    ) -> Result<Vec<String>>;

    /// Bodies of a flush's jobs in pages, in the order `claim_flush` was given them
    /// (`after` = the last position seen), so a large input file is built without holding
    /// every body at once. Returns (position, job id, body).
    async fn flush_bodies(
        &self,
        flush_id: &str,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<(u32, String, Bytes)>>;

    /// Ids of the jobs in a flush that are not `Done`.
    async fn flush_open_jobs(&self, flush_id: &str) -> Result<Vec<String>>;

    async fn update_flush(&self, flush_id: &str, update: FlushUpdate) -> Result<()>;

    async fn flush(&self, flush_id: &str) -> Result<Option<Flush>>;

    /// Whether some flush already recorded this upstream batch id (reconciliation must not
    /// adopt another flush's batch).
    async fn batch_recorded(&self, batch_id: &str) -> Result<bool>;

    /// Flushes not `Ended` that `owner` holds or whose lease lapsed before `now_ms`; each
    /// returned flush is (re)leased to `owner` until `lease_until_ms`.
    async fn lease_flushes(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<Flush>>;

    /// The fence before each upstream step of a flush: renews `owner`'s lease to
    /// `lease_until_ms` if `owner` still holds it at `now_ms` (same owner, lease not lapsed,
    /// flush not `Ended`). False when another replica took the flush over (or may now): the
    /// caller must then neither call the provider for it nor deliver its results.
    async fn hold_flush(
        &self,
        flush_id: &str,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool>;

    /// Puts jobs of a flush back into `Queued` (batch failed validation, expired or was
    /// cancelled): they will be flushed again or answered synchronously.
    async fn requeue(&self, job_ids: &[String]) -> Result<()>;

    /// `Queued`/`Batched` → `Fallback`, leased to this caller until `lease_until_ms`; or
    /// retakes a `Fallback` job whose lease lapsed before `now_ms` (its replica died
    /// mid-call, or handed it back). True if this caller won the job.
    async fn claim_fallback(&self, job_id: &str, now_ms: i64, lease_until_ms: i64) -> Result<bool>;

    /// Moves the lease of a fallback this caller holds (until `held_until_ms`, as claimed or
    /// last renewed) to `lease_until_ms`; `0` hands the job back for any replica to retake at
    /// once. False if the job is no longer held so (answered, or retaken after a lapse).
    async fn renew_fallback(
        &self,
        job_id: &str,
        held_until_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool>;

    /// Stores the answer if the job is not `Done` yet, together with its ledger entry in the
    /// same transaction. True if this call completed it (the entry is written only then).
    async fn complete_job(
        &self,
        job_id: &str,
        result: JobResult,
        ledger: Option<LedgerEntry>,
    ) -> Result<bool>;

    /// Adds these sums to the ledger rows of the same minute and labels.
    async fn record(&self, rows: &[ledger::LedgerRow]) -> Result<()>;

    /// Ledger totals per route, client and tier over every row whose period ends after
    /// `since_ms`: from the minute that holds it (its hour, where minutes were folded).
    async fn report(&self, since_ms: i64) -> Result<Vec<ReportRow>>;

    /// Folds the ledger's minute rows before `before_ms` (an hour boundary) into one row per
    /// hour and labels. Returns how many rows it removed.
    async fn compact_ledger(&self, before_ms: i64) -> Result<u64>;

    /// How many rows the ledger holds.
    async fn ledger_rows(&self) -> Result<u64>;

    /// Submit-to-end durations (ms) of the last `limit` ended flushes for a provider and model.
    async fn turnarounds(&self, provider: Provider, model: &str, limit: u32) -> Result<Vec<i64>>;

    /// [`Store::turnarounds`] of every provider and model at once: the newest `limit` of
    /// each, in one query.
    async fn all_turnarounds(&self, limit: u32) -> Result<Vec<Turnarounds>>;

    /// The queue depth per provider and model, and the flushes that ended (with a
    /// turnaround) at or after `ended_since_ms`, in one query: what each replica reads once
    /// per refresh, so every replica reports the same numbers at the cost of one small query
    /// per replica and interval, whatever the traffic.
    async fn census(&self, ended_since_ms: i64) -> Result<Census>;

    /// Records that `o.client` owns `o.id`, durably before it returns. An object already
    /// recorded keeps its first record. Returns the client that owns it.
    async fn own(&self, o: Owned) -> Result<String>;

    /// The ownership record of an object, if any.
    async fn owned(&self, provider: Provider, kind: ObjectKind, id: &str) -> Result<Option<Owned>>;

    /// Those of `ids` that `client` owns, in no particular order (a list answer filtered).
    async fn owned_among(
        &self,
        provider: Provider,
        kind: ObjectKind,
        client: &str,
        ids: &[String],
    ) -> Result<Vec<String>>;

    /// Owned batches not priced yet whose next check is due at `now_ms` (never put off, or
    /// put off until then or earlier), those due longest first, at most `limit`.
    async fn unpriced_batches(&self, now_ms: i64, limit: u32) -> Result<Vec<Owned>>;

    /// Puts off the next check of an owned batch until `at_ms`.
    async fn check_batch_at(&self, provider: Provider, id: &str, at_ms: i64) -> Result<()>;

    /// Marks an owned batch priced (at `now_ms`) and adds `rows` to the ledger in one
    /// transaction, unless it is priced already or not recorded: true if this call priced
    /// it. A batch's usage thus reaches the ledger exactly once, whichever replica, and
    /// however many times, sees it end.
    async fn price_batch(
        &self,
        provider: Provider,
        id: &str,
        now_ms: i64,
        rows: &[ledger::LedgerRow],
    ) -> Result<bool>;

    /// Deletes finished jobs completed before `before_ms` (their idempotency keys with
    /// them), then the ended flushes that ended before `before_ms`, that no job refers to
    /// any more, and that are not among the newest `turnarounds_kept` turnarounds of their
    /// provider and model (observed turnaround outlives the jobs). Returns the rows deleted.
    async fn purge(&self, before_ms: i64, turnarounds_kept: u32) -> Result<u64>;

    /// Readiness: the store answers reads.
    async fn ping(&self) -> Result<()>;

    /// Shutdown: every write queued so far is committed, later writes fail, and the
    /// connections are closed. Reads and writes after it fail with `Unavailable`.
    async fn close(&self);

    /// Readiness: the store takes a write now. A tiny durable write (one row, overwritten
    /// each time) committed the way every other write is, so a full disk, a read-only file
    /// or a lost connection shows here before a request finds it.
    async fn probe_write(&self, now_ms: i64) -> Result<()>;
}

/// See [`Store::completion_feed`].
#[async_trait]
pub trait CompletionFeed: Send {
    /// The next completed job's id; an error when the feed is gone for good.
    async fn next(&mut self) -> Result<String>;
}

/// Opens the store a `SLUICE_STORE` URL names; a URL that cannot name a working store
/// fails here, before anything is created.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    match url::scheme(url)? {
        url::Scheme::Sqlite => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?)),
        url::Scheme::Postgres => Ok(std::sync::Arc::new(
            postgres::PostgresStore::open(url).await?,
        )),
    }
}
