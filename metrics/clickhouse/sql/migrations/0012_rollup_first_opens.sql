-- Roll-ups whose every count is additive (metrics.RuleCounter), and sums
-- of whole days and 4-hour blocks over them, so that an evaluation over 50
-- million events reads a few rows per scope and day instead of one per
-- open and hour (issue 13).
--
-- rollup is recreated with the opens and clicks as counts: each open key
-- (account, message_id, recipient; or the event, without message_id)
-- counts once per kind — 1 human (an open with verdict 0 or none),
-- 2 machine, 3 no verdict, 4 click — in the hour and scope of its first
-- open (metrics.FirstOpens). The old rows (one per open key and hour,
-- counted with uniqExact at read time: 1.2–4.7 s per grouping over 10 M
-- keys) are dropped; every stored hour is marked dirty again, so the
-- first refresh recomputes them (until then RuleCounts reads nothing).
--
--   rollup_open_keys  which hours each open key was opened in, per kind:
--                     a refresh recomputing an hour counts a key there
--                     only if it has no earlier hour here (rollup.go);
--                     version is the refresh that first recorded it
--                     there: repeats collapse to the lowest (rank is
--                     2^64-1 minus version, and the highest rank stays).
--   rollup_span       the sums of rollup over a span of hours: a UTC day
--                     (width 86400) or a 4-hour block (14400) starting at
--                     start, of version (the refresh that made them);
--   rollup_spans      the spans made: (start, width, version) says the rows
--                     of that version are the span's complete sums. Readers
--                     use a span's rows only if their version is at least
--                     that of every finished recompute of its hours.
-- Run again (a run cut short before its record, or two processes at
-- once), the DROP may drop rows a refresh made in between; the backfill at
-- the end then marks their hours dirty again, so the next refresh
-- recomputes them.
DROP TABLE IF EXISTS rollup;
CREATE TABLE IF NOT EXISTS rollup (
    hour              DateTime('UTC'),
    version           UInt64,
    account           String,
    sender_domain     String,
    sending_ip        String,
    isp               String,
    campaign          String,
    category          String,
    sent              UInt64,
    delivered         UInt64,
    deferred          UInt64,
    bounced_hard      UInt64,
    bounced_soft      UInt64,
    complained        UInt64,
    opened_human      UInt64,
    opened_machine    UInt64,
    opened_unverified UInt64,
    clicked           UInt64,
    unsubscribed      UInt64,
    dropped           UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, account, sender_domain, sending_ip, isp, campaign, category);
CREATE TABLE IF NOT EXISTS rollup_open_keys (
    kind    UInt8,
    key     UInt64,
    hour    DateTime('UTC'),
    version UInt64,
    rank    UInt64
) ENGINE = ReplacingMergeTree(rank)
ORDER BY (kind, key, hour);
CREATE TABLE IF NOT EXISTS rollup_span (
    start             DateTime('UTC'),
    width             UInt32,
    version           UInt64,
    account           String,
    sender_domain     String,
    sending_ip        String,
    isp               String,
    campaign          String,
    category          String,
    sent              UInt64,
    delivered         UInt64,
    deferred          UInt64,
    bounced_hard      UInt64,
    bounced_soft      UInt64,
    complained        UInt64,
    opened_human      UInt64,
    opened_machine    UInt64,
    opened_unverified UInt64,
    clicked           UInt64,
    unsubscribed      UInt64,
    dropped           UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(start)
ORDER BY (start, width, account, sender_domain, sending_ip, isp, campaign, category);
CREATE TABLE IF NOT EXISTS rollup_spans (
    start   DateTime('UTC'),
    width   UInt32,
    version UInt64
) ENGINE = MergeTree
ORDER BY (start, width, version);
-- The backfill: every stored hour is dirty again.
INSERT INTO rollup_dirty (hour) SELECT DISTINCT toStartOfHour(time) FROM events;
