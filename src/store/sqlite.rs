//! The embedded SQLite store: one file (WAL, `synchronous = FULL`), one writer task that
//! group-commits every write, and a small read pool that never waits behind it. The writer
//! is tracked: [`Store::close`] commits what is queued, then ends it and closes the pool.
//!
//! Schema: `migrations/sqlite/` (embedded; versions recorded in `_sqlx_migrations`).

mod rows;
mod url;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot};

use self::rows::{FLUSH_COLUMNS, JOB_COLUMNS, OWNED_COLUMNS, db_error, migrate_error};
use self::writer::Request;
use super::ledger::LedgerRow;
use super::{
    Census, Enqueued, Flush, FlushUpdate, Job, JobResult, LedgerEntry, NewFlush, NewJob,
    ObjectKind, Owned, QueuedJob, ReportRow, Result, Store, StoreError, Turnarounds,
};
use crate::lifecycle::Tasks;
use crate::types::Provider;

/// How long a statement waits for a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections for reads; writes never use them.
const READ_CONNECTIONS: u32 = 4;
/// Writes waiting for the writer before `enqueue` callers are held back.
const WRITE_QUEUE: usize = 4096;
/// Longest `close` waits for the writer to commit what is queued: a few group commits'
/// worth (each waits at most [`BUSY_TIMEOUT`] for a lock); shutdown bounds it further.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLITE_BUSY (5) or SQLITE_LOCKED (6), primary or extended.
fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().is_some_and(|c| {
        matches!(c.parse::<i32>().map(|c| c & 0xff), Ok(5 | 6))
    }))
}

async fn busy_retry<T, F, Fut>(mut f: F) -> std::result::Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, sqlx::Error>>,
{
    let mut attempt = 0u64;
    loop {
        match f().await {
            Err(e) if attempt < 5 && is_busy(&e) => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            r => return r,
        }
    }
}

pub struct SqliteStore {
    writer: mpsc::Sender<Request>,
    read: SqlitePool,
    commits: Arc<AtomicU64>,
    /// The writer task.
    tasks: Tasks,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("commits", &self.commit_count())
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database `url` names — `sqlite://PATH`, `sqlite:PATH` or
    /// `sqlite::memory:`, creating what its `mode` allows (see [`url`]) — and brings its
    /// schema up to date.
    pub async fn open(url: &str) -> Result<SqliteStore> {
        if !url.starts_with("sqlite:") {
            return Err(StoreError::UnsupportedUrl(format!(
                "{:?} is not a sqlite: URL",
                super::redacted(url)
            )));
        }
        let options = url::options(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);

        // The writer connection exists first: it creates the file and, for an in-memory
        // database, keeps it alive for the readers (shared cache) as long as the store.
        // Two processes opening a new file at once race to switch it to WAL, and the
        // loser's `PRAGMA journal_mode` can fail with SQLITE_BUSY without waiting for the
        // busy timeout: connections are retried a few times.
        let conn = busy_retry(|| options.connect()).await.map_err(db_error)?;
        let read = busy_retry(|| {
            SqlitePoolOptions::new()
                .max_connections(READ_CONNECTIONS)
                .min_connections(0)
                .connect_with(options.clone())
        })
        .await
        .map_err(db_error)?;
        // Through the pool: `Migrator::run` on a `&mut` connection makes this future not
        // `Send` for every lifetime (sqlx's "Acquire is not general enough").
        // Two processes opening a new file at once both try to migrate it (sqlx takes no
        // lock on SQLite); the loser's transaction rolls back, and a retry sees it applied.
        let mut attempt = 0u64;
        while let Err(e) = MIGRATOR.run(&read).await {
            attempt += 1;
            if attempt >= 5 {
                return Err(migrate_error(e));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
        }

        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        let tasks = Tasks::new("store writer");
        tasks.spawn(writer::run(
            options,
            conn,
            rx,
            Arc::clone(&commits),
            tasks.token().clone(),
        ));
        Ok(SqliteStore {
            writer: tx,
            read,
            commits,
            tasks,
        })
    }

    /// Write transactions committed so far (one per group commit).
    pub fn commit_count(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Hands a write to the writer task and waits until it is committed.
    async fn write<T>(&self, request: impl FnOnce(writer::Reply<T>) -> Request) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.writer
            .send(request(tx))
            .await
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the store writer dropped the request".into()))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        self.write(|reply| Request::Enqueue(job, reply)).await
    }

    async fn job(&self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::job).transpose()
    }

