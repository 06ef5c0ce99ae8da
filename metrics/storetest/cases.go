package storetest

import (
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"repute/metrics"
)

// mixed is one event of every kind (two bounces), each with its own id.
func mixed(t testing.TB) []metrics.Event {
	return mkAll(t,
		ev{id: "s1", kind: metrics.KindSent, msg: "m1"},
		ev{id: "s2", kind: metrics.KindSent, msg: "m2"},
		ev{id: "d1", kind: metrics.KindDelivered, msg: "m1"},
		ev{id: "f1", kind: metrics.KindDeferred, msg: "m2"},
		ev{id: "b1", kind: metrics.KindBounced, msg: "m2", bounce: metrics.BounceHard},
		ev{id: "b2", kind: metrics.KindBounced, msg: "m3", bounce: metrics.BounceSoft},
		ev{id: "c1", kind: metrics.KindComplained, msg: "m1"},
		ev{id: "o1", kind: metrics.KindOpened, msg: "m1"},
		ev{id: "o2", kind: metrics.KindOpened, msg: "m1", machine: true},
		ev{id: "k1", kind: metrics.KindClicked, msg: "m1"},
		ev{id: "u1", kind: metrics.KindUnsubscribed, msg: "m1"},
		ev{id: "x1", kind: metrics.KindDropped, msg: "m4"},
	)
}

// mixedCounts are the counts of mixed.
var mixedCounts = metrics.Counts{Sent: 2, Delivered: 1, Deferred: 1, BouncedHard: 1, BouncedSoft: 1,
	Complained: 1, OpenedHuman: 1, OpenedMachine: 1, Clicked: 1, Unsubscribed: 1, Dropped: 1}

func testAppendTotals(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mixed(t))
	r := stats(t, st, window())
	checkCounts(t, "totals", r.Totals, mixedCounts)
	if len(r.Groups) != 0 {
		t.Errorf("no group_by: got %d groups, want 0", len(r.Groups))
	}
	checkCounts(t, "totals of account acme", totals(t, st, metrics.StatsQuery{
		From: window().From, To: window().To, Account: "acme"}), mixedCounts)
}

func testAppendEmpty(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, nil)
	appendOK(t, st, []metrics.Event{})
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{})
	if err := st.Ping(ctx(t)); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

func testDuplicatesWithinBatch(t *testing.T, s *suite) {
	st := s.open(t)
	events := mixed(t)
	batch := append(append([]metrics.Event{}, events...), events...)
	batch = append(batch, events[0], events[0])
	appendOK(t, st, batch)
	checkCounts(t, "totals", totals(t, st, window()), mixedCounts)
}

func testDuplicatesAcrossBatches(t *testing.T, s *suite) {
	st := s.open(t)
	events := mixed(t)
	appendOK(t, st, events[:7])
	appendOK(t, st, events[3:])
	appendOK(t, st, events)
	checkCounts(t, "totals", totals(t, st, window()), mixedCounts)
	q := window()
	q.GroupBy = []metrics.GroupBy{metrics.GroupDay}
	checkGroups(t, q, stats(t, st, q).Groups, []row{{[]string{"2026-11-24T00:00:00Z"}, mixedCounts}})
}

func testDuplicatesAcrossReopen(t *testing.T, s *suite) {
	st := s.open(t)
	events := mixed(t)
	appendOK(t, st, events)
	st = s.reopen(t)
	checkCounts(t, "totals after reopen", totals(t, st, window()), mixedCounts)
	appendOK(t, st, events)
	appendOK(t, st, events[:1])
	checkCounts(t, "totals after appending again", totals(t, st, window()), mixedCounts)
	st = s.reopen(t)
	checkCounts(t, "totals after second reopen", totals(t, st, window()), mixedCounts)
}

func testDuplicatesConcurrentWriters(t *testing.T, s *suite) {
	st := s.open(t)
	const n = 2000
	events := make([]metrics.Event, n)
	for i := range events {
		events[i] = mk(t, ev{id: fmt.Sprintf("e%05d", i), at: time.Duration(i) * time.Second,
			kind: metrics.KindSent, msg: fmt.Sprintf("m%d", i)})
	}
	// Two writers append the same events in overlapping batches of
	// different sizes, so their batches interleave in every way.
	c := ctx(t)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w, size := range []int{150, 230} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := 0; lo < n; lo += size {
				hi := min(lo+size+50, n) // overlap the next batch
				if err := st.Append(c, events[lo:hi]); err != nil {
					errs <- fmt.Errorf("writer %d: Append: %w", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{Sent: n})
}

// Identity is (account, event_id) alone: an id sent again with another
// time (a client reusing its own ids) is still one event, whichever of the
// two a backend keeps, even days and partitions apart.
func testDuplicatesAtAnotherTime(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t, ev{id: "a", kind: metrics.KindSent}, ev{id: "b", kind: metrics.KindSent}))
	appendOK(t, st, mkAll(t, ev{id: "a", kind: metrics.KindSent, at: 72 * time.Hour},
		ev{id: "c", kind: metrics.KindSent, at: 72 * time.Hour}))
	checkCounts(t, "totals", totals(t, st, window()), sent(3))
	st = s.reopen(t)
	appendOK(t, st, mkAll(t, ev{id: "b", kind: metrics.KindSent, at: -48 * time.Hour}))
	checkCounts(t, "totals after reopen", totals(t, st, window()), sent(3))
}

