package duckdb

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	duckdb "github.com/duckdb/duckdb-go/v2"

	"repute/metrics"
)

// RawAppend measures the ceiling of Append: it creates a fresh DuckDB file
// at path (which must not exist) with a scratch table of the columns of
// events, and appends events to it with the plain Appender, in one
// transaction, without looking for duplicates. It returns the time from creating the Appender to the
// rows being committed. The file is left for the caller to remove.
func RawAppend(ctx context.Context, path string, events []metrics.Event) (time.Duration, error) {
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("duckdb: raw append: %s exists or cannot be checked (%v)", path, err)
	}
	s, err := Open(path, Options{})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if _, err := s.write.ExecContext(ctx, "CREATE TABLE scratch AS SELECT * FROM events WITH NO DATA"); err != nil {
		return 0, fmt.Errorf("duckdb: raw append: %w", err)
	}
	start := time.Now()
	err = s.write.Raw(func(dc any) error {
		a, err := duckdb.NewAppender(dc.(driver.Conn), "", "", "scratch")
		if err != nil {
			return err
		}
		if err := appendRows(a, events); err != nil {
			a.Close()
			return err
		}
		return a.CloseWithCancel(ctx)
	})
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("duckdb: raw append: %w", err)
	}
	return took, nil
}
