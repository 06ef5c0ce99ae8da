-- The history of the rule engine (metrics.RulesHistory, issue 13): its
-- throttle decisions and the flags it raised and cleared, for the
-- dashboards. 18.16 has no DateTime64: times are Unix nanoseconds in Int64,
-- as in suppression_changes; a zero time.Time is stored as 0 (expires_ns
-- 0: a decision without an end). 18.16 has no insert deduplication: a
-- decision appended again is inserted as another row with the same
-- sorting key ((id, seq) determines issued_ns and the scope; a flag
-- change's id covers its time and scope), and reads collapse them with
-- FINAL, keeping the row of the highest precedence (2^64-1 minus the
-- insert time in nanoseconds: the first stored wins, as in the embedded
-- store). minute_limit and max_connections are NULL when unset; reasons is
-- the decision's reasons as JSON; raised is 1 for a flag raised, 0 for one
-- cleared.
CREATE TABLE IF NOT EXISTS rule_decisions (
    issued_ns       Int64,
    seq             Int64,
    id              String,
    expires_ns      Int64,
    sender_domain   String,
    sending_ip      String,
    isp             String,
    action          String,
    warmup_day      Int64,
    daily_limit     Int64,
    hourly_limit    Int64,
    minute_limit    Nullable(Int64),
    max_connections Nullable(Int64),
    source          String,
    reasons         String,
    precedence      UInt64
) ENGINE = ReplacingMergeTree(precedence)
ORDER BY (issued_ns, seq, id);
CREATE TABLE IF NOT EXISTS rule_flag_changes (
    time_ns       Int64,
    id            String,
    rule          String,
    account       String,
    sender_domain String,
    sending_ip    String,
    isp           String,
    campaign      String,
    category      String,
    severity      String,
    value         Float64,
    threshold     Float64,
    sample        Int64,
    time_window   String,
    raised        UInt8,
    precedence    UInt64
) ENGINE = ReplacingMergeTree(precedence)
ORDER BY (time_ns, id);