func testLargeBatch(t *testing.T, s *suite) {
	st := s.open(t)
	const n = 10000
	events := make([]metrics.Event, 0, n)
	for i := range n {
		kind := metrics.KindSent
		if i%2 == 1 {
			kind = metrics.KindDelivered
		}
		events = append(events, mk(t, ev{at: time.Duration(i%3600) * time.Second, kind: kind,
			msg: fmt.Sprintf("<%d@acme.test>", i), rcpt: fmt.Sprintf("user%d@example.com", i)}))
	}
	appendOK(t, st, events)
	appendOK(t, st, events[n/2:])
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{Sent: n / 2, Delivered: n / 2})
}

func testTimeWindow(t *testing.T, s *suite) {
	st := s.open(t)
	from, to := base, base.Add(time.Hour)
	var events []metrics.Event
	for i, at := range []time.Duration{-time.Hour, -time.Second, 0, time.Second,
		30 * time.Minute, time.Hour - time.Second, time.Hour, time.Hour + time.Second} {
		events = append(events, mk(t, ev{id: fmt.Sprintf("t%d", i), at: at, kind: metrics.KindSent}))
	}
	appendOK(t, st, events)
	cases := []struct {
		name     string
		from, to time.Time
		want     int64
	}{
		{"from inclusive, to exclusive", from, to, 4},
		{"one second at from", from, from.Add(time.Second), 1},
		{"one second before from", from.Add(-time.Second), from, 1},
		{"empty range", from, from, 0},
		{"inverted range", to, from, 0},
		{"to just past the last", from, to.Add(time.Second), 5},
		{"everything", from.Add(-2 * time.Hour), to.Add(2 * time.Hour), 8},
		{"nothing before", from.Add(-3 * time.Hour), from.Add(-time.Hour), 0},
		{"other time zone", from.In(time.FixedZone("UTC+8", 8*3600)),
			to.In(time.FixedZone("UTC-5", -5*3600)), 4},
	}
	for _, c := range cases {
		q := metrics.StatsQuery{From: c.from, To: c.to}
		checkCounts(t, c.name+" "+fmtQuery(q), totals(t, st, q), metrics.Counts{Sent: c.want})
	}
}

// Events have whole seconds; a bound inside a second compares as an
// instant: [10:00:00.5, 10:00:02.5) holds the events at :01 and :02.
func testTimeWindowSubSecond(t *testing.T, s *suite) {
	st := s.open(t)
	var events []metrics.Event
	for i := range 4 {
		events = append(events, mk(t, ev{id: fmt.Sprintf("t%d", i), at: time.Duration(i) * time.Second,
			kind: metrics.KindSent}))
	}
	appendOK(t, st, events)
	half := 500 * time.Millisecond
	cases := []struct {
		from, to time.Time
		want     int64
	}{
		{base.Add(half), base.Add(2*time.Second + half), 2},
		{base.Add(-half), base.Add(half), 1},
		{base.Add(time.Nanosecond), base.Add(time.Second + time.Nanosecond), 1},
		{base.Add(time.Second - time.Nanosecond), base.Add(time.Second), 0},
	}
	for _, c := range cases {
		q := metrics.StatsQuery{From: c.from, To: c.to}
		checkCounts(t, fmtQuery(q), totals(t, st, q), metrics.Counts{Sent: c.want})
	}
}

func sent(n int64) metrics.Counts { return metrics.Counts{Sent: n} }

func testGroupBySingle(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindSent, account: "zeta", domain: "b.test", ip: "10.0.0.2", campaign: "winter", rcpt: "a@qq.com"},
		ev{id: "2", kind: metrics.KindSent, account: "acme", domain: "a.test", ip: "10.0.0.10", campaign: "autumn", rcpt: "a@gmail.com"},
		ev{id: "3", kind: metrics.KindSent, account: "acme", domain: "b.test", ip: "10.0.0.2", campaign: "winter", rcpt: "b@googlemail.com"},
		ev{id: "4", kind: metrics.KindSent, account: "beta", domain: "a.test", ip: "10.0.0.1", campaign: "autumn", rcpt: "c@163.com"},
		ev{id: "5", kind: metrics.KindSent, account: "acme", domain: "c.test", ip: "10.0.0.1", campaign: "spring", rcpt: "d@example.org"},
	))
	cases := []struct {
		by   metrics.GroupBy
		want []row
	}{
		{metrics.GroupAccount, []row{{[]string{"acme"}, sent(3)}, {[]string{"beta"}, sent(1)}, {[]string{"zeta"}, sent(1)}}},
		{metrics.GroupSenderDomain, []row{{[]string{"a.test"}, sent(2)}, {[]string{"b.test"}, sent(2)}, {[]string{"c.test"}, sent(1)}}},
		{metrics.GroupISP, []row{{[]string{"gmail"}, sent(2)}, {[]string{"netease"}, sent(1)}, {[]string{"other"}, sent(1)}, {[]string{"tencent"}, sent(1)}}},
		{metrics.GroupCampaign, []row{{[]string{"autumn"}, sent(2)}, {[]string{"spring"}, sent(1)}, {[]string{"winter"}, sent(2)}}},
		// Keys are strings and sort as strings: "10.0.0.10" < "10.0.0.2".
		{metrics.GroupSendingIP, []row{{[]string{"10.0.0.1"}, sent(2)}, {[]string{"10.0.0.10"}, sent(1)}, {[]string{"10.0.0.2"}, sent(2)}}},
	}
	for _, c := range cases {
		q := window()
		q.GroupBy = []metrics.GroupBy{c.by}
		r := stats(t, st, q)
		checkGroups(t, q, r.Groups, c.want)
		checkCounts(t, fmt.Sprintf("totals grouped by %s", c.by), r.Totals, sent(5))
	}
	// With an account filter, grouping by account gives that one account.
	q := window()
	q.Account = "acme"
	q.GroupBy = []metrics.GroupBy{metrics.GroupAccount}
	checkGroups(t, q, stats(t, st, q).Groups, []row{{[]string{"acme"}, sent(3)}})
}

