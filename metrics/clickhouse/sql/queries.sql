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
