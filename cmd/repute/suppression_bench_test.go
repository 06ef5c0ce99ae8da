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
// replay reads the whole log; snapshot reads <data>/suppression.snapshot and
// the changes logged after its position ("write-s" is saveSnapshot's time,
// "file-B/entry" the file's size over the entries).
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
	snapPath := filepath.Join(b.TempDir(), suppressionSnapshotFile)
	b.ResetTimer()
	b.Run("replay", func(b *testing.B) { benchSuppressionLoad(b, store, n, "", false) })
	b.Run("snapshot", func(b *testing.B) { benchSuppressionLoad(b, store, n, snapPath, true) })
}

// benchSuppressionLoad loads the lists of store, from the snapshot at
// snapPath if set (written first by saveSnapshot, outside the timing; its
// position is suppressionSettle before it, so the catch-up reads the end
// of the log logged within that delay, as at a real start).
func benchSuppressionLoad(b *testing.B, store metrics.SuppressionLog, n int, snapPath string, snapshot bool) {
	ctx := context.Background()
	if snapshot {
		s := newSuppression(store, slog.New(slog.DiscardHandler))
		s.snapshotPath, s.storeID = snapPath, "bench"
		if err := s.loadOnce(ctx); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if err := s.saveSnapshot(ctx); err != nil {
			b.Fatal(err)
		}
		wrote := time.Since(start)
		fi, err := os.Stat(snapPath)
		if err != nil {
			b.Fatal(err)
		}
		// After the loop: ResetTimer drops the metrics reported so far.
		defer func() {
			b.ReportMetric(wrote.Seconds(), "write-s")
			b.ReportMetric(float64(fi.Size())/float64(n), "file-B/entry")
		}()
		b.ResetTimer()
	}
	for range b.N {
		s := newSuppression(store, slog.New(slog.DiscardHandler))
		s.snapshotPath, s.storeID = snapPath, "bench"
		start := time.Now()
		if err := s.loadOnce(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "load-s")
		if want := map[bool]string{true: "snapshot", false: "replay"}[snapshot]; s.loadedFrom != want {
			b.Fatalf("loaded from %s, want %s", s.loadedFrom, want)
		}
		if shared, _ := s.index.Len(); shared != n {
			b.Fatalf("%d entries loaded, want %d", shared, n)
		}
	}
	b.ReportMetric(float64(n), "entries")
}
