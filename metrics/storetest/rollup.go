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

// checkRollups compares RuleCounts with what they should be over the
// roll-up window of each window [from, to), for every grouping of
// groupingsToCheck: Stats over the window for every count but opens and
// clicks, and metrics.FirstOpens of appended (every event appended so
// far, repeats included) for those. Groups whose counts are all zero may
// be present or absent.
func checkRollups(t *testing.T, what string, st metrics.Store, appended []metrics.Event, windows ...[2]time.Time) {
	t.Helper()
	rc := asRuleCounter(t, st)
	firsts := metrics.FirstOpens(storedOnce(appended))
	for _, w := range windows {
		start, end := metrics.RollupWindow(w[0], w[1])
		for _, by := range groupingsToCheck {
			got, err := rc.RuleCounts(ctx(t), w[0], w[1], by)
			if err != nil {
				t.Fatalf("%s: RuleCounts(%s, %s, %v): %v", what, w[0], w[1], by, err)
			}
			r := stats(t, st, metrics.StatsQuery{From: start, To: end, GroupBy: by})
			want := r.Groups
			if len(by) == 0 && r.Totals != (metrics.Counts{}) {
				want = []metrics.Group{{Key: map[metrics.GroupBy]string{}, Counts: r.Totals}}
			}
			wm := groupMap(want, by)
			for k, c := range wm {
				c.OpenedHuman, c.OpenedMachine, c.OpenedUnverified, c.Clicked = 0, 0, 0, 0
				wm[k] = c
			}
			for f, e := range firsts {
				if e.Time.Before(start) || !e.Time.Before(end) {
					continue
				}
				k := groupName(func(d metrics.GroupBy) string { return dimValue(&e, d) }, by)
				c := wm[k]
				switch f.Kind {
				case metrics.OpenHuman:
					c.OpenedHuman++
				case metrics.OpenMachine:
					c.OpenedMachine++
				case metrics.OpenUnverified:
					c.OpenedUnverified++
				case metrics.OpenClick:
					c.Clicked++
				}
				wm[k] = c
			}
			gm := groupMap(got, by)
			for k, c := range wm {
				if gm[k] != c {
					t.Errorf("%s: window [%s, %s) by %v, group %s:\n got %+v\nwant %+v (Stats, first opens)",
						what, start.Format(time.RFC3339), end.Format(time.RFC3339), by, k, gm[k], c)
				}
			}
			for k, c := range gm {
				if _, ok := wm[k]; !ok && c != (metrics.Counts{}) {
					t.Errorf("%s: window [%s, %s) by %v: extra group %s %+v", what,
						start.Format(time.RFC3339), end.Format(time.RFC3339), by, k, c)
				}
			}
		}
	}
}

// storedOnce returns events less the repeats of an (account, event_id)
// appended before: the first stored is the one kept.
func storedOnce(events []metrics.Event) []metrics.Event {
	type id struct{ account, event string }
	seen := map[id]bool{}
	var out []metrics.Event
	for _, e := range events {
		if k := (id{e.Account, e.EventID}); !seen[k] {
			seen[k] = true
			out = append(out, e)
		}
	}
	return out
}

// dimValue returns e's value of the roll-up dimension d.
func dimValue(e *metrics.Event, d metrics.GroupBy) string {
	switch d {
	case metrics.GroupAccount:
		return e.Account
	case metrics.GroupSenderDomain:
		return e.SenderDomain
	case metrics.GroupSendingIP:
		return e.SendingIP
	case metrics.GroupISP:
		return e.ISP
	case metrics.GroupCampaign:
		return e.Campaign
	case metrics.GroupCategory:
		return e.Category
	}
	panic("storetest: no roll-up dimension " + string(d))
}

func groupName(value func(metrics.GroupBy) string, by []metrics.GroupBy) string {
	parts := make([]string, len(by))
	for i, d := range by {
		parts[i] = fmt.Sprintf("%s=%q", d, value(d))
	}
	return strings.Join(parts, " ")
}

