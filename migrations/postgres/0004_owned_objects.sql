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
    created_at_ms     BIGINT  NOT NULL,
    -- When to look at an unpriced batch again (NULL: at once).
    next_check_at_ms  BIGINT,
    priced_at_ms      BIGINT,
    PRIMARY KEY (provider, kind, id)
);
-- The batches still to price, due first: Store::unpriced_batches.
CREATE INDEX owned_unpriced_batches ON owned_objects (next_check_at_ms NULLS FIRST, created_at_ms)
    WHERE kind = 'batch' AND priced_at_ms IS NULL;
