//! Row decoding shared by both stores: the same columns, read by name, whichever backend
//! returned the row. Error mapping stays with each backend (its own codes).

use bytes::Bytes;
use sqlx::Row;
use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::{Sqlite, SqliteRow};

use crate::store::{
    Census, EndedFlush, Flush, FlushState, Job, JobResult, JobState, ObjectKind, Owned, QueuedJob,
    ReportRow, StoreError, Turnarounds,
};
use crate::types::{Endpoint, Provider, Tier, Usage};

/// Columns of [`Job`] (no request body), as [`job`] reads them.
pub const JOB_COLUMNS: &str = "id, client, route, provider, endpoint, model, stream, \
     tier, state, flush_id, created_at_ms, deadline_ms, result_status, result_body, \
     answered_by, usage_input_tokens, usage_cached_input_tokens, \
     usage_cache_write_5m_tokens, usage_cache_write_1h_tokens, usage_output_tokens, \
     completed_at_ms";

pub const FLUSH_COLUMNS: &str = "id, provider, endpoint, model, state, file_id, \
     batch_id, upstream_status, job_count, created_at_ms, submitted_at_ms, ended_at_ms, \
     owner, lease_until_ms, next_poll_at_ms, create_attempts";

/// Columns of [`Owned`], as [`owned`] reads them.
pub const OWNED_COLUMNS: &str = "provider, kind, id, client, route, created_at_ms";

/// A value both backends decode (text, integers, floats, booleans, bytes, and `Option`s of
/// them).
pub trait Value:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
{
}

impl<T> Value for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
{
}

/// A result row of either backend, its columns read by name.
pub trait Columns {
    fn column<T: Value>(&self, column: &str) -> Result<T, StoreError>;
}

impl Columns for SqliteRow {
    fn column<T: Value>(&self, column: &str) -> Result<T, StoreError> {
        self.try_get(column).map_err(|e| undecodable(column, e))
    }
}

impl Columns for PgRow {
    fn column<T: Value>(&self, column: &str) -> Result<T, StoreError> {
        self.try_get(column).map_err(|e| undecodable(column, e))
    }
}

fn undecodable(column: &str, e: sqlx::Error) -> StoreError {
    StoreError::Corrupt(format!("column {column}: {e}"))
}

fn get<T: Value>(row: &impl Columns, column: &str) -> Result<T, StoreError> {
    row.column(column)
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} {value:?}"))
}

fn provider(row: &impl Columns, column: &str) -> Result<Provider, StoreError> {
    let s: String = get(row, column)?;
    Provider::parse(&s).ok_or_else(|| corrupt("provider", &s))
}

fn endpoint(row: &impl Columns, column: &str) -> Result<Endpoint, StoreError> {
    let s: String = get(row, column)?;
    Endpoint::from_path(&s).ok_or_else(|| corrupt("endpoint", &s))
}

fn tier(row: &impl Columns, column: &str) -> Result<Tier, StoreError> {
    let s: String = get(row, column)?;
    Tier::parse(&s).ok_or_else(|| corrupt("tier", &s))
}

fn unsigned<T: TryFrom<i64>>(row: &impl Columns, column: &str) -> Result<T, StoreError> {
    let v: i64 = get(row, column)?;
    T::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {column}: {v} out of range")))
}

fn bytes(row: &impl Columns, column: &str) -> Result<Bytes, StoreError> {
    let v: Vec<u8> = get(row, column)?;
    Ok(Bytes::from(v))
}

