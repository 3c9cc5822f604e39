//! The PostgreSQL store: one database shared by every gateway replica, through a
//! connection pool per replica. Each trait call is one statement or one transaction; the
//! database serializes the replicas:
//! - claims (`claim_flush`, `lease_flushes`) lock their candidate rows with
//!   `FOR UPDATE SKIP LOCKED`, so two replicas never wait on (or both take) the same row;
//! - compare-and-set updates (`claim_fallback`, `renew_fallback`, `complete_job`,
//!   `requeue`, `price_batch`) put the expected state in their `WHERE`: under READ
//!   COMMITTED a racing update waits for the row lock, then re-checks the condition on the
//!   committed row;
//! - an idempotency key is a primary-key row that a concurrent enqueue of the same key
//!   waits on (see `migrations/postgres/0001_init.sql`).
//!
//! There is no write queue to batch in: every write commits when its call returns, and
//! concurrent calls run on separate connections.
//!
//! Schema: `migrations/postgres/` (embedded; versions recorded in `_sqlx_migrations` in the
//! connection's schema, so `options[search_path]=...` in the URL selects another one).

mod rows;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use self::rows::{FLUSH_COLUMNS, JOB_COLUMNS, OWNED_COLUMNS, count, db_error, migrate_error};
use super::ledger::{LedgerKey, LedgerRow, LedgerSums, MINUTE_MS};
use super::{
    Census, CompletionFeed, Enqueued, Flush, FlushState, FlushUpdate, IDEMPOTENCY_WINDOW_MS, Job,
    JobResult, LedgerEntry, NewFlush, NewJob, ObjectKind, Owned, QueuedJob, ReportRow, Result,
    Store, StoreError, Turnarounds,
};
use crate::types::Provider;

/// Connections per replica: enough for the accumulator, the poller, the watchdog and a
/// burst of enqueues at once, while a handful of replicas stay well under the server's
/// default `max_connections` (100).
const MAX_CONNECTIONS: u32 = 10;
/// How long a call waits for a pooled connection (or a new one) before failing as
/// `Unavailable`: a lost database shows in readiness instead of hanging requests.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `open` waits for the first connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub struct PostgresStore {
    pool: PgPool,
}

/// The `NOTIFY` channel of completed job ids (payload: the id).
const COMPLETIONS_CHANNEL: &str = "sluice_job_done";

/// A `LISTEN` connection of its own (outside the pool), reconnected by sqlx when lost:
/// notifications sent meanwhile are missed, which the sweep makes good.
struct Feed(PgListener);

#[async_trait]
impl CompletionFeed for Feed {
    async fn next(&mut self) -> Result<String> {
        let n = self.0.recv().await.map_err(db_error)?;
        Ok(n.payload().to_owned())
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("connections", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Opens the database `url` names (`postgres://` or `postgresql://`, libpq-style
    /// parameters) and brings its schema up to date. Several replicas may open one
    /// database at once: sqlx's migrator serializes them with an advisory lock.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        let lower = url.to_ascii_lowercase();
        if !(lower.starts_with("postgres://") || lower.starts_with("postgresql://")) {
            return Err(StoreError::UnsupportedUrl(format!(
                "{:?} is not a postgres:// URL",
                super::redacted(url)
            )));
        }
        let shown = super::redacted(url);
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(format!("{shown:?}: {e}")))?;

        // One plain connection first: a wrong host, password or database fails here at once
        // with the server's reason, instead of as a pool timeout after retries.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!(
                    "{shown:?}: no connection within {CONNECT_TIMEOUT:?}"
                ))
            })?
            .map_err(|e| match db_error(e) {
                StoreError::Unavailable(m) => StoreError::Unavailable(format!("{shown:?}: {m}")),
                StoreError::Query(m) => StoreError::Unavailable(format!("{shown:?}: {m}")),
                other => other,
            })?;
        let _ = probe.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(options);
        if let Err(e) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(migrate_error(e));
        }
        Ok(PostgresStore { pool })
    }
}

