-- The index of sends that the SendLookup methods (SendByRef,
-- SendByMessageID, SendByEnvID) search instead of the events table: one row
-- per stored sent event, appended by Append in the transaction that stores
-- the event (a repeated sent event is not stored again, so it adds no row).
--   ref        lower(source_ref): the send's reference (docs/events.md);
--   source_ref as stored, for SendByEnvID's exact match;
--   msg_key    message_id without white space and angle brackets
--              (metrics.NormalizeMessageID), the key SendByMessageID looks
--              up; message_id is kept as stored, as the Send returns it.
-- Rows with neither a source_ref nor a message_id cannot be found and are
-- not kept. The ART indexes make each lookup a point query.
CREATE TABLE sends (
    ref           VARCHAR   NOT NULL,
    source_ref    VARCHAR   NOT NULL,
    msg_key       VARCHAR   NOT NULL,
    message_id    VARCHAR   NOT NULL,
    recipient     VARCHAR   NOT NULL,
    account       VARCHAR   NOT NULL,
    sender_domain VARCHAR   NOT NULL,
    campaign      VARCHAR   NOT NULL,
    sending_ip    VARCHAR   NOT NULL,
    time          TIMESTAMP NOT NULL
);
-- The sent events stored before this migration. The pattern is
-- metrics.MessageIDTrimRE.
INSERT INTO sends
SELECT lower(source_ref), source_ref,
       regexp_replace(message_id, '^\s*<?\s*|\s*>?\s*$', '', 'g'), message_id,
       recipient, account, sender_domain, campaign, sending_ip, time
FROM events
WHERE kind = 'sent' AND (source_ref <> '' OR message_id <> '');
CREATE INDEX sends_ref ON sends (ref);
CREATE INDEX sends_msg_key ON sends (msg_key);
