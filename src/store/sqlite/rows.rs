//! Error mapping of the SQLite store (reader and writer); rows are decoded by `store::rows`.

use crate::store::StoreError;
pub(super) use crate::store::rows::{
    FLUSH_COLUMNS, JOB_COLUMNS, OWNED_COLUMNS, body, census, count, flush, flush_body, i64_column,
    job, owned, queued_job, report_row, string_column, turnaround_groups,
};

/// Maps a driver error: connection, pool and I/O trouble (and a locked or full database)
/// is `Unavailable`, anything else is `Query`.
pub(super) fn db_error(e: sqlx::Error) -> StoreError {
    let unavailable = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Configuration(_) => true,
        sqlx::Error::Database(db) => {
            db.code()
                .and_then(|c| c.parse::<i64>().ok())
                .is_some_and(|code| {
                    // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR,
                    // SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB
                    matches!(code & 0xff, 5 | 6 | 7 | 8 | 10 | 11 | 13 | 14 | 26)
                })
        }
        _ => false,
    };
    if unavailable {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Query(e.to_string())
    }
}

pub(super) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => db_error(e),
        other => StoreError::Query(format!("migration failed: {other}")),
    }
}

/// A copy of an error, to answer every request of a failed group commit.
pub(super) fn dup(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(s) => StoreError::Unavailable(s.clone()),
        StoreError::Query(s) => StoreError::Query(s.clone()),
        StoreError::Corrupt(s) => StoreError::Corrupt(s.clone()),
        StoreError::UnsupportedUrl(s) => StoreError::UnsupportedUrl(s.clone()),
        StoreError::InvalidUrl(s) => StoreError::InvalidUrl(s.clone()),
    }
}
