-- What clients created through the explicit Files and Batch APIs (passed through to the
-- provider): who owns each object, so only that client sees it, and for a batch whether its
-- usage reached the ledger yet (priced once, whichever replica sees it end).
CREATE TABLE owned_objects (
    provider          TEXT    NOT NULL,
    -- 'file' or 'batch'.
    kind              TEXT    NOT NULL,
    -- The provider's id of the object.
    id                TEXT    NOT NULL,
    client            TEXT    NOT NULL,
    route             TEXT    NOT NULL,
    created_at_ms     INTEGER NOT NULL,
    -- When to look at an unpriced batch again (NULL: at once).
    next_check_at_ms  INTEGER,
    priced_at_ms      INTEGER,
    PRIMARY KEY (provider, kind, id)
) WITHOUT ROWID;
-- The batches still to price, due first (SQLite sorts NULL first): Store::unpriced_batches.
CREATE INDEX owned_unpriced_batches ON owned_objects (next_check_at_ms, created_at_ms)
    WHERE kind = 'batch' AND priced_at_ms IS NULL;
