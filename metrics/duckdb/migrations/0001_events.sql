-- One row per event (metrics.Event), columns named as the event's JSON
-- fields. Normalized events carry no NULLs: an absent string is ''.
-- time is the UTC instant, whole seconds, as a TIMESTAMP without zone.
-- The primary key makes (account, event_id) unique: appends insert with
-- INSERT OR IGNORE, so a duplicate is stored once.
CREATE TABLE events (
    event_id                 VARCHAR   NOT NULL,
    time                     TIMESTAMP NOT NULL,
    kind                     VARCHAR   NOT NULL,
    source                   VARCHAR   NOT NULL DEFAULT '',
    source_ref               VARCHAR   NOT NULL DEFAULT '',
    account                  VARCHAR   NOT NULL,
    sender_domain            VARCHAR   NOT NULL DEFAULT '',
    sending_ip               VARCHAR   NOT NULL DEFAULT '',
    campaign                 VARCHAR   NOT NULL DEFAULT '',
    message_id               VARCHAR   NOT NULL DEFAULT '',
    recipient                VARCHAR   NOT NULL,
    recipient_domain         VARCHAR   NOT NULL DEFAULT '',
    isp                      VARCHAR   NOT NULL DEFAULT '',
    bounce_type              VARCHAR   NOT NULL DEFAULT '',
    reason                   VARCHAR   NOT NULL DEFAULT '',
    status                   VARCHAR   NOT NULL DEFAULT '',
    reply_code               USMALLINT NOT NULL DEFAULT 0,
    diagnostic               VARCHAR   NOT NULL DEFAULT '',
    remote_mta               VARCHAR   NOT NULL DEFAULT '',
    correlation              VARCHAR   NOT NULL DEFAULT '',
    feedback_type            VARCHAR   NOT NULL DEFAULT '',
    feedback_provider        VARCHAR   NOT NULL DEFAULT '',
    recipient_recovered_from VARCHAR   NOT NULL DEFAULT '',
    user_agent               VARCHAR   NOT NULL DEFAULT '',
    client_ip                VARCHAR   NOT NULL DEFAULT '',
    machine                  BOOLEAN   NOT NULL DEFAULT false,
    machine_reason           VARCHAR   NOT NULL DEFAULT '',
    url                      VARCHAR   NOT NULL DEFAULT '',
    evidence_id              VARCHAR   NOT NULL DEFAULT '',
    PRIMARY KEY (account, event_id)
);