func testGroupByDayHour(t *testing.T, s *suite) {
	st := s.open(t)
	// base is 2026-11-24T10:00:00Z.
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindSent, at: -10 * time.Hour},                      // 24th 00:00:00, a day's first second
		ev{id: "2", kind: metrics.KindSent, at: -time.Second},                         // 24th 09:59:59
		ev{id: "3", kind: metrics.KindSent},                                           // 24th 10:00:00
		ev{id: "4", kind: metrics.KindDelivered, at: 59*time.Minute + 59*time.Second}, // 24th 10:59:59
		ev{id: "5", kind: metrics.KindSent, at: 14*time.Hour - time.Second},           // 24th 23:59:59
		ev{id: "6", kind: metrics.KindSent, at: 14 * time.Hour},                       // 25th 00:00:00
		ev{id: "7", kind: metrics.KindSent, at: -34 * time.Hour},                      // 23rd 00:00:00
	))
	q := window()
	q.GroupBy = []metrics.GroupBy{metrics.GroupDay}
	checkGroups(t, q, stats(t, st, q).Groups, []row{
		{[]string{"2026-11-23T00:00:00Z"}, sent(1)},
		{[]string{"2026-11-24T00:00:00Z"}, metrics.Counts{Sent: 4, Delivered: 1}},
		{[]string{"2026-11-25T00:00:00Z"}, sent(1)},
	})
	q.GroupBy = []metrics.GroupBy{metrics.GroupHour}
	checkGroups(t, q, stats(t, st, q).Groups, []row{
		{[]string{"2026-11-23T00:00:00Z"}, sent(1)},
		{[]string{"2026-11-24T00:00:00Z"}, sent(1)},
		{[]string{"2026-11-24T09:00:00Z"}, sent(1)},
		{[]string{"2026-11-24T10:00:00Z"}, metrics.Counts{Sent: 1, Delivered: 1}},
		{[]string{"2026-11-24T23:00:00Z"}, sent(1)},
		{[]string{"2026-11-25T00:00:00Z"}, sent(1)},
	})
	// A range starting inside a day still labels the day by its start.
	q = metrics.StatsQuery{From: base, To: base.Add(24 * time.Hour), GroupBy: []metrics.GroupBy{metrics.GroupDay}}
	checkGroups(t, q, stats(t, st, q).Groups, []row{
		{[]string{"2026-11-24T00:00:00Z"}, metrics.Counts{Sent: 2, Delivered: 1}},
		{[]string{"2026-11-25T00:00:00Z"}, sent(1)},
	})
}

func testGroupByCombined(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindSent, domain: "b.test", rcpt: "x@gmail.com"},
		ev{id: "2", kind: metrics.KindSent, domain: "a.test", rcpt: "x@gmail.com", at: 24 * time.Hour},
		ev{id: "3", kind: metrics.KindSent, domain: "a.test", rcpt: "x@qq.com"},
		ev{id: "4", kind: metrics.KindDelivered, domain: "a.test", rcpt: "x@qq.com", at: time.Hour},
		ev{id: "5", kind: metrics.KindSent, domain: "b.test", rcpt: "y@qq.com", at: 24 * time.Hour, account: "beta"},
		ev{id: "6", kind: metrics.KindSent, domain: "a.test", rcpt: "y@gmail.com", account: "beta"},
	))
	const d24, d25 = "2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"
	cases := []struct {
		by   []metrics.GroupBy
		want []row
	}{
		{[]metrics.GroupBy{metrics.GroupSenderDomain, metrics.GroupISP}, []row{
			{[]string{"a.test", "gmail"}, sent(2)},
			{[]string{"a.test", "tencent"}, metrics.Counts{Sent: 1, Delivered: 1}},
			{[]string{"b.test", "gmail"}, sent(1)},
			{[]string{"b.test", "tencent"}, sent(1)},
		}},
		{[]metrics.GroupBy{metrics.GroupISP, metrics.GroupSenderDomain}, []row{
			{[]string{"gmail", "a.test"}, sent(2)},
			{[]string{"gmail", "b.test"}, sent(1)},
			{[]string{"tencent", "a.test"}, metrics.Counts{Sent: 1, Delivered: 1}},
			{[]string{"tencent", "b.test"}, sent(1)},
		}},
		{[]metrics.GroupBy{metrics.GroupDay, metrics.GroupSenderDomain}, []row{
			{[]string{d24, "a.test"}, metrics.Counts{Sent: 2, Delivered: 1}},
			{[]string{d24, "b.test"}, sent(1)},
			{[]string{d25, "a.test"}, sent(1)},
			{[]string{d25, "b.test"}, sent(1)},
		}},
		{[]metrics.GroupBy{metrics.GroupSenderDomain, metrics.GroupDay}, []row{
			{[]string{"a.test", d24}, metrics.Counts{Sent: 2, Delivered: 1}},
			{[]string{"a.test", d25}, sent(1)},
			{[]string{"b.test", d24}, sent(1)},
			{[]string{"b.test", d25}, sent(1)},
		}},
		{[]metrics.GroupBy{metrics.GroupAccount, metrics.GroupHour, metrics.GroupISP}, []row{
			{[]string{"acme", "2026-11-24T10:00:00Z", "gmail"}, sent(1)},
			{[]string{"acme", "2026-11-24T10:00:00Z", "tencent"}, sent(1)},
			{[]string{"acme", "2026-11-24T11:00:00Z", "tencent"}, metrics.Counts{Delivered: 1}},
			{[]string{"acme", "2026-11-25T10:00:00Z", "gmail"}, sent(1)},
			{[]string{"beta", "2026-11-24T10:00:00Z", "gmail"}, sent(1)},
			{[]string{"beta", "2026-11-25T10:00:00Z", "tencent"}, sent(1)},
		}},
		{[]metrics.GroupBy{metrics.GroupAccount, metrics.GroupSenderDomain, metrics.GroupISP,
			metrics.GroupCampaign, metrics.GroupSendingIP, metrics.GroupDay, metrics.GroupHour}, []row{
			{[]string{"acme", "a.test", "gmail", "", "", d25, "2026-11-25T10:00:00Z"}, sent(1)},
			{[]string{"acme", "a.test", "tencent", "", "", d24, "2026-11-24T10:00:00Z"}, sent(1)},
			{[]string{"acme", "a.test", "tencent", "", "", d24, "2026-11-24T11:00:00Z"}, metrics.Counts{Delivered: 1}},
			{[]string{"acme", "b.test", "gmail", "", "", d24, "2026-11-24T10:00:00Z"}, sent(1)},
			{[]string{"beta", "a.test", "gmail", "", "", d24, "2026-11-24T10:00:00Z"}, sent(1)},
			{[]string{"beta", "b.test", "tencent", "", "", d25, "2026-11-25T10:00:00Z"}, sent(1)},
		}},
	}
	for _, c := range cases {
		q := window()
		q.GroupBy = c.by
		r := stats(t, st, q)
		checkGroups(t, q, r.Groups, c.want)
		checkCounts(t, fmt.Sprintf("totals grouped by %v", c.by), r.Totals, metrics.Counts{Sent: 5, Delivered: 1})
	}
}

