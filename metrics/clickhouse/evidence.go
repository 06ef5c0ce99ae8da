package clickhouse

import (
	"context"
	"fmt"
	"time"

	"repute/metrics"
)

var (
	_ metrics.EvidenceWriter = (*Store)(nil)
	_ metrics.EvidenceReader = (*Store)(nil)
)

var evidenceColumns = "account, id, stored, source, source_ref, size, truncated, data, precedence"

// PutEvidence stores ev, one insert per month of stored (one partition
// each). Evidence whose (account, id) is stored already is inserted again,
// but reads take the first put (see sql/migrations/0004_evidence.sql), so
// nothing changes. A zero Stored means now; it is kept in whole seconds.
func (s *Store) PutEvidence(ctx context.Context, ev []metrics.Evidence) error {
	if len(ev) == 0 {
		return nil
	}
	now := time.Now()
	byMonth := map[int][]metrics.Evidence{}
	var months []int
	for _, e := range ev {
		e.Stored = e.Stored.UTC()
		if e.Stored.IsZero() {
			e.Stored = now.UTC()
		}
		e.Stored = e.Stored.Truncate(time.Second)
		m := e.Stored.Year()*12 + int(e.Stored.Month())
		if byMonth[m] == nil {
			months = append(months, m)
		}
		byMonth[m] = append(byMonth[m], e)
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	for _, m := range months {
		if err := s.insertEvidence(ctx, byMonth[m], precedence(time.Now())); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) insertEvidence(ctx context.Context, ev []metrics.Evidence, prec uint64) error {
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO evidence ("+evidenceColumns+")")
	if err != nil {
		return s.errorf("prepare evidence insert", err)
	}
	defer batch.Abort() //nolint:errcheck // a no-op once sent
	n := len(ev)
	var (
		accounts, ids, sources, refs = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		stored                       = make([]time.Time, n)
		sizes, precs                 = make([]uint64, n), make([]uint64, n)
		truncated                    = make([]uint8, n)
		data                         = make([][]byte, n)
	)
	for i, e := range ev {
		accounts[i], ids[i], stored[i], sources[i], refs[i] = e.Account, e.ID, e.Stored, e.Source, e.SourceRef
		sizes[i], data[i], precs[i] = uint64(max(e.Size, 0)), e.Data, prec
		if e.Truncated {
			truncated[i] = 1
		}
	}
	for i, col := range []any{accounts, ids, stored, sources, refs, sizes, truncated, data, precs} {
		if err := batch.Column(i).Append(col); err != nil {
			return s.errorf(fmt.Sprintf("evidence insert column %d", i), err)
		}
	}
	if err := batch.Send(); err != nil {
		return s.errorf(fmt.Sprintf("insert %d evidence", n), err)
	}
	return nil
}

// PurgeEvidence deletes the evidence stored before storedBefore, by a
// mutation (ALTER TABLE … DELETE, which 18.16 has), and waits until the
// mutation is done, so that no read after it returns finds purged evidence.
// It returns how many (account, id) were stored before storedBefore just
// before the mutation started.
func (s *Store) PurgeEvidence(ctx context.Context, storedBefore time.Time) (int64, error) {
	conn, err := s.ready(ctx)
	if err != nil {
		return 0, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	// stored is whole seconds: stored < storedBefore is stored < the second
	// after it, unless storedBefore is a whole second.
	sec := storedBefore.Unix()
	if storedBefore.After(time.Unix(sec, 0)) {
		sec++
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT uniqExact(account, id) FROM evidence WHERE stored < toDateTime(?)", sec).Scan(&n); err != nil {
		return 0, s.errorf("count evidence to purge", err)
	}
	if n == 0 {
		return 0, nil
	}
	if err := conn.Exec(ctx, fmt.Sprintf("ALTER TABLE evidence DELETE WHERE stored < toDateTime(%d)", sec)); err != nil {
		return 0, s.errorf("purge evidence", err)
	}
	if err := s.waitMutations(ctx, "evidence"); err != nil {
		return 0, err
	}
	return int64(n), nil
}

// waitMutations waits until no mutation of table is pending (18.16 has no
// mutations_sync setting).
func (s *Store) waitMutations(ctx context.Context, table string) error {
	conn, err := s.ready(ctx)
	if err != nil {
		return err
	}
	pause := 10 * time.Millisecond
	for {
		var pending uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.mutations WHERE database = currentDatabase() AND table = ? AND is_done = 0",
			table).Scan(&pending); err != nil {
			return s.errorf("wait for mutations", err)
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return s.errorf("wait for mutations", ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, 500*time.Millisecond)
	}
}

// Evidence returns the evidence id of account, or of any account when
// account is "": the first put of it.
func (s *Store) Evidence(ctx context.Context, account, id string) (metrics.Evidence, bool, error) {
	conn, err := s.ready(ctx)
	if err != nil {
		return metrics.Evidence{}, false, err
	}
	ctx, cancel := s.deadline(ctx)
	defer cancel()
	query := "SELECT " + evidenceColumns + " FROM evidence WHERE id = ?"
	args := []any{id}
	if account != "" {
		query = "SELECT " + evidenceColumns + " FROM evidence WHERE account = ? AND id = ?"
		args = []any{account, id}
	}
	rows, err := conn.Query(ctx, query+" ORDER BY precedence DESC LIMIT 1", args...)
	if err != nil {
		return metrics.Evidence{}, false, s.errorf("evidence", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return metrics.Evidence{}, false, s.errorf("evidence", err)
		}
		return metrics.Evidence{}, false, nil
	}
	var (
		e         metrics.Evidence
		size      uint64
		truncated uint8
		prec      uint64
	)
	if err := rows.Scan(&e.Account, &e.ID, &e.Stored, &e.Source, &e.SourceRef, &size, &truncated, &e.Data, &prec); err != nil {
		return metrics.Evidence{}, false, s.errorf("evidence", err)
	}
	e.Size, e.Truncated, e.Stored = int(size), truncated == 1, e.Stored.UTC()
	return e, true, nil
}
