//! The single writer: one task owns the only writing connection and group-commits.
//!
//! Every write request arrives over a bounded channel with a oneshot for its answer. The
//! task drains whatever is waiting (up to [`MAX_GROUP`]), runs all of it in ONE
//! `BEGIN IMMEDIATE` … `COMMIT` transaction (one WAL fsync under `synchronous = FULL`),
//! and only then answers each request: an `enqueue` is acknowledged once it is durable.
//! Requests are applied in arrival order inside the transaction, so two enqueues with the
//! same idempotency key in one group see each other (exactly one is `Created`).
//!
//! A request that fails on its own (a constraint, a corrupt row) is undone alone — single
//! statements by SQLite's statement rollback, multi-statement requests by a savepoint —
//! and the rest of the group still commits. A failure of the transaction itself (BEGIN,
//! COMMIT, I/O) answers every request of the group with that error and reconnects.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::rows::{self, FLUSH_COLUMNS, JOB_COLUMNS, count, db_error, dup};
use crate::store::ledger::{LedgerRow, MINUTE_MS};
use crate::store::{
    Enqueued, Flush, FlushState, FlushUpdate, IDEMPOTENCY_WINDOW_MS, JobResult, JobState,
    LedgerEntry, NewFlush, NewJob, ObjectKind, Owned, Result, StoreError,
};
use crate::types::Provider;

/// Most requests applied in one transaction.
pub(super) const MAX_GROUP: usize = 512;

pub(super) type Reply<T> = oneshot::Sender<Result<T>>;

/// A write, with where to send its answer.
pub(super) enum Request {
    Enqueue(NewJob, Reply<Enqueued>),
    ClaimFlush {
        flush: NewFlush,
        job_ids: Vec<String>,
        owner: String,
        lease_until_ms: i64,
        reply: Reply<Vec<String>>,
    },
    UpdateFlush {
        flush_id: String,
        update: FlushUpdate,
        reply: Reply<()>,
    },
    LeaseFlushes {
        owner: String,
        now_ms: i64,
        lease_until_ms: i64,
        reply: Reply<Vec<Flush>>,
    },
    Requeue(Vec<String>, Reply<()>),
    ClaimFallback {
        job_id: String,
        now_ms: i64,
        lease_until_ms: i64,
        reply: Reply<bool>,
    },
    HoldFlush {
        flush_id: String,
        owner: String,
        now_ms: i64,
        lease_until_ms: i64,
        reply: Reply<bool>,
    },
    RenewFallback {
        job_id: String,
        held_until_ms: i64,
        lease_until_ms: i64,
        reply: Reply<bool>,
    },
    CompleteJob(String, JobResult, Option<LedgerEntry>, Reply<bool>),
    Record(Vec<LedgerRow>, Reply<()>),
    Purge(i64, u32, Reply<u64>),
    CompactLedger(i64, Reply<u64>),
    /// The readiness probe: overwrites the one row of `probe`.
    Probe(i64, Reply<()>),
    /// Answers the owning client.
    Own(Owned, Reply<String>),
    CheckBatchAt {
        provider: Provider,
        id: String,
        at_ms: i64,
        reply: Reply<()>,
    },
    PriceBatch {
        provider: Provider,
        id: String,
        now_ms: i64,
        rows: Vec<LedgerRow>,
        reply: Reply<bool>,
    },
}

/// How a request went inside the group transaction.
enum Status {
    Ok,
    /// Failed on its own: undo just this request.
    Failed,
    /// The transaction itself is in doubt: abandon the group.
    Fatal(StoreError),
}

/// Sends a request's answer once the group's fate is known (`Some` = the commit failed).
type Finish = Box<dyn FnOnce(Option<&StoreError>) + Send>;

