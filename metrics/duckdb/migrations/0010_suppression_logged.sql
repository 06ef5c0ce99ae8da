-- logged_ns (issue 10): when the store took a suppression change, Unix
-- nanoseconds, so that readers following the log (webhooks, other repute
-- serve processes) read it in the order it was written: a change about an
-- old event is written after changes with later times. Appended last: the
-- Appender fills the staging table by position. Rows stored before are
-- taken as logged at their time.
ALTER TABLE suppression_changes ADD COLUMN logged_ns BIGINT DEFAULT 0;
UPDATE suppression_changes SET logged_ns = time_ns;
ALTER TABLE suppression_changes ALTER COLUMN logged_ns SET NOT NULL;
