-- The write connection's temporary table that receives each batch through
-- the Appender: the columns of events, no key.
CREATE TEMP TABLE IF NOT EXISTS staging AS SELECT * FROM events WITH NO DATA