fn settle<T: Send + 'static>(reply: Reply<T>, result: Result<T>) -> (Status, Finish) {
    let status = match &result {
        Ok(_) => Status::Ok,
        Err(e @ StoreError::Unavailable(_)) => Status::Fatal(dup(e)),
        Err(_) => Status::Failed,
    };
    let finish: Finish = Box::new(move |group_error| {
        let answer = match (group_error, result) {
            (Some(e), _) => Err(dup(e)),
            (None, result) => result,
        };
        // The caller may have given up waiting; nothing to do then.
        let _ = reply.send(answer);
    });
    (status, finish)
}

fn fail<T>(reply: Reply<T>, e: &StoreError) {
    let _ = reply.send(Err(dup(e)));
}

impl Request {
    /// Requests of several statements run inside a savepoint so they undo as one.
    fn multi_statement(&self) -> bool {
        matches!(
            self,
            Request::ClaimFlush { .. }
                | Request::Requeue(..)
                | Request::Record(..)
                | Request::CompleteJob(..)
                | Request::CompactLedger(..)
                | Request::Own(..)
                | Request::PriceBatch { .. }
        )
    }

    fn fail(self, e: &StoreError) {
        match self {
            Request::Enqueue(_, r) => fail(r, e),
            Request::ClaimFlush { reply, .. } => fail(reply, e),
            Request::UpdateFlush { reply, .. } => fail(reply, e),
            Request::LeaseFlushes { reply, .. } => fail(reply, e),
            Request::Requeue(_, r) => fail(r, e),
            Request::ClaimFallback { reply, .. } => fail(reply, e),
            Request::HoldFlush { reply, .. } => fail(reply, e),
            Request::RenewFallback { reply, .. } => fail(reply, e),
            Request::CompleteJob(_, _, _, r) => fail(r, e),
            Request::Record(_, r) => fail(r, e),
            Request::Purge(_, _, r) => fail(r, e),
            Request::CompactLedger(_, r) => fail(r, e),
            Request::Probe(_, r) => fail(r, e),
            Request::Own(_, r) => fail(r, e),
            Request::CheckBatchAt { reply, .. } => fail(reply, e),
            Request::PriceBatch { reply, .. } => fail(reply, e),
        }
    }

    async fn run(self, conn: &mut SqliteConnection) -> (Status, Finish) {
        match self {
            Request::Enqueue(job, r) => settle(r, enqueue(conn, job).await),
            Request::ClaimFlush {
                flush,
                job_ids,
                owner,
                lease_until_ms,
                reply,
            } => settle(
                reply,
                claim_flush(conn, flush, &job_ids, &owner, lease_until_ms).await,
            ),
            Request::UpdateFlush {
                flush_id,
                update,
                reply,
            } => settle(reply, update_flush(conn, &flush_id, update).await),
            Request::LeaseFlushes {
                owner,
                now_ms,
                lease_until_ms,
                reply,
            } => settle(
                reply,
                lease_flushes(conn, &owner, now_ms, lease_until_ms).await,
            ),
            Request::Requeue(ids, r) => settle(r, requeue(conn, &ids).await),
            Request::ClaimFallback {
                job_id,
                now_ms,
                lease_until_ms,
                reply,
            } => settle(
                reply,
                claim_fallback(conn, &job_id, now_ms, lease_until_ms).await,
            ),
            Request::HoldFlush {
                flush_id,
                owner,
                now_ms,
                lease_until_ms,
                reply,
            } => settle(
                reply,
                hold_flush(conn, &flush_id, &owner, now_ms, lease_until_ms).await,
            ),
            Request::RenewFallback {
                job_id,
                held_until_ms,
                lease_until_ms,
                reply,
            } => settle(
                reply,
                renew_fallback(conn, &job_id, held_until_ms, lease_until_ms).await,
            ),
            Request::CompleteJob(id, result, entry, r) => {
                settle(r, complete_job(conn, &id, result, entry).await)
            }
            Request::Record(rows, r) => settle(r, record(conn, &rows).await),
            Request::Purge(before_ms, kept, r) => settle(r, purge(conn, before_ms, kept).await),
            Request::CompactLedger(before_ms, r) => {
                settle(r, compact_ledger(conn, before_ms).await)
            }
            Request::Probe(at_ms, r) => settle(r, probe(conn, at_ms).await),
            Request::Own(o, r) => settle(r, own(conn, &o).await),
            Request::CheckBatchAt {
                provider,
                id,
                at_ms,
                reply,
            } => settle(reply, check_batch_at(conn, provider, &id, at_ms).await),
            Request::PriceBatch {
                provider,
                id,
                now_ms,
                rows,
                reply,
            } => settle(reply, price_batch(conn, provider, &id, now_ms, &rows).await),
        }
    }
}

