-- posted_by (issue 10): the account whose key posted the event through the
-- API; '' when repute produced the event itself or the admin key posted
-- it. It decides whether a blocklist entry the event causes is shared
-- with every account ('') or limited to that account. Not part of the id.
-- Appended after category: the Appender fills columns by position
-- (duckdb.go's columns list follows the table). Rows stored before have ''.
-- DuckDB adds no column with a constraint: the NOT NULL comes after.
ALTER TABLE events ADD COLUMN posted_by VARCHAR DEFAULT '';
ALTER TABLE events ALTER COLUMN posted_by SET NOT NULL;
