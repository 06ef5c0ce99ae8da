package storetest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/metrics"
)

// The roll-ups of the rule engine (metrics.RuleCounter): after a refresh,
// RuleCounts over a window equals Stats over metrics.RollupWindow of it,
// for any grouping of metrics.RollupDims, however the events came in:
// twice, through two handles, late for old hours.

func asRuleCounter(t *testing.T, st metrics.Store) metrics.RuleCounter {
	t.Helper()
	rc, ok := st.(metrics.RuleCounter)
	if !ok {
		t.Skipf("%T keeps no roll-ups", st)
	}
	return rc
}

func refresh(t *testing.T, rc metrics.RuleCounter) {
	t.Helper()
	if err := rc.RefreshRollups(ctx(t)); err != nil {
		t.Fatalf("RefreshRollups: %v", err)
	}
}

// randomEvents returns n events with ids prefixed by prefix, spread over
// the hours [base-spread, base+spread), over a few values of every
// dimension, of every kind; opens and clicks share a small pool of
// messages so that a message is opened in several hours, by people and
// machines, with and without a verdict, and some have no message id.
func randomEvents(t testing.TB, r *rand.Rand, prefix string, n int, spread time.Duration) []metrics.Event {
	t.Helper()
	pick := func(vals ...string) string { return vals[r.IntN(len(vals))] }
	kinds := []metrics.Kind{metrics.KindSent, metrics.KindSent, metrics.KindDelivered, metrics.KindDelivered,
		metrics.KindDeferred, metrics.KindBounced, metrics.KindComplained, metrics.KindOpened,
		metrics.KindOpened, metrics.KindOpened, metrics.KindClicked, metrics.KindUnsubscribed,
		metrics.KindDropped}
	out := make([]ev, n)
	for i := range out {
		e := ev{
			id:       fmt.Sprintf("%s-%d", prefix, i),
			at:       time.Duration(r.Int64N(int64(2*spread/time.Second)))*time.Second - spread,
			kind:     kinds[r.IntN(len(kinds))],
			account:  pick("acme", "zeta"),
			domain:   pick("news.acme.test", "mail.acme.test", "shop.acme.test"),
			ip:       pick("192.0.2.1", "192.0.2.2", ""),
			campaign: pick("spring", "fall", ""),
			category: pick("marketing", "registration", ""),
			msg:      fmt.Sprintf("m%d", r.IntN(25)),
			rcpt:     pick("a@gmail.com", "b@yahoo.com", "c@outlook.com"),
		}
		switch e.kind {
		case metrics.KindBounced:
			e.bounce = pick(metrics.BounceHard, metrics.BounceSoft, "")
		case metrics.KindOpened, metrics.KindClicked:
			switch r.IntN(3) {
			case 0:
				e.machine = true
			case 1:
				e.noVerdict = true
			}
			if r.IntN(8) == 0 {
				e.msg = ""
			}
		}
		out[i] = e
	}
	return mkAll(t, out...)
}

// groupingsToCheck are the groupings every roll-up test compares.
var groupingsToCheck = [][]metrics.GroupBy{
	{},
	{metrics.GroupSenderDomain},
	{metrics.GroupSenderDomain, metrics.GroupISP},
	{metrics.GroupSenderDomain, metrics.GroupCategory},
	{metrics.GroupAccount, metrics.GroupSendingIP, metrics.GroupCampaign},
	metrics.RollupDims,
}

// checkRollups compares RuleCounts with Stats over the roll-up window, for
// every grouping of groupingsToCheck and each window [from, to), and
// RuleCounts without opens with those with opens (checkWithoutOpens).
func checkRollups(t *testing.T, what string, st metrics.Store, windows ...[2]time.Time) {
	t.Helper()
	rc := asRuleCounter(t, st)
	for _, w := range windows {
		start, end := metrics.RollupWindow(w[0], w[1])
		for _, by := range groupingsToCheck {
			got, err := rc.RuleCounts(ctx(t), w[0], w[1], by, metrics.WithOpens)
			if err != nil {
				t.Fatalf("%s: RuleCounts(%s, %s, %v): %v", what, w[0], w[1], by, err)
			}
			checkWithoutOpens(t, what, rc, w, by, got)
			r := stats(t, st, metrics.StatsQuery{From: start, To: end, GroupBy: by})
			want := r.Groups
			if len(by) == 0 && r.Totals != (metrics.Counts{}) {
				want = []metrics.Group{{Key: map[metrics.GroupBy]string{}, Counts: r.Totals}}
			}
			g, w := groupMap(got, by), groupMap(want, by)
			for k, c := range w {
				if g[k] != c {
					t.Errorf("%s: window [%s, %s) by %v, group %s:\n got %+v\nwant %+v (Stats)",
						what, start.Format(time.RFC3339), end.Format(time.RFC3339), by, k, g[k], c)
				}
			}
			for k, c := range g {
				if _, ok := w[k]; !ok {
					t.Errorf("%s: window [%s, %s) by %v: extra group %s %+v", what,
						start.Format(time.RFC3339), end.Format(time.RFC3339), by, k, c)
				}
			}
		}
	}
}

