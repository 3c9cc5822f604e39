-- The lease on a synchronous fallback: a job in state 'fallback' belongs to the replica
-- sending it until this time (unix ms), renewed while its call runs. Once it lapses (the
-- replica died, or handed the job back at shutdown by setting 0) any replica retakes it,
-- well before its deadline. NULL (a fallback claimed before this column) counts as lapsed.
ALTER TABLE jobs ADD COLUMN fallback_until_ms INTEGER;
