-- The implicit key of a deferred job made by an SDK that counts its tries
-- (`x-stainless-retry-count`): a hash of route, path, model, streaming and body. A later
-- try of the same call (count >= 1, no Idempotency-Key) from the same client attaches to
-- the newest job recorded under it instead of creating another batch line.
ALTER TABLE jobs ADD COLUMN retry_key TEXT;
CREATE INDEX jobs_retry ON jobs (client, retry_key, created_at_ms)
    WHERE retry_key IS NOT NULL;
