-- Flushes by end time: each replica reads the flushes that ended in the last minutes once
-- per refresh (Store::census), to learn that a turnaround changed without reading them all.
CREATE INDEX flushes_ended ON flushes (ended_at_ms) WHERE ended_at_ms IS NOT NULL;
