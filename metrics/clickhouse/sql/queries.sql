-- Named queries of the ClickHouse backend. Each starts with "-- name: NAME".
-- Placeholders: ? is bound client-side by clickhouse-go (18.16 has no
-- server-side {p:Type} parameters); /*KEYS*/, /*ACCOUNT*/ and /*GROUP*/ are
-- filled in by stats.go from a fixed set of expressions, never from input.

-- name: migrations-table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    UInt32,
    name       String,
    applied_at DateTime('UTC') DEFAULT now()
) ENGINE = MergeTree
ORDER BY version

-- name: applied-migrations
SELECT DISTINCT version FROM schema_migrations

-- name: record-migration
INSERT INTO schema_migrations (version, name) SELECT toUInt32(?), ?

-- name: stats
-- FINAL collapses repeats of an (account, event_id) at read time, whatever
-- merges have or have not happened (see 0001_events.sql). Opens and clicks
-- are unique per (account, message_id, recipient); without a message_id they
-- count per event. An open without a verdict (machine IS NULL) is human;
-- opened_unverified counts those again on their own. machine is
-- Nullable(UInt8): the conditions go through ifNull/isNull, because on
-- 18.16 a Nullable condition makes countIf Nullable too. With groups,
-- /*GROUP*/ is "GROUP BY k0, … WITH TOTALS": the totals merge the groups' aggregate states, so their uniqueness is over
-- the whole range, not a sum over groups.
SELECT /*KEYS*/
    countIf(kind = 'sent') AS sent,
    countIf(kind = 'delivered') AS delivered,
    countIf(kind = 'deferred') AS deferred,
    countIf(kind = 'bounced' AND bounce_type = 'hard') AS bounced_hard,
    countIf(kind = 'bounced' AND bounce_type != 'hard') AS bounced_soft,
    countIf(kind = 'complained') AS complained,
    uniqExactIf(account, message_id, recipient, kind = 'opened' AND ifNull(machine, 0) = 0 AND message_id != '')
        + countIf(kind = 'opened' AND ifNull(machine, 0) = 0 AND message_id = '') AS opened_human,
    uniqExactIf(account, message_id, recipient, kind = 'opened' AND ifNull(machine, 0) = 1 AND message_id != '')
        + countIf(kind = 'opened' AND ifNull(machine, 0) = 1 AND message_id = '') AS opened_machine,
    uniqExactIf(account, message_id, recipient, kind = 'opened' AND isNull(machine) AND message_id != '')
        + countIf(kind = 'opened' AND isNull(machine) AND message_id = '') AS opened_unverified,
    uniqExactIf(account, message_id, recipient, kind = 'clicked' AND message_id != '')
        + countIf(kind = 'clicked' AND message_id = '') AS clicked,
    countIf(kind = 'unsubscribed') AS unsubscribed,
    countIf(kind = 'dropped') AS dropped
FROM events FINAL
WHERE time >= toDateTime(?) AND time < toDateTime(?) /*ACCOUNT*/
/*GROUP*/

-- name: known
-- The candidates come as the external table "candidates"; the time bounds
-- (the candidates' earliest and latest times) prune the day partitions.
SELECT DISTINCT account, event_id
FROM events
WHERE time >= toDateTime(?) AND time <= toDateTime(?)
  AND (account, event_id) IN (SELECT account, event_id FROM candidates)

-- name: rollup-now
-- The server's clock: rollup_dirty.logged is the server's time, so the
-- refresh's watermark is taken from the same clock.
SELECT now(), max(watermark), max(version) FROM rollup_hours

-- name: rollup-dirty
-- The hours logged dirty at or after the watermark.
SELECT DISTINCT hour FROM rollup_dirty WHERE logged >= toDateTime(?)

-- name: rollup-logs
-- Of the hours /*HOURS*/: how many logs each has (ever), and how many the
-- refresh whose rows readers use had counted (0: none finished it).
SELECT d.hour, d.logs, f.seen FROM (
    SELECT hour, count() AS logs FROM rollup_dirty
    WHERE toUInt32(hour) IN (/*HOURS*/) GROUP BY hour) AS d
ANY LEFT JOIN (
    SELECT hour, argMax(seen, version) AS seen FROM rollup_hours
    WHERE toUInt32(hour) IN (/*HOURS*/) GROUP BY hour) AS f
USING hour

-- name: rollup-compute
-- Recomputes the hours listed in /*HOURS*/ (of one UTC day, [?, ?)) from
-- the deduplicated events, as rows of version ?. Non-open events give the
-- class 0 rows (key 0), summed; opens and clicks a row per distinct key.
-- The conditions mirror the stats query.
INSERT INTO rollup
SELECT toStartOfHour(time) AS h, toUInt64(?) AS v,
    account, sender_domain, sending_ip, isp, campaign, category,
    multiIf(kind = 'clicked', 4, kind != 'opened', 0, isNull(machine), 2, ifNull(machine, 0) = 1, 3, 1) AS c,
    if(kind != 'opened' AND kind != 'clicked', toUInt64(0),
       if(message_id != '', cityHash64(account, message_id, recipient), cityHash64(account, event_id))) AS k,
    countIf(kind = 'sent'),
    countIf(kind = 'delivered'),
    countIf(kind = 'deferred'),
    countIf(kind = 'bounced' AND bounce_type = 'hard'),
    countIf(kind = 'bounced' AND bounce_type != 'hard'),
    countIf(kind = 'complained'),
    countIf(kind = 'unsubscribed'),
    countIf(kind = 'dropped')
FROM events FINAL
WHERE time >= toDateTime(?) AND time < toDateTime(?) AND toUInt32(toStartOfHour(time)) IN (/*HOURS*/)
GROUP BY h, account, sender_domain, sending_ip, isp, campaign, category, c, k

-- name: rollup-finish
-- Records the recompute of version ? of the hours /*HOURS*/ as finished,
-- with the watermark ?; /*SEEN*/ lists the logs counted of each hour, in
-- the same order.
INSERT INTO rollup_hours
SELECT toDateTime(h.1), toUInt64(?), toDateTime(?), h.2
FROM (SELECT arrayJoin(arrayMap((x, y) -> (x, y), [/*HOURS*/], [/*SEEN*/])) AS h)

-- name: rollup-mark
-- Logs the hours /*HOURS*/ dirty, at the server's now().
INSERT INTO rollup_dirty (hour) SELECT toDateTime(arrayJoin([/*HOURS*/]))

-- name: rollup-counts
-- The counts of the hours [?, ?), of each hour's latest finished version
-- only. /*KEYS*/ and /*GROUP*/ as in stats; /*UNIQUE*/ is either the
-- opens and clicks, the distinct keys of the whole range:
--     uniqExactIf(key, class = 1 OR class = 2),
--     uniqExactIf(key, class = 3),
--     uniqExactIf(key, class = 2),
--     uniqExactIf(key, class = 4),
-- or, without them, four toUInt64(0) with /*CLASS*/ "AND class = 0", so
-- that the open rows (most of the table) are not grouped at all.
SELECT /*KEYS*/
    sum(sent), sum(delivered), sum(deferred), sum(bounced_hard), sum(bounced_soft), sum(complained),
    /*UNIQUE*/
    sum(unsubscribed), sum(dropped)
FROM rollup
WHERE hour >= toDateTime(?) AND hour < toDateTime(?) /*CLASS*/
  AND (hour, version) IN (
    SELECT hour, max(version) FROM rollup_hours
    WHERE hour >= toDateTime(?) AND hour < toDateTime(?)
    GROUP BY hour)
/*GROUP*/
