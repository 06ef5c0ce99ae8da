-- The history of the rule engine (metrics.RulesHistory, issue 13): its
-- throttle decisions and the flags it raised and cleared, for the
-- dashboards. Times are Unix nanoseconds, BIGINT, as in
-- suppression_changes; a zero time.Time is stored as 0 (expires_ns 0: a
-- decision without an end). A decision is identified by (id, seq), a flag
-- change by its id: appending one again is a no-op (INSERT OR IGNORE: the
-- first stored wins). minute_limit and max_connections are NULL when
-- unset; reasons is the decision's reasons as JSON.
CREATE TABLE rule_decisions (
    id              VARCHAR NOT NULL,
    seq             BIGINT  NOT NULL,
    issued_ns       BIGINT  NOT NULL,
    expires_ns      BIGINT  NOT NULL DEFAULT 0,
    sender_domain   VARCHAR NOT NULL DEFAULT '',
    sending_ip      VARCHAR NOT NULL DEFAULT '',
    isp             VARCHAR NOT NULL DEFAULT '',
    action          VARCHAR NOT NULL,
    warmup_day      BIGINT  NOT NULL DEFAULT 0,
    daily_limit     BIGINT  NOT NULL DEFAULT 0,
    hourly_limit    BIGINT  NOT NULL DEFAULT 0,
    minute_limit    BIGINT,
    max_connections BIGINT,
    source          VARCHAR NOT NULL DEFAULT '',
    reasons         VARCHAR NOT NULL DEFAULT '[]',
    PRIMARY KEY (id, seq)
);
CREATE TABLE rule_flag_changes (
    id            VARCHAR NOT NULL PRIMARY KEY,
    time_ns       BIGINT  NOT NULL,
    rule          VARCHAR NOT NULL,
    account       VARCHAR NOT NULL DEFAULT '',
    sender_domain VARCHAR NOT NULL DEFAULT '',
    sending_ip    VARCHAR NOT NULL DEFAULT '',
    isp           VARCHAR NOT NULL DEFAULT '',
    campaign      VARCHAR NOT NULL DEFAULT '',
    category      VARCHAR NOT NULL DEFAULT '',
    severity      VARCHAR NOT NULL DEFAULT '',
    value         DOUBLE  NOT NULL DEFAULT 0,
    threshold     DOUBLE  NOT NULL DEFAULT 0,
    sample        BIGINT  NOT NULL DEFAULT 0,
    time_window   VARCHAR NOT NULL DEFAULT '',
    raised        BOOLEAN NOT NULL
);
