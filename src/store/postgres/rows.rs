//! Error mapping of the PostgreSQL store; rows are decoded by `store::rows`.

use crate::store::StoreError;
pub(super) use crate::store::rows::{
    FLUSH_COLUMNS, JOB_COLUMNS, OWNED_COLUMNS, body, census, count, flush, flush_body, i64_column,
    job, owned, queued_job, report_row, string_column, turnaround_groups,
};

/// Maps a driver error: connection, pool and I/O trouble — and a server that cannot take
/// work now (shutting down, out of disk or connections, a read-only standby after a
/// failover) — is `Unavailable`; anything else is `Query`.
pub(super) fn db_error(e: sqlx::Error) -> StoreError {
    let unavailable = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Configuration(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // 08: connection exception; 53: insufficient resources; 57P01-57P03: admin or
            // crash shutdown, cannot connect now; 25006: read-only transaction.
            code.starts_with("08")
                || code.starts_with("53")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "25006")
        }),
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
