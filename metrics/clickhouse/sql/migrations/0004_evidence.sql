-- Stored raw reports (metrics.Evidence). data is the zstd-compressed
-- message (metrics.EncodeEvidence): a String holds any bytes. Identity is
-- (account, id), the sorting key. A second put of the same evidence is
-- inserted as another row (18.16 has no insert deduplication); reads take
-- the row of the highest precedence (2^64-1 minus the insert time in
-- nanoseconds, so the first put wins, as in the embedded store) with
-- LIMIT 1, and merges collapse the rest. Partitions are months of stored,
-- the instant retention (PurgeEvidence) counts from.
CREATE TABLE IF NOT EXISTS evidence (
    account    String,
    id         String,
    stored     DateTime('UTC'),
    source     String,
    source_ref String,
    size       UInt64,
    truncated  UInt8,
    data       String,
    precedence UInt64
) ENGINE = ReplacingMergeTree(precedence)
PARTITION BY toYYYYMM(stored)
ORDER BY (account, id);