    async fn retried(&self, client: &str, retry_key: &str, since_ms: i64) -> Result<Option<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE client = ? AND retry_key = ? \
             AND created_at_ms >= ? ORDER BY created_at_ms DESC, rowid DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(client)
            .bind(retry_key)
            .bind(since_ms)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::job).transpose()
    }

    async fn job_body(&self, id: &str) -> Result<Option<Bytes>> {
        let row = sqlx::query("SELECT body FROM jobs WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::body).transpose()
    }

    async fn queued(&self) -> Result<Vec<QueuedJob>> {
        let found = sqlx::query(
            "SELECT id, route, provider, endpoint, model, length(body) AS body_bytes, prefix, \
             created_at_ms, deadline_ms, tier FROM jobs WHERE state = 'queued' \
             ORDER BY created_at_ms, rowid",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        found.iter().map(rows::queued_job).collect()
    }

    async fn due_before(&self, before_ms: i64) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state <> 'done' AND deadline_ms <= ? \
             ORDER BY deadline_ms, rowid"
        );
        let found = sqlx::query(&sql)
            .bind(before_ms)
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        found.iter().map(rows::job).collect()
    }

    async fn done_among(&self, ids: &[String]) -> Result<Vec<String>> {
        let mut done = Vec::new();
        // Within SQLite's default limit of bound parameters per statement.
        for chunk in ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT id FROM jobs WHERE state = 'done' AND id IN (",
            );
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id);
            }
            q.push(")");
            let found = q.build().fetch_all(&self.read).await.map_err(db_error)?;
            for r in &found {
                use sqlx::Row;
                done.push(r.try_get::<String, _>(0).map_err(db_error)?);
            }
        }
        Ok(done)
    }

    async fn completed_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>> {
        let found = sqlx::query(
            "SELECT id, completed_at_ms FROM jobs WHERE state = 'done' AND completed_at_ms >= ? \
             ORDER BY completed_at_ms",
        )
        .bind(since_ms)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        found
            .iter()
            .map(|r| {
                use sqlx::Row;
                Ok((
                    r.try_get::<String, _>(0).map_err(db_error)?,
                    r.try_get::<i64, _>(1).map_err(db_error)?,
                ))
            })
            .collect()
    }

    async fn claim_flush(
        &self,
        flush: NewFlush,
        job_ids: &[String],
        owner: &str,
        lease_until_ms: i64,
    ) -> Result<Vec<String>> {
        let job_ids = job_ids.to_vec();
        let owner = owner.to_owned();
        self.write(|reply| Request::ClaimFlush {
            flush,
            job_ids,
            owner,
            lease_until_ms,
            reply,
        })
        .await
    }

    async fn flush_bodies(
        &self,
        flush_id: &str,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<(u32, String, Bytes)>> {
        let found = sqlx::query(
            "SELECT flush_pos, id, body FROM jobs WHERE flush_id = ? AND flush_pos > ? \
             ORDER BY flush_pos LIMIT ?",
        )
        .bind(flush_id)
        .bind(after.map_or(-1, i64::from))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        found.iter().map(rows::flush_body).collect()
    }

    async fn flush_open_jobs(&self, flush_id: &str) -> Result<Vec<String>> {
        let found = sqlx::query(
            "SELECT id FROM jobs WHERE flush_id = ? AND state <> 'done' ORDER BY flush_pos",
        )
        .bind(flush_id)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        found.iter().map(|r| rows::string_column(r, "id")).collect()
    }

    async fn update_flush(&self, flush_id: &str, update: FlushUpdate) -> Result<()> {
        let flush_id = flush_id.to_owned();
        self.write(|reply| Request::UpdateFlush {
            flush_id,
            update,
            reply,
        })
        .await
    }

    async fn flush(&self, flush_id: &str) -> Result<Option<Flush>> {
        let sql = format!("SELECT {FLUSH_COLUMNS} FROM flushes WHERE id = ?");
        let row = sqlx::query(&sql)
            .bind(flush_id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::flush).transpose()
    }

    async fn batch_recorded(&self, batch_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM flushes WHERE batch_id = ? LIMIT 1")
            .bind(batch_id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }

    async fn lease_flushes(
        &self,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Vec<Flush>> {
        let owner = owner.to_owned();
        self.write(|reply| Request::LeaseFlushes {
            owner,
            now_ms,
            lease_until_ms,
            reply,
        })
        .await
    }

    async fn requeue(&self, job_ids: &[String]) -> Result<()> {
        let job_ids = job_ids.to_vec();
        self.write(|reply| Request::Requeue(job_ids, reply)).await
    }

    async fn claim_fallback(&self, job_id: &str, now_ms: i64, lease_until_ms: i64) -> Result<bool> {
        let job_id = job_id.to_owned();
        self.write(|reply| Request::ClaimFallback {
            job_id,
            now_ms,
            lease_until_ms,
            reply,
        })
        .await
    }

    async fn hold_flush(
        &self,
        flush_id: &str,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        let (flush_id, owner) = (flush_id.to_owned(), owner.to_owned());
        self.write(|reply| Request::HoldFlush {
            flush_id,
            owner,
            now_ms,
            lease_until_ms,
            reply,
        })
        .await
    }

    async fn renew_fallback(
        &self,
        job_id: &str,
        held_until_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        let job_id = job_id.to_owned();
        self.write(|reply| Request::RenewFallback {
            job_id,
            held_until_ms,
            lease_until_ms,
            reply,
        })
        .await
    }

    async fn complete_job(
        &self,
        job_id: &str,
        result: JobResult,
        ledger: Option<LedgerEntry>,
    ) -> Result<bool> {
        let job_id = job_id.to_owned();
        self.write(|reply| Request::CompleteJob(job_id, result, ledger, reply))
            .await
    }

    async fn record(&self, rows: &[LedgerRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = rows.to_vec();
        self.write(|reply| Request::Record(rows, reply)).await
    }

    async fn report(&self, since_ms: i64) -> Result<Vec<ReportRow>> {
        let found = sqlx::query(
            "SELECT route, client, tier, SUM(requests) AS requests, \
             TOTAL(cost_usd) AS cost_usd, TOTAL(baseline_usd) AS baseline_usd, \
             TOTAL(savings_batch_usd + savings_flex_usd + savings_prompt_cache_usd \
                 + savings_response_cache_usd) AS savings_usd, \
             TOTAL(wasted_usd) AS wasted_usd \
             FROM ledger_rollup WHERE bucket_ms + width_ms > ? GROUP BY route, client, tier \
             ORDER BY route, client, tier",
        )
        .bind(since_ms)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        found.iter().map(rows::report_row).collect()
    }

    async fn compact_ledger(&self, before_ms: i64) -> Result<u64> {
        self.write(|reply| Request::CompactLedger(before_ms, reply))
            .await
    }

    async fn ledger_rows(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM ledger_rollup")
            .fetch_one(&self.read)
            .await
            .map_err(db_error)?;
        rows::i64_column(&row, "n").map(|n| n.max(0) as u64)
    }

    async fn turnarounds(&self, provider: Provider, model: &str, limit: u32) -> Result<Vec<i64>> {
        let found = sqlx::query(
            "SELECT ended_at_ms - submitted_at_ms AS turnaround FROM flushes \
             WHERE provider = ? AND model = ? AND ended_at_ms IS NOT NULL \
             AND submitted_at_ms IS NOT NULL ORDER BY ended_at_ms DESC, id DESC LIMIT ?",
        )
        .bind(provider.as_str())
        .bind(model)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        found
            .iter()
            .map(|r| rows::i64_column(r, "turnaround"))
            .collect()
    }

    async fn all_turnarounds(&self, limit: u32) -> Result<Vec<Turnarounds>> {
        let found = sqlx::query(
            "SELECT provider, model, turnaround FROM (\
               SELECT provider, model, ended_at_ms - submitted_at_ms AS turnaround, \
               ROW_NUMBER() OVER (PARTITION BY provider, model \
                 ORDER BY ended_at_ms DESC, id DESC) AS newest \
               FROM flushes WHERE ended_at_ms IS NOT NULL AND submitted_at_ms IS NOT NULL\
             ) AS t WHERE newest <= ? ORDER BY provider, model, newest",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows::turnaround_groups(&found)
    }

    async fn census(&self, ended_since_ms: i64) -> Result<Census> {
        let found = sqlx::query(
            "SELECT provider, model, COUNT(*) AS queued, NULL AS flush_id FROM jobs \
             WHERE state = 'queued' GROUP BY provider, model \
             UNION ALL \
             SELECT provider, model, 0, id FROM flushes \
             WHERE ended_at_ms >= ? AND submitted_at_ms IS NOT NULL",
        )
        .bind(ended_since_ms)
        .fetch_all(&self.read)
        .await
        .map_err(db_error)?;
        rows::census(&found)
    }

    async fn own(&self, o: Owned) -> Result<String> {
        self.write(|reply| Request::Own(o, reply)).await
    }

    async fn owned(&self, provider: Provider, kind: ObjectKind, id: &str) -> Result<Option<Owned>> {
        let sql = format!(
            "SELECT {OWNED_COLUMNS} FROM owned_objects WHERE provider = ? AND kind = ? AND id = ?"
        );
        let row = sqlx::query(&sql)
            .bind(provider.as_str())
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::owned).transpose()
    }

    async fn owned_among(
        &self,
        provider: Provider,
        kind: ObjectKind,
        client: &str,
        ids: &[String],
    ) -> Result<Vec<String>> {
        let mut owned = Vec::new();
        // Within SQLite's default limit of bound parameters per statement.
        for chunk in ids.chunks(500) {
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                "SELECT id FROM owned_objects WHERE provider = ",
            );
            q.push_bind(provider.as_str())
                .push(" AND kind = ")
                .push_bind(kind.as_str())
                .push(" AND client = ")
                .push_bind(client)
                .push(" AND id IN (");
            let mut list = q.separated(", ");
            for id in chunk {
                list.push_bind(id);
            }
            q.push(")");
            let found = q.build().fetch_all(&self.read).await.map_err(db_error)?;
            for r in &found {
                owned.push(rows::string_column(r, "id")?);
            }
        }
        Ok(owned)
    }

    async fn unpriced_batches(&self, now_ms: i64, limit: u32) -> Result<Vec<Owned>> {
        // NULLs sort first in SQLite: batches never put off are the most overdue.
        let sql = format!(
            "SELECT {OWNED_COLUMNS} FROM owned_objects \
             WHERE kind = 'batch' AND priced_at_ms IS NULL \
             AND (next_check_at_ms IS NULL OR next_check_at_ms <= ?) \
             ORDER BY next_check_at_ms, created_at_ms, provider, id LIMIT ?"
        );
        let found = sqlx::query(&sql)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(db_error)?;
        found.iter().map(rows::owned).collect()
    }

    async fn check_batch_at(&self, provider: Provider, id: &str, at_ms: i64) -> Result<()> {
        let id = id.to_owned();
        self.write(|reply| Request::CheckBatchAt {
            provider,
            id,
            at_ms,
            reply,
        })
        .await
    }

    async fn price_batch(
        &self,
        provider: Provider,
        id: &str,
        now_ms: i64,
        rows: &[LedgerRow],
    ) -> Result<bool> {
        let (id, rows) = (id.to_owned(), rows.to_vec());
        self.write(|reply| Request::PriceBatch {
            provider,
            id,
            now_ms,
            rows,
            reply,
        })
        .await
    }

    async fn purge(&self, before_ms: i64, turnarounds_kept: u32) -> Result<u64> {
        self.write(|reply| Request::Purge(before_ms, turnarounds_kept, reply))
            .await
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn close(&self) {
        // The writer drains its queue, commits, closes its connection and ends; the caller
        // bounds the wait (`lifecycle`).
        let _ = self
            .tasks
            .shutdown(tokio::time::Instant::now() + CLOSE_TIMEOUT)
            .await
            .map_err(|e| tracing::warn!(error = %e, "store writer did not stop"));
        self.read.close().await;
    }

    async fn probe_write(&self, now_ms: i64) -> Result<()> {
        self.write(|reply| Request::Probe(now_ms, reply)).await
    }
}