/// Sums `b` into `a`.
fn add_sums(a: &mut LedgerSums, b: &LedgerSums) {
    a.requests += b.requests;
    a.errors += b.errors;
    a.input_tokens += b.input_tokens;
    a.cached_input_tokens += b.cached_input_tokens;
    a.cache_write_5m_tokens += b.cache_write_5m_tokens;
    a.cache_write_1h_tokens += b.cache_write_1h_tokens;
    a.output_tokens += b.output_tokens;
    a.cost_usd += b.cost_usd;
    a.baseline_usd += b.baseline_usd;
    for (s, v) in a.savings_usd.iter_mut().zip(b.savings_usd) {
        *s += v;
    }
    a.wasted_requests += b.wasted_requests;
    a.wasted_usd += b.wasted_usd;
}

/// `rows` with one row per key, sorted by key. One `INSERT ... ON CONFLICT DO UPDATE`
/// may not touch a row twice, and writers that lock rows in the same order cannot
/// deadlock each other.
fn merged(rows: &[LedgerRow]) -> Vec<(&LedgerKey, LedgerSums)> {
    let mut index: HashMap<&LedgerKey, usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<(&LedgerKey, LedgerSums)> = Vec::with_capacity(rows.len());
    for row in rows {
        match index.get(&row.key) {
            Some(&i) => add_sums(&mut out[i].1, &row.sums),
            None => {
                index.insert(&row.key, out.len());
                out.push((&row.key, row.sums));
            }
        }
    }
    out.sort_by(|(a, _), (b, _)| sort_key(a).cmp(&sort_key(b)));
    out
}

fn sort_key(k: &LedgerKey) -> (i64, &str, &str, &str, &str, &str) {
    (
        k.bucket_ms,
        &k.route,
        &k.client,
        k.provider.as_str(),
        &k.model,
        k.tier.as_str(),
    )
}

const LEDGER_COLUMNS: &str = "bucket_ms, width_ms, route, client, provider, model, tier, \
     requests, errors, input_tokens, cached_input_tokens, cache_write_5m_tokens, \
     cache_write_1h_tokens, output_tokens, cost_usd, baseline_usd, savings_batch_usd, \
     savings_flex_usd, savings_prompt_cache_usd, savings_response_cache_usd, \
     wasted_requests, wasted_usd";

/// The sums added to a row that exists (target aliased `l`): the upsert of [`record`] and
/// the fold of `compact_ledger`.
const ADD_SUMS: &str = " ON CONFLICT (bucket_ms, route, client, provider, model, tier) DO UPDATE SET \
     width_ms = GREATEST(l.width_ms, excluded.width_ms), \
     requests = l.requests + excluded.requests, errors = l.errors + excluded.errors, \
     input_tokens = l.input_tokens + excluded.input_tokens, \
     cached_input_tokens = l.cached_input_tokens + excluded.cached_input_tokens, \
     cache_write_5m_tokens = l.cache_write_5m_tokens + excluded.cache_write_5m_tokens, \
     cache_write_1h_tokens = l.cache_write_1h_tokens + excluded.cache_write_1h_tokens, \
     output_tokens = l.output_tokens + excluded.output_tokens, \
     cost_usd = l.cost_usd + excluded.cost_usd, \
     baseline_usd = l.baseline_usd + excluded.baseline_usd, \
     savings_batch_usd = l.savings_batch_usd + excluded.savings_batch_usd, \
     savings_flex_usd = l.savings_flex_usd + excluded.savings_flex_usd, \
     savings_prompt_cache_usd = l.savings_prompt_cache_usd + excluded.savings_prompt_cache_usd, \
     savings_response_cache_usd = l.savings_response_cache_usd + excluded.savings_response_cache_usd, \
     wasted_requests = l.wasted_requests + excluded.wasted_requests, \
     wasted_usd = l.wasted_usd + excluded.wasted_usd";