// A dimension the event does not carry groups under the empty string,
// which sorts first.
func testGroupByEmptyValue(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindSent, campaign: "winter", ip: "10.0.0.1"},
		ev{id: "2", kind: metrics.KindSent},
		ev{id: "3", kind: metrics.KindSent, campaign: "autumn"},
	))
	q := window()
	q.GroupBy = []metrics.GroupBy{metrics.GroupCampaign, metrics.GroupSendingIP}
	checkGroups(t, q, stats(t, st, q).Groups, []row{
		{[]string{"", ""}, sent(1)},
		{[]string{"autumn", ""}, sent(1)},
		{[]string{"winter", "10.0.0.1"}, sent(1)},
	})
}

// Every kind but opens and clicks counts per event, even for one message.
func testCountKinds(t *testing.T, s *suite) {
	st := s.open(t)
	var events []metrics.Event
	kinds := []metrics.Kind{metrics.KindSent, metrics.KindDelivered, metrics.KindDeferred,
		metrics.KindComplained, metrics.KindUnsubscribed, metrics.KindDropped}
	for _, k := range kinds {
		for i := range 3 {
			events = append(events, mk(t, ev{id: fmt.Sprintf("%s-%d", k, i), kind: k, msg: "m1",
				at: time.Duration(i) * time.Minute}))
		}
	}
	appendOK(t, st, events)
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{Sent: 3, Delivered: 3,
		Deferred: 3, Complained: 3, Unsubscribed: 3, Dropped: 3})
}

func testCountBounces(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindBounced, bounce: metrics.BounceHard, msg: "m1"},
		ev{id: "2", kind: metrics.KindBounced, bounce: metrics.BounceHard, msg: "m1"},
		ev{id: "3", kind: metrics.KindBounced, bounce: metrics.BounceSoft, msg: "m2"},
		ev{id: "4", kind: metrics.KindBounced, bounce: metrics.BounceUndetermined, msg: "m3"},
		ev{id: "5", kind: metrics.KindBounced, msg: "m4"}, // normalized to undetermined
		ev{id: "6", kind: metrics.KindBounced, bounce: metrics.BounceSoft},
	))
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{BouncedHard: 2, BouncedSoft: 4})
}

func testUniqueOpens(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		// m1 to a: two human opens and two machine opens → one of each.
		ev{id: "1", kind: metrics.KindOpened, msg: "m1", rcpt: "a@gmail.com"},
		ev{id: "2", kind: metrics.KindOpened, msg: "m1", rcpt: "a@gmail.com", at: time.Hour},
		ev{id: "3", kind: metrics.KindOpened, msg: "m1", rcpt: "a@gmail.com", machine: true},
		ev{id: "4", kind: metrics.KindOpened, msg: "m1", rcpt: "a@gmail.com", machine: true, at: time.Minute},
		// m1 to b (the recipient matters, case-insensitively): one human.
		ev{id: "5", kind: metrics.KindOpened, msg: "m1", rcpt: "b@gmail.com"},
		ev{id: "6", kind: metrics.KindOpened, msg: "m1", rcpt: "B@Gmail.com"},
		// m2 to a: machine only.
		ev{id: "7", kind: metrics.KindOpened, msg: "m2", rcpt: "a@gmail.com", machine: true},
		// No message id: per event (two human, one machine).
		ev{id: "8", kind: metrics.KindOpened, rcpt: "a@gmail.com"},
		ev{id: "9", kind: metrics.KindOpened, rcpt: "a@gmail.com"},
		ev{id: "10", kind: metrics.KindOpened, rcpt: "a@gmail.com", machine: true},
		// The same message id in another account is another message.
		ev{id: "11", kind: metrics.KindOpened, msg: "m1", rcpt: "a@gmail.com", account: "beta"},
	))
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{OpenedHuman: 5, OpenedMachine: 3})
	q := window()
	q.Account = "acme"
	checkCounts(t, "totals of acme", totals(t, st, q), metrics.Counts{OpenedHuman: 4, OpenedMachine: 3})
}

