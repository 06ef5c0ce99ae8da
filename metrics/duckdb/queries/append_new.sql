-- The first try of Append: every row of the batch (in the temporary table
-- staging, without repeated keys) is new. The primary key refuses the whole
-- statement when one is stored already; Append then tries append_span.sql.
INSERT INTO events SELECT * FROM staging