/// The writer task: owns the connection (reconnecting after a failed group) until every
/// sender is gone, or until `stop`: then the channel is closed to new writes, what is
/// already queued is still committed, and the connection closed.
pub(super) async fn run(
    options: SqliteConnectOptions,
    conn: SqliteConnection,
    mut rx: mpsc::Receiver<Request>,
    commits: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut conn = Some(conn);
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut closed = false;
    loop {
        let received = if closed {
            rx.recv_many(&mut group, MAX_GROUP).await
        } else {
            tokio::select! {
                biased;
                n = rx.recv_many(&mut group, MAX_GROUP) => n,
                _ = stop.cancelled() => {
                    // New writes fail from now on; those already queued are still committed.
                    rx.close();
                    closed = true;
                    continue;
                }
            }
        };
        if received == 0 {
            break;
        }
        let batch = std::mem::take(&mut group);
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match options.connect().await {
                Ok(c) => conn.insert(c),
                Err(e) => {
                    let e = db_error(e);
                    tracing::warn!(error = %e, "store writer cannot reconnect");
                    batch.into_iter().for_each(|r| r.fail(&e));
                    continue;
                }
            },
        };
        if let Err(e) = commit_group(c, batch, &commits).await {
            tracing::warn!(error = %e, "store group commit failed; reconnecting");
            if let Some(c) = conn.take() {
                let _ = c.close().await;
            }
        }
    }
    if let Some(c) = conn {
        let _ = c.close().await;
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &str) -> Result<()> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(db_error)
}

/// Runs a group in one transaction and answers it. `Err` when the transaction failed
/// (every request has been answered with the error).
async fn commit_group(
    conn: &mut SqliteConnection,
    batch: Vec<Request>,
    commits: &AtomicU64,
) -> Result<()> {
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE").await {
        batch.into_iter().for_each(|r| r.fail(&e));
        return Err(e);
    }
    let mut finishes: Vec<Finish> = Vec::with_capacity(batch.len());
    let mut pending = batch.into_iter();
    let mut fatal = None;
    for request in pending.by_ref() {
        let savepoint = request.multi_statement();
        if savepoint {
            if let Err(e) = exec(conn, "SAVEPOINT request").await {
                request.fail(&e);
                fatal = Some(e);
                break;
            }
        }
        let (status, finish) = request.run(conn).await;
        finishes.push(finish);
        let undone = match status {
            Status::Ok if savepoint => exec(conn, "RELEASE request").await,
            Status::Ok => Ok(()),
            Status::Failed if savepoint => match exec(conn, "ROLLBACK TO request").await {
                Ok(()) => exec(conn, "RELEASE request").await,
                Err(e) => Err(e),
            },
            Status::Failed => Ok(()),
            Status::Fatal(e) => Err(e),
        };
        if let Err(e) = undone {
            fatal = Some(e);
            break;
        }
    }
    let outcome = match fatal {
        Some(e) => Err(e),
        None => exec(conn, "COMMIT").await,
    };
    match outcome {
        Ok(()) => {
            commits.fetch_add(1, Ordering::Relaxed);
            finishes.into_iter().for_each(|f| f(None));
            Ok(())
        }
        Err(e) => {
            let _ = exec(conn, "ROLLBACK").await;
            finishes.into_iter().for_each(|f| f(Some(&e)));
            pending.for_each(|r| r.fail(&e));
            Err(e)
        }
    }
}

