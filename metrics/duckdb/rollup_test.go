package duckdb

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"repute/metrics"
)

// Appends add delta rows; RefreshRollups sums an hour's deltas into one
// row per key and changes no count. The backfill of migration 0012 and
// Append compute the same open keys (openKey), so an open appended after
// the migration and one stored before it count once.
func TestRollupCompaction(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "repute.duckdb"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	mk := func(id string, kind metrics.Kind) metrics.Event {
		return metrics.Event{EventID: id, Time: at, Kind: kind, Account: "acme", SenderDomain: "news.acme.test",
			MessageID: "m1", Recipient: "a@example.org", RecipientDomain: "example.org", ISP: "other"}
	}
	for i := range 3 {
		if err := s.Append(ctx, []metrics.Event{mk(fmt.Sprint("s", i), metrics.KindSent), mk(fmt.Sprint("o", i), metrics.KindOpened)}); err != nil {
			t.Fatal(err)
		}
	}
	rows := func() (total, deltas int) {
		t.Helper()
		if err := s.db.QueryRowContext(ctx, "SELECT count(*), count(*) FILTER (WHERE NOT compacted) FROM rollup").Scan(&total, &deltas); err != nil {
			t.Fatal(err)
		}
		return total, deltas
	}
	if total, deltas := rows(); total != 6 || deltas != 6 {
		t.Errorf("after 3 appends: %d rows, %d deltas; want 6 and 6", total, deltas)
	}
	want := metrics.Counts{Sent: 3, OpenedUnverified: 1, OpenedHuman: 1}
	check := func(what string) {
		t.Helper()
		g, err := s.RuleCounts(ctx, at, at.Add(time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(g) != 1 || g[0].Counts != want {
			t.Errorf("%s: RuleCounts = %+v, want %+v", what, g, want)
		}
	}
	check("before the refresh")
	if err := s.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	if total, deltas := rows(); total != 2 || deltas != 0 {
		t.Errorf("after the refresh: %d rows, %d deltas; want 2 (counts, one open key) and 0", total, deltas)
	}
	check("after the refresh")

	// The migration's backfill gives the rows Append gave.
	var mismatched int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM (
		SELECT md5_number_lower('m' || chr(0) || account || chr(0) || message_id || chr(0) || recipient) AS k
		FROM events WHERE kind = 'opened' EXCEPT SELECT key FROM rollup WHERE class > 0)`).Scan(&mismatched); err != nil {
		t.Fatal(err)
	}
	if mismatched != 0 {
		t.Errorf("%d open keys computed in SQL (the backfill's) are not Append's openKey", mismatched)
	}
}