/// A count as stored (INTEGER and BIGINT are signed; counts never reach 2^63).
pub fn count(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A job's usage, stored in five nullable columns: absent when the first is NULL.
fn usage(row: &impl Columns) -> Result<Option<Usage>, StoreError> {
    let input: Option<i64> = get(row, "usage_input_tokens")?;
    if input.is_none() {
        return Ok(None);
    }
    Ok(Some(Usage {
        input_tokens: unsigned(row, "usage_input_tokens")?,
        cached_input_tokens: unsigned(row, "usage_cached_input_tokens")?,
        cache_write_5m_tokens: unsigned(row, "usage_cache_write_5m_tokens")?,
        cache_write_1h_tokens: unsigned(row, "usage_cache_write_1h_tokens")?,
        output_tokens: unsigned(row, "usage_output_tokens")?,
        // Not stored: an answer is priced before it is stored, and a stored usage is priced
        // again only at Sluice's own (deferred) tier.
        served_tier: None,
    }))
}

pub fn job(row: &impl Columns) -> Result<Job, StoreError> {
    let state: String = get(row, "state")?;
    let state = JobState::parse(&state).ok_or_else(|| corrupt("job state", &state))?;
    let status: Option<i64> = get(row, "result_status")?;
    let result = match status {
        None => None,
        Some(_) => {
            let answered_by: String = get(row, "answered_by")?;
            let body: Option<Vec<u8>> = get(row, "result_body")?;
            let completed_at_ms: Option<i64> = get(row, "completed_at_ms")?;
            Some(JobResult {
                status: unsigned(row, "result_status")?,
                body: Bytes::from(body.unwrap_or_default()),
                answered_by: Tier::parse(&answered_by)
                    .ok_or_else(|| corrupt("tier", &answered_by))?,
                usage: usage(row)?,
                completed_at_ms: completed_at_ms.unwrap_or_default(),
            })
        }
    };
    Ok(Job {
        id: get(row, "id")?,
        client: get(row, "client")?,
        route: get(row, "route")?,
        provider: provider(row, "provider")?,
        endpoint: endpoint(row, "endpoint")?,
        model: get(row, "model")?,
        stream: get(row, "stream")?,
        tier: tier(row, "tier")?,
        state,
        flush_id: get(row, "flush_id")?,
        created_at_ms: get(row, "created_at_ms")?,
        deadline_ms: get(row, "deadline_ms")?,
        result,
    })
}

/// Reads `id, route, provider, endpoint, model, body_bytes, prefix, created_at_ms,
/// deadline_ms, tier`.
pub fn queued_job(row: &impl Columns) -> Result<QueuedJob, StoreError> {
    Ok(QueuedJob {
        id: get(row, "id")?,
        route: get(row, "route")?,
        provider: provider(row, "provider")?,
        endpoint: endpoint(row, "endpoint")?,
        model: get(row, "model")?,
        body_bytes: unsigned(row, "body_bytes")?,
        prefix: get(row, "prefix")?,
        created_at_ms: get(row, "created_at_ms")?,
        deadline_ms: get(row, "deadline_ms")?,
        tier: tier(row, "tier")?,
    })
}

pub fn flush(row: &impl Columns) -> Result<Flush, StoreError> {
    let state: String = get(row, "state")?;
    Ok(Flush {
        id: get(row, "id")?,
        provider: provider(row, "provider")?,
        endpoint: endpoint(row, "endpoint")?,
        model: get(row, "model")?,
        state: FlushState::parse(&state).ok_or_else(|| corrupt("flush state", &state))?,
        file_id: get(row, "file_id")?,
        batch_id: get(row, "batch_id")?,
        upstream_status: get(row, "upstream_status")?,
        job_count: unsigned(row, "job_count")?,
        created_at_ms: get(row, "created_at_ms")?,
        submitted_at_ms: get(row, "submitted_at_ms")?,
        ended_at_ms: get(row, "ended_at_ms")?,
        owner: get(row, "owner")?,
        lease_until_ms: get(row, "lease_until_ms")?,
        next_poll_at_ms: get(row, "next_poll_at_ms")?,
        create_attempts: unsigned(row, "create_attempts")?,
    })
}

pub fn owned(row: &impl Columns) -> Result<Owned, StoreError> {
    let kind: String = get(row, "kind")?;
    Ok(Owned {
        provider: provider(row, "provider")?,
        kind: ObjectKind::parse(&kind).ok_or_else(|| corrupt("object kind", &kind))?,
        id: get(row, "id")?,
        client: get(row, "client")?,
        route: get(row, "route")?,
        created_at_ms: get(row, "created_at_ms")?,
    })
}

/// Reads `flush_pos, id, body`.
pub fn flush_body(row: &impl Columns) -> Result<(u32, String, Bytes), StoreError> {
    Ok((
        unsigned(row, "flush_pos")?,
        get(row, "id")?,
        bytes(row, "body")?,
    ))
}

/// Reads one `report` group.
pub fn report_row(row: &impl Columns) -> Result<ReportRow, StoreError> {
    Ok(ReportRow {
        route: get(row, "route")?,
        client: get(row, "client")?,
        tier: tier(row, "tier")?,
        requests: unsigned(row, "requests")?,
        cost_usd: get(row, "cost_usd")?,
        baseline_usd: get(row, "baseline_usd")?,
        savings_usd: get(row, "savings_usd")?,
        wasted_usd: get(row, "wasted_usd")?,
    })
}

/// Reads the rows of a census: a queue-depth group, or (with a `flush_id`) a flush that
/// ended.
pub fn census(rows: &[impl Columns]) -> Result<Census, StoreError> {
    let mut census = Census::default();
    for row in rows {
        let provider = provider(row, "provider")?;
        let model: String = get(row, "model")?;
        match get::<Option<String>>(row, "flush_id")? {
            Some(id) => census.ended.push(EndedFlush {
                id,
                provider,
                model,
            }),
            None => census
                .queued
                .push((provider, model, unsigned(row, "queued")?)),
        }
    }
    Ok(census)
}

/// Groups `(provider, model, turnaround)` rows ordered by provider and model, newest first
/// within each.
pub fn turnaround_groups(rows: &[impl Columns]) -> Result<Vec<Turnarounds>, StoreError> {
    let mut groups: Vec<Turnarounds> = Vec::new();
    for row in rows {
        let p = provider(row, "provider")?;
        let model: String = get(row, "model")?;
        let t: i64 = get(row, "turnaround")?;
        match groups.last_mut() {
            Some((q, m, samples)) if *q == p && *m == model => samples.push(t),
            _ => groups.push((p, model, vec![t])),
        }
    }
    Ok(groups)
}

pub fn i64_column(row: &impl Columns, column: &str) -> Result<i64, StoreError> {
    get(row, column)
}

pub fn string_column(row: &impl Columns, column: &str) -> Result<String, StoreError> {
    get(row, column)
}

/// Reads `body`.
pub fn body(row: &impl Columns) -> Result<Bytes, StoreError> {
    bytes(row, "body")
}
