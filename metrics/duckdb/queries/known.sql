-- The stored keys among the candidates: $1 accounts and $2 event ids, as
-- two lists of the same length, pairwise; $3 and $4 bound the time of the
-- stored events to look at (the candidates' earliest and latest time).
SELECT e.account, e.event_id
FROM events AS e
JOIN (SELECT unnest($1::VARCHAR[]) AS account, unnest($2::VARCHAR[]) AS event_id) AS k
  ON e.account = k.account AND e.event_id = k.event_id
WHERE e.time BETWEEN $3 AND $4
