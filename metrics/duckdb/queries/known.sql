-- The stored rows whose key hash is among $1 (a list of key hashes, see
-- migrations/0002_key_hash.sql), as (account, event_id) for the caller to
-- compare exactly. The inner scan reads only key_hash; the outer one reads
-- the keys of the few matching rows, by rowid.
SELECT account, event_id
FROM events
WHERE rowid IN (SELECT rowid FROM events WHERE key_hash IN (SELECT unnest($1::UBIGINT[])))
