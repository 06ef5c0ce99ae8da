-- Leases (TryLease, ReleaseLease): who holds the named lease and until when
-- (UTC, the Go clock of the process that took it).
CREATE TABLE leases (
    name    VARCHAR   NOT NULL PRIMARY KEY,
    holder  VARCHAR   NOT NULL,
    expires TIMESTAMP NOT NULL
);
