-- The events table: one row per fact (ARCHITECTURE.md, "The event").
-- Only what ClickHouse 18.16 supports: no LowCardinality (it needs an
-- experimental setting there), no codecs, no TTL, no Bool.
--
-- Identity is (account, event_id), the sorting key. 18.16 does not
-- deduplicate inserts into a non-replicated MergeTree, so a repeat appended
-- by a later call or another writer is stored as a second row until a merge
-- collapses it. Queries read with FINAL, which collapses rows of equal
-- sorting key at read time whatever merges have happened; of the repeats the
-- row with the highest precedence stays. Append sets precedence to
-- 2^64-1 minus its time of insert in nanoseconds, so the first stored wins,
-- as with the embedded store's primary key.
-- Partitions are UTC days: each insert batch stays within one.
CREATE TABLE IF NOT EXISTS events (
    account                  String,
    event_id                 String,
    time                     DateTime('UTC'),
    kind                     Enum8('sent' = 1, 'delivered' = 2, 'deferred' = 3, 'bounced' = 4,
                                   'complained' = 5, 'opened' = 6, 'clicked' = 7,
                                   'unsubscribed' = 8, 'dropped' = 9),
    source                   String,
    source_ref               String,
    sender_domain            String,
    sending_ip               String,
    campaign                 String,
    message_id               String,
    recipient                String,
    recipient_domain         String,
    isp                      String,
    bounce_type              String,
    reason                   String,
    status                   String,
    reply_code               UInt16,
    diagnostic               String,
    remote_mta               String,
    correlation              String,
    feedback_type            String,
    feedback_provider        String,
    recipient_recovered_from String,
    user_agent               String,
    client_ip                String,
    machine                  UInt8,
    machine_reason           String,
    url                      String,
    evidence_id              String,
    precedence               UInt64
) ENGINE = ReplacingMergeTree(precedence)
PARTITION BY toYYYYMMDD(time)
ORDER BY (account, event_id);
