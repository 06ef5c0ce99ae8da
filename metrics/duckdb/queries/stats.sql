-- Counts of the events with $1 <= time < $2 of account $3 ('' = every
-- account). The three placeholder comments (keys, group_by, order_by) are
-- filled from a fixed list of column expressions (see stats.go), never from
-- user input: with no dimension they are empty and the query returns one
-- row, the totals; otherwise GROUPING SETS returns the groups and the totals
-- row (is_total = true) in the same statement.
--
-- Opens and clicks are unique per (account, message_id, recipient) within
-- the group, human and machine opens separately; without a message_id they
-- count per event. An open without a verdict (machine IS NULL) is human;
-- opened_unverified counts those again on their own. A bounce that is not
-- hard is soft.
SELECT /*keys*/
    count(*) FILTER (WHERE kind = 'sent')                                 AS sent,
    count(*) FILTER (WHERE kind = 'delivered')                            AS delivered,
    count(*) FILTER (WHERE kind = 'deferred')                             AS deferred,
    count(*) FILTER (WHERE kind = 'bounced' AND bounce_type = 'hard')     AS bounced_hard,
    count(*) FILTER (WHERE kind = 'bounced' AND bounce_type <> 'hard')    AS bounced_soft,
    count(*) FILTER (WHERE kind = 'complained')                           AS complained,
    count(DISTINCT (account, message_id, recipient))
        FILTER (WHERE kind = 'opened' AND machine IS NOT TRUE AND message_id <> '')
      + count(*) FILTER (WHERE kind = 'opened' AND machine IS NOT TRUE AND message_id = '')
                                                                          AS opened_human,
    count(DISTINCT (account, message_id, recipient))
        FILTER (WHERE kind = 'opened' AND machine IS TRUE AND message_id <> '')
      + count(*) FILTER (WHERE kind = 'opened' AND machine IS TRUE AND message_id = '')
                                                                          AS opened_machine,
    count(DISTINCT (account, message_id, recipient))
        FILTER (WHERE kind = 'opened' AND machine IS NULL AND message_id <> '')
      + count(*) FILTER (WHERE kind = 'opened' AND machine IS NULL AND message_id = '')
                                                                          AS opened_unverified,
    count(DISTINCT (account, message_id, recipient))
        FILTER (WHERE kind = 'clicked' AND message_id <> '')
      + count(*) FILTER (WHERE kind = 'clicked' AND message_id = '')      AS clicked,
    count(*) FILTER (WHERE kind = 'unsubscribed')                         AS unsubscribed,
    count(*) FILTER (WHERE kind = 'dropped')                              AS dropped
FROM events
WHERE time >= $1 AND time < $2 AND ($3 = '' OR account = $3)
/*group_by*/
/*order_by*/
