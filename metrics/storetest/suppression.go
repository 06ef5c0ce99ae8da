package storetest

import (
	"errors"
	"fmt"
	"slices"
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

// findChanges returns the changes q selects, in the order the store gives.
func findChanges(t *testing.T, l metrics.SuppressionLog, q metrics.SuppressionQuery) []metrics.SuppressionChange {
	t.Helper()
	var out []metrics.SuppressionChange
	if err := l.FindSuppressionChanges(ctx(t), q, func(c metrics.SuppressionChange) error {
		out = append(out, c)
		return nil
	}); err != nil {
		t.Fatalf("FindSuppressionChanges(%+v): %v", q, err)
	}
	return out
}

// checkFound compares got with want, in order, every field.
func checkFound(t *testing.T, what string, got, want []metrics.SuppressionChange) {
	t.Helper()
	g, w := make([]string, len(got)), make([]string, len(want))
	for i, c := range got {
		g[i] = fmtChange(c)
	}
	for i, c := range want {
		w[i] = fmtChange(c)
	}
	if strings.Join(g, "\n") != strings.Join(w, "\n") {
		t.Errorf("FindSuppressionChanges %s:\n got %d:\n%s\nwant %d:\n%s", what, len(g), indent(g), len(w), indent(w))
	}
}

// findLog stores a log of changes over two addresses and two accounts,
// with three changes at one instant, and returns them in (Time, ID) order.
func findLog(t *testing.T, l metrics.SuppressionLog) []metrics.SuppressionChange {
	t.Helper()
	mk := func(at time.Duration, action, address, account string) metrics.SuppressionChange {
		c := change(at, action, address)
		c.Account, c.By = account, account
		c.ID = metrics.SuppressionChangeID(c)
		return c
	}
	all := []metrics.SuppressionChange{
		mk(-time.Hour, "added", "a@gmail.com", "acme"),
		mk(0, "added", "b@gmail.com", "acme"),
		mk(0, "unsubscribed", "a@gmail.com", "other"),
		mk(0, "counted", "a@gmail.com", "acme"),
		mk(time.Nanosecond, "extended", "b@gmail.com", "other"),
		mk(time.Second, "lifted", "a@gmail.com", "acme"),
		mk(2*time.Second, "added", "a@gmail.comx", "acme"), // not a@gmail.com
		mk(3*time.Second, "resubscribed", "a@gmail.com", "other"),
		mk(time.Minute, "expired", "b@gmail.com", "acme"),
	}
	// Stored out of order, in two calls.
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{all[8], all[2], all[5], all[0]}); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{all[3], all[7], all[1], all[6], all[4]}); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	// Appended again, with what the id does not cover changed: filters,
	// limits and bounds see each change once, as first stored.
	again := slices.Clone(all)
	for i := range again {
		again[i].Reason = "again"
	}
	if err := l.AppendSuppressionChanges(ctx(t), again); err != nil {
		t.Fatalf("AppendSuppressionChanges again: %v", err)
	}
	slices.SortFunc(all, func(a, b metrics.SuppressionChange) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return all
}

