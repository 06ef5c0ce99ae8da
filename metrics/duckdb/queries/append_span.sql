-- The second try of Append, for a batch holding stored events (in the
-- temporary table staging, without repeated keys): $1 and $2 are the
-- batch's earliest and latest time, and the anti-join drops the rows stored
-- within that span (a repeated fact has the same time, and zone maps keep
-- the scan to the span). A key stored at another
-- time makes the primary key refuse the statement; Append then runs
-- append_exact.sql.
INSERT INTO events
SELECT b.*
FROM staging AS b
ANTI JOIN (SELECT account, event_id FROM events WHERE time BETWEEN $1 AND $2) AS e
  ON b.account = e.account AND b.event_id = e.event_id
