-- Roll-ups with first-open counting (metrics.FirstOpens, issue 13): every
-- count of a roll-up row is additive, so that a window's counts are the
-- sums of its hours' rows and a reader never counts distinct keys.
--
-- rollup: one row per (UTC hour, dimensions) with the additive counts of
-- Stats (sent … dropped) and the first opens that fall in it (opened_human,
-- opened_machine, opened_unverified, clicked). Append adds delta rows
-- (compacted false), in the transaction that stores the events; a delta may
-- be negative (a late open that moves a key's first open out of its row).
-- RefreshRollups sums the deltas of an hour into one row per scope
-- (compacted true); readers sum whatever rows there are, so a refresh
-- changes no count.
--
-- rollup_first_opens: the first open of each open key, per kind (1 human:
-- verdict false or none; 2 machine; 3 no verdict, which also enters 1; 4
-- click; metrics.OpenKind): its time and event id (the earliest by time,
-- then event id) and its dimensions, that is the rollup row it counts in.
-- key is the low 64 bits of the MD5 of 'm', account, message_id,
-- recipient (chr(0) between), or of 'e', account, event_id for an open
-- without message_id (it counts per event, as in Stats), as 0012 had it
-- and openKey in Go computes it. Two open keys whose hashes collide count
-- once: with 10 million keys the chance that any pair does is about 3 in a
-- million. Append looks the keys of a batch up here, in one query, and
-- inserts a key it does not find, or moves one whose new open is earlier
-- (rollup.go). (kind, key) is unique because appends are serialised and
-- insert only keys they did not find; it is not declared a primary key,
-- whose index DuckDB rewrites whole at every checkpoint (see 0002): the
-- lookup scans the 8-byte key column instead.
--
-- Exact in any order of arrival: a key's row always holds the earliest of
-- its stored opens, and exactly that open's rollup row holds its +1.
DROP TABLE rollup;
CREATE TABLE rollup (
    hour              TIMESTAMP NOT NULL,
    account           VARCHAR   NOT NULL,
    sender_domain     VARCHAR   NOT NULL,
    sending_ip        VARCHAR   NOT NULL,
    isp               VARCHAR   NOT NULL,
    campaign          VARCHAR   NOT NULL,
    category          VARCHAR   NOT NULL,
    sent              BIGINT    NOT NULL,
    delivered         BIGINT    NOT NULL,
    deferred          BIGINT    NOT NULL,
    bounced_hard      BIGINT    NOT NULL,
    bounced_soft      BIGINT    NOT NULL,
    complained        BIGINT    NOT NULL,
    unsubscribed      BIGINT    NOT NULL,
    dropped           BIGINT    NOT NULL,
    opened_human      BIGINT    NOT NULL,
    opened_machine    BIGINT    NOT NULL,
    opened_unverified BIGINT    NOT NULL,
    clicked           BIGINT    NOT NULL,
    compacted         BOOLEAN   NOT NULL
);
CREATE TABLE rollup_first_opens (
    kind          UTINYINT  NOT NULL,
    key           UBIGINT   NOT NULL,
    time          TIMESTAMP NOT NULL,
    event_id      VARCHAR   NOT NULL,
    account       VARCHAR   NOT NULL,
    sender_domain VARCHAR   NOT NULL,
    sending_ip    VARCHAR   NOT NULL,
    isp           VARCHAR   NOT NULL,
    campaign      VARCHAR   NOT NULL,
    category      VARCHAR   NOT NULL
);
-- The backfill of the events stored before: each key's first open per
-- kind, then the rows of both kinds of counts, compacted.
INSERT INTO rollup_first_opens
SELECT kind, key, f.time, f.event_id, f.account, f.sender_domain, f.sending_ip, f.isp, f.campaign, f.category
FROM (
    SELECT kind, key,
        arg_min({'time': time, 'event_id': event_id, 'account': account, 'sender_domain': sender_domain,
                 'sending_ip': sending_ip, 'isp': isp, 'campaign': campaign, 'category': category},
                (time, event_id)) AS f
    FROM (
        SELECT unnest(CASE WHEN kind = 'clicked' THEN [4] WHEN machine IS NULL THEN [1, 3]
                           WHEN machine THEN [2] ELSE [1] END) AS kind,
            CASE WHEN message_id <> '' THEN md5_number_lower('m' || chr(0) || account || chr(0) || message_id || chr(0) || recipient)
                 ELSE md5_number_lower('e' || chr(0) || account || chr(0) || event_id) END AS key,
            time, event_id, account, sender_domain, sending_ip, isp, campaign, category
        FROM events
        WHERE kind IN ('opened', 'clicked'))
    GROUP BY kind, key);
INSERT INTO rollup
SELECT hour, account, sender_domain, sending_ip, isp, campaign, category,
    sum(sent)::BIGINT, sum(delivered)::BIGINT, sum(deferred)::BIGINT, sum(bounced_hard)::BIGINT,
    sum(bounced_soft)::BIGINT, sum(complained)::BIGINT, sum(unsubscribed)::BIGINT, sum(dropped)::BIGINT,
    sum(opened_human)::BIGINT, sum(opened_machine)::BIGINT, sum(opened_unverified)::BIGINT, sum(clicked)::BIGINT,
    true
FROM (
    SELECT date_trunc('hour', time) AS hour, account, sender_domain, sending_ip, isp, campaign, category,
        count(*) FILTER (WHERE kind = 'sent') AS sent,
        count(*) FILTER (WHERE kind = 'delivered') AS delivered,
        count(*) FILTER (WHERE kind = 'deferred') AS deferred,
        count(*) FILTER (WHERE kind = 'bounced' AND bounce_type = 'hard') AS bounced_hard,
        count(*) FILTER (WHERE kind = 'bounced' AND bounce_type <> 'hard') AS bounced_soft,
        count(*) FILTER (WHERE kind = 'complained') AS complained,
        count(*) FILTER (WHERE kind = 'unsubscribed') AS unsubscribed,
        count(*) FILTER (WHERE kind = 'dropped') AS dropped,
        0 AS opened_human, 0 AS opened_machine, 0 AS opened_unverified, 0 AS clicked
    FROM events
    WHERE kind NOT IN ('opened', 'clicked')
    GROUP BY ALL
    UNION ALL BY NAME
    SELECT date_trunc('hour', time) AS hour, account, sender_domain, sending_ip, isp, campaign, category,
        0 AS sent, 0 AS delivered, 0 AS deferred, 0 AS bounced_hard, 0 AS bounced_soft, 0 AS complained,
        0 AS unsubscribed, 0 AS dropped,
        count(*) FILTER (WHERE kind = 1) AS opened_human,
        count(*) FILTER (WHERE kind = 2) AS opened_machine,
        count(*) FILTER (WHERE kind = 3) AS opened_unverified,
        count(*) FILTER (WHERE kind = 4) AS clicked
    FROM rollup_first_opens
    GROUP BY ALL)
GROUP BY hour, account, sender_domain, sending_ip, isp, campaign, category;
