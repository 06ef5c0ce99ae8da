package clickhouse

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"repute/internal/testenv"
	"repute/metrics"
)

// ruleTotals returns the sums of RuleCounts over [from, to).
func ruleTotals(t *testing.T, s *Store, from, to time.Time) metrics.Counts {
	t.Helper()
	g, err := s.RuleCounts(testCtx(t), from, to, []metrics.GroupBy{metrics.GroupSenderDomain})
	if err != nil {
		t.Fatal(err)
	}
	var sum metrics.Counts
	for _, x := range g {
		sum = sum.Plus(x.Counts)
	}
	return sum
}

// openOf returns an open of message m1 (no verdict) at testDay+at.
func openOf(t *testing.T, id string, at time.Duration) metrics.Event {
	t.Helper()
	e := metrics.Event{EventID: id, Time: testDay.Add(at), Kind: metrics.KindOpened, Account: "acme",
		Recipient: "user@gmail.com", MessageID: "<m1@acme.test>", SenderDomain: "news.acme.test", Source: "test"}
	if err := e.Normalize(metrics.ISPMap{}, testDay.Add(72*time.Hour)); err != nil {
		t.Fatal(err)
	}
	return e
}

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
	count := func() int64 { return ruleTotals(t, s, testDay, testDay.Add(24*time.Hour)).Sent }
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

