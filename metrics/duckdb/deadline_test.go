package duckdb

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"repute/metrics"
)

// TestReadsHaveADeadline: Options.Timeout bounds every read, whatever the
// caller's context; past it the read fails instead of running on.
func TestReadsHaveADeadline(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "r.duckdb"), Options{Timeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background() // no deadline of its own
	q := metrics.StatsQuery{From: time.Unix(0, 0), To: time.Now()}
	if _, err := s.Stats(ctx, q); err == nil {
		t.Error("Stats past the store's deadline: no error")
	}
	if _, err := s.Known(ctx, []metrics.Event{{Account: "a", EventID: "x", Time: time.Now()}}); err == nil {
		t.Error("Known past the store's deadline: no error")
	}
	if _, _, err := s.Evidence(ctx, "a", "x"); err == nil {
		t.Error("Evidence past the store's deadline: no error")
	}
}
