-- Stored raw reports (metrics.Evidence), one row per (account, id): the
-- primary key makes a second PutEvidence of the same report a no-op
-- (INSERT OR IGNORE). data is the zstd-compressed message
-- (metrics.EncodeEvidence), opaque here. stored is the UTC instant of the
-- first put, whole seconds; retention (PurgeEvidence) counts from it.
CREATE TABLE evidence (
    account    VARCHAR   NOT NULL,
    id         VARCHAR   NOT NULL,
    stored     TIMESTAMP NOT NULL,
    source     VARCHAR   NOT NULL DEFAULT '',
    source_ref VARCHAR   NOT NULL DEFAULT '',
    size       BIGINT    NOT NULL,
    truncated  BOOLEAN   NOT NULL,
    data       BLOB      NOT NULL,
    PRIMARY KEY (account, id)
);
