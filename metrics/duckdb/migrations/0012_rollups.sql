-- Replaced by 0014_rollup_first_opens.sql (first-open counting); kept as
-- applied.
-- Roll-ups for the rule engine (metrics.RuleCounter, issue 13): its counts
-- per UTC hour and scope, so that an evaluation reads pre-aggregated rows
-- instead of the raw events (rollup.go).
--
-- Append adds the roll-up rows of the events it found new, in the same
-- transaction as the events: the roll-up counts exactly the stored events,
-- whatever is appended twice. Those rows are deltas (compacted false):
-- several may share a key. RefreshRollups sums the deltas of an hour into
-- one row per key (compacted true), so that the table stays about one row
-- per scope and hour; readers sum whatever rows there are, so a refresh
-- changes no count.
--
-- Two kinds of rows, as in the ClickHouse roll-up:
--   class 0, key 0: the additive counts of (hour, dimensions);
--   class 1..4, key: an open or click of (hour, dimensions): 1 a human
--     open (verdict false), 2 an open without verdict, 3 a machine open,
--     4 a click; key the low 64 bits of the MD5 of 'm', account,
--     message_id, recipient (chr(0) between), or of 'e', account,
--     event_id for one without message_id (it counts per event, as in
--     Stats) — computed the same way in Go (openKey). Readers count the
--     distinct keys of the whole window, so a message opened in two hours
--     counts once. Counts are zero in these rows.
CREATE TABLE rollup (
    hour          TIMESTAMP NOT NULL,
    account       VARCHAR   NOT NULL,
    sender_domain VARCHAR   NOT NULL,
    sending_ip    VARCHAR   NOT NULL,
    isp           VARCHAR   NOT NULL,
    campaign      VARCHAR   NOT NULL,
    category      VARCHAR   NOT NULL,
    class         UTINYINT  NOT NULL,
    key           UBIGINT   NOT NULL,
    sent          BIGINT    NOT NULL,
    delivered     BIGINT    NOT NULL,
    deferred      BIGINT    NOT NULL,
    bounced_hard  BIGINT    NOT NULL,
    bounced_soft  BIGINT    NOT NULL,
    complained    BIGINT    NOT NULL,
    unsubscribed  BIGINT    NOT NULL,
    dropped       BIGINT    NOT NULL,
    compacted     BOOLEAN   NOT NULL
);
-- The backfill of the events stored before, compacted.
INSERT INTO rollup
SELECT date_trunc('hour', time) AS h, account, sender_domain, sending_ip, isp, campaign, category,
    CASE WHEN kind = 'clicked' THEN 4 WHEN kind <> 'opened' THEN 0 WHEN machine IS NULL THEN 2
         WHEN machine THEN 3 ELSE 1 END AS c,
    CASE WHEN kind NOT IN ('opened', 'clicked') THEN 0
         WHEN message_id <> '' THEN md5_number_lower('m' || chr(0) || account || chr(0) || message_id || chr(0) || recipient)
         ELSE md5_number_lower('e' || chr(0) || account || chr(0) || event_id) END AS k,
    count(*) FILTER (WHERE kind = 'sent'),
    count(*) FILTER (WHERE kind = 'delivered'),
    count(*) FILTER (WHERE kind = 'deferred'),
    count(*) FILTER (WHERE kind = 'bounced' AND bounce_type = 'hard'),
    count(*) FILTER (WHERE kind = 'bounced' AND bounce_type <> 'hard'),
    count(*) FILTER (WHERE kind = 'complained'),
    count(*) FILTER (WHERE kind = 'unsubscribed'),
    count(*) FILTER (WHERE kind = 'dropped'),
    true
FROM events
GROUP BY h, account, sender_domain, sending_ip, isp, campaign, category, c, k;
