package duckdb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

var (
	_ metrics.EvidenceWriter = (*Store)(nil)
	_ metrics.EvidenceReader = (*Store)(nil)
)

// evidenceStaging is the temporary table (of the write connection) that
// PutEvidence fills through an Appender before one INSERT OR IGNORE moves
// the rows not stored yet into evidence: the Appender alone would fail the
// whole batch on the first key already stored.
const evidenceStaging = `CREATE TEMP TABLE IF NOT EXISTS evidence_in (
    account VARCHAR, id VARCHAR, stored TIMESTAMP, source VARCHAR,
    source_ref VARCHAR, size BIGINT, truncated BOOLEAN, data BLOB)`

// PutEvidence stores ev in one transaction; evidence whose (account, id)
// is stored already is left as it is (the first put wins). A zero Stored
// means now; it is kept in whole seconds, UTC.
func (s *Store) PutEvidence(ctx context.Context, ev []metrics.Evidence) error {
	if len(ev) == 0 {
		return nil
	}
	now := time.Now()
	// A key repeated within the call: the first wins, chosen here so that
	// the INSERT below needs no sort of the blobs.
	seen := make(map[[2]string]bool, len(ev))
	first := make([]*metrics.Evidence, 0, len(ev))
	for i := range ev {
		k := [2]string{ev[i].Account, ev[i].ID}
		if !seen[k] {
			seen[k] = true
			first = append(first, &ev[i])
		}
	}
	err := s.writeTx(ctx, func() error {
		if _, err := s.write.ExecContext(ctx, evidenceStaging); err != nil {
			return err
		}
		if _, err := s.write.ExecContext(ctx, "DELETE FROM evidence_in"); err != nil {
			return err
		}
		err := s.write.Raw(func(dc any) error {
			a, err := duckdb.NewAppender(dc.(driver.Conn), "temp", "main", "evidence_in")
			if err != nil {
				return err
			}
			for _, e := range first {
				if err := a.AppendRow(e.Account, e.ID, storedAt(e.Stored, now), e.Source,
					e.SourceRef, int64(e.Size), e.Truncated, e.Data); err != nil {
					a.Close()
					return err
				}
			}
			return a.CloseWithCancel(ctx)
		})
		if err != nil {
			return err
		}
		_, err = s.write.ExecContext(ctx, `INSERT OR IGNORE INTO evidence SELECT * FROM evidence_in`)
		return err
	})
	if err != nil {
		return fmt.Errorf("duckdb: put %d evidence: %w", len(ev), err)
	}
	return nil
}

// storedAt is the stored time of evidence put at now: its own when set,
// whole seconds, UTC.
func storedAt(stored, now time.Time) time.Time {
	if stored.IsZero() {
		stored = now
	}
	return stored.UTC().Truncate(time.Second)
}

// PurgeEvidence deletes the evidence stored before storedBefore and
// returns how many were deleted.
func (s *Store) PurgeEvidence(ctx context.Context, storedBefore time.Time) (int64, error) {
	var n int64
	err := s.writeTx(ctx, func() error {
		r, err := s.write.ExecContext(ctx, "DELETE FROM evidence WHERE stored < $1", storedBefore.UTC())
		if err != nil {
			return err
		}
		n, err = r.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("duckdb: purge evidence: %w", err)
	}
	return n, nil
}

// Evidence returns the evidence id of account, or of any account when
// account is "".
func (s *Store) Evidence(ctx context.Context, account, id string) (metrics.Evidence, bool, error) {
	const cols = "SELECT account, id, stored, source, source_ref, size, truncated, data FROM evidence "
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	var row *sql.Row
	if account == "" {
		row = s.db.QueryRowContext(ctx, cols+"WHERE id = $1 LIMIT 1", id)
	} else {
		row = s.db.QueryRowContext(ctx, cols+"WHERE account = $1 AND id = $2", account, id)
	}
	var e metrics.Evidence
	var size int64
	err := row.Scan(&e.Account, &e.ID, &e.Stored, &e.Source, &e.SourceRef, &size, &e.Truncated, &e.Data)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return metrics.Evidence{}, false, nil
	case err != nil:
		return metrics.Evidence{}, false, fmt.Errorf("duckdb: evidence %s: %w", id, err)
	}
	e.Size = int(size)
	e.Stored = e.Stored.UTC()
	return e, true, nil
}