// checkWithoutOpens checks that RuleCounts of window w by by, without
// opens, gives withOpens (its counts with opens) with the unique counts
// zeroed: the same groups, but for those left with no count at all, which
// may be absent.
func checkWithoutOpens(t *testing.T, what string, rc metrics.RuleCounter, w [2]time.Time, by []metrics.GroupBy, withOpens []metrics.Group) {
	t.Helper()
	got, err := rc.RuleCounts(ctx(t), w[0], w[1], by, metrics.WithoutOpens)
	if err != nil {
		t.Fatalf("%s: RuleCounts(%s, %s, %v, WithoutOpens): %v", what, w[0], w[1], by, err)
	}
	want := groupMap(withOpens, by)
	for k, c := range want {
		c.OpenedHuman, c.OpenedMachine, c.OpenedUnverified, c.Clicked = 0, 0, 0, 0
		want[k] = c
	}
	g := groupMap(got, by)
	for k, c := range want {
		if gc, ok := g[k]; gc != c || (!ok && c != (metrics.Counts{})) {
			t.Errorf("%s: window [%s, %s) by %v, group %s without opens:\n got %+v\nwant %+v (with opens, less them)",
				what, w[0].Format(time.RFC3339), w[1].Format(time.RFC3339), by, k, gc, c)
		}
	}
	for k, c := range g {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: window [%s, %s) by %v without opens: extra group %s %+v", what,
				w[0].Format(time.RFC3339), w[1].Format(time.RFC3339), by, k, c)
		}
	}
}

func groupMap(groups []metrics.Group, by []metrics.GroupBy) map[string]metrics.Counts {
	out := map[string]metrics.Counts{}
	for _, g := range groups {
		parts := make([]string, len(by))
		for i, d := range by {
			parts[i] = fmt.Sprintf("%s=%q", d, g.Key[d])
		}
		out[strings.Join(parts, " ")] = g.Counts
	}
	return out
}

// rollupWindows are windows over the events of randomEvents(…, 6h): the
// whole, bounds inside hours, one hour, one ending inside the events.
func rollupWindows() [][2]time.Time {
	return [][2]time.Time{
		{base.Add(-7 * 24 * time.Hour), base.Add(7 * 24 * time.Hour)},
		{base.Add(-150 * time.Minute), base.Add(95*time.Minute + 30*time.Second)},
		{base.Add(time.Hour), base.Add(2 * time.Hour)},
		{base.Add(-5 * time.Hour), base},
	}
}

func testRollupMatchesStats(t *testing.T, s *suite) {
	st := s.open(t)
	rc := asRuleCounter(t, st)
	r := rand.New(rand.NewPCG(13, 1))
	appendOK(t, st, randomEvents(t, r, "a", 600, 6*time.Hour))
	refresh(t, rc)
	checkRollups(t, "after one append", st, rollupWindows()...)
	// A second refresh with nothing new changes nothing.
	refresh(t, rc)
	checkRollups(t, "after a second refresh", st, rollupWindows()...)
}

// A message opened in two hours counts once over a window holding both,
// as in Stats: per-hour unique counts are not summed.
func testRollupOpensAcrossHours(t *testing.T, s *suite) {
	st := s.open(t)
	rc := asRuleCounter(t, st)
	appendOK(t, st, mkAll(t,
		ev{id: "d1", kind: metrics.KindDelivered, msg: "m1"},
		ev{id: "o1", at: 10 * time.Minute, kind: metrics.KindOpened, msg: "m1"},
		ev{id: "o2", at: 3 * time.Hour, kind: metrics.KindOpened, msg: "m1"},
		ev{id: "o3", at: 5 * time.Hour, kind: metrics.KindOpened, msg: "m1", noVerdict: true},
		ev{id: "k1", at: time.Hour, kind: metrics.KindClicked, msg: "m1"},
		ev{id: "k2", at: 2 * time.Hour, kind: metrics.KindClicked, msg: "m1"},
	))
	refresh(t, rc)
	got, err := rc.RuleCounts(ctx(t), base, base.Add(6*time.Hour), []metrics.GroupBy{metrics.GroupSenderDomain}, metrics.WithOpens)
	if err != nil {
		t.Fatal(err)
	}
	want := metrics.Counts{Delivered: 1, OpenedHuman: 1, OpenedUnverified: 1, Clicked: 1}
	if len(got) != 1 || got[0].Counts != want {
		t.Errorf("RuleCounts = %+v, want one group with %+v", got, want)
	}
}

