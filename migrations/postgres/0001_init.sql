-- Sluice durable store, PostgreSQL schema v1: the final shape of the SQLite schema
-- (migrations/sqlite/0001..0004) for several replicas sharing one database.
-- Times are unix milliseconds (BIGINT); request and response bodies are BYTEA.

-- One upstream batch: its lease (owner, lease_until_ms) and upstream progress.
CREATE TABLE flushes (
    id               TEXT    PRIMARY KEY,
    provider         TEXT    NOT NULL,
    endpoint         TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    file_id          TEXT,
    batch_id         TEXT,
    upstream_status  TEXT,
    job_count        BIGINT  NOT NULL DEFAULT 0,
    created_at_ms    BIGINT  NOT NULL,
    submitted_at_ms  BIGINT,
    ended_at_ms      BIGINT,
    owner            TEXT    NOT NULL,
    lease_until_ms   BIGINT  NOT NULL,
    next_poll_at_ms  BIGINT  NOT NULL,
    create_attempts  BIGINT  NOT NULL DEFAULT 0
);
CREATE INDEX flushes_open_lease ON flushes (lease_until_ms) WHERE state <> 'ended';
CREATE INDEX flushes_turnaround ON flushes (provider, model, ended_at_ms);
CREATE INDEX flushes_batch ON flushes (batch_id) WHERE batch_id IS NOT NULL;

-- Deferred jobs.
CREATE TABLE jobs (
    -- Insertion order, the tie-break SQLite's rowid gives: jobs created in the same
    -- millisecond are listed in the order they were accepted.
    seq                         BIGINT  GENERATED ALWAYS AS IDENTITY,
    id                          TEXT    PRIMARY KEY,
    client                      TEXT    NOT NULL,
    route                       TEXT    NOT NULL,
    idempotency_key             TEXT,
    provider                    TEXT    NOT NULL,
    endpoint                    TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    body                        BYTEA   NOT NULL,
    stream                      BOOLEAN NOT NULL,
    tier                        TEXT    NOT NULL,
    prefix                      TEXT,
    created_at_ms               BIGINT  NOT NULL,
    deadline_ms                 BIGINT  NOT NULL,
    state                       TEXT    NOT NULL,
    flush_id                    TEXT    REFERENCES flushes (id) ON DELETE SET NULL,
    flush_pos                   BIGINT,
    -- The lease on a synchronous fallback (state 'fallback'): held until this time, renewed
    -- while the call runs; once lapsed (or handed back as 0) any replica retakes the job.
    -- NULL counts as lapsed.
    fallback_until_ms           BIGINT,
    result_status               BIGINT,
    result_body                 BYTEA,
    answered_by                 TEXT,
    usage_input_tokens          BIGINT,
    usage_cached_input_tokens   BIGINT,
    usage_cache_write_5m_tokens BIGINT,
    usage_cache_write_1h_tokens BIGINT,
    usage_output_tokens         BIGINT,
    completed_at_ms             BIGINT
);
CREATE INDEX jobs_queued ON jobs (created_at_ms, seq) WHERE state = 'queued';
CREATE INDEX jobs_deadline_open ON jobs (deadline_ms, seq) WHERE state <> 'done';
CREATE INDEX jobs_flush ON jobs (flush_id, flush_pos);
CREATE INDEX jobs_completed ON jobs (completed_at_ms) WHERE state = 'done';

-- The newest job created under each client's idempotency key. The primary key is what
-- makes a key unique across replicas: an enqueue upserts its key first, so a concurrent
-- enqueue of the same key waits on that row and then sees the job it names. The job row
-- is inserted later in the same transaction, hence the deferred check; a purged job
-- takes its key with it.
CREATE TABLE idempotency_keys (
    client         TEXT   NOT NULL,
    key            TEXT   NOT NULL,
    job_id         TEXT   NOT NULL REFERENCES jobs (id) ON DELETE CASCADE
                          DEFERRABLE INITIALLY DEFERRED,
    created_at_ms  BIGINT NOT NULL,
    PRIMARY KEY (client, key)
);
CREATE INDEX idempotency_keys_job ON idempotency_keys (job_id);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at_ms);

-- Per-minute sums by route, client, provider, model and tier (minutes older than 31 days
-- folded into hours): the ledger's size follows the label combinations, not the requests.
CREATE TABLE ledger_rollup (
    bucket_ms                   BIGINT           NOT NULL,
    -- The row covers [bucket_ms, bucket_ms + width_ms): a minute, or a folded hour.
    width_ms                    BIGINT           NOT NULL,
    route                       TEXT             NOT NULL,
    client                      TEXT             NOT NULL,
    provider                    TEXT             NOT NULL,
    model                       TEXT             NOT NULL,
    tier                        TEXT             NOT NULL,
    requests                    BIGINT           NOT NULL,
    errors                      BIGINT           NOT NULL,
    input_tokens                BIGINT           NOT NULL,
    cached_input_tokens         BIGINT           NOT NULL,
    cache_write_5m_tokens       BIGINT           NOT NULL,
    cache_write_1h_tokens       BIGINT           NOT NULL,
    output_tokens               BIGINT           NOT NULL,
    cost_usd                    DOUBLE PRECISION NOT NULL,
    baseline_usd                DOUBLE PRECISION NOT NULL,
    savings_batch_usd           DOUBLE PRECISION NOT NULL,
    savings_flex_usd            DOUBLE PRECISION NOT NULL,
    savings_prompt_cache_usd    DOUBLE PRECISION NOT NULL,
    savings_response_cache_usd  DOUBLE PRECISION NOT NULL,
    wasted_requests             BIGINT           NOT NULL,
    wasted_usd                  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (bucket_ms, route, client, provider, model, tier)
);

-- Readiness write probe: one row, overwritten to prove the store takes writes.
CREATE TABLE probe (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    at_ms  BIGINT  NOT NULL
);
