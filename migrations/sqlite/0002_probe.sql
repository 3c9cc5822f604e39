-- Readiness write probe: one row, upserted through the writer to prove the store takes writes.
CREATE TABLE probe (
    id     INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    at_ms  INTEGER NOT NULL
);
