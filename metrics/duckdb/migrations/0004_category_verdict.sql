-- The event completed (issue 8):
--   category: marketing, transactional, registration or '' (none);
--   machine: the machine-open verdict in three states, NULL (no verdict),
--     false (a person), true (a machine). Rows stored before keep their
--     false: it counted as human then and still does (it cannot be told
--     apart from a verdict now), so opened_unverified counts only opens
--     stored after this migration.
-- category is appended after key_hash: the Appender fills columns by
-- position (duckdb.go's columns list follows the table).
ALTER TABLE events ALTER COLUMN machine DROP NOT NULL;
ALTER TABLE events ALTER COLUMN machine DROP DEFAULT;
-- DuckDB adds no column with a constraint: the NOT NULL comes after.
ALTER TABLE events ADD COLUMN category VARCHAR DEFAULT '';
ALTER TABLE events ALTER COLUMN category SET NOT NULL;
