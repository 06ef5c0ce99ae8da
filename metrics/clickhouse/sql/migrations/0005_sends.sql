-- The indexes of sends that SendByRef, SendByEnvID and SendByMessageID
-- search instead of the events table: two tables of the sent events' fields,
-- one sorted by the reference (source_ref, see docs/events.md), one by the
-- Message-ID, each filled from every insert into events by a materialized
-- view. A repeated sent event is inserted into events again and so into
-- these too; the sorting key ends with (account, event_id), so merges
-- collapse the repeats, and a lookup (ORDER BY time DESC LIMIT 1) finds the
-- same send in either copy.
--   ref      lower(source_ref), the key of SendByRef;
--   msg_key  message_id without white space and angle brackets
--            (metrics.NormalizeMessageID; the pattern is
--            metrics.MessageIDTrimRE).
CREATE TABLE IF NOT EXISTS sends_by_ref (
    ref           String,
    source_ref    String,
    recipient     String,
    account       String,
    event_id      String,
    time          DateTime('UTC'),
    sender_domain String,
    campaign      String,
    sending_ip    String,
    message_id    String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (ref, source_ref, recipient, account, event_id);
CREATE TABLE IF NOT EXISTS sends_by_message_id (
    msg_key       String,
    recipient     String,
    account       String,
    event_id      String,
    time          DateTime('UTC'),
    sender_domain String,
    campaign      String,
    sending_ip    String,
    message_id    String
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(time)
ORDER BY (msg_key, recipient, account, event_id);
CREATE MATERIALIZED VIEW IF NOT EXISTS sends_by_ref_mv TO sends_by_ref AS
SELECT lower(source_ref) AS ref, source_ref, recipient, account, event_id, time,
       sender_domain, campaign, sending_ip, message_id
FROM events
WHERE kind = 'sent' AND source_ref != '';
CREATE MATERIALIZED VIEW IF NOT EXISTS sends_by_message_id_mv TO sends_by_message_id AS
SELECT replaceRegexpAll(message_id, '^\\s*<?\\s*|\\s*>?\\s*$', '') AS msg_key, recipient,
       account, event_id, time, sender_domain, campaign, sending_ip, message_id
FROM events
WHERE kind = 'sent' AND message_id != '';
-- The sent events stored before the views. A row inserted between a view's
-- creation and this copy, or copied again by a second run, is a repeat,
-- which the sorting key collapses.
INSERT INTO sends_by_ref (ref, source_ref, recipient, account, event_id, time,
                          sender_domain, campaign, sending_ip, message_id)
SELECT lower(source_ref), source_ref, recipient, account, event_id, time,
       sender_domain, campaign, sending_ip, message_id
FROM events
WHERE kind = 'sent' AND source_ref != '';
INSERT INTO sends_by_message_id (msg_key, recipient, account, event_id, time,
                                 sender_domain, campaign, sending_ip, message_id)
SELECT replaceRegexpAll(message_id, '^\\s*<?\\s*|\\s*>?\\s*$', ''), recipient, account,
       event_id, time, sender_domain, campaign, sending_ip, message_id
FROM events
WHERE kind = 'sent' AND message_id != '';
