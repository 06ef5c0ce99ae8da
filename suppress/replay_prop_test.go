package suppress

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"repute/metrics"
)

// A world drives an index A with random operations and keeps every
// change it makes, as the store would.
type world struct {
	t      *testing.T
	r      *rand.Rand
	c      *clock
	a      *Index
	log    map[string]metrics.SuppressionChange
	past   []pastEvent // events observed, to observe again
	nextID int
}

type pastEvent struct {
	e     metrics.Event
	trust Trust
}

var (
	propAddrs    = []string{"a@example.com", "b@example.com", "c@example.org", "d@example.net"}
	propAccounts = []string{"acme", "beta", "gamma"}
	propDomains  = []string{"news.acme.example", "shop.example", ""}
	propReasons  = []string{"userunknown", "hasmoved", "mailboxfull", "suspend", "exceedlimit", "mailboxfull", "blocked"}
	propPrinc    = []Principal{{Account: "acme"}, {Account: "beta"}, {Account: "gamma"}, {Admin: true}, {Admin: true, Account: "beta"}}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func (w *world) record(ch []Change) {
	for _, c := range ch {
		s := c.Stored()
		w.log[s.ID] = s
	}
}

// event makes a new event, dated within the last 20 days or up to an
// hour ahead of the clock, or picks one observed before.
func (w *world) event() (metrics.Event, Trust) {
	if len(w.past) > 0 && w.r.IntN(4) == 0 {
		p := pick(w.r, w.past)
		return p.e, p.trust
	}
	w.nextID++
	id := fmt.Sprintf("%032x", w.nextID)
	if w.r.IntN(5) == 0 {
		id = fmt.Sprintf("odd-%d@example.net", w.nextID)
	}
	now := w.c.Now().Truncate(time.Second)
	at := now.Add(-time.Duration(w.r.IntN(20*24*3600)) * time.Second)
	if w.r.IntN(8) == 0 {
		at = now.Add(time.Duration(w.r.IntN(3600)) * time.Second)
	}
	e := metrics.Event{EventID: id, Time: at, Kind: metrics.KindBounced, Account: pick(w.r, propAccounts),
		SenderDomain: pick(w.r, propDomains), Recipient: pick(w.r, propAddrs), Reason: pick(w.r, propReasons),
		Status: "5.1.1", ReplyCode: 550}
	switch w.r.IntN(6) {
	case 0:
		e.Kind, e.Reason = metrics.KindUnsubscribed, ""
	case 1:
		e.Kind, e.Reason = metrics.KindComplained, ""
	}
	trust := Trust{Shared: true, By: "imap"}
	if w.r.IntN(3) == 0 {
		trust = Trust{Account: pick(w.r, propAccounts)}
	}
	w.past = append(w.past, pastEvent{e, trust})
	return e, trust
}

// step makes one random operation on x (A or B) and returns its changes.
func (w *world) step(x *Index, op int, e metrics.Event, trust Trust, by Principal, addr, domain string) []Change {
	var ch []Change
	var err error
	switch op {
	case 0:
		ch, err = x.Observe([]metrics.Event{e}, trust)
	case 1:
		ch, _ = x.Lift(by, addr, "because")
	case 2:
		if by.Account != "" {
			ch, _ = x.Resubscribe(by, domain, addr, "asked to")
		}
	case 3:
		if by.Account != "" {
			ch, err = x.Unsubscribe(by, domain, addr, "")
		}
	case 4:
		ch = x.Sweep(w.c.Now())
	}
	if err != nil {
		w.t.Fatal(err)
	}
	return ch
}

func (w *world) randomOp() (int, metrics.Event, Trust, Principal, string, string) {
	op := 0
	switch n := w.r.IntN(20); {
	case n < 12:
	case n < 15:
		op = 1
	case n < 17:
		op = 2
	case n < 19:
		op = 3
	default:
		op = 4
	}
	e, trust := w.event()
	by := pick(w.r, propPrinc)
	if op >= 2 && by.Admin { // the unsubscribe list is per account
		by.Account = pick(w.r, propAccounts)
	}
	return op, e, trust, by, pick(w.r, propAddrs), pick(w.r, propDomains)
}

// advance moves the clock on by up to two days, sometimes not at all and
// sometimes by a fraction of a second.
func (w *world) advance() {
	switch w.r.IntN(4) {
	case 0:
	case 1:
		w.c.Add(time.Duration(w.r.IntN(1e9)))
	default:
		w.c.Add(time.Duration(w.r.IntN(2*24*3600)) * time.Second)
	}
}

func sortChanges(ch []Change) []Change {
	ch = slices.Clone(ch)
	slices.SortFunc(ch, func(a, b Change) int {
		return cmp.Compare(fmt.Sprintf("%+v", a), fmt.Sprintf("%+v", b))
	})
	return ch
}

func sameAnswers(t *testing.T, a, b *Index, when string) {
	t.Helper()
	sameChecks(t, a, b, when)
	for _, by := range propPrinc {
		for _, addr := range propAddrs {
			la, _ := a.Lookup(by, addr)
			lb, _ := b.Lookup(by, addr)
			key := func(e Entry) string { return fmt.Sprintf("%+v", e) }
			slices.SortFunc(la, func(x, y Entry) int { return cmp.Compare(key(x), key(y)) })
			slices.SortFunc(lb, func(x, y Entry) int { return cmp.Compare(key(x), key(y)) })
			if !reflect.DeepEqual(la, lb) {
				t.Fatalf("%s: Lookup(%v, %s):\n A %+v\n B %+v", when, by, addr, la, lb)
			}
		}
	}
}

// Replaying the log of an index's changes, in the store's (Time, ID)
// order, into a fresh index gives the same index: the same answers now
// and later, and the same changes for whatever comes next.
func TestReplayRebuildsTheSameIndex(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		w := &world{t: t, r: rand.New(rand.NewPCG(uint64(seed), 10)), c: &clock{t: day0}, log: map[string]metrics.SuppressionChange{}}
		var err error
		if w.a, err = New(Options{Now: w.c.Now}); err != nil {
			t.Fatal(err)
		}
		for range 40 + w.r.IntN(80) {
			w.advance()
			op, e, trust, by, addr, domain := w.randomOp()
			w.record(w.step(w.a, op, e, trust, by, addr, domain))
		}
		b, err := New(Options{Now: w.c.Now})
		if err != nil {
			t.Fatal(err)
		}
		log := slices.Collect(func(yield func(metrics.SuppressionChange) bool) {
			for _, s := range w.log {
				if !yield(s) {
					return
				}
			}
		})
		slices.SortFunc(log, func(x, y metrics.SuppressionChange) int {
			return cmp.Or(x.Time.Compare(y.Time), cmp.Compare(x.ID, y.ID))
		})
		if err := b.Replay(slices.Values(log)); err != nil {
			t.Fatalf("seed %d: replay: %v", seed, err)
		}
		now := w.c.Now()
		for _, d := range []time.Duration{0, time.Hour, day, 7 * day, 15 * day} {
			w.c.Set(now.Add(d))
			sameAnswers(t, w.a, b, fmt.Sprintf("seed %d, %d changes, at +%v", seed, len(log), d))
		}
		w.c.Set(now)
		// The same operations, old events among them, on both.
		for i := range 30 {
			w.advance()
			op, e, trust, by, addr, domain := w.randomOp()
			ca := sortChanges(w.step(w.a, op, e, trust, by, addr, domain))
			cb := sortChanges(w.step(b, op, e, trust, by, addr, domain))
			if !reflect.DeepEqual(ca, cb) {
				t.Fatalf("seed %d, step %d after the replay, op %d %+v %+v by %v %s %s:\n A %+v\n B %+v",
					seed, i, op, e, trust, by, addr, domain, ca, cb)
			}
		}
		sameAnswers(t, w.a, b, fmt.Sprintf("seed %d, at the end", seed))
	}
}