func groupMap(groups []metrics.Group, by []metrics.GroupBy) map[string]metrics.Counts {
	out := map[string]metrics.Counts{}
	for _, g := range groups {
		out[groupName(func(d metrics.GroupBy) string { return g.Key[d] }, by)] = g.Counts
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
	events := randomEvents(t, r, "a", 600, 6*time.Hour)
	appendOK(t, st, events)
	refresh(t, rc)
	checkRollups(t, "after one append", st, events, rollupWindows()...)
	// A second refresh with nothing new changes nothing.
	refresh(t, rc)
	checkRollups(t, "after a second refresh", st, events, rollupWindows()...)
}

// A message opened in several hours counts once, in the hour of its
// first open of each kind (metrics.FirstOpens), not once per hour; and
// not at all in a window that starts after that first open, unlike Stats.
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
	for _, c := range []struct {
		from, to time.Duration
		want     metrics.Counts
	}{
		{0, 6 * time.Hour, metrics.Counts{Delivered: 1, OpenedHuman: 1, OpenedUnverified: 1, Clicked: 1}},
		// o2 and k2 are not the message's first human open and click.
		{2 * time.Hour, 6 * time.Hour, metrics.Counts{OpenedUnverified: 1}},
		{time.Hour, 2 * time.Hour, metrics.Counts{Clicked: 1}},
	} {
		got, err := rc.RuleCounts(ctx(t), base.Add(c.from), base.Add(c.to), []metrics.GroupBy{metrics.GroupSenderDomain})
		if err != nil {
			t.Fatal(err)
		}
		var sum metrics.Counts
		for _, g := range got {
			sum = sum.Plus(g.Counts)
		}
		if sum != c.want {
			t.Errorf("RuleCounts(base%+v, base%+v) = %+v, want %+v", c.from, c.to, got, c.want)
		}
	}
	// An open earlier than the first known (a late report) becomes the
	// first: the key moves to its hour, and counts once.
	appendOK(t, st, mkAll(t,
		ev{id: "o0", at: -2 * time.Hour, kind: metrics.KindOpened, msg: "m1", domain: "late.example"},
	))
	refresh(t, rc)
	got, err := rc.RuleCounts(ctx(t), base.Add(-3*time.Hour), base.Add(6*time.Hour), []metrics.GroupBy{metrics.GroupSenderDomain})
	if err != nil {
		t.Fatal(err)
	}
	opened := map[string]int64{}
	for _, g := range got {
		opened[g.Key[metrics.GroupSenderDomain]] += g.OpenedHuman
	}
	if opened["late.example"] != 1 || opened[mk(t, ev{kind: metrics.KindSent}).SenderDomain] != 0 {
		t.Errorf("after an earlier open from late.example, human opens by domain = %v, want 1 for late.example only", opened)
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
		got, err := rc.RuleCounts(ctx(t), base.Add(c.from), base.Add(c.to), nil)
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
	before, err := rc.RuleCounts(ctx(t), base.Add(-7*time.Hour), base.Add(7*time.Hour), metrics.RollupDims)
	if err != nil {
		t.Fatal(err)
	}
	appendOK(t, st, batch)
	refresh(t, rc)
	checkRollups(t, "after the batch again", st, batch, rollupWindows()...)
	after, err := rc.RuleCounts(ctx(t), base.Add(-7*time.Hour), base.Add(7*time.Hour), metrics.RollupDims)
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
	checkRollups(t, "after two more appends", st, batch, rollupWindows()...)
}

// An event appended again with other content under the same id (a client
// re-posting a changed event) counts as first stored, as in Stats: its
// first scope, kind and verdict.
func testRollupFirstStoredWins(t *testing.T, s *suite) {
	st := s.open(t)
	rc := asRuleCounter(t, st)
	first := mkAll(t,
		ev{id: "s1", kind: metrics.KindSent, category: "marketing", msg: "m1"},
		ev{id: "o1", at: time.Hour, kind: metrics.KindOpened, msg: "m1"},
		ev{id: "o2", at: 2 * time.Hour, kind: metrics.KindOpened, msg: "m2", machine: true},
	)
	changed := mkAll(t,
		ev{id: "s1", kind: metrics.KindSent, category: "registration", msg: "m1"},
		ev{id: "o1", at: time.Hour, kind: metrics.KindOpened, msg: "m1", machine: true},
		ev{id: "o2", at: 2 * time.Hour, kind: metrics.KindOpened, msg: "m2", domain: "other.example"},
	)
	appendOK(t, st, first)
	refresh(t, rc)
	appendOK(t, st, changed)
	refresh(t, rc)
	checkRollups(t, "after changed copies", st, append(slices.Clone(first), changed...), rollupWindows()...)
}

// mapsEqual compares group maps, a group with no counts being as good as
// none.
func mapsEqual(a, b map[string]metrics.Counts) bool {
	for _, m := range [2][2]map[string]metrics.Counts{{a, b}, {b, a}} {
		for k, v := range m[0] {
			if m[1][k] != v {
				return false
			}
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
	all := append(slices.Clone(a), b...)
	refresh(t, orc)
	checkRollups(t, "refreshed through the second handle", other, all, rollupWindows()...)
	refresh(t, rc)
	checkRollups(t, "refreshed through the first handle", st, all, rollupWindows()...)
}

// Events for old hours arriving after those hours were rolled up (a
// spool drained late, a feedback loop report days later) are counted;
// an open among them earlier than a message's first known open moves it.
func testRollupLateEvents(t *testing.T, s *suite) {
	st := s.open(t)
	rc := asRuleCounter(t, st)
	r := rand.New(rand.NewPCG(13, 4))
	now := randomEvents(t, r, "now", 300, 2*time.Hour)
	appendOK(t, st, now)
	refresh(t, rc)
	checkRollups(t, "before the late events", st, now, rollupWindows()...)
	late := randomEvents(t, r, "late", 300, 6*time.Hour)
	for i := range late {
		late[i].Time = late[i].Time.Add(-3 * 24 * time.Hour)
	}
	appendOK(t, st, late)
	refresh(t, rc)
	old := [2]time.Time{base.Add(-4 * 24 * time.Hour), base.Add(-2 * 24 * time.Hour)}
	checkRollups(t, "after the late events", st, append(now, late...), append(rollupWindows(), old)...)
}