func testUniqueClicks(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		// m1 to a: three clicks (two links, one by a scanner) → one.
		ev{id: "1", kind: metrics.KindClicked, msg: "m1", rcpt: "a@gmail.com"},
		ev{id: "2", kind: metrics.KindClicked, msg: "m1", rcpt: "a@gmail.com", at: time.Hour, sourceRef: "link2"},
		ev{id: "3", kind: metrics.KindClicked, msg: "m1", rcpt: "a@gmail.com", machine: true},
		ev{id: "4", kind: metrics.KindClicked, msg: "m1", rcpt: "b@gmail.com"},
		ev{id: "5", kind: metrics.KindClicked, msg: "m2", rcpt: "a@gmail.com"},
		// No message id: per event.
		ev{id: "6", kind: metrics.KindClicked, rcpt: "a@gmail.com"},
		ev{id: "7", kind: metrics.KindClicked, rcpt: "a@gmail.com"},
		// Another account, same message id and recipient.
		ev{id: "8", kind: metrics.KindClicked, msg: "m1", rcpt: "a@gmail.com", account: "beta"},
		// An open of m1 does not make a click.
		ev{id: "9", kind: metrics.KindOpened, msg: "m1", rcpt: "a@gmail.com"},
	))
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{Clicked: 6, OpenedHuman: 1})
}

// Uniqueness holds within each group and within the whole range for the
// totals: a message opened on two days counts once each day, once in all.
func testUniquePerGroup(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindOpened, msg: "m1"},
		ev{id: "2", kind: metrics.KindOpened, msg: "m1", at: 24 * time.Hour},
		ev{id: "3", kind: metrics.KindOpened, msg: "m1", at: 25 * time.Hour},
		ev{id: "4", kind: metrics.KindClicked, msg: "m1"},
		ev{id: "5", kind: metrics.KindClicked, msg: "m1", at: 24 * time.Hour},
		ev{id: "6", kind: metrics.KindOpened, msg: "m1", machine: true, at: 24 * time.Hour},
	))
	q := window()
	q.GroupBy = []metrics.GroupBy{metrics.GroupDay}
	r := stats(t, st, q)
	checkGroups(t, q, r.Groups, []row{
		{[]string{"2026-11-24T00:00:00Z"}, metrics.Counts{OpenedHuman: 1, Clicked: 1}},
		{[]string{"2026-11-25T00:00:00Z"}, metrics.Counts{OpenedHuman: 1, OpenedMachine: 1, Clicked: 1}},
	})
	checkCounts(t, "totals", r.Totals, metrics.Counts{OpenedHuman: 1, OpenedMachine: 1, Clicked: 1})
}

// The machine verdict round-trips in its three states — none, a person,
// a machine — across a reopen: an open without a verdict counts as human
// and again as unverified; clicks are counted whatever their verdict.
func testMachineVerdict(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "none", kind: metrics.KindOpened, msg: "m1", noVerdict: true},
		ev{id: "human", kind: metrics.KindOpened, msg: "m2"},
		ev{id: "mpp", kind: metrics.KindOpened, msg: "m3", machine: true, why: "apple_mpp"},
		ev{id: "proxy", kind: metrics.KindOpened, msg: "m4", machine: true, why: "google_proxy"},
		ev{id: "bare", kind: metrics.KindOpened, msg: "m5", machine: true},
		ev{id: "none2", kind: metrics.KindOpened, noVerdict: true},
		ev{id: "click-none", kind: metrics.KindClicked, msg: "m1", noVerdict: true},
		ev{id: "click-bot", kind: metrics.KindClicked, msg: "m2", machine: true, why: "scanner"},
	))
	want := metrics.Counts{OpenedHuman: 3, OpenedMachine: 3, OpenedUnverified: 2, Clicked: 2}
	checkCounts(t, "totals", totals(t, st, window()), want)
	st = s.reopen(t)
	checkCounts(t, "totals after reopen", totals(t, st, window()), want)
	q := window()
	q.GroupBy = []metrics.GroupBy{metrics.GroupDay}
	checkGroups(t, q, stats(t, st, q).Groups, []row{{[]string{"2026-11-24T00:00:00Z"}, want}})
	r := want.Rates()
	if r.MachineOpenShare == nil || *r.MachineOpenShare != 0.5 {
		t.Errorf("machine_open_share = %s, want 0.5", fmtRate(r.MachineOpenShare))
	}
}

// Unverified opens are unique per (account, message_id, recipient) like
// the others: one message opened with and without a verdict counts once as
// human, once as unverified; the totals are unique over the whole range.
func testMachineVerdictUnique(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindOpened, msg: "m1", noVerdict: true},
		ev{id: "2", kind: metrics.KindOpened, msg: "m1", noVerdict: true, at: time.Hour},
		ev{id: "3", kind: metrics.KindOpened, msg: "m1", at: 24 * time.Hour},
		ev{id: "4", kind: metrics.KindOpened, msg: "m1", machine: true, why: "apple_mpp", at: 24 * time.Hour},
		ev{id: "5", kind: metrics.KindOpened, msg: "m2", noVerdict: true, at: 24 * time.Hour},
		ev{id: "6", kind: metrics.KindOpened, msg: "m2", noVerdict: true, rcpt: "other@gmail.com"},
	))
	q := window()
	q.GroupBy = []metrics.GroupBy{metrics.GroupDay}
	r := stats(t, st, q)
	checkGroups(t, q, r.Groups, []row{
		{[]string{"2026-11-24T00:00:00Z"}, metrics.Counts{OpenedHuman: 2, OpenedUnverified: 2}},
		{[]string{"2026-11-25T00:00:00Z"}, metrics.Counts{OpenedHuman: 2, OpenedMachine: 1, OpenedUnverified: 1}},
	})
	checkCounts(t, "totals", r.Totals, metrics.Counts{OpenedHuman: 3, OpenedMachine: 1, OpenedUnverified: 3})
}