// Applying the log in any order, some changes twice, gives the index the
// log's order gives: what a process following another's changes needs,
// as it reads them in the order they were written, not by time.
func TestApplyInAnyOrder(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	for seed := range seeds {
		w := &world{t: t, r: rand.New(rand.NewPCG(uint64(seed), 11)), c: &clock{t: day0}, log: map[string]metrics.SuppressionChange{}}
		var err error
		if w.a, err = New(Options{Now: w.c.Now}); err != nil {
			t.Fatal(err)
		}
		for range 40 + w.r.IntN(80) {
			w.advance()
			op, e, trust, by, addr, domain := w.randomOp()
			w.record(w.step(w.a, op, e, trust, by, addr, domain))
		}
		log := slices.Collect(maps.Values(w.log))
		slices.SortFunc(log, func(x, y metrics.SuppressionChange) int {
			return cmp.Or(x.Time.Compare(y.Time), cmp.Compare(x.ID, y.ID))
		})
		shuffled := slices.Clone(log)
		w.r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for range len(log) / 4 { // some read twice, later
			shuffled = append(shuffled, pick(w.r, log))
		}
		b, err := New(Options{Now: w.c.Now})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range shuffled {
			if err := b.Apply(FromStored(c)); err != nil {
				t.Fatalf("seed %d: apply: %v", seed, err)
			}
		}
		now := w.c.Now()
		for _, d := range []time.Duration{0, time.Hour, day, 7 * day, 15 * day} {
			w.c.Set(now.Add(d))
			sameChecks(t, w.a, b, fmt.Sprintf("seed %d, %d changes shuffled, at +%v", seed, len(log), d))
		}
	}
}

// sameChecks compares the answers of Check of two indexes for every
// principal, sender domain and address of the property tests.
func sameChecks(t *testing.T, a, b *Index, when string) {
	t.Helper()
	for _, by := range propPrinc {
		for _, d := range []string{"news.acme.example", "shop.example", "other.example"} {
			va, vb := a.Check(by, d, propAddrs), b.Check(by, d, propAddrs)
			if !reflect.DeepEqual(va, vb) {
				t.Fatalf("%s: Check(%v, %s):\n A %+v\n B %+v", when, by, d, va, vb)
			}
		}
	}
}