// Whole days and 4-hour blocks ended are read from their sums
// (rollup_span) once a refresh made them, and from their hours while a
// recompute of one of their hours is more recent than the sums.
func TestRollupSpans(t *testing.T) {
	testenv.ClickHouse(t)
	s := openStore(t, testOptions(t))
	defer s.Close()
	ctx := testCtx(t)
	conn, err := s.ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 100 events in the first minutes of 3 days, and 100 at 05:00 of the
	// last.
	for _, at := range []time.Duration{0, 24 * time.Hour, 48 * time.Hour, 53 * time.Hour} {
		if err := s.Append(ctx, sentEvents(t, 100, testDay.Add(at))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RefreshRollups(ctx); err != nil {
		t.Fatal(err)
	}
	day := func(d int) span { return span{testDay.Add(time.Duration(d) * 24 * time.Hour).Unix(), dayWidth} }
	block := func(h int) span { return span{testDay.Add(time.Duration(h) * time.Hour).Unix(), blockWidth} }
	covered := func(start, end time.Time) []span {
		t.Helper()
		hours, spans, err := s.rollupVersions(ctx, conn, start.Unix(), end.Unix())
		if err != nil {
			t.Fatal(err)
		}
		return slices.SortedFunc(maps.Keys(cover(start.Unix(), end.Unix(), hours, spans)), func(a, b span) int {
			return cmp.Or(cmp.Compare(a.start, b.start), cmp.Compare(a.width, b.width))
		})
	}
	sent := func(start, end time.Time) int64 { return ruleTotals(t, s, start, end).Sent }
	// Whole days where the window holds them; 4-hour blocks (with events)
	// at its ends; hours between.
	start, end := testDay.Add(-5*time.Hour), testDay.Add(76*time.Hour)
	if got, want := covered(start, end), []span{day(0), day(1), day(2)}; !slices.Equal(got, want) {
		t.Errorf("spans read from their sums over [%s, %s) = %v, want %v", start, end, got, want)
	}
	if n := sent(start, end); n != 400 {
		t.Errorf("sent over [%s, %s) = %d, want 400", start, end, n)
	}
	if got, want := covered(testDay.Add(47*time.Hour), testDay.Add(60*time.Hour)), []span{block(48), block(52)}; !slices.Equal(got, want) {
		t.Errorf("spans read from their sums over a window holding no whole day = %v, want %v", got, want)
	}
	if n := sent(testDay.Add(47*time.Hour), testDay.Add(60*time.Hour)); n != 200 {
		t.Errorf("sent over a window holding no whole day = %d, want 200", n)
	}
	var summed uint64
	if err := conn.QueryRow(ctx, "SELECT sum(sent) FROM rollup_span WHERE width = ?", dayWidth).Scan(&summed); err != nil {
		t.Fatal(err)
	}
	if summed != 400 {
		t.Errorf("days summed %d sent, want 400", summed)
	}
	// A later recompute of the second day's hour, finished (as another
	// process's refresh would) with no rows: that day and its block are
	// read from their hours, the others still from their sums.
	if err := conn.Exec(ctx, "INSERT INTO rollup_hours SELECT toDateTime(?), toUInt64(18446744073709551000), toDateTime(0), 0",
		testDay.Add(24*time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	if got, want := covered(start, end), []span{day(0), day(2)}; !slices.Equal(got, want) {
		t.Errorf("after an hour's later recompute, spans read from their sums = %v, want %v", got, want)
	}
	if n := sent(start, end); n != 300 {
		t.Errorf("after an hour of the second day was recomputed empty: sent = %d, want 300", n)
	}
}

// A recompute of an hour logs dirty a later hour only when a key's first
// open moved out of it (a late, earlier open): not when an hour whose keys
// are opened again later is recomputed for another event, which would
// make every later hour dirty in turn.
func TestRollupMovedFirstOpensOnly(t *testing.T) {
	testenv.ClickHouse(t)
	s := openStore(t, testOptions(t))
	defer s.Close()
	ctx := testCtx(t)
	conn, err := s.ready(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recomputed := func() (n uint64) {
		t.Helper()
		if err := s.RefreshRollups(ctx); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, "SELECT count() FROM rollup_hours").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	open := func(id string, hour int) metrics.Event {
		return openOf(t, id, time.Duration(hour)*time.Hour+time.Minute)
	}
	opened := func() map[string]int64 {
		t.Helper()
		out := map[string]int64{"day": ruleTotals(t, s, testDay, testDay.Add(24*time.Hour)).OpenedHuman}
		for h := range 24 {
			at := testDay.Add(time.Duration(h) * time.Hour)
			if n := ruleTotals(t, s, at, at.Add(time.Hour)).OpenedHuman; n > 0 {
				out[fmt.Sprint(h)] = n
			}
		}
		return out
	}
	// The message is opened at 10:00 and again at 11:00 and 12:00.
	if err := s.Append(ctx, []metrics.Event{open("o10", 10), open("o11", 11), open("o12", 12)}); err != nil {
		t.Fatal(err)
	}
	if n := recomputed(); n != 3 {
		t.Fatalf("%d hours recomputed, want 3", n)
	}
	// A send at 10:00: only 10:00 is recomputed.
	if err := s.Append(ctx, sentEvents(t, 1, testDay.Add(10*time.Hour))); err != nil {
		t.Fatal(err)
	}
	if n := recomputed(); n != 4 {
		t.Errorf("after a send at 10:00: %d hours recomputed, want 1", n-3)
	}
	if got, want := opened(), map[string]int64{"10": 1, "day": 1}; !maps.Equal(got, want) {
		t.Errorf("human opens by hour = %v, want %v", got, want)
	}
	// An open at 09:00 arrives late: the first open moves from 10:00,
	// whose recompute comes in the same refresh.
	if err := s.Append(ctx, []metrics.Event{open("o09", 9)}); err != nil {
		t.Fatal(err)
	}
	if n := recomputed(); n != 6 {
		t.Errorf("after a late open at 09:00: %d hours recomputed, want 2 (09:00 and 10:00)", n-4)
	}
	if got, want := opened(), map[string]int64{"9": 1, "day": 1}; !maps.Equal(got, want) {
		t.Errorf("after a late open: human opens by hour = %v, want %v", got, want)
	}
}

// A refresh that recomputes an hour twice (in its first pass, then again
// because an earlier day's late open moved a first open out of it) counts
// its events once.
func TestRollupHourRecomputedTwiceInOneRefresh(t *testing.T) {
	testenv.ClickHouse(t)
	s := openStore(t, testOptions(t))
	defer s.Close()
	ctx := testCtx(t)
	open := func(id string, at time.Duration) metrics.Event { return openOf(t, id, at) }
	refresh := func() {
		t.Helper()
		if err := s.RefreshRollups(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Append(ctx, []metrics.Event{open("o1", 34*time.Hour)}); err != nil {
		t.Fatal(err)
	}
	refresh()
	// In one refresh: a late open the day before, and a send in the hour
	// of the first open.
	if err := s.Append(ctx, []metrics.Event{open("o0", 9*time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, sentEvents(t, 1, testDay.Add(34*time.Hour))); err != nil {
		t.Fatal(err)
	}
	refresh()
	sum := ruleTotals(t, s, testDay, testDay.Add(48*time.Hour))
	if want := (metrics.Counts{Sent: 1, OpenedHuman: 1, OpenedUnverified: 1}); sum != want {
		t.Errorf("counts = %+v, want %+v", sum, want)
	}
}
