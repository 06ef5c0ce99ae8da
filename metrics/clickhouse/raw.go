package clickhouse

import (
	"context"
	"fmt"
	"time"

	"repute/metrics"
)

// rawTable is the scratch table RawInsert writes into.
const rawTable = "raw_insert_scratch"

// RawInsert measures the ceiling for Append: it inserts events with a plain
// clickhouse-go batch (the same columns and column-wise encoding as Append,
// batches of Options.BatchSize, but no deduplication and no split by day)
// into a scratch copy of the events table, and returns the time the inserts
// took. The scratch table is created before and dropped after; setting it up
// is not timed. `repute bench` prints the rate beside the end-to-end one.
func RawInsert(ctx context.Context, opts Options, events []metrics.Event) (time.Duration, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	q, err := loadQueries()
	if err != nil {
		return 0, err
	}
	conn, err := migrate(ctx, o, q)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	fail := func(what string, err error) error {
		return fmt.Errorf("clickhouse: %s: raw insert: %s: %w", o.Addr, what, err)
	}
	if err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+rawTable); err != nil {
		return 0, fail("drop scratch table", err)
	}
	if err := conn.Exec(ctx, "CREATE TABLE "+rawTable+" AS events"); err != nil {
		return 0, fail("create scratch table", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.Timeout)
		defer cancel()
		conn.Exec(ctx, "DROP TABLE IF EXISTS "+rawTable) //nolint:errcheck // best effort
	}()

	start := time.Now()
	for rest := events; len(rest) > 0; {
		n := min(len(rest), o.BatchSize)
		if err := sendBatch(ctx, conn, rawTable, rest[:n], fail); err != nil {
			return 0, err
		}
		rest = rest[n:]
	}
	return time.Since(start), nil
}
