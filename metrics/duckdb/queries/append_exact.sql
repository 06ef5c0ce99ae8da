-- The last try of Append: OR IGNORE skips every row whose (account,
-- event_id) is stored, whatever its time. DuckDB runs it as a join against
-- the whole table, so it is kept for this rare case.
INSERT OR IGNORE INTO events SELECT * FROM staging
