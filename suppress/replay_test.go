package suppress

import (
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