async fn enqueue(conn: &mut SqliteConnection, job: NewJob) -> Result<Enqueued> {
    if let Some(key) = &job.idempotency_key {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE client = ? AND idempotency_key = ? \
             AND created_at_ms > ? ORDER BY created_at_ms DESC LIMIT 1"
        );
        let existing = sqlx::query(&sql)
            .bind(&job.client)
            .bind(key)
            .bind(job.created_at_ms.saturating_sub(IDEMPOTENCY_WINDOW_MS))
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_error)?;
        if let Some(row) = existing {
            return Ok(Enqueued::Existing(Box::new(rows::job(&row)?)));
        }
    }
    sqlx::query(
        "INSERT INTO jobs (id, client, route, idempotency_key, provider, endpoint, model, \
         body, stream, tier, prefix, created_at_ms, deadline_ms, state, retry_key) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&job.id)
    .bind(&job.client)
    .bind(&job.route)
    .bind(&job.idempotency_key)
    .bind(job.provider.as_str())
    .bind(job.endpoint.path())
    .bind(&job.model)
    .bind(job.body.as_ref())
    .bind(job.stream)
    .bind(job.tier.as_str())
    .bind(&job.prefix)
    .bind(job.created_at_ms)
    .bind(job.deadline_ms)
    .bind(JobState::Queued.as_str())
    .bind(&job.retry_key)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(Enqueued::Created)
}

