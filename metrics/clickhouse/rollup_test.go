package clickhouse

import (
	"slices"
	"testing"
	"time"

	"repute/internal/testenv"
	"repute/metrics"
)

// Events stored before migration 0012 (inserted here without the dirty
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

// Whole days ended are read from their sums (rollup_day) once a refresh
// made them, and from their hours while a recompute of one of their hours
// is more recent than the sums.
func TestRollupDays(t *testing.T) {
	testenv.ClickHouse(t)
	s := openStore(t, testOptions(t))
	defer s.Close()
	ctx := testCtx(t)
	conn, err := s.ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for d := range 3 {
		if err := s.Append(ctx, sentEvents(t, 100, testDay.Add(time.Duration(d)*24*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	// The window reaches into the hours before and after the 3 days.
	start, end := testDay.Add(-5*time.Hour), testDay.Add(76*time.Hour)
	sent := func() int64 {
		t.Helper()
		g, err := s.RuleCounts(ctx, start, end, nil)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, x := range g {
			n += x.Sent
		}
		return n
	}
	valid := func() []time.Time {
		t.Helper()
		days, err := s.validDays(ctx, conn, start, end)
		if err != nil {
			t.Fatal(err)
		}
		var out []time.Time
		for _, d := range days {
			out = append(out, time.Unix(d, 0).UTC())
		}
		return out
	}
	want := []time.Time{testDay, testDay.Add(24 * time.Hour), testDay.Add(48 * time.Hour)}
	if got := valid(); !slices.Equal(got, want) {
		t.Errorf("days read from their sums = %v, want %v", got, want)
	}
	var summed uint64
	if err := conn.QueryRow(ctx, "SELECT sum(sent) FROM rollup_day").Scan(&summed); err != nil {
		t.Fatal(err)
	}
	if n := sent(); n != 300 || summed != 300 {
		t.Errorf("sent = %d (days summed %d), want 300", n, summed)
	}
	// A later recompute of the second day's hour, finished (as another
	// process's refresh would) with no rows: that day is read from its
	// hours, the others still from their sums.
	if err := conn.Exec(ctx, "INSERT INTO rollup_hours SELECT toDateTime(?), toUInt64(18446744073709551000), toDateTime(0), 0",
		testDay.Add(24*time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	if got, want := valid(), []time.Time{testDay, testDay.Add(48 * time.Hour)}; !slices.Equal(got, want) {
		t.Errorf("after an hour's later recompute, days read from their sums = %v, want %v", got, want)
	}
	if n := sent(); n != 200 {
		t.Errorf("after an hour of the second day was recomputed empty: sent = %d, want 200", n)
	}
}