/// Adds ledger rows in one statement, whatever their number: each column is bound as one
/// array and `UNNEST` turns the arrays back into rows.
async fn record(conn: &mut PgConnection, rows: &[LedgerRow]) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let rows = merged(rows);
    let n = rows.len();
    let mut bucket = Vec::with_capacity(n);
    let (mut route, mut client, mut provider, mut model, mut tier) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let mut counts: [Vec<i64>; 8] = Default::default();
    let mut money: [Vec<f64>; 7] = Default::default();
    for (k, s) in &rows {
        bucket.push(k.bucket_ms);
        route.push(k.route.as_str());
        client.push(k.client.as_str());
        provider.push(k.provider.as_str());
        model.push(k.model.as_str());
        tier.push(k.tier.as_str());
        for (column, v) in counts.iter_mut().zip([
            s.requests,
            s.errors,
            s.input_tokens,
            s.cached_input_tokens,
            s.cache_write_5m_tokens,
            s.cache_write_1h_tokens,
            s.output_tokens,
            s.wasted_requests,
        ]) {
            column.push(count(v));
        }
        for (column, v) in money.iter_mut().zip([
            s.cost_usd,
            s.baseline_usd,
            s.savings_usd[0],
            s.savings_usd[1],
            s.savings_usd[2],
            s.savings_usd[3],
            s.wasted_usd,
        ]) {
            column.push(v);
        }
    }
    let sql = format!(
        "INSERT INTO ledger_rollup AS l ({LEDGER_COLUMNS}) \
         SELECT b, $22::bigint, r, c, p, m, ti, n0, n1, n2, n3, n4, n5, n6, u0, u1, u2, u3, u4, u5, n7, u6 \
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
         $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], \
         $13::bigint[], $14::bigint[], $15::float8[], $16::float8[], $17::float8[], \
         $18::float8[], $19::float8[], $20::float8[], $21::float8[]) WITH ORDINALITY \
         AS t(b, r, c, p, m, ti, n0, n1, n2, n3, n4, n5, n6, n7, u0, u1, u2, u3, u4, u5, u6, ord) \
         ORDER BY ord{ADD_SUMS}"
    );
    let mut q = sqlx::query(&sql)
        .bind(bucket)
        .bind(route)
        .bind(client)
        .bind(provider)
        .bind(model)
        .bind(tier);
    for column in counts {
        q = q.bind(column);
    }
    for column in money {
        q = q.bind(column);
    }
    q.bind(MINUTE_MS)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let insert = sqlx::query(
            "INSERT INTO jobs (id, client, route, idempotency_key, provider, endpoint, model, \
             body, stream, tier, prefix, created_at_ms, deadline_ms, state, retry_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'queued', $14)",
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
        .bind(&job.retry_key);
        let Some(key) = &job.idempotency_key else {
            insert.execute(&self.pool).await.map_err(db_error)?;
            return Ok(Enqueued::Created);
        };
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // The key first: a concurrent enqueue of the same key (on any replica) blocks on
        // this row until we commit, then finds the job it names. A key older than the
        // window is taken over by the new job.
        let taken = sqlx::query(
            "INSERT INTO idempotency_keys AS k (client, key, job_id, created_at_ms) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (client, key) DO UPDATE \
             SET job_id = excluded.job_id, created_at_ms = excluded.created_at_ms \
             WHERE k.created_at_ms <= excluded.created_at_ms - $5 RETURNING k.job_id",
        )
        .bind(&job.client)
        .bind(key)
        .bind(&job.id)
        .bind(job.created_at_ms)
        .bind(IDEMPOTENCY_WINDOW_MS)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error)?;
        if taken.is_some() {
            insert.execute(&mut *tx).await.map_err(db_error)?;
            tx.commit().await.map_err(db_error)?;
            return Ok(Enqueued::Created);
        }
        // Still inside the window: the key row is locked by the upsert above, so its job
        // cannot be purged before we read it. Nothing was written.
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = \
             (SELECT job_id FROM idempotency_keys WHERE client = $1 AND key = $2)"
        );
        let existing = sqlx::query(&sql)
            .bind(&job.client)
            .bind(key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_error)?
            .ok_or_else(|| StoreError::Corrupt(format!("idempotency key {key:?} names no job")))?;
        tx.rollback().await.map_err(db_error)?;
        Ok(Enqueued::Existing(Box::new(rows::job(&existing)?)))
    }

    async fn retried(&self, client: &str, retry_key: &str, since_ms: i64) -> Result<Option<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE client = $1 AND retry_key = $2 \
             AND created_at_ms >= $3 ORDER BY created_at_ms DESC, seq DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(client)
            .bind(retry_key)
            .bind(since_ms)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::job).transpose()
    }

    async fn job(&self, id: &str) -> Result<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::job).transpose()
    }

    async fn job_body(&self, id: &str) -> Result<Option<Bytes>> {
        let row = sqlx::query("SELECT body FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::body).transpose()
    }

    async fn queued(&self) -> Result<Vec<QueuedJob>> {
        let found = sqlx::query(
            "SELECT id, route, provider, endpoint, model, octet_length(body)::bigint AS body_bytes, \
             prefix, created_at_ms, deadline_ms, tier FROM jobs WHERE state = 'queued' \
             ORDER BY created_at_ms, seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        found.iter().map(rows::queued_job).collect()
    }

    async fn done_among(&self, ids: &[String]) -> Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = sqlx::query("SELECT id FROM jobs WHERE state = 'done' AND id = ANY($1)")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        found.iter().map(|r| rows::string_column(r, "id")).collect()
    }

    async fn completed_since(&self, since_ms: i64) -> Result<Vec<(String, i64)>> {
        let found = sqlx::query(
            "SELECT id, completed_at_ms FROM jobs WHERE state = 'done' AND completed_at_ms >= $1 \
             ORDER BY completed_at_ms, seq",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        found
            .iter()
            .map(|r| {
                Ok((
                    rows::string_column(r, "id")?,
                    rows::i64_column(r, "completed_at_ms")?,
                ))
            })
            .collect()
    }

    async fn due_before(&self, before_ms: i64) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state <> 'done' AND deadline_ms <= $1 \
             ORDER BY deadline_ms, seq"
        );
        let found = sqlx::query(&sql)
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        found.iter().map(rows::job).collect()
    }

    async fn claim_flush(
        &self,
        flush: NewFlush,
        job_ids: &[String],
        owner: &str,
        lease_until_ms: i64,
    ) -> Result<Vec<String>> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        sqlx::query(
            "INSERT INTO flushes (id, provider, endpoint, model, state, job_count, \
             created_at_ms, owner, lease_until_ms, next_poll_at_ms, create_attempts) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $6, 0)",
        )
        .bind(&flush.id)
        .bind(flush.provider.as_str())
        .bind(flush.endpoint.path())
        .bind(&flush.model)
        .bind(FlushState::Claimed.as_str())
        .bind(flush.created_at_ms)
        .bind(owner)
        .bind(lease_until_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        // Jobs another replica is claiming right now are skipped, not waited for: they are
        // about to leave `queued` anyway. Locks are taken in deadline order; positions follow
        // the order given (same-prefix requests adjacent), numbered over the jobs won.
        let claimed = sqlx::query(
            "WITH wanted AS ( \
                 SELECT id, MIN(ord) AS ord FROM UNNEST($1::text[]) WITH ORDINALITY AS w(id, ord) \
                 GROUP BY id \
             ), free AS ( \
                 SELECT j.id, w.ord FROM jobs j JOIN wanted w ON w.id = j.id \
                 WHERE j.state = 'queued' ORDER BY j.deadline_ms, j.seq \
                 FOR UPDATE OF j SKIP LOCKED \
             ), numbered AS ( \
                 SELECT id, row_number() OVER (ORDER BY ord) - 1 AS pos FROM free \
             ) \
             UPDATE jobs SET state = 'batched', flush_id = $2, flush_pos = numbered.pos \
             FROM numbered WHERE jobs.id = numbered.id \
             RETURNING jobs.id, jobs.flush_pos",
        )
        .bind(job_ids)
        .bind(&flush.id)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        let mut claimed = claimed
            .iter()
            .map(|r| {
                Ok((
                    rows::i64_column(r, "flush_pos")?,
                    rows::string_column(r, "id")?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        claimed.sort();
        if claimed.is_empty() {
            // Nothing won: no flush is left behind.
            tx.rollback().await.map_err(db_error)?;
            return Ok(Vec::new());
        }
        sqlx::query("UPDATE flushes SET job_count = $1 WHERE id = $2")
            .bind(i64::try_from(claimed.len()).unwrap_or(i64::MAX))
            .bind(&flush.id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(claimed.into_iter().map(|(_, id)| id).collect())
    }

    async fn flush_bodies(
        &self,
        flush_id: &str,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<(u32, String, Bytes)>> {
        let found = sqlx::query(
            "SELECT flush_pos, id, body FROM jobs WHERE flush_id = $1 AND flush_pos > $2 \
             ORDER BY flush_pos LIMIT $3",
        )
        .bind(flush_id)
        .bind(after.map_or(-1, i64::from))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        found.iter().map(rows::flush_body).collect()
    }

    async fn flush_open_jobs(&self, flush_id: &str) -> Result<Vec<String>> {
        let found = sqlx::query(
            "SELECT id FROM jobs WHERE flush_id = $1 AND state <> 'done' ORDER BY flush_pos",
        )
        .bind(flush_id)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        found.iter().map(|r| rows::string_column(r, "id")).collect()
    }

    async fn update_flush(&self, flush_id: &str, u: FlushUpdate) -> Result<()> {
        sqlx::query(
            "UPDATE flushes SET state = COALESCE($1, state), file_id = COALESCE($2, file_id), \
             batch_id = COALESCE($3, batch_id), upstream_status = COALESCE($4, upstream_status), \
             submitted_at_ms = COALESCE($5, submitted_at_ms), \
             ended_at_ms = COALESCE($6, ended_at_ms), \
             next_poll_at_ms = COALESCE($7, next_poll_at_ms), \
             create_attempts = COALESCE($8, create_attempts) WHERE id = $9",
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
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn flush(&self, flush_id: &str) -> Result<Option<Flush>> {
        let sql = format!("SELECT {FLUSH_COLUMNS} FROM flushes WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(flush_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_error)?;
        row.as_ref().map(rows::flush).transpose()
    }

    async fn batch_recorded(&self, batch_id: &str) -> Result<bool> {
        let row = sqlx::query("SELECT 1 FROM flushes WHERE batch_id = $1 LIMIT 1")
            .bind(batch_id)
            .fetch_optional(&self.pool)
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
        // A lapsed flush two replicas reach for at once is locked by one and skipped by the
        // other; one that was retaken after this statement's snapshot is re-checked on its
        // new row (owner and lease no longer match) and left alone. Oldest leases are locked
        // first. A flush of our own that a call of ours is updating right now is skipped
        // too, and simply renewed on the next round, well within its lease.
        let sql = format!(
            "WITH due AS ( \
                 SELECT id FROM flushes WHERE state <> 'ended' \
                 AND (owner = $1 OR lease_until_ms < $2) \
                 ORDER BY lease_until_ms, id FOR UPDATE SKIP LOCKED \
             ) \
             UPDATE flushes SET owner = $1, lease_until_ms = $3 \
             WHERE id IN (SELECT id FROM due) RETURNING {FLUSH_COLUMNS}"
        );
        let found = sqlx::query(&sql)
            .bind(owner)
            .bind(now_ms)
            .bind(lease_until_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        let mut flushes = found.iter().map(rows::flush).collect::<Result<Vec<_>>>()?;
        flushes.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(flushes)
    }

    async fn hold_flush(
        &self,
        flush_id: &str,
        owner: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        // Compare-and-set on owner and lease: a replica that took the flush over after the
        // lease lapsed wrote its own name, and a lapsed lease may be taken at any moment.
        let done = sqlx::query(
            "UPDATE flushes SET lease_until_ms = $1 WHERE id = $2 AND owner = $3 \
             AND lease_until_ms >= $4 AND state <> 'ended'",
        )
        .bind(lease_until_ms)
        .bind(flush_id)
        .bind(owner)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn requeue(&self, job_ids: &[String]) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'queued', flush_id = NULL, flush_pos = NULL \
             WHERE id = ANY($1) AND state = 'batched'",
        )
        .bind(job_ids)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn claim_fallback(&self, job_id: &str, now_ms: i64, lease_until_ms: i64) -> Result<bool> {
        // A fallback whose lease lapsed was lost with its replica (or handed back): retake it.
        let done = sqlx::query(
            "UPDATE jobs SET state = 'fallback', fallback_until_ms = $1 WHERE id = $2 AND \
             (state IN ('queued', 'batched') OR (state = 'fallback' AND \
             (fallback_until_ms IS NULL OR fallback_until_ms < $3)))",
        )
        .bind(lease_until_ms)
        .bind(job_id)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn renew_fallback(
        &self,
        job_id: &str,
        held_until_ms: i64,
        lease_until_ms: i64,
    ) -> Result<bool> {
        // Compare-and-set on the lease: a replica that retook the job holds another value.
        let done = sqlx::query(
            "UPDATE jobs SET fallback_until_ms = $1 WHERE id = $2 AND state = 'fallback' \
             AND fallback_until_ms = $3",
        )
        .bind(lease_until_ms)
        .bind(job_id)
        .bind(held_until_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(done.rows_affected() == 1)
    }

    async fn complete_job(
        &self,
        job_id: &str,
        r: JobResult,
        ledger: Option<LedgerEntry>,
    ) -> Result<bool> {
        let usage = r.usage;
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        let done = sqlx::query(
            "UPDATE jobs SET state = 'done', result_status = $1, result_body = $2, \
             answered_by = $3, usage_input_tokens = $4, usage_cached_input_tokens = $5, \
             usage_cache_write_5m_tokens = $6, usage_cache_write_1h_tokens = $7, \
             usage_output_tokens = $8, completed_at_ms = $9 WHERE id = $10 AND state <> 'done'",
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
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        // The answer and its ledger entry commit together: a crash cannot keep one without
        // the other.
        if let Some(e) = ledger {
            record(&mut tx, &[LedgerRow::of(&e)]).await?;
        }
        // Delivered to every listening replica when (and only if) the answer commits.
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(COMPLETIONS_CHANNEL)
            .bind(job_id)
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn completion_feed(&self) -> Result<Option<Box<dyn CompletionFeed>>> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(db_error)?;
        listener
            .listen(COMPLETIONS_CHANNEL)
            .await
            .map_err(db_error)?;
        Ok(Some(Box::new(Feed(listener))))
    }

    async fn record(&self, rows: &[LedgerRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        record(&mut conn, rows).await
    }

    async fn report(&self, since_ms: i64) -> Result<Vec<ReportRow>> {
        // `COLLATE "C"`: byte order, as SQLite sorts, whatever the database's locale.
        let found = sqlx::query(
            "SELECT route, client, tier, SUM(requests)::bigint AS requests, \
             SUM(cost_usd) AS cost_usd, SUM(baseline_usd) AS baseline_usd, \
             SUM(savings_batch_usd + savings_flex_usd + savings_prompt_cache_usd \
                 + savings_response_cache_usd) AS savings_usd, \
             SUM(wasted_usd) AS wasted_usd \
             FROM ledger_rollup WHERE bucket_ms + width_ms > $1 GROUP BY route, client, tier \
             ORDER BY route COLLATE \"C\", client COLLATE \"C\", tier COLLATE \"C\"",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        found.iter().map(rows::report_row).collect()
    }

    async fn compact_ledger(&self, before_ms: i64) -> Result<u64> {
        // One statement: the minute rows it deletes are exactly the ones it folds (a
        // concurrent write to one is waited for and folded with it; a row written after
        // its snapshot stays a minute row for the next run), and two replicas compacting
        // at once cannot fold a minute twice. Each hour's first minute is kept as the
        // hour's row.
        let sql = format!(
            "WITH gone AS ( \
                 DELETE FROM ledger_rollup WHERE bucket_ms < $1 AND bucket_ms % 3600000 <> 0 \
                 RETURNING * \
             ), folded AS ( \
                 INSERT INTO ledger_rollup AS l ({LEDGER_COLUMNS}) \
                 SELECT (bucket_ms / 3600000) * 3600000, 3600000, route, client, provider, \
                 model, tier, SUM(requests)::bigint, SUM(errors)::bigint, \
                 SUM(input_tokens)::bigint, SUM(cached_input_tokens)::bigint, \
                 SUM(cache_write_5m_tokens)::bigint, SUM(cache_write_1h_tokens)::bigint, \
                 SUM(output_tokens)::bigint, SUM(cost_usd), SUM(baseline_usd), \
                 SUM(savings_batch_usd), SUM(savings_flex_usd), SUM(savings_prompt_cache_usd), \
                 SUM(savings_response_cache_usd), SUM(wasted_requests)::bigint, SUM(wasted_usd) \
                 FROM gone GROUP BY (bucket_ms / 3600000) * 3600000, route, client, provider, \
                 model, tier \
                 ORDER BY 1, route, client, provider, model, tier{ADD_SUMS} \
             ) \
             SELECT COUNT(*) AS n FROM gone"
        );
        let row = sqlx::query(&sql)
            .bind(before_ms)
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        rows::i64_column(&row, "n").map(|n| n.max(0) as u64)
    }

    async fn ledger_rows(&self) -> Result<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM ledger_rollup")
            .fetch_one(&self.pool)
            .await
            .map_err(db_error)?;
        rows::i64_column(&row, "n").map(|n| n.max(0) as u64)
    }

    async fn turnarounds(&self, provider: Provider, model: &str, limit: u32) -> Result<Vec<i64>> {
        let found = sqlx::query(
            "SELECT ended_at_ms - submitted_at_ms AS turnaround FROM flushes \
             WHERE provider = $1 AND model = $2 AND ended_at_ms IS NOT NULL \
             AND submitted_at_ms IS NOT NULL ORDER BY ended_at_ms DESC, id DESC LIMIT $3",
        )
        .bind(provider.as_str())
        .bind(model)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
             ) AS t WHERE newest <= $1 ORDER BY provider, model, newest",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
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
             WHERE ended_at_ms >= $1 AND submitted_at_ms IS NOT NULL",
        )
        .bind(ended_since_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        rows::census(&found)
    }

    async fn own(&self, o: Owned) -> Result<String> {
        // A concurrent first record of the same object makes the insert wait for it and do
        // nothing; the read after it is a statement of its own, whose snapshot (READ
        // COMMITTED) then holds that record. Records are never deleted, so it is found.
        let inserted = sqlx::query(
            "INSERT INTO owned_objects (provider, kind, id, client, route, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (provider, kind, id) DO NOTHING",
        )
        .bind(o.provider.as_str())
        .bind(o.kind.as_str())
        .bind(&o.id)
        .bind(&o.client)
        .bind(&o.route)
        .bind(o.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        if inserted.rows_affected() == 1 {
            return Ok(o.client);
        }
        match self.owned(o.provider, o.kind, &o.id).await? {
            Some(first) => Ok(first.client),
            None => Err(StoreError::Query(format!(
                "the ownership record of {} {} {:?} vanished",
                o.provider.as_str(),
                o.kind.as_str(),
                o.id
            ))),
        }
    }

    async fn owned(&self, provider: Provider, kind: ObjectKind, id: &str) -> Result<Option<Owned>> {
        let sql = format!(
            "SELECT {OWNED_COLUMNS} FROM owned_objects \
             WHERE provider = $1 AND kind = $2 AND id = $3"
        );
        let row = sqlx::query(&sql)
            .bind(provider.as_str())
            .bind(kind.as_str())
            .bind(id)
            .fetch_optional(&self.pool)
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
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let found = sqlx::query(
            "SELECT id FROM owned_objects WHERE provider = $1 AND kind = $2 AND client = $3 \
             AND id = ANY($4)",
        )
        .bind(provider.as_str())
        .bind(kind.as_str())
        .bind(client)
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(db_error)?;
        found.iter().map(|r| rows::string_column(r, "id")).collect()
    }

    async fn unpriced_batches(&self, now_ms: i64, limit: u32) -> Result<Vec<Owned>> {
        let sql = format!(
            "SELECT {OWNED_COLUMNS} FROM owned_objects \
             WHERE kind = 'batch' AND priced_at_ms IS NULL \
             AND (next_check_at_ms IS NULL OR next_check_at_ms <= $1) \
             ORDER BY next_check_at_ms NULLS FIRST, created_at_ms, \
             provider COLLATE \"C\", id COLLATE \"C\" LIMIT $2"
        );
        let found = sqlx::query(&sql)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_error)?;
        found.iter().map(rows::owned).collect()
    }

    async fn check_batch_at(&self, provider: Provider, id: &str, at_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE owned_objects SET next_check_at_ms = $1 \
             WHERE provider = $2 AND kind = 'batch' AND id = $3",
        )
        .bind(at_ms)
        .bind(provider.as_str())
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }

    async fn price_batch(
        &self,
        provider: Provider,
        id: &str,
        now_ms: i64,
        rows: &[LedgerRow],
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(db_error)?;
        // Compare-and-set on the mark: a racing replica's update waits for this row lock,
        // then re-checks `priced_at_ms IS NULL` on the committed row and changes nothing.
        let done = sqlx::query(
            "UPDATE owned_objects SET priced_at_ms = $1 \
             WHERE provider = $2 AND kind = 'batch' AND id = $3 AND priced_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(provider.as_str())
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_error)?;
        if done.rows_affected() != 1 {
            tx.rollback().await.map_err(db_error)?;
            return Ok(false);
        }
        // The mark and the usage commit together: a crash cannot keep one without the other.
        record(&mut tx, rows).await?;
        tx.commit().await.map_err(db_error)?;
        Ok(true)
    }

    async fn purge(&self, before_ms: i64, turnarounds_kept: u32) -> Result<u64> {
        // A purged job's idempotency key goes with it (ON DELETE CASCADE), as in SQLite
        // where the key is a column of the job.
        let done = sqlx::query("DELETE FROM jobs WHERE state = 'done' AND completed_at_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        let flushes = sqlx::query(super::PURGE_FLUSHES)
            .bind(before_ms)
            .bind(i64::from(turnarounds_kept))
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(done.rows_affected() + flushes.rows_affected())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn close(&self) {
        // Waits for calls in flight to give their connections back (each commits or rolls
        // back on its own); every later call fails with `PoolClosed`, i.e. `Unavailable`.
        self.pool.close().await;
    }

    async fn probe_write(&self, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO probe (id, at_ms) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET at_ms = excluded.at_ms",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(db_error)?;
        Ok(())
    }
}
