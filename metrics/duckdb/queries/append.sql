-- Executed by the query appender over the rows of one Append, visible as
-- the table "batch" with the columns of events. DISTINCT ON drops the
-- duplicates within the batch; OR IGNORE those already stored.
INSERT OR IGNORE INTO events BY NAME
SELECT DISTINCT ON (account, event_id) * FROM batch