// An open posted without a verdict and posted again once judged has the
// same computed id: it is the same event, known, counted once (as first
// stored).
func testVerdictKeepsID(t *testing.T, s *suite) {
	st := s.open(t)
	first := mk(t, ev{kind: metrics.KindOpened, msg: "m1", noVerdict: true})
	judged := mk(t, ev{kind: metrics.KindOpened, msg: "m1", machine: true, why: "apple_mpp"})
	human := mk(t, ev{kind: metrics.KindOpened, msg: "m1"})
	if first.EventID != judged.EventID || first.EventID != human.EventID {
		t.Fatalf("ids %s (no verdict), %s (machine), %s (human): want one id", first.EventID, judged.EventID, human.EventID)
	}
	appendOK(t, st, []metrics.Event{first})
	checkKnown(t, st, []metrics.Event{judged, human}, map[metrics.Key]bool{judged.Key(): true})
	appendOK(t, st, []metrics.Event{judged, human})
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{OpenedHuman: 1, OpenedUnverified: 1})
}

// Who posted an event is not part of it: the same fact posted through two
// accounts' keys, or by repute itself, is one event, and Append takes a
// posted_by without complaint.
func testPostedByKeepsID(t *testing.T, s *suite) {
	st := s.open(t)
	byAcme := mk(t, ev{kind: metrics.KindBounced, msg: "m1", bounce: "hard"})
	byAcme.PostedBy = "acme"
	byNobody := byAcme
	byNobody.PostedBy, byNobody.EventID = "", ""
	byNobody.EventID = byNobody.ComputeID()
	if byNobody.EventID != byAcme.EventID {
		t.Fatalf("ids %s (posted by acme), %s (by nobody): want one id", byAcme.EventID, byNobody.EventID)
	}
	appendOK(t, st, []metrics.Event{byAcme})
	checkKnown(t, st, []metrics.Event{byNobody}, map[metrics.Key]bool{byNobody.Key(): true})
	appendOK(t, st, []metrics.Event{byNobody})
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{BouncedHard: 1})
}

func testGroupByCategory(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "1", kind: metrics.KindSent, category: metrics.CategoryRegistration, msg: "r1"},
		ev{id: "2", kind: metrics.KindDelivered, category: metrics.CategoryRegistration, msg: "r1"},
		ev{id: "3", kind: metrics.KindOpened, category: metrics.CategoryRegistration, msg: "r1"},
		ev{id: "4", kind: metrics.KindSent, category: metrics.CategoryMarketing, msg: "n1", rcpt: "a@qq.com"},
		ev{id: "5", kind: metrics.KindSent, category: metrics.CategoryMarketing, msg: "n2"},
		ev{id: "6", kind: metrics.KindSent, category: metrics.CategoryTransactional, msg: "t1"},
		ev{id: "7", kind: metrics.KindSent, msg: "x1"},
	))
	q := window()
	q.GroupBy = []metrics.GroupBy{metrics.GroupCategory}
	r := stats(t, st, q)
	checkGroups(t, q, r.Groups, []row{
		{[]string{""}, sent(1)},
		{[]string{"marketing"}, sent(2)},
		{[]string{"registration"}, metrics.Counts{Sent: 1, Delivered: 1, OpenedHuman: 1}},
		{[]string{"transactional"}, sent(1)},
	})
	checkCounts(t, "totals", r.Totals, metrics.Counts{Sent: 5, Delivered: 1, OpenedHuman: 1})
	q.GroupBy = []metrics.GroupBy{metrics.GroupISP, metrics.GroupCategory}
	checkGroups(t, q, stats(t, st, q).Groups, []row{
		{[]string{"gmail", ""}, sent(1)},
		{[]string{"gmail", "marketing"}, sent(1)},
		{[]string{"gmail", "registration"}, metrics.Counts{Sent: 1, Delivered: 1, OpenedHuman: 1}},
		{[]string{"gmail", "transactional"}, sent(1)},
		{[]string{"tencent", "marketing"}, sent(1)},
	})
}

// A dropped event of each reason counts as dropped, and only as dropped:
// "unsubscribed" is why it was not sent, not an unsubscription.
func testDroppedReasons(t *testing.T, s *suite) {
	st := s.open(t)
	var es []ev
	for i, why := range metrics.DropReasons {
		es = append(es, ev{id: fmt.Sprintf("x%d", i), kind: metrics.KindDropped, why: why, msg: fmt.Sprintf("m%d", i)})
	}
	appendOK(t, st, mkAll(t, es...))
	checkCounts(t, "totals", totals(t, st, window()), metrics.Counts{Dropped: int64(len(metrics.DropReasons))})
}

