package duckdb

import "context"

// RollupSizes reports the rows of rollup and rollup_first_opens, for the
// benchmarks (package duckdb_test).
func (s *Store) RollupSizes(ctx context.Context, rows, firsts *int64) error {
	return s.db.QueryRowContext(ctx, "SELECT (SELECT count(*) FROM rollup), (SELECT count(*) FROM rollup_first_opens)").
		Scan(rows, firsts)
}