async fn claim_flush(
    conn: &mut SqliteConnection,
    flush: NewFlush,
    job_ids: &[String],
    owner: &str,
    lease_until_ms: i64,
) -> Result<Vec<String>> {
    sqlx::query(
        "INSERT INTO flushes (id, provider, endpoint, model, state, job_count, \
         created_at_ms, owner, lease_until_ms, next_poll_at_ms, create_attempts) \
         VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?, 0)",
    )
    .bind(&flush.id)
    .bind(flush.provider.as_str())
    .bind(flush.endpoint.path())
    .bind(&flush.model)
    .bind(FlushState::Claimed.as_str())
    .bind(flush.created_at_ms)
    .bind(owner)
    .bind(lease_until_ms)
    .bind(flush.created_at_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let mut claimed = Vec::with_capacity(job_ids.len());
    for id in job_ids {
        let pos = i64::try_from(claimed.len()).unwrap_or(i64::MAX);
        let done = sqlx::query(
            "UPDATE jobs SET state = 'batched', flush_id = ?, flush_pos = ? \
             WHERE id = ? AND state = 'queued'",
        )
        .bind(&flush.id)
        .bind(pos)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
        if done.rows_affected() == 1 {
            claimed.push(id.clone());
        }
    }
    if claimed.is_empty() {
        sqlx::query("DELETE FROM flushes WHERE id = ?")
            .bind(&flush.id)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    } else {
        sqlx::query("UPDATE flushes SET job_count = ? WHERE id = ?")
            .bind(i64::try_from(claimed.len()).unwrap_or(i64::MAX))
            .bind(&flush.id)
            .execute(&mut *conn)
            .await
            .map_err(db_error)?;
    }
    Ok(claimed)
}

async fn update_flush(conn: &mut SqliteConnection, flush_id: &str, u: FlushUpdate) -> Result<()> {
    sqlx::query(
        "UPDATE flushes SET state = COALESCE(?, state), file_id = COALESCE(?, file_id), \
         batch_id = COALESCE(?, batch_id), upstream_status = COALESCE(?, upstream_status), \
         submitted_at_ms = COALESCE(?, submitted_at_ms), \
         ended_at_ms = COALESCE(?, ended_at_ms), \
         next_poll_at_ms = COALESCE(?, next_poll_at_ms), \
         create_attempts = COALESCE(?, create_attempts) WHERE id = ?",
    )
    .bind(u.state.map(FlushState::as_str))
    .bind(u.file_id)
    .bind(u.batch_id)
    .bind(u.upstream_status)
    .bind(u.submitted_at_ms)
    .bind(u.ended_at_ms)
    .bind(u.next_poll_at_ms)
    .bind(u.create_attempts.map(i64::from))
    .bind(flush_id)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn lease_flushes(
    conn: &mut SqliteConnection,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Vec<Flush>> {
    let sql = format!(
        "UPDATE flushes SET owner = ?, lease_until_ms = ? \
         WHERE state <> 'ended' AND (owner = ? OR lease_until_ms < ?) RETURNING {FLUSH_COLUMNS}"
    );
    let found = sqlx::query(&sql)
        .bind(owner)
        .bind(lease_until_ms)
        .bind(owner)
        .bind(now_ms)
        .fetch_all(&mut *conn)
        .await
        .map_err(db_error)?;
    let mut flushes = found.iter().map(rows::flush).collect::<Result<Vec<_>>>()?;
    flushes.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
    Ok(flushes)
}

async fn requeue(conn: &mut SqliteConnection, job_ids: &[String]) -> Result<()> {
    for id in job_ids {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', flush_id = NULL, flush_pos = NULL \
             WHERE id = ? AND state = 'batched'",
        )
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    }
    Ok(())
}

async fn claim_fallback(
    conn: &mut SqliteConnection,
    job_id: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<bool> {
    // A fallback whose lease lapsed was lost with its replica (or handed back): retake it.
    let done = sqlx::query(
        "UPDATE jobs SET state = 'fallback', fallback_until_ms = ? WHERE id = ? AND \
         (state IN ('queued', 'batched') OR (state = 'fallback' AND \
         (fallback_until_ms IS NULL OR fallback_until_ms < ?)))",
    )
    .bind(lease_until_ms)
    .bind(job_id)
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() == 1)
}

async fn hold_flush(
    conn: &mut SqliteConnection,
    flush_id: &str,
    owner: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<bool> {
    // Compare-and-set on owner and lease (see `Store::hold_flush`).
    let done = sqlx::query(
        "UPDATE flushes SET lease_until_ms = ? WHERE id = ? AND owner = ? \
         AND lease_until_ms >= ? AND state <> 'ended'",
    )
    .bind(lease_until_ms)
    .bind(flush_id)
    .bind(owner)
    .bind(now_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() == 1)
}

async fn renew_fallback(
    conn: &mut SqliteConnection,
    job_id: &str,
    held_until_ms: i64,
    lease_until_ms: i64,
) -> Result<bool> {
    // Compare-and-set on the lease: a replica that retook the job holds another value.
    let done = sqlx::query(
        "UPDATE jobs SET fallback_until_ms = ? WHERE id = ? AND state = 'fallback' \
         AND fallback_until_ms = ?",
    )
    .bind(lease_until_ms)
    .bind(job_id)
    .bind(held_until_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(done.rows_affected() == 1)
}

async fn complete_job(
    conn: &mut SqliteConnection,
    job_id: &str,
    r: JobResult,
    entry: Option<LedgerEntry>,
) -> Result<bool> {
    let usage = r.usage;
    let done = sqlx::query(
        "UPDATE jobs SET state = 'done', result_status = ?, result_body = ?, answered_by = ?, \
         usage_input_tokens = ?, usage_cached_input_tokens = ?, \
         usage_cache_write_5m_tokens = ?, usage_cache_write_1h_tokens = ?, \
         usage_output_tokens = ?, completed_at_ms = ? WHERE id = ? AND state <> 'done'",
    )
    .bind(i64::from(r.status))
    .bind(r.body.as_ref())
    .bind(r.answered_by.as_str())
    .bind(usage.map(|u| count(u.input_tokens)))
    .bind(usage.map(|u| count(u.cached_input_tokens)))
    .bind(usage.map(|u| count(u.cache_write_5m_tokens)))
    .bind(usage.map(|u| count(u.cache_write_1h_tokens)))
    .bind(usage.map(|u| count(u.output_tokens)))
    .bind(r.completed_at_ms)
    .bind(job_id)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    let won = done.rows_affected() == 1;
    // The answer and its ledger entry commit together: a crash cannot keep one without the other.
    if let (true, Some(e)) = (won, entry) {
        record(conn, &[LedgerRow::of(&e)]).await?;
    }
    Ok(won)
}

/// Ledger rows per statement: 22 parameters each, well under SQLite's limit of 32,766
/// bound parameters. One statement is one round trip to SQLite's worker thread.
const LEDGER_ROWS_PER_INSERT: usize = 256;

/// The sums added to a row that exists: the upsert of [`record`] and the fold of
/// [`compact_ledger`].
const ADD_SUMS: &str = " ON CONFLICT (bucket_ms, route, client, provider, model, tier) DO UPDATE SET \
     width_ms = MAX(width_ms, excluded.width_ms), requests = requests + excluded.requests, errors = errors + excluded.errors, \
     input_tokens = input_tokens + excluded.input_tokens, \
     cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens, \
     cache_write_5m_tokens = cache_write_5m_tokens + excluded.cache_write_5m_tokens, \
     cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens, \
     output_tokens = output_tokens + excluded.output_tokens, \
     cost_usd = cost_usd + excluded.cost_usd, \
     baseline_usd = baseline_usd + excluded.baseline_usd, \
     savings_batch_usd = savings_batch_usd + excluded.savings_batch_usd, \
     savings_flex_usd = savings_flex_usd + excluded.savings_flex_usd, \
     savings_prompt_cache_usd = savings_prompt_cache_usd + excluded.savings_prompt_cache_usd, \
     savings_response_cache_usd = savings_response_cache_usd + excluded.savings_response_cache_usd, \
     wasted_requests = wasted_requests + excluded.wasted_requests, \
     wasted_usd = wasted_usd + excluded.wasted_usd";

const LEDGER_COLUMNS: &str = "bucket_ms, width_ms, route, client, provider, model, tier, requests, errors, \
     input_tokens, cached_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens, \
     output_tokens, cost_usd, baseline_usd, savings_batch_usd, savings_flex_usd, \
     savings_prompt_cache_usd, savings_response_cache_usd, wasted_requests, wasted_usd";

async fn record(conn: &mut SqliteConnection, rows: &[LedgerRow]) -> Result<()> {
    for chunk in rows.chunks(LEDGER_ROWS_PER_INSERT) {
        let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(format!(
            "INSERT INTO ledger_rollup ({LEDGER_COLUMNS}) "
        ));
        q.push_values(chunk, |mut b, LedgerRow { key: k, sums: s }| {
            b.push_bind(k.bucket_ms)
                .push_bind(MINUTE_MS)
                .push_bind(k.route.as_str())
                .push_bind(k.client.as_str())
                .push_bind(k.provider.as_str())
                .push_bind(k.model.as_str())
                .push_bind(k.tier.as_str())
                .push_bind(count(s.requests))
                .push_bind(count(s.errors))
                .push_bind(count(s.input_tokens))
                .push_bind(count(s.cached_input_tokens))
                .push_bind(count(s.cache_write_5m_tokens))
                .push_bind(count(s.cache_write_1h_tokens))
                .push_bind(count(s.output_tokens))
                .push_bind(s.cost_usd)
                .push_bind(s.baseline_usd)
                .push_bind(s.savings_usd[0])
                .push_bind(s.savings_usd[1])
                .push_bind(s.savings_usd[2])
                .push_bind(s.savings_usd[3])
                .push_bind(count(s.wasted_requests))
                .push_bind(s.wasted_usd);
        });
        q.push(ADD_SUMS);
        q.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

/// Minute rows before `before_ms` become their hour's row (the row at the hour's start,
/// which a minute row may already be), in one savepoint.
async fn compact_ledger(conn: &mut SqliteConnection, before_ms: i64) -> Result<u64> {
    const NOT_HOUR: &str = "bucket_ms < ? AND bucket_ms % 3600000 <> 0";
    let fold = format!(
        "INSERT INTO ledger_rollup ({LEDGER_COLUMNS}) \
         SELECT (bucket_ms / 3600000) * 3600000, 3600000, route, client, provider, model, tier, \
         SUM(requests), SUM(errors), SUM(input_tokens), SUM(cached_input_tokens), \
         SUM(cache_write_5m_tokens), SUM(cache_write_1h_tokens), SUM(output_tokens), \
         TOTAL(cost_usd), TOTAL(baseline_usd), TOTAL(savings_batch_usd), \
         TOTAL(savings_flex_usd), TOTAL(savings_prompt_cache_usd), \
         TOTAL(savings_response_cache_usd), SUM(wasted_requests), TOTAL(wasted_usd) \
         FROM ledger_rollup WHERE {NOT_HOUR} \
         GROUP BY (bucket_ms / 3600000) * 3600000, route, client, provider, model, tier\
         {ADD_SUMS}"
    );
    sqlx::query(&fold)
        .bind(before_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let gone = sqlx::query(&format!("DELETE FROM ledger_rollup WHERE {NOT_HOUR}"))
        .bind(before_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(gone.rows_affected())
}

async fn purge(conn: &mut SqliteConnection, before_ms: i64, turnarounds_kept: u32) -> Result<u64> {
    let done = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND completed_at_ms < ?")
        .bind(before_ms)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let flushes = sqlx::query(crate::store::PURGE_FLUSHES)
        .bind(before_ms)
        .bind(i64::from(turnarounds_kept))
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(done.rows_affected() + flushes.rows_affected())
}

async fn probe(conn: &mut SqliteConnection, at_ms: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO probe (id, at_ms) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
    )
    .bind(at_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

/// The first record of an object wins: a later one (another client, or a retry) changes
/// nothing and is told the owner.
async fn own(conn: &mut SqliteConnection, o: &Owned) -> Result<String> {
    let inserted = sqlx::query(
        "INSERT INTO owned_objects (provider, kind, id, client, route, created_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (provider, kind, id) DO NOTHING",
    )
    .bind(o.provider.as_str())
    .bind(o.kind.as_str())
    .bind(&o.id)
    .bind(&o.client)
    .bind(&o.route)
    .bind(o.created_at_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    if inserted.rows_affected() == 1 {
        return Ok(o.client.clone());
    }
    let row =
        sqlx::query("SELECT client FROM owned_objects WHERE provider = ? AND kind = ? AND id = ?")
            .bind(o.provider.as_str())
            .bind(o.kind.as_str())
            .bind(&o.id)
            .fetch_one(&mut *conn)
            .await
            .map_err(db_error)?;
    rows::string_column(&row, "client")
}

async fn check_batch_at(
    conn: &mut SqliteConnection,
    provider: Provider,
    id: &str,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "UPDATE owned_objects SET next_check_at_ms = ? \
         WHERE provider = ? AND kind = ? AND id = ?",
    )
    .bind(at_ms)
    .bind(provider.as_str())
    .bind(ObjectKind::Batch.as_str())
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn price_batch(
    conn: &mut SqliteConnection,
    provider: Provider,
    id: &str,
    now_ms: i64,
    rows: &[LedgerRow],
) -> Result<bool> {
    // Compare-and-set on the mark; the ledger rows commit with it (this request's savepoint)
    // or not at all, so a batch is priced once even when several replicas see it end.
    let done = sqlx::query(
        "UPDATE owned_objects SET priced_at_ms = ? \
         WHERE provider = ? AND kind = ? AND id = ? AND priced_at_ms IS NULL",
    )
    .bind(now_ms)
    .bind(provider.as_str())
    .bind(ObjectKind::Batch.as_str())
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    if done.rows_affected() != 1 {
        return Ok(false);
    }
    record(conn, rows).await?;
    Ok(true)
}