func selectChanges(all []metrics.SuppressionChange, keep func(metrics.SuppressionChange) bool) []metrics.SuppressionChange {
	var out []metrics.SuppressionChange
	for _, c := range all {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

func testSuppressionFind(t *testing.T, s *suite) {
	l := asSuppressionLog(t, s.open(t))
	all := findLog(t, l)
	checkFound(t, "with the zero query", findChanges(t, l, metrics.SuppressionQuery{}), all)
	checkChanges(t, l, all)
	checkFound(t, "by address", findChanges(t, l, metrics.SuppressionQuery{Address: "a@gmail.com"}),
		selectChanges(all, func(c metrics.SuppressionChange) bool { return c.Address == "a@gmail.com" }))
	checkFound(t, "by account", findChanges(t, l, metrics.SuppressionQuery{Account: "other"}),
		selectChanges(all, func(c metrics.SuppressionChange) bool { return c.Account == "other" }))
	checkFound(t, "by address and account", findChanges(t, l, metrics.SuppressionQuery{Address: "a@gmail.com", Account: "acme"}),
		selectChanges(all, func(c metrics.SuppressionChange) bool { return c.Address == "a@gmail.com" && c.Account == "acme" }))
	checkFound(t, "by an unknown address", findChanges(t, l, metrics.SuppressionQuery{Address: "nobody@gmail.com"}), nil)
	checkFound(t, "by an unknown account", findChanges(t, l, metrics.SuppressionQuery{Account: "nobody"}), nil)
	// Quotes and wildcards are values, not SQL.
	checkFound(t, "by a quoted address", findChanges(t, l, metrics.SuppressionQuery{Address: "a@gmail.com' OR '1'='1"}), nil)
	checkFound(t, "by a wildcard address", findChanges(t, l, metrics.SuppressionQuery{Address: "%"}), nil)
}

func testSuppressionFindAfter(t *testing.T, s *suite) {
	l := asSuppressionLog(t, s.open(t))
	all := findLog(t, l)
	// all[1:4] are at one instant, in id order.
	if !all[1].Time.Equal(all[2].Time) || !all[2].Time.Equal(all[3].Time) {
		t.Fatalf("storetest: the log has no tie at all[1:4]")
	}
	after := func(i int) metrics.SuppressionQuery {
		return metrics.SuppressionQuery{AfterTime: all[i].Time, AfterID: all[i].ID}
	}
	for i := range all {
		checkFound(t, fmt.Sprintf("after change %d", i), findChanges(t, l, after(i)), all[i+1:])
	}
	// The tie broken by the id: after the first of the three, the other two.
	checkFound(t, "after the first of a tie", findChanges(t, l, after(1)), all[2:])
	// An id before every id at that instant: the whole instant.
	checkFound(t, "after the instant of a tie with no id",
		findChanges(t, l, metrics.SuppressionQuery{AfterTime: all[1].Time}), all[1:])
	// An id after every id at that instant: none of it.
	checkFound(t, "after the instant of a tie with the greatest id",
		findChanges(t, l, metrics.SuppressionQuery{AfterTime: all[1].Time, AfterID: "~"}), all[4:])
	// Between stored instants.
	checkFound(t, "after a time between changes",
		findChanges(t, l, metrics.SuppressionQuery{AfterTime: all[4].Time.Add(time.Millisecond), AfterID: all[0].ID}), all[5:])
	checkFound(t, "after a time before every change",
		findChanges(t, l, metrics.SuppressionQuery{AfterTime: all[0].Time.Add(-time.Nanosecond)}), all)
	// Combined with filters.
	q := after(1)
	q.Address = "a@gmail.com"
	checkFound(t, "after the first of a tie, by address", findChanges(t, l, q),
		selectChanges(all[2:], func(c metrics.SuppressionChange) bool { return c.Address == "a@gmail.com" }))
	q.Account = "acme"
	checkFound(t, "after the first of a tie, by address and account", findChanges(t, l, q),
		selectChanges(all[2:], func(c metrics.SuppressionChange) bool {
			return c.Address == "a@gmail.com" && c.Account == "acme"
		}))
}

func testSuppressionFindLimit(t *testing.T, s *suite) {
	l := asSuppressionLog(t, s.open(t))
	all := findLog(t, l)
	for _, n := range []int{1, 2, 3, len(all) - 1, len(all), len(all) + 1, 1000} {
		want := all
		if n < len(all) {
			want = all[:n]
		}
		checkFound(t, fmt.Sprintf("limit %d", n), findChanges(t, l, metrics.SuppressionQuery{Limit: n}), want)
	}
	byA := selectChanges(all, func(c metrics.SuppressionChange) bool { return c.Address == "a@gmail.com" })
	checkFound(t, "by address, limit 2", findChanges(t, l, metrics.SuppressionQuery{Address: "a@gmail.com", Limit: 2}), byA[:2])
	checkFound(t, "after the first of a tie, limit 1",
		findChanges(t, l, metrics.SuppressionQuery{AfterTime: all[1].Time, AfterID: all[1].ID, Limit: 1}), all[2:3])
	// fn's error stops the read, as SuppressionChanges.
	stop := errors.New("storetest: stop")
	n := 0
	err := l.FindSuppressionChanges(ctx(t), metrics.SuppressionQuery{Account: "acme"}, func(metrics.SuppressionChange) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("FindSuppressionChanges with fn failing = %v after %d calls, want fn's error after 1", err, n)
	}
}

func testSuppressionFindPaging(t *testing.T, s *suite) {
	l := asSuppressionLog(t, s.open(t))
	all := findLog(t, l)
	page := func(q metrics.SuppressionQuery, size int) []metrics.SuppressionChange {
		var got []metrics.SuppressionChange
		q.Limit = size
		for i := 0; ; i++ {
			if i > len(all)+1 {
				t.Fatalf("paging by %d does not end", size)
			}
			p := findChanges(t, l, q)
			if len(p) > size {
				t.Fatalf("page of %d changes, limit %d", len(p), size)
			}
			got = append(got, p...)
			if len(p) < size {
				return got
			}
			q.AfterTime, q.AfterID = p[len(p)-1].Time, p[len(p)-1].ID
		}
	}
	for _, size := range []int{1, 2, 3, 4, len(all)} {
		checkFound(t, fmt.Sprintf("paged by %d", size), page(metrics.SuppressionQuery{}, size), all)
		checkFound(t, fmt.Sprintf("by address, paged by %d", size), page(metrics.SuppressionQuery{Address: "a@gmail.com"}, size),
			selectChanges(all, func(c metrics.SuppressionChange) bool { return c.Address == "a@gmail.com" }))
	}
	// A reader following the log sees what is appended after its last page.
	last := all[len(all)-1]
	more := change(time.Hour, "added", "z@gmail.com")
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{more}); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	checkFound(t, "after the last, once more is appended",
		findChanges(t, l, metrics.SuppressionQuery{AfterTime: last.Time, AfterID: last.ID, Limit: 3}), []metrics.SuppressionChange{more})
}

// testSuppressionFollow checks the log in the order it was written
// (SuppressionQuery.ByLogged), which readers following it use: a change
// about an old event, written late, comes after what was written before
// it, and Logged says when the store took each change.
func testSuppressionFollow(t *testing.T, s *suite) {
	l := asSuppressionLog(t, s.open(t))
	recent := change(time.Hour, "added", "a@gmail.com")
	old := change(-time.Hour, "added", "b@gmail.com")
	old2 := change(-2*time.Hour, "unsubscribed", "c@gmail.com")
	old2.Account = "other"
	old2.ID = metrics.SuppressionChangeID(old2)
	before := time.Now()
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{recent}); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	time.Sleep(5 * time.Millisecond) // distinct insert times on any clock
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{old, old2}); err != nil {
		t.Fatalf("AppendSuppressionChanges: %v", err)
	}
	after := time.Now()
	// Appended again: the first stored stays (and may be read twice).
	if err := l.AppendSuppressionChanges(ctx(t), []metrics.SuppressionChange{recent}); err != nil {
		t.Fatalf("AppendSuppressionChanges again: %v", err)
	}
	logged := findChanges(t, l, metrics.SuppressionQuery{ByLogged: true, LoggedBefore: after})
	if len(logged) != 3 {
		t.Fatalf("ByLogged before the repeat: %d changes, want 3:\n%s", len(logged), indent(fmtChanges(logged)))
	}
	second := []metrics.SuppressionChange{old, old2}
	if old2.ID < old.ID {
		second = []metrics.SuppressionChange{old2, old}
	}
	checkFound(t, "in the order written", logged, append([]metrics.SuppressionChange{recent}, second...))
	for _, c := range logged {
		if c.Logged.Before(before.Add(-time.Second)) || c.Logged.After(after.Add(time.Second)) {
			t.Errorf("change %s logged at %v, want within [%v, %v]", c.Address, c.Logged, before, after)
		}
	}
	if !logged[0].Logged.Before(logged[1].Logged) || !logged[1].Logged.Equal(logged[2].Logged) {
		t.Errorf("Logged = %v, %v, %v: want the first append before the second, one instant per append",
			logged[0].Logged, logged[1].Logged, logged[2].Logged)
	}
	checkFound(t, "in the order of time", findChanges(t, l, metrics.SuppressionQuery{}),
		[]metrics.SuppressionChange{old2, old, recent})
	checkFound(t, "written after the first", findChanges(t, l, metrics.SuppressionQuery{
		ByLogged: true, AfterTime: logged[0].Logged, AfterID: logged[0].ID, LoggedBefore: after}), second)
	checkFound(t, "written after the first of the second append", findChanges(t, l, metrics.SuppressionQuery{
		ByLogged: true, AfterTime: logged[1].Logged, AfterID: logged[1].ID, LoggedBefore: after}), second[1:])
	checkFound(t, "written before the second append", findChanges(t, l, metrics.SuppressionQuery{
		ByLogged: true, LoggedBefore: logged[1].Logged}), []metrics.SuppressionChange{recent})
	checkFound(t, "written after, of one account", findChanges(t, l, metrics.SuppressionQuery{
		ByLogged: true, Account: "other", AfterTime: logged[0].Logged, AfterID: logged[0].ID}),
		[]metrics.SuppressionChange{old2})
	checkFound(t, "written after, limit 1", findChanges(t, l, metrics.SuppressionQuery{
		ByLogged: true, AfterTime: logged[0].Logged, AfterID: logged[0].ID, Limit: 1}), second[:1])
}

func fmtChanges(cs []metrics.SuppressionChange) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = fmtChange(c)
	}
	return out
}