func testRates(t *testing.T, s *suite) {
	st := s.open(t)
	var es []ev
	add := func(n int, e ev) {
		for i := range n {
			e := e
			e.id = fmt.Sprintf("%s-%s-%d-%t-%d", e.kind, e.bounce, len(es), e.machine, i)
			if e.kind == metrics.KindOpened {
				e.msg = fmt.Sprintf("m%d", i)
			}
			es = append(es, e)
		}
	}
	add(200, ev{kind: metrics.KindSent})
	add(160, ev{kind: metrics.KindDelivered})
	add(10, ev{kind: metrics.KindBounced, bounce: metrics.BounceHard})
	add(7, ev{kind: metrics.KindBounced, bounce: metrics.BounceSoft})
	add(4, ev{kind: metrics.KindComplained})
	add(40, ev{kind: metrics.KindOpened})
	add(60, ev{kind: metrics.KindOpened, machine: true})
	appendOK(t, st, mkAll(t, es...))
	c := totals(t, st, window())
	checkCounts(t, "totals", c, metrics.Counts{Sent: 200, Delivered: 160, BouncedHard: 10,
		BouncedSoft: 7, Complained: 4, OpenedHuman: 40, OpenedMachine: 60})
	r := c.Rates()
	for _, x := range []struct {
		name string
		got  *float64
		want float64
	}{
		{"bounce_rate", r.BounceRate, 0.05},
		{"complaint_rate", r.ComplaintRate, 0.025},
		{"open_rate", r.OpenRate, 0.25},
		{"machine_open_share", r.MachineOpenShare, 0.6},
	} {
		if x.got == nil || math.Abs(*x.got-x.want) > 1e-12 {
			t.Errorf("%s = %v, want %v", x.name, fmtRate(x.got), x.want)
		}
	}
	// No denominators: every rate is nil.
	q := metrics.StatsQuery{From: base.Add(time.Hour), To: base.Add(2 * time.Hour)}
	if r := totals(t, st, q).Rates(); r != (metrics.Rates{}) {
		t.Errorf("rates of an empty range = %+v, want all nil", r)
	}
}

func fmtRate(r *float64) string {
	if r == nil {
		return "nil"
	}
	return fmt.Sprint(*r)
}

// The same event id under two accounts is two events, and an account's
// statistics never include another account's events.
func testTenantIsolation(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mkAll(t,
		ev{id: "same", kind: metrics.KindSent, account: "acme"},
		ev{id: "same", kind: metrics.KindSent, account: "beta"},
		ev{id: "b2", kind: metrics.KindBounced, bounce: metrics.BounceHard, account: "beta"},
		ev{id: "c1", kind: metrics.KindComplained, account: "gamma"},
	))
	// Appending acme's "same" again changes nothing.
	appendOK(t, st, mkAll(t, ev{id: "same", kind: metrics.KindSent, account: "acme"}))
	cases := []struct {
		account string
		want    metrics.Counts
	}{
		{"", metrics.Counts{Sent: 2, BouncedHard: 1, Complained: 1}},
		{"acme", sent(1)},
		{"beta", metrics.Counts{Sent: 1, BouncedHard: 1}},
		{"gamma", metrics.Counts{Complained: 1}},
		{"nobody", metrics.Counts{}},
		{"ACME", metrics.Counts{}},
	}
	for _, c := range cases {
		q := window()
		q.Account = c.account
		checkCounts(t, fmt.Sprintf("totals of account %q", c.account), totals(t, st, q), c.want)
		q.GroupBy = []metrics.GroupBy{metrics.GroupAccount, metrics.GroupDay}
		r := stats(t, st, q)
		for _, g := range r.Groups {
			if c.account != "" && g.Key[metrics.GroupAccount] != c.account {
				t.Errorf("Stats(%s) has a group of account %q", fmtQuery(q), g.Key[metrics.GroupAccount])
			}
		}
		checkCounts(t, fmt.Sprintf("grouped totals of account %q", c.account), r.Totals, c.want)
	}
}

// Values that mean something in SQL are data like any other.
func testQuotedValues(t *testing.T, s *suite) {
	st := s.open(t)
	odd := []string{"it's", `a"b`, `back\slash`, "100%", "a_b", "x' OR '1'='1", "--", "é"}
	var es []ev
	for i, v := range odd {
		es = append(es, ev{id: fmt.Sprintf("%d'--", i), kind: metrics.KindSent, account: v, campaign: v, msg: v})
	}
	appendOK(t, st, mkAll(t, es...))
	for _, v := range odd {
		q := window()
		q.Account = v
		q.GroupBy = []metrics.GroupBy{metrics.GroupCampaign}
		r := stats(t, st, q)
		checkCounts(t, fmt.Sprintf("totals of account %q", v), r.Totals, sent(1))
		checkGroups(t, q, r.Groups, []row{{[]string{v}, sent(1)}})
	}
	checkCounts(t, "totals", totals(t, st, window()), sent(int64(len(odd))))
}

// An unknown dimension is an error, never a query built from it.
func testGroupByUnknown(t *testing.T, s *suite) {
	st := s.open(t)
	appendOK(t, st, mixed(t))
	for _, by := range []metrics.GroupBy{"bogus", "time", "account; DROP TABLE events", "1"} {
		q := window()
		q.GroupBy = []metrics.GroupBy{metrics.GroupDay, by}
		if r, err := st.Stats(ctx(t), q); err == nil {
			t.Errorf("Stats(%s) = %+v, want an error", fmtQuery(q), r)
		}
	}
	checkCounts(t, "totals afterwards", totals(t, st, window()), mixedCounts)
}

