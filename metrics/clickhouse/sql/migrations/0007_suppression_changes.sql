-- The log of suppression changes (metrics.SuppressionChange, issue 10):
-- the audit of the blocklist and the unsubscribe list, and what they are
-- rebuilt from, replayed in (time_ns, id) order. 18.16 has no DateTime64:
-- times are Unix nanoseconds in Int64 (the id covers the time to the
-- nanosecond); a zero time.Time is stored as 0. A change appended again
-- is inserted as another row (18.16 has no insert deduplication); its id
-- determines its time, so both rows share the sorting key, and reads
-- collapse them with FINAL, keeping the row of the highest precedence
-- (2^64-1 minus the insert time in nanoseconds: the first stored wins, as
-- in the embedded store). changed_by is the change's By.
CREATE TABLE IF NOT EXISTS suppression_changes (
    time_ns       Int64,
    id            String,
    action        String,
    address       String,
    account       String,
    shared        UInt8,
    sender_domain String,
    list          String,
    reason        String,
    event_id      String,
    since_ns      Int64,
    until_ns      Int64,
    changed_by    String,
    precedence    UInt64
) ENGINE = ReplacingMergeTree(precedence)
ORDER BY (time_ns, id);
