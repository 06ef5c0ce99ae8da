-- Claims of leases (TryLease, ReleaseLease). ClickHouse has no
-- transactions: every take, renewal or release inserts a claim, and the
-- claim of the highest version (the claimant's clock in nanoseconds) is the
-- lease's state. expires is in Unix nanoseconds, written and compared by
-- the Go clock; a release is a claim with holder '' and expires 0.
CREATE TABLE IF NOT EXISTS lease_claims (
    name    String,
    holder  String,
    expires Int64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY name;
