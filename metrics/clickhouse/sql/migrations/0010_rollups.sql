-- Roll-ups for the rule engine (metrics.RuleCounter, issue 13): its
-- counts per UTC hour, so that an evaluation reads a few pre-aggregated
-- rows per scope and hour instead of every raw event with FINAL.
--
-- Why not a materialized view on events: on 18.16 a view counts every
-- inserted row, and a replayed or re-posted event is a second row of
-- events until a merge (see 0001_events.sql). So an hour is instead
-- recomputed whole, from events FINAL (each event once), whenever an
-- append has touched it (rollup.go says why that is exact):
--   rollup_dirty   the hours each Append touched, logged after its
--                  events are inserted, with the server's time of the log;
--   rollup         the recomputed rows of an hour, tagged with the version
--                  of the recompute (see below);
--   rollup_hours   the recomputes finished: (hour, version) says that the
--                  rows of that version are the hour's complete roll-up,
--                  watermark how far rollup_dirty has been read, seen
--                  how many logs of the hour that refresh had counted
--                  before reading the events.
-- Readers take, for each hour, only the rows of its highest finished
-- version, so that a recompute in progress (or one that died half-way) is
-- never seen. ReplacingMergeTree(version) lets merges drop the rows of
-- older versions of the same key; keys that vanished from an hour (an event
-- whose re-post changed its dimensions) stay as garbage no reader selects.
--
-- One table holds two kinds of rows, so that one scan of events feeds
-- both:
--   class 0, key 0: the additive counts of (hour, dimensions);
--   class 1..4, key: one row per distinct open or click of (hour,
--     dimensions): class 1 a human open (verdict 0), 2 an open without
--     verdict, 3 a machine open, 4 a click; key the cityHash64 of
--     (account, message_id, recipient), or of (account, event_id) for one
--     without message_id (it counts per event, as in Stats). Readers count
--     the distinct keys over the whole window (uniqExact), so a message
--     opened in two hours counts once.
-- Only what 18.16 has: no LowCardinality, no TTL (rollup_dirty and
-- rollup_hours grow by a few rows per append and per refresh; a refresh
-- compares counts of rollup_dirty rows, so they must never be deleted).
CREATE TABLE IF NOT EXISTS rollup_dirty (
    hour   DateTime('UTC'),
    logged DateTime('UTC') DEFAULT now()
) ENGINE = MergeTree
ORDER BY (logged, hour);
CREATE TABLE IF NOT EXISTS rollup_hours (
    hour      DateTime('UTC'),
    version   UInt64,
    watermark DateTime('UTC'),
    seen      UInt64
) ENGINE = MergeTree
ORDER BY (hour, version);
CREATE TABLE IF NOT EXISTS rollup (
    hour          DateTime('UTC'),
    version       UInt64,
    account       String,
    sender_domain String,
    sending_ip    String,
    isp           String,
    campaign      String,
    category      String,
    class         UInt8,
    key           UInt64,
    sent          UInt64,
    delivered     UInt64,
    deferred      UInt64,
    bounced_hard  UInt64,
    bounced_soft  UInt64,
    complained    UInt64,
    unsubscribed  UInt64,
    dropped       UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, account, sender_domain, sending_ip, isp, campaign, category, class, key);
-- The backfill: every hour already stored is dirty, so the first refresh
-- computes it. Running this again only makes those hours dirty again.
INSERT INTO rollup_dirty (hour) SELECT DISTINCT toStartOfHour(time) FROM events;
