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
