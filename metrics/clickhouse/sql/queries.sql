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

-- name: rollup-open-keys
-- Records the open keys of the hours /*HOURTIMES*/ (of one UTC day, [?, ?)),
-- as of the refresh of version ?: which kinds of open (1 human, 2 machine,
-- 3 no verdict, 4 click; an open with no verdict is both 1 and 3) each key
-- had in each hour. The key is that of the stats query's uniqExact.
INSERT INTO rollup_open_keys
SELECT DISTINCT ok, k, toStartOfHour(time), v, 18446744073709551615 - v
FROM (
    SELECT time, toUInt64(?) AS v,
        arrayJoin(multiIf(kind = 'clicked', [4], isNull(machine), [1, 3], ifNull(machine, 0) = 1, [2], [1])) AS ok,
        if(message_id != '', cityHash64(account, message_id, recipient), cityHash64(account, event_id)) AS k
    -- Each event of the hours once, the first stored of its copies (FINAL,
    -- as the stats query reads events): rollup_events is sorted by hour,
    -- so this reads the hours' granules only (0013_rollup_events.sql).
    FROM rollup_events FINAL
    WHERE time >= toDateTime(?) AND time < toDateTime(?) AND toStartOfHour(time) IN (/*HOURTIMES*/)
      AND kind IN ('opened', 'clicked'))

-- name: rollup-open-marks
-- Logs dirty the hours that may count an open key whose first open moved
-- into the hours /*HOURS*/: of the keys recorded in one of them since its
-- last finished recompute (new opens; a key seen there before was never
-- counted by its later hours), those whose earliest hour among /*HOURS*/
-- is before every other hour they have: the earliest of those others,
-- which counted the key while it was the first. The keys are few (none
-- unless opens came), so the outer scan reads a few granules.
INSERT INTO rollup_dirty (hour)
SELECT DISTINCT other FROM (
    SELECT minIf(hour, toUInt32(hour) IN (/*HOURS*/)) AS mine,
        minIf(hour, toUInt32(hour) NOT IN (/*HOURS*/)) AS other,
        countIf(toUInt32(hour) NOT IN (/*HOURS*/)) AS others
    FROM rollup_open_keys
    WHERE (kind, key) IN (
        SELECT kind, key FROM (
            SELECT kind, key, hour, min(version) AS recorded FROM rollup_open_keys
            WHERE toUInt32(hour) IN (/*HOURS*/) GROUP BY kind, key, hour)
        ANY LEFT JOIN (
            SELECT hour, max(version) AS finished FROM rollup_hours
            WHERE toUInt32(hour) IN (/*HOURS*/) GROUP BY hour) USING hour
        WHERE recorded > finished)
    GROUP BY kind, key)
WHERE others > 0 AND other > mine

