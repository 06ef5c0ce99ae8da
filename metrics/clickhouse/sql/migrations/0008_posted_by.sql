-- posted_by (issue 10): the account whose key posted the event through the
-- API; '' when repute produced the event itself or the admin key posted
-- it. It decides whether a blocklist entry the event causes is shared
-- with every account ('') or limited to that account. Not part of the id.
-- Rows stored before have ''. 18.16 has no ADD COLUMN IF NOT EXISTS:
-- migrate.go takes "column already exists" from an ADD COLUMN as done.
ALTER TABLE events ADD COLUMN posted_by String AFTER evidence_id;