// The window is widened to whole hours: an event early in the start hour
// counts in a window starting later in that hour, and one later in the
// hour of the end in a window ending before it.
func testRollupWindowEdges(t *testing.T, s *suite) {
	st := s.open(t)
	rc := asRuleCounter(t, st)
	appendOK(t, st, mkAll(t,
		ev{id: "s1", at: 5 * time.Minute, kind: metrics.KindSent},
		ev{id: "s2", at: 55 * time.Minute, kind: metrics.KindSent},
		ev{id: "s3", at: 60 * time.Minute, kind: metrics.KindSent},
	))
	refresh(t, rc)
	for _, c := range []struct {
		from, to time.Duration
		want     int64
	}{
		{30 * time.Minute, 40 * time.Minute, 2},
		{30 * time.Minute, 60 * time.Minute, 2},
		{0, 61 * time.Minute, 3},
		{60 * time.Minute, 120 * time.Minute, 1},
		{-60 * time.Minute, 0, 0},
	} {
		got, err := rc.RuleCounts(ctx(t), base.Add(c.from), base.Add(c.to), nil, metrics.WithoutOpens)
		if err != nil {
			t.Fatal(err)
		}
		var sent int64
		for _, g := range got {
			sent += g.Sent
		}
		if sent != c.want {
			t.Errorf("RuleCounts(base%+v, base%+v) sent = %d, want %d", c.from, c.to, sent, c.want)
		}
	}
}

// The same batch appended twice (a spool replay, a client re-posting it),
// with a refresh between and without, counts once.
func testRollupDuplicates(t *testing.T, s *suite) {
	st := s.open(t)
	rc := asRuleCounter(t, st)
	r := rand.New(rand.NewPCG(13, 2))
	batch := randomEvents(t, r, "a", 400, 6*time.Hour)
	appendOK(t, st, batch)
	refresh(t, rc)
	before, err := rc.RuleCounts(ctx(t), base.Add(-7*time.Hour), base.Add(7*time.Hour), metrics.RollupDims, metrics.WithOpens)
	if err != nil {
		t.Fatal(err)
	}
	appendOK(t, st, batch)
	refresh(t, rc)
	checkRollups(t, "after the batch again", st, rollupWindows()...)
	after, err := rc.RuleCounts(ctx(t), base.Add(-7*time.Hour), base.Add(7*time.Hour), metrics.RollupDims, metrics.WithOpens)
	if err != nil {
		t.Fatal(err)
	}
	if b, a := groupMap(before, metrics.RollupDims), groupMap(after, metrics.RollupDims); !mapsEqual(b, a) {
		t.Errorf("counts changed when the same batch was appended again:\nbefore %v\nafter  %v", b, a)
	}
	// Twice before one refresh, and half of it a third time.
	appendOK(t, st, batch)
	appendOK(t, st, batch[:200])
	refresh(t, rc)
	checkRollups(t, "after two more appends", st, rollupWindows()...)
}

func mapsEqual(a, b map[string]metrics.Counts) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Two handles on the same data (two processes): appends through both,
// concurrently and overlapping, refreshed through either, are exact.
func testRollupTwoHandles(t *testing.T, s *suite) {
	if s.h.Another == nil {
		t.Skip("the harness opens no second handle")
	}
	st := s.open(t)
	rc := asRuleCounter(t, st)
	other := s.h.Another(t, st)
	t.Cleanup(func() {
		if err := other.Close(); err != nil {
			t.Errorf("Close of the second handle: %v", err)
		}
	})
	orc := asRuleCounter(t, other)
	r := rand.New(rand.NewPCG(13, 3))
	a := randomEvents(t, r, "a", 300, 6*time.Hour)
	b := randomEvents(t, r, "b", 300, 6*time.Hour)
	appendOK(t, st, a)
	refresh(t, rc)
	var wg sync.WaitGroup
	for i, h := range []metrics.Store{st, other} {
		wg.Go(func() {
			for j := range 3 {
				batch := b[j*100 : (j+1)*100]
				if i == 1 {
					batch = append(slices.Clone(batch), a[j*100:(j+1)*100]...)
				}
				if err := h.Append(ctx(t), batch); err != nil {
					t.Errorf("Append through handle %d: %v", i, err)
				}
			}
		})
	}
	wg.Wait()
	refresh(t, orc)
	checkRollups(t, "refreshed through the second handle", other, rollupWindows()...)
	refresh(t, rc)
	checkRollups(t, "refreshed through the first handle", st, rollupWindows()...)
}

// Events for old hours arriving after those hours were rolled up (a
// spool drained late, a feedback loop report days later) are counted.
func testRollupLateEvents(t *testing.T, s *suite) {
	st := s.open(t)
	rc := asRuleCounter(t, st)
	r := rand.New(rand.NewPCG(13, 4))
	appendOK(t, st, randomEvents(t, r, "now", 300, 2*time.Hour))
	refresh(t, rc)
	checkRollups(t, "before the late events", st, rollupWindows()...)
	late := randomEvents(t, r, "late", 300, 6*time.Hour)
	for i := range late {
		late[i].Time = late[i].Time.Add(-3 * 24 * time.Hour)
	}
	appendOK(t, st, late)
	refresh(t, rc)
	old := [2]time.Time{base.Add(-4 * 24 * time.Hour), base.Add(-2 * 24 * time.Hour)}
	checkRollups(t, "after the late events", st, append(rollupWindows(), old)...)
}