-- name: rollup-compute
-- Recomputes the hours /*HOURS*/ (of one UTC day, [?, ?), given twice)
-- from their events, each once (as the stats query's FINAL keeps them),
-- as rows of version ?: the counts of the events other than opens and
-- clicks, as the stats query counts them;
-- and each open key, per kind, in the hour and scope of its first open
-- (the earliest by time then event id), unless rollup_open_keys has it in
-- an earlier hour (before the day's end ?) that is not among /*HOURS*/.
INSERT INTO rollup
SELECT h, toUInt64(?), account, sender_domain, sending_ip, isp, campaign, category,
    sum(sent), sum(delivered), sum(deferred), sum(bounced_hard), sum(bounced_soft), sum(complained),
    sum(opened_human), sum(opened_machine), sum(opened_unverified), sum(clicked), sum(unsubscribed), sum(dropped)
FROM (
    SELECT toStartOfHour(time) AS h, account, sender_domain, sending_ip, isp, campaign, category,
        countIf(kind = 'sent') AS sent,
        countIf(kind = 'delivered') AS delivered,
        countIf(kind = 'deferred') AS deferred,
        countIf(kind = 'bounced' AND bounce_type = 'hard') AS bounced_hard,
        countIf(kind = 'bounced' AND bounce_type != 'hard') AS bounced_soft,
        countIf(kind = 'complained') AS complained,
        toUInt64(0) AS opened_human, toUInt64(0) AS opened_machine, toUInt64(0) AS opened_unverified,
        toUInt64(0) AS clicked,
        countIf(kind = 'unsubscribed') AS unsubscribed,
        countIf(kind = 'dropped') AS dropped
    -- Each event once, as in rollup-open-keys.
    FROM rollup_events FINAL
    WHERE time >= toDateTime(?) AND time < toDateTime(?) AND toStartOfHour(time) IN (/*HOURTIMES*/)
      AND kind NOT IN ('opened', 'clicked')
    GROUP BY h, account, sender_domain, sending_ip, isp, campaign, category
    UNION ALL
    SELECT h, d.1, d.2, d.3, d.4, d.5, d.6, toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0), toUInt64(0),
        toUInt64(0), countIf(ok = 1), countIf(ok = 2), countIf(ok = 3), countIf(ok = 4), toUInt64(0), toUInt64(0)
    FROM (
        SELECT ok, k, toStartOfHour(min(time)) AS h,
            argMin((account, sender_domain, sending_ip, isp, campaign, category), (time, event_id)) AS d
        FROM (
            SELECT time, event_id, account, sender_domain, sending_ip, isp, campaign, category,
                arrayJoin(multiIf(kind = 'clicked', [4], isNull(machine), [1, 3], ifNull(machine, 0) = 1, [2], [1])) AS ok,
                if(message_id != '', cityHash64(account, message_id, recipient), cityHash64(account, event_id)) AS k
            -- Each event once, as in rollup-open-keys.
            FROM rollup_events FINAL
            WHERE time >= toDateTime(?) AND time < toDateTime(?) AND toStartOfHour(time) IN (/*HOURTIMES*/)
              AND kind IN ('opened', 'clicked'))
        GROUP BY ok, k)
    ANY LEFT JOIN (
        SELECT kind AS ok, key AS k, min(hour) AS before
        FROM rollup_open_keys
        WHERE hour < toDateTime(?) AND toUInt32(hour) NOT IN (/*HOURS*/)
          AND (kind, key) IN (SELECT kind, key FROM rollup_open_keys WHERE toUInt32(hour) IN (/*HOURS*/))
        GROUP BY kind, key) USING ok, k
    WHERE toUInt32(before) = 0 OR before > h
    GROUP BY h, d)
GROUP BY h, account, sender_domain, sending_ip, isp, campaign, category

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

-- name: rollup-hour-versions
-- The latest finished version of each hour in [?, ?).
SELECT hour, max(version) FROM rollup_hours
WHERE hour >= toDateTime(?) AND hour < toDateTime(?)
GROUP BY hour

-- name: rollup-span-versions
-- The latest version of the sums of each span starting in [?, ?).
SELECT start, width, max(version) FROM rollup_spans
WHERE start >= toDateTime(?) AND start < toDateTime(?)
GROUP BY start, width

-- name: rollup-span-compute
-- Sums the hours of the span [?, ? + width) (their latest finished
-- versions) into rows of the span, width ?, version ?.
INSERT INTO rollup_span
SELECT toDateTime(?) AS s, toUInt32(?), toUInt64(?), account, sender_domain, sending_ip, isp, campaign, category,
    sum(sent), sum(delivered), sum(deferred), sum(bounced_hard), sum(bounced_soft), sum(complained),
    sum(opened_human), sum(opened_machine), sum(opened_unverified), sum(clicked), sum(unsubscribed), sum(dropped)
FROM rollup
WHERE hour >= toDateTime(?) AND hour < toDateTime(?)
  AND (hour, version) IN (
    SELECT hour, max(version) FROM rollup_hours
    WHERE hour >= toDateTime(?) AND hour < toDateTime(?)
    GROUP BY hour)
GROUP BY account, sender_domain, sending_ip, isp, campaign, category

-- name: rollup-span-finish
-- Records the sums of the span (start ?, width ?) at version ? as made.
INSERT INTO rollup_spans SELECT toDateTime(?), toUInt32(?), toUInt64(?)

-- name: rollup-counts
-- The counts of the hours [?, ?): of the spans /*SPANS*/ (a list of
-- (start, width, version), Unix seconds; (0, 0, 0) is none) from their
-- sums, of the other hours, those whose 4-hour block is not among
-- /*BLOCKS*/ (the blocks the spans cover, Unix seconds; 0 is none), from
-- their latest finished version. /*KEYS*/ and /*GROUP*/ as in stats.
SELECT /*KEYS*/
    sum(sent), sum(delivered), sum(deferred), sum(bounced_hard), sum(bounced_soft), sum(complained),
    sum(opened_human), sum(opened_machine), sum(opened_unverified), sum(clicked),
    sum(unsubscribed), sum(dropped)
FROM (
    SELECT account, sender_domain, sending_ip, isp, campaign, category, sent, delivered, deferred,
        bounced_hard, bounced_soft, complained, opened_human, opened_machine, opened_unverified, clicked,
        unsubscribed, dropped
    FROM rollup_span
    WHERE (toUInt32(start), width, version) IN (/*SPANS*/)
    UNION ALL
    SELECT account, sender_domain, sending_ip, isp, campaign, category, sent, delivered, deferred,
        bounced_hard, bounced_soft, complained, opened_human, opened_machine, opened_unverified, clicked,
        unsubscribed, dropped
    FROM rollup
    WHERE hour >= toDateTime(?) AND hour < toDateTime(?)
      AND intDiv(toUInt32(hour), 14400) * 14400 NOT IN (/*BLOCKS*/)
      AND (hour, version) IN (
        SELECT hour, max(version) FROM rollup_hours
        WHERE hour >= toDateTime(?) AND hour < toDateTime(?)
        GROUP BY hour))
/*GROUP*/
