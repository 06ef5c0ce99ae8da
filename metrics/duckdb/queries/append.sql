-- The fast path of Append. The batch's rows are in the temporary table
-- staging; $1 and $2 are their earliest and latest time. DISTINCT ON drops
-- the duplicates within the batch, the anti-join those already stored at
-- the same time (a repeated fact has the same time, and zone maps keep the
-- scan to the batch's time span). A stored event with the same key at
-- another time makes the primary key refuse the whole statement; Append
-- then runs append_exact.sql instead.
INSERT INTO events
SELECT DISTINCT ON (b.account, b.event_id) b.*
FROM staging AS b
ANTI JOIN (SELECT account, event_id FROM events WHERE time BETWEEN $1 AND $2) AS e
  ON b.account = e.account AND b.event_id = e.event_id
