-- The log of suppression changes (metrics.SuppressionChange, issue 10):
-- the audit of the blocklist and the unsubscribe list, and what they are
-- rebuilt from, replayed in (time_ns, id) order. The primary key on id
-- makes appending a change again a no-op (INSERT OR IGNORE: the first
-- stored wins). Times are Unix nanoseconds, BIGINT: a TIMESTAMP keeps only
-- microseconds, and the id covers the time to the nanosecond; a zero
-- time.Time is stored as 0. changed_by is the change's By (BY is an SQL
-- keyword).
CREATE TABLE suppression_changes (
    id            VARCHAR NOT NULL PRIMARY KEY,
    time_ns       BIGINT  NOT NULL,
    action        VARCHAR NOT NULL,
    address       VARCHAR NOT NULL DEFAULT '',
    account       VARCHAR NOT NULL DEFAULT '',
    shared        BOOLEAN NOT NULL DEFAULT false,
    sender_domain VARCHAR NOT NULL DEFAULT '',
    list          VARCHAR NOT NULL DEFAULT '',
    reason        VARCHAR NOT NULL DEFAULT '',
    event_id      VARCHAR NOT NULL DEFAULT '',
    since_ns      BIGINT  NOT NULL DEFAULT 0,
    until_ns      BIGINT  NOT NULL DEFAULT 0,
    changed_by    VARCHAR NOT NULL DEFAULT ''
);
