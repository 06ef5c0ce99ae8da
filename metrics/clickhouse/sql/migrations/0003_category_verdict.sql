-- The event completed (issue 8):
--   category: marketing, transactional, registration or '' (none);
--   machine: the machine-open verdict in three states, NULL (no verdict),
--     0 (a person), 1 (a machine): Nullable(UInt8), as 18.16 has no Bool.
--     Rows stored before keep their 0: it counted as human then and still
--     does (it cannot be told apart from a verdict now), so
--     opened_unverified counts only opens stored after this migration.
-- 18.16 has no ADD COLUMN IF NOT EXISTS: migrate.go takes "column already
-- exists" from an ADD COLUMN as done, so a second run is harmless.
-- MODIFY COLUMN to the type the column has already is a no-op.
ALTER TABLE events ADD COLUMN category String AFTER campaign;
ALTER TABLE events MODIFY COLUMN machine Nullable(UInt8);
