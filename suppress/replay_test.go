package suppress

import (
	"slices"
	"sort"
	"testing"
	"time"

	"repute/metrics"
)

func unsub(kind metrics.Kind, account, domain, rcpt string, at time.Time) metrics.Event {
	e := bounce(account, rcpt, "", at)
	e.Kind, e.SenderDomain, e.Status, e.ReplyCode = kind, domain, "", 0
	return e
}

// Intake replays the last batch after a crash: the same events observed
// again change nothing, whatever came between.
func TestObserveIdempotent(t *testing.T) {
	x, c := newIndex(t)
	c.Set(day0.Add(10 * day))
	at := func(d time.Duration) time.Time { return day0.Add(d) }
	own := Trust{Account: "acme", By: "key:acme"}
	batch1 := []metrics.Event{
		bounce("acme", "hard@example.com", "userunknown", at(2*day)),
		bounce("acme", "soft@example.com", "mailboxfull", at(3*day)),
		bounce("acme", "soft@example.com", "mailboxfull", at(4*day)),
		bounce("acme", "three@example.com", "suspend", at(3*day)),
		bounce("acme", "three@example.com", "suspend", at(4*day)),
		bounce("acme", "three@example.com", "suspend", at(5*day)),
		unsub(metrics.KindUnsubscribed, "acme", "news.acme.example", "reader@example.com", at(5*day)),
		unsub(metrics.KindComplained, "acme", "", "angry@example.com", at(6*day)),
		// Dated ahead of the clock, within intake's skew.
		bounce("acme", "future@example.com", "hasmoved", c.Now().Add(30*time.Minute)),
		unsub(metrics.KindUnsubscribed, "acme", "news.acme.example", "early@example.com", c.Now().Add(30*time.Minute)),
	}
	batch2 := []metrics.Event{
		bounce("beta", "hard@example.com", "userunknown", at(7*day)), // extends
		bounce("acme", "soft@example.com", "mailboxfull", at(5*day)), // the third: added
		bounce("acme", "three@example.com", "exceedlimit", at(8*day)),
		unsub(metrics.KindComplained, "acme", "news.acme.example", "reader@example.com", at(7*day)),
	}
	batchOwn := []metrics.Event{
		bounce("acme", "mine@example.com", "userunknown", at(3*day)),
		bounce("acme", "minesoft@example.com", "exceedlimit", at(3*day)),
	}
	if ch := observe(t, x, shared, batch1...); len(ch) == 0 {
		t.Fatal("first batch changed nothing")
	}
	if ch := observe(t, x, shared, batch1...); len(ch) != 0 {
		t.Fatalf("the same batch again: %+v; want no changes", ch)
	}
	if ch := observe(t, x, shared, batch2...); len(ch) == 0 {
		t.Fatal("second batch changed nothing")
	}
	if ch := observe(t, x, own, batchOwn...); len(ch) != 2 {
		t.Fatalf("own batch: %+v; want added and counted", ch)
	}
	for _, b := range [][]metrics.Event{batch1, batch2, batch1} {
		if ch := observe(t, x, shared, b...); len(ch) != 0 {
			t.Fatalf("a batch again: %+v; want no changes", ch)
		}
	}
	if ch := observe(t, x, own, batchOwn...); len(ch) != 0 {
		t.Fatalf("own batch again: %+v; want no changes", ch)
	}
	// After lifts and a re-subscription, the events from before them,
	// even those dated ahead of the clock, do not count again.
	c.Add(time.Minute)
	for _, a := range []string{"hard@example.com", "three@example.com", "future@example.com"} {
		if _, err := x.Lift(Principal{Admin: true}, a, "support"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := x.Lift(acme, "mine@example.com", "mine"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"reader@example.com", "early@example.com"} {
		if _, err := x.Resubscribe(acme, "news.acme.example", a, "asked to"); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range [][]metrics.Event{batch2, batch1} {
		if ch := observe(t, x, shared, b...); len(ch) != 0 {
			t.Fatalf("a batch after lifts: %+v; want no changes", ch)
		}
	}
	if ch := observe(t, x, own, batchOwn...); len(ch) != 0 {
		t.Fatalf("own batch after a lift: %+v; want no changes", ch)
	}
	wantBlocked(t, x, acme, "future@example.com", false)
	if v := check(x, acme, "news.acme.example", "early@example.com"); !v.Allowed {
		t.Fatalf("re-subscribed, then its event again: %+v", v)
	}
}

func TestStoredRoundTrip(t *testing.T) {
	c := Change{Time: day0.Add(time.Nanosecond), Action: ActionLifted, Address: "a@example.com", Account: "acme",
		Shared: true, SenderDomain: "news.acme.example", List: Blocklist, Reason: "ticket 1",
		EventID: "ev-1", Since: day0.Add(-day), Until: day0.Add(13 * day), By: "admin"}
	s := c.Stored()
	if s.ID != metrics.SuppressionChangeID(s) || len(s.ID) != 32 {
		t.Fatalf("id %q", s.ID)
	}
	if got := FromStored(s); got != c {
		t.Fatalf("round trip: %+v; want %+v", got, c)
	}
	c2 := c
	c2.Action = ActionExpired
	if c2.Stored().ID == s.ID {
		t.Fatal("two changes, one id")
	}
}

// replayed rebuilds a fresh index from changes as a store would: by id
// once each, in (Time, ID) order.
func replayed(t *testing.T, c *clock, changes []Change) *Index {
	t.Helper()
	byID := map[string]metrics.SuppressionChange{}
	for _, ch := range changes {
		s := ch.Stored()
		byID[s.ID] = s
	}
	log := make([]metrics.SuppressionChange, 0, len(byID))
	for _, s := range byID {
		log = append(log, s)
	}
	sort.Slice(log, func(i, j int) bool {
		if !log[i].Time.Equal(log[j].Time) {
			return log[i].Time.Before(log[j].Time)
		}
		return log[i].ID < log[j].ID
	})
	b, err := New(Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Replay(slices.Values(log)); err != nil {
		t.Fatal(err)
	}
	return b
}

// Changes of one entry made at one instant of the clock keep their order
// in the log.
func TestReplaySameInstant(t *testing.T) {
	x, c := newIndex(t)
	var all []Change
	rec := func(ch []Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, ch...)
	}
	rcpts := []string{"r1@example.com", "r2@example.com", "r3@example.com", "r4@example.com", "r5@example.com",
		"r6@example.com", "r7@example.com", "r8@example.com"}
	for _, r := range rcpts {
		for range 2 {
			rec(x.Unsubscribe(acme, "news.acme.example", r, ""))
			rec(x.Resubscribe(acme, "news.acme.example", r, "asked to"))
		}
		rec(x.Unsubscribe(acme, "news.acme.example", r, ""))
	}
	// A bounce dated at the clock's instant, lifted at that instant.
	rec(x.Observe([]metrics.Event{bounce("acme", "gone@example.com", "userunknown", c.Now())}, shared))
	rec(x.Lift(acme, "gone@example.com", "fixed"))
	b := replayed(t, c, all)
	for _, ix := range []*Index{x, b} {
		for _, r := range rcpts {
			if v := check(ix, acme, "news.acme.example", r); v.Allowed {
				t.Fatalf("unsubscribed last: %+v", v)
			}
		}
		wantBlocked(t, ix, acme, "gone@example.com", false)
	}
}
