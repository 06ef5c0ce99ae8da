package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

func asSuppressionLog(t *testing.T, st metrics.Store) metrics.SuppressionLog {
	t.Helper()
	l, ok := st.(metrics.SuppressionLog)
	if !ok {
		t.Skipf("%T keeps no suppression log", st)
	}
	return l
}

// change returns a change at base+at with every field set, its ID computed.
func change(at time.Duration, action, address string) metrics.SuppressionChange {
	c := metrics.SuppressionChange{
		Time: base.Add(at), Action: action, Address: address, Account: "acme", Shared: true,
		SenderDomain: "news.acme.test", List: "blocklist", Reason: "hard_bounce",
		EventID: "ev-" + address, Since: base.Add(-time.Hour + 123456789), Until: base.Add(14*24*time.Hour + 987654321),
		By: "acme",
	}
	c.ID = metrics.SuppressionChangeID(c)
	return c
}

// readChanges returns every stored change, in the order the store gives.
func readChanges(t *testing.T, l metrics.SuppressionLog) []metrics.SuppressionChange {
	t.Helper()
	var out []metrics.SuppressionChange
	if err := l.SuppressionChanges(ctx(t), func(c metrics.SuppressionChange) error {
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatalf("SuppressionChanges: %v", err)
	}
	return out
}

func fmtChange(c metrics.SuppressionChange) string {
	tm := func(t time.Time) string {
		if t.IsZero() {
			return "zero"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s %s %s addr=%q acct=%q shared=%v dom=%q list=%q reason=%q event=%q since=%s until=%s by=%q",
		c.ID, tm(c.Time), c.Action, c.Address, c.Account, c.Shared, c.SenderDomain, c.List, c.Reason,
		c.EventID, tm(c.Since), tm(c.Until), c.By)
}

// checkChanges compares the stored changes with want, in order, every
// field, times as instants (a zero time must come back zero).
func checkChanges(t *testing.T, l metrics.SuppressionLog, want []metrics.SuppressionChange) {
	t.Helper()
	got := readChanges(t, l)
	g, w := make([]string, len(got)), make([]string, len(want))
	for i, c := range got {
		g[i] = fmtChange(c)
	}
	for i, c := range want {
		w[i] = fmtChange(c)
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("SuppressionChanges:\n got %d:\n%s\nwant %d:\n%s", len(g), indent(g), len(w), indent(w))
	}
}

func testSuppressionLog(t *testing.T, s *suite) {
	l := asSuppressionLog(t, s.open(t))
	late := change(1500*time.Millisecond, "added", "a@gmail.com")
	early := change(1200*time.Millisecond, "added", "b@gmail.com")
	ns1 := change(time.Second+1, "counted", "c@gmail.com") // a nanosecond apart
	ns2 := change(time.Second+2, "counted", "c@gmail.com")
	// Two changes at the same instant: the id breaks the tie.
	tie1 := change(0, "added", "d@gmail.com")
	tie2 := change(0, "unsubscribed", "d@gmail.com")
	tie2.List, tie2.Shared = "unsubscribe", false
	tie2.ID = metrics.SuppressionChangeID(tie2)
	if tie1.ID > tie2.ID {
		tie1, tie2 = tie2, tie1
	}
	// Zero since and until, empty optional fields.
	bare := metrics.SuppressionChange{Time: base.Add(-time.Minute), Action: "lifted",
		Address: "e@gmail.com", Account: "other", List: "blocklist"}
	bare.ID = metrics.SuppressionChangeID(bare)
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{late, ns2, tie2}); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{early, bare, ns1, tie1}); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	if err := l.AppendSuppressionChanges(ctx(t), nil); err != nil {
		t.Fatalf("AppendSuppressionChanges(nil): %v", err)
	}
	want := []metrics.SuppressionChange{bare, tie1, tie2, ns1, ns2, early, late}
	checkChanges(t, l, want)
	checkChanges(t, asSuppressionLog(t, s.reopen(t)), want)
}

func testSuppressionLogIdempotent(t *testing.T, s *suite) {
	l := asSuppressionLog(t, s.open(t))
	a := change(time.Second, "added", "a@gmail.com")
	b := change(2*time.Second, "extended", "a@gmail.com")
	// Repeated within a call.
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{a, b, a}); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	// Repeated in separate calls, with what the id does not cover
	// changed: the first stored stays.
	again := a
	again.Reason, again.Shared, again.By, again.Until = "changed", false, "someone", time.Time{}
	for i := 0; i < 2; i++ {
		if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{again, b}); err != nil {
			t.Fatalf("AppendSuppressionChanges again: %v", err)
		}
	}
	checkChanges(t, l, []metrics.SuppressionChange{a, b})
	l = asSuppressionLog(t, s.reopen(t))
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{b, again}); err != nil {
		t.Fatalf("AppendSuppressionChanges after reopen: %v", err)
	}
	checkChanges(t, l, []metrics.SuppressionChange{a, b})
}

func testSuppressionLogStop(t *testing.T, s *suite) {
	l := asSuppressionLog(t, s.open(t))
	var all []metrics.SuppressionChange
	for i := range 5 {
		all = append(all, change(time.Duration(i)*time.Second, "added", fmt.Sprintf("u%d@gmail.com", i)))
	}
	if err := l.AppendSuppressionChanges(ctx(t), all); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	stop := errors.New("storetest: stop")
	var seen []string
	err := l.SuppressionChanges(ctx(t), func(c metrics.SuppressionChange) error {
		seen = append(seen, c.Address)
		if len(seen) == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Errorf("SuppressionChanges with fn failing = %v, want fn's error", err)
	}
	if len(seen) != 2 || seen[0] != "u0@gmail.com" || seen[1] != "u1@gmail.com" {
		t.Errorf("SuppressionChanges called fn with %v, want the first two and no more", seen)
	}
	// The store is still usable after the read was abandoned.
	checkChanges(t, l, all)
}
