package clickhouse

import (
	"testing"
	"time"

	"repute/internal/testenv"
	"repute/metrics"
)

// Events stored before migration 0010 (inserted here without the dirty
// log Append writes) are rolled up once the migration's backfill marks
// their hours dirty and a refresh runs.
func TestRollupBackfill(t *testing.T) {
	testenv.ClickHouse(t)
	s := openStore(t, testOptions(t))
	defer s.Close()
	ctx := testCtx(t)
	conn, err := s.ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	events := sentEvents(t, 500, testDay)
	if err := s.insert(ctx, conn, "events", events); err != nil {
		t.Fatal(err)
	}
	if err := s.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	from, to := testDay, testDay.Add(24*time.Hour)
	count := func() int64 {
		t.Helper()
		g, err := s.RuleCounts(ctx, from, to, []metrics.GroupBy{metrics.GroupSenderDomain})
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, x := range g {
			n += x.Sent
		}
		return n
	}
	if n := count(); n != 0 {
		t.Fatalf("before the backfill: %d sent rolled up, want 0 (nothing marked them)", n)
	}
	backfillRollups(t, s)
	if err := s.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 500 {
		t.Errorf("after the backfill: %d sent rolled up, want 500", n)
	}
}

// A refresh recomputes only the hours with logs it has not counted: none
// when nothing was appended (however recent the last logs), the one hour
// an append touched otherwise.
func TestRollupRefreshOnlyDirtyHours(t *testing.T) {
	testenv.ClickHouse(t)
	s := openStore(t, testOptions(t))
	defer s.Close()
	ctx := testCtx(t)
	conn, err := s.ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	finished := func() uint64 {
		t.Helper()
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM rollup_hours").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	refresh := func() {
		t.Helper()
		if err := s.RefreshRollups(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(ctx, sentEvents(t, 7200, testDay)); err != nil { // 2 hours
		t.Fatal(err)
	}
	refresh()
	if n := finished(); n != 2 {
		t.Fatalf("after appending to 2 hours: %d hours recomputed, want 2", n)
	}
	refresh()
	if n := finished(); n != 2 {
		t.Errorf("a refresh with nothing new recomputed %d hours", n-2)
	}
	if err := s.Append(ctx, sentEvents(t, 10, testDay.Add(5*time.Hour))); err != nil {
		t.Fatal(err)
	}
	refresh()
	if n := finished(); n != 3 {
		t.Errorf("after appending to 1 hour: %d hours recomputed, want 1", n-2)
	}
}
