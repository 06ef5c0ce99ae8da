package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"repute/metrics"
	"repute/metrics/duckdb"
)

// BenchmarkSuppressionLoad measures the start-up rebuild of the
// suppression lists from the store's change log (DuckDB): N blocklist
// entries, each an added change, read in (time, id) order and applied.
// N is 1,000,000, or REPUTE_BENCH_ENTRIES (issue 10 asks for 10,000,000).
//
//	go test -run '^$' -bench SuppressionLoad -benchtime 1x ./cmd/repute/
func BenchmarkSuppressionLoad(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("REPUTE_BENCH_ENTRIES")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	store, err := duckdb.Open(filepath.Join(b.TempDir(), "repute.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	base := time.Now().Add(-7 * 24 * time.Hour).UTC().Truncate(time.Second)
	batch := make([]metrics.SuppressionChange, 0, 100_000)
	for i := range n {
		at := base.Add(time.Duration(i%(6*86400)) * time.Second)
		c := metrics.SuppressionChange{Time: at, Action: "added", Address: fmt.Sprintf("user%d@domain%d.example", i, i%5000),
			Account: "acme", Shared: true, List: "blocklist", Reason: "userunknown",
			EventID: fmt.Sprintf("%032x", i), Since: at, Until: at.Add(14 * 24 * time.Hour), By: "imap"}
		c.ID = metrics.SuppressionChangeID(c)
		if batch = append(batch, c); len(batch) == cap(batch) || i == n-1 {
			if err := store.AppendSuppressionChanges(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	for range b.N {
		s := newSuppression(store, slog.New(slog.DiscardHandler))
		start := time.Now()
		if err := s.loadOnce(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "load-s")
		if shared, _ := s.index.Len(); shared != n {
			b.Fatalf("%d entries loaded, want %d", shared, n)
		}
	}
	b.ReportMetric(float64(n), "entries")
}
