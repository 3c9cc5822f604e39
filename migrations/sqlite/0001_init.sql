-- Sluice durable store, SQLite schema v1. Times are unix milliseconds.

-- One upstream batch: its lease (owner, lease_until_ms) and upstream progress.
CREATE TABLE flushes (
    id               TEXT    PRIMARY KEY NOT NULL,
    provider         TEXT    NOT NULL,
    endpoint         TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    file_id          TEXT,
    batch_id         TEXT,
    upstream_status  TEXT,
    job_count        INTEGER NOT NULL DEFAULT 0,
    created_at_ms    INTEGER NOT NULL,
    submitted_at_ms  INTEGER,
    ended_at_ms      INTEGER,
    owner            TEXT    NOT NULL,
    lease_until_ms   INTEGER NOT NULL,
    next_poll_at_ms  INTEGER NOT NULL,
    create_attempts  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX flushes_state_lease ON flushes (state, lease_until_ms);
CREATE INDEX flushes_turnaround ON flushes (provider, model, ended_at_ms);

-- Deferred jobs; also the idempotency keys (client, idempotency_key, created_at_ms).
CREATE TABLE jobs (
    id                          TEXT    PRIMARY KEY NOT NULL,
    client                      TEXT    NOT NULL,
    route                       TEXT    NOT NULL,
    idempotency_key             TEXT,
    provider                    TEXT    NOT NULL,
    endpoint                    TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    body                        BLOB    NOT NULL,
    stream                      INTEGER NOT NULL,
    tier                        TEXT    NOT NULL,
    prefix                      TEXT,
    created_at_ms               INTEGER NOT NULL,
    deadline_ms                 INTEGER NOT NULL,
    state                       TEXT    NOT NULL,
    flush_id                    TEXT    REFERENCES flushes (id) ON DELETE SET NULL,
    flush_pos                   INTEGER,
    result_status               INTEGER,
    result_body                 BLOB,
    answered_by                 TEXT,
    usage_input_tokens          INTEGER,
    usage_cached_input_tokens   INTEGER,
    usage_cache_write_5m_tokens INTEGER,
    usage_cache_write_1h_tokens INTEGER,
    usage_output_tokens         INTEGER,
    completed_at_ms             INTEGER
);
CREATE INDEX jobs_queued ON jobs (state, created_at_ms);
CREATE INDEX jobs_deadline_open ON jobs (deadline_ms) WHERE state <> 'done';
CREATE INDEX jobs_idempotency ON jobs (client, idempotency_key, created_at_ms)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_flush ON jobs (flush_id, flush_pos);
CREATE INDEX jobs_completed ON jobs (completed_at_ms) WHERE state = 'done';

-- One priced answer per row.
CREATE TABLE ledger (
    id                          INTEGER PRIMARY KEY,
    at_ms                       INTEGER NOT NULL,
    route                       TEXT    NOT NULL,
    client                      TEXT    NOT NULL,
    provider                    TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    tier                        TEXT    NOT NULL,
    status                      INTEGER NOT NULL,
    input_tokens                INTEGER NOT NULL,
    cached_input_tokens         INTEGER NOT NULL,
    cache_write_5m_tokens       INTEGER NOT NULL,
    cache_write_1h_tokens       INTEGER NOT NULL,
    output_tokens               INTEGER NOT NULL,
    cost_usd                    REAL    NOT NULL,
    baseline_usd                REAL    NOT NULL,
    savings_batch_usd           REAL    NOT NULL,
    savings_flex_usd            REAL    NOT NULL,
    savings_prompt_cache_usd    REAL    NOT NULL,
    savings_response_cache_usd  REAL    NOT NULL,
    wasted                      INTEGER NOT NULL
);
CREATE INDEX ledger_at ON ledger (at_ms);