// Statistics and Known answer while appends run, and see each append
// whole or not at all.
func testConcurrentReadsAndWrites(t *testing.T, s *suite) {
	st := s.open(t)
	const batches, size = 10, 500
	c := ctx(t)
	done := make(chan error, 1)
	go func() {
		defer close(done)
		for b := range batches {
			var events []metrics.Event
			for i := range size {
				events = append(events, mk(t, ev{id: fmt.Sprintf("%d-%d", b, i), kind: metrics.KindSent,
					at: time.Duration(i) * time.Second}))
			}
			if err := st.Append(c, events); err != nil {
				done <- err
				return
			}
		}
	}()
	probe := []metrics.Event{mk(t, ev{id: "0-0", kind: metrics.KindSent})}
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Append: %v", err)
			}
			finished = true
		default:
		}
		r, err := st.Stats(c, window())
		if err != nil {
			t.Fatalf("Stats during appends: %v", err)
		}
		if r.Totals.Sent%size != 0 {
			t.Errorf("Stats during appends: sent %d, not a whole number of %d-event batches", r.Totals.Sent, size)
		}
		if _, err := st.Known(c, probe); err != nil {
			t.Fatalf("Known during appends: %v", err)
		}
	}
	checkCounts(t, "totals", totals(t, st, window()), sent(batches*size))
}

func testEmpty(t *testing.T, s *suite) {
	st := s.open(t)
	for _, by := range [][]metrics.GroupBy{nil, {}, {metrics.GroupDay}, metrics.GroupBys} {
		q := window()
		q.GroupBy = by
		r := stats(t, st, q)
		checkCounts(t, fmt.Sprintf("totals of an empty store grouped by %v", by), r.Totals, metrics.Counts{})
		if len(r.Groups) != 0 {
			t.Errorf("Stats(%s) of an empty store: got %d groups, want 0", fmtQuery(q), len(r.Groups))
		}
	}
	// Data outside the range or of another account looks the same.
	appendOK(t, st, mixed(t))
	for _, q := range []metrics.StatsQuery{
		{From: base.Add(time.Hour), To: base.Add(2 * time.Hour), GroupBy: []metrics.GroupBy{metrics.GroupISP}},
		{From: window().From, To: window().To, Account: "nobody", GroupBy: []metrics.GroupBy{metrics.GroupISP}},
	} {
		r := stats(t, st, q)
		checkCounts(t, fmt.Sprintf("totals of %s", fmtQuery(q)), r.Totals, metrics.Counts{})
		if len(r.Groups) != 0 {
			t.Errorf("Stats(%s): got %d groups, want 0", fmtQuery(q), len(r.Groups))
		}
	}
}

func testKnown(t *testing.T, s *suite) {
	st := s.open(t)
	known, err := st.Known(ctx(t), nil)
	if err != nil {
		t.Fatalf("Known(nil): %v", err)
	}
	if len(known) != 0 {
		t.Errorf("Known(nil) = %v, want empty", known)
	}
	stored := mkAll(t,
		ev{id: "a", kind: metrics.KindSent},
		ev{id: "b", kind: metrics.KindSent, at: 48 * time.Hour},
		ev{id: "c", kind: metrics.KindSent, account: "beta"},
	)
	appendOK(t, st, stored)
	candidates := mkAll(t,
		ev{id: "a", kind: metrics.KindSent},
		ev{id: "a", kind: metrics.KindSent},                          // asked twice
		ev{id: "b", kind: metrics.KindDelivered, at: 48 * time.Hour}, // other content, same key
		ev{id: "c", kind: metrics.KindSent},                          // acme's c is not beta's
		ev{id: "d", kind: metrics.KindSent, account: "beta"},
		ev{id: "a", kind: metrics.KindSent, account: "beta"},
	)
	checkKnown(t, st, candidates, map[metrics.Key]bool{{Account: "acme", EventID: "a"}: true,
		{Account: "acme", EventID: "b"}: true})

	st = s.reopen(t)
	checkKnown(t, st, stored, map[metrics.Key]bool{{Account: "acme", EventID: "a"}: true,
		{Account: "acme", EventID: "b"}: true, {Account: "beta", EventID: "c"}: true})
}

func checkKnown(t *testing.T, st metrics.Store, events []metrics.Event, want map[metrics.Key]bool) {
	t.Helper()
	got, err := st.Known(ctx(t), events)
	if err != nil {
		t.Fatalf("Known: %v", err)
	}
	// A key mapped to false is as good as absent.
	for k, v := range got {
		if !v {
			delete(got, k)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("Known:\n got %v\nwant %v", got, want)
	}
}

// Known answers for 10,000 keys at once (intake asks per posted batch),
// half of them stored, spread over two weeks.
func testKnownMany(t *testing.T, s *suite) {
	st := s.open(t)
	const n = 10000
	events := make([]metrics.Event, n)
	for i := range events {
		events[i] = mk(t, ev{id: fmt.Sprintf("k%05d", i), kind: metrics.KindSent,
			at: time.Duration(i) * 2 * time.Minute})
	}
	var stored []metrics.Event
	want := map[metrics.Key]bool{}
	for i, e := range events {
		if i%2 == 0 {
			stored = append(stored, e)
			want[e.Key()] = true
		}
	}
	appendOK(t, st, stored)
	got, err := st.Known(ctx(t), events)
	if err != nil {
		t.Fatalf("Known(%d events): %v", n, err)
	}
	count := 0
	for k, v := range got {
		if v {
			count++
			if !want[k] {
				t.Errorf("Known: %v reported but never stored", k)
			}
		}
	}
	if count != len(want) {
		t.Errorf("Known(%d events): got %d known, want %d", n, count, len(want))
	}
}
