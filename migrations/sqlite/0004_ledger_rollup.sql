-- The ledger keeps per-minute sums by route, client, provider, model and tier (minutes
-- older than 31 days folded into hours), not a row per answer: its size follows the label
-- combinations in use, not the request rate. Existing rows are summed into their minutes.
CREATE TABLE ledger_rollup (
    bucket_ms                   INTEGER NOT NULL,
    -- The row covers [bucket_ms, bucket_ms + width_ms): a minute, or a folded hour.
    width_ms                    INTEGER NOT NULL,
    route                       TEXT    NOT NULL,
    client                      TEXT    NOT NULL,
    provider                    TEXT    NOT NULL,
    model                       TEXT    NOT NULL,
    tier                        TEXT    NOT NULL,
    requests                    INTEGER NOT NULL,
    errors                      INTEGER NOT NULL,
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
    wasted_requests             INTEGER NOT NULL,
    wasted_usd                  REAL    NOT NULL,
    PRIMARY KEY (bucket_ms, route, client, provider, model, tier)
) WITHOUT ROWID;

INSERT INTO ledger_rollup
SELECT (at_ms / 60000) * 60000, 60000, route, client, provider, model, tier,
       SUM(wasted = 0),
       SUM(wasted = 0 AND (status < 200 OR status >= 300)),
       SUM(CASE WHEN wasted = 0 THEN input_tokens ELSE 0 END),
       SUM(CASE WHEN wasted = 0 THEN cached_input_tokens ELSE 0 END),
       SUM(CASE WHEN wasted = 0 THEN cache_write_5m_tokens ELSE 0 END),
       SUM(CASE WHEN wasted = 0 THEN cache_write_1h_tokens ELSE 0 END),
       SUM(CASE WHEN wasted = 0 THEN output_tokens ELSE 0 END),
       TOTAL(CASE WHEN wasted = 0 THEN cost_usd END),
       TOTAL(CASE WHEN wasted = 0 THEN baseline_usd END),
       TOTAL(CASE WHEN wasted = 0 THEN savings_batch_usd END),
       TOTAL(CASE WHEN wasted = 0 THEN savings_flex_usd END),
       TOTAL(CASE WHEN wasted = 0 THEN savings_prompt_cache_usd END),
       TOTAL(CASE WHEN wasted = 0 THEN savings_response_cache_usd END),
       SUM(wasted <> 0),
       TOTAL(CASE WHEN wasted <> 0 THEN cost_usd END)
FROM ledger WHERE true
GROUP BY (at_ms / 60000) * 60000, route, client, provider, model, tier;

DROP TABLE ledger;
