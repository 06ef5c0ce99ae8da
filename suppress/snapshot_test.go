package suppress

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"
	"testing/iotest"
	"time"

	"repute/metrics"
)

// A snapshot read back is the index that wrote it: the same answers now
// and later, and the same changes for whatever comes next — soft counts,
// lift markers, odd event ids and re-subscriptions included.
func TestSnapshotRestoresTheSameIndex(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	var odd, soft, lifted, resub, own int
	for seed := range seeds {
		w := &world{t: t, r: rand.New(rand.NewPCG(uint64(seed), 12)), c: &clock{t: day0}, log: map[string]metrics.SuppressionChange{}}
		var err error
		if w.a, err = New(Options{Now: w.c.Now}); err != nil {
			t.Fatal(err)
		}
		for range 40 + w.r.IntN(80) {
			w.advance()
			op, e, trust, by, addr, domain := w.randomOp()
			w.record(w.step(w.a, op, e, trust, by, addr, domain))
		}
		odd += len(w.a.oddIDs)
		soft += len(w.a.soft)
		lifted += len(w.a.lifted)
		own += w.a.own.len()
		for _, m := range w.a.unsubs {
			for _, u := range m {
				if !u.active {
					resub++
				}
			}
		}
		var buf bytes.Buffer
		if err := w.a.WriteSnapshot(&buf); err != nil {
			t.Fatal(err)
		}
		b, err := ReadSnapshot(bytes.NewReader(buf.Bytes()), Options{Now: w.c.Now})
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		// Written again, the same bytes: nothing was lost or reordered.
		var again bytes.Buffer
		if err := b.WriteSnapshot(&again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), again.Bytes()) {
			t.Fatalf("seed %d: the snapshot of the read index differs from the one read (%d vs %d bytes)", seed, again.Len(), buf.Len())
		}
		now := w.c.Now()
		for _, d := range []time.Duration{0, time.Hour, day, 7 * day, 15 * day} {
			w.c.Set(now.Add(d))
			sameAnswers(t, w.a, b, fmt.Sprintf("seed %d, at +%v", seed, d))
		}
		w.c.Set(now)
		for i := range 30 {
			w.advance()
			op, e, trust, by, addr, domain := w.randomOp()
			ca := sortChanges(w.step(w.a, op, e, trust, by, addr, domain))
			cb := sortChanges(w.step(b, op, e, trust, by, addr, domain))
			if !reflect.DeepEqual(ca, cb) {
				t.Fatalf("seed %d, step %d after the snapshot, op %d %+v %+v by %v %s %s:\n A %+v\n B %+v",
					seed, i, op, e, trust, by, addr, domain, ca, cb)
			}
		}
		sameAnswers(t, w.a, b, fmt.Sprintf("seed %d, at the end", seed))
		if sa, oa := w.a.Len(); true {
			if sb, ob := b.Len(); sa != sb || oa != ob {
				t.Fatalf("seed %d: Len A %d/%d, B %d/%d", seed, sa, oa, sb, ob)
			}
		}
	}
	// The worlds exercised every part of the state.
	if odd == 0 || soft == 0 || lifted == 0 || resub == 0 || own == 0 {
		t.Fatalf("the random worlds missed a part of the state: odd ids %d, soft %d, lifted %d, re-subscribed %d, own %d",
			odd, soft, lifted, resub, own)
	}
}

// smallSnapshot is the snapshot of an index holding a bit of everything.
func smallSnapshot(t *testing.T) []byte {
	t.Helper()
	c := &clock{t: day0}
	x, err := New(Options{Now: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	hard := bounce("acme", "gone@example.com", "userunknown", day0.Add(-time.Hour))
	oddID := bounce("beta", "odd@example.com", "hasmoved", day0.Add(-2*time.Hour))
	oddID.EventID = "not-hex@example.net"
	full := bounce("acme", "full@example.com", "mailboxfull", day0.Add(-3*time.Hour))
	if _, err := x.Observe([]metrics.Event{hard, oddID, full}, Trust{Shared: true}); err != nil {
		t.Fatal(err)
	}
	mine := bounce("gamma", "mine@example.com", "userunknown", day0.Add(-time.Hour))
	if _, err := x.Observe([]metrics.Event{mine}, Trust{Account: "gamma"}); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Lift(Principal{Admin: true}, "gone@example.com", "fixed"); err != nil {
		t.Fatal(err)
	}
	by := Principal{Account: "acme"}
	x.Unsubscribe(by, "news.acme.example", "u@example.com", "api")
	x.Unsubscribe(by, "news.acme.example", "r@example.com", "api")
	if _, err := x.Resubscribe(by, "news.acme.example", "r@example.com", "asked"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := x.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSnapshot(bytes.NewReader(buf.Bytes()), Options{Now: c.Now}); err != nil {
		t.Fatalf("the intact snapshot: %v", err)
	}
	return buf.Bytes()
}

// Every truncation of a snapshot is refused, and so is every flipped
// byte, bytes after the end, and another version.
func TestSnapshotRefusesDamage(t *testing.T) {
	snap := smallSnapshot(t)
	opts := Options{Now: (&clock{t: day0}).Now}
	for n := range len(snap) {
		x, err := ReadSnapshot(bytes.NewReader(snap[:n]), opts)
		if err == nil || x != nil || !errors.Is(err, ErrSnapshot) {
			t.Fatalf("truncated to %d of %d bytes: index %v, err %v; want ErrSnapshot", n, len(snap), x != nil, err)
		}
	}
	for i := range snap {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(snap)
			bad[i] ^= bit
			x, err := ReadSnapshot(bytes.NewReader(bad), opts)
			if err == nil || x != nil {
				t.Fatalf("byte %d of %d flipped (^%#x): read without error", i, len(snap), bit)
			}
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("byte %d flipped: %v, want ErrSnapshot", i, err)
			}
		}
	}
	if _, err := ReadSnapshot(bytes.NewReader(append(bytes.Clone(snap), 0)), opts); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("a byte after the end: %v, want ErrSnapshot", err)
	}
	v2 := bytes.Clone(snap)
	v2[len(snapshotMagic)] = 2
	if _, err := ReadSnapshot(bytes.NewReader(v2), opts); err == nil || !bytes.Contains([]byte(err.Error()), []byte("version 2")) {
		t.Fatalf("version 2: %v, want an error naming it", err)
	}
	if _, err := ReadSnapshot(bytes.NewReader([]byte("not a snapshot at all")), opts); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("another format: %v", err)
	}
	// A reader that hands out one byte at a time reads the same snapshot.
	x, err := ReadSnapshot(iotest.OneByteReader(bytes.NewReader(snap)), opts)
	if err != nil {
		t.Fatalf("read a byte at a time: %v", err)
	}
	var again bytes.Buffer
	if err := x.WriteSnapshot(&again); err != nil || !bytes.Equal(again.Bytes(), snap) {
		t.Fatalf("read a byte at a time: written again differs (%v)", err)
	}
	if v := x.Check(Principal{Account: "acme"}, "news.acme.example", []string{"gone@example.com", "odd@example.com", "u@example.com", "r@example.com"}); v[0].Allowed != true || v[1].Allowed || v[2].Allowed || !v[3].Allowed {
		t.Fatalf("answers after the read: %+v", v)
	}
}

// The rules of the reading index are in force after a snapshot; the
// entries keep the expiry they were given.
func TestSnapshotKeepsExpiriesUnderNewRules(t *testing.T) {
	c := &clock{t: day0}
	x, _ := New(Options{Now: c.Now})
	if _, err := x.Observe([]metrics.Event{bounce("acme", "gone@example.com", "userunknown", day0)}, Trust{Shared: true}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := x.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	y, err := ReadSnapshot(&buf, Options{Now: c.Now, Rules: Rules{BlocklistDays: 30}})
	if err != nil {
		t.Fatal(err)
	}
	if y.Rules().BlocklistDays != 30 {
		t.Fatalf("rules %+v, want the reader's", y.Rules())
	}
	e, err := y.Lookup(Principal{Admin: true}, "gone@example.com")
	if err != nil || len(e) != 1 || !e[0].Until.Equal(day0.Add(14*day)) {
		t.Fatalf("entry %+v, %v: want the 14-day expiry it was given", e, err)
	}
	ch, _ := y.Observe([]metrics.Event{bounce("acme", "gone@example.com", "userunknown", day0.Add(day))}, Trust{Shared: true})
	if len(ch) != 1 || !ch[0].Until.Equal(day0.Add(31*day)) {
		t.Fatalf("a new bounce under the new rules: %+v, want until day 31", ch)
	}
}

// BenchmarkSnapshot writes and reads the snapshot of an index of 1 million
// (and, with -bench, 10 million) shared entries: "B/entry" is the size of
// the file over the entries, "lock-ms" how long the write held the read
// lock.
func BenchmarkSnapshot(b *testing.B) {
	for _, n := range []int{1_000_000, tenMillion} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			now := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
			x, err := New(Options{Now: func() time.Time { return now }, SizeHint: n})
			if err != nil {
				b.Fatal(err)
			}
			if err := x.Load(benchEntries(n, now)); err != nil {
				b.Fatal(err)
			}
			var buf bytes.Buffer
			st, err := x.WriteSnapshotStats(&buf)
			if err != nil {
				b.Fatal(err)
			}
			snap := buf.Bytes()
			b.Run("write", func(b *testing.B) {
				var lock time.Duration
				for b.Loop() {
					buf.Reset()
					s, err := x.WriteSnapshotStats(&buf)
					if err != nil {
						b.Fatal(err)
					}
					lock = max(lock, s.LockHeld)
				}
				b.ReportMetric(float64(lock.Microseconds())/1000, "lock-ms")
				b.ReportMetric(float64(st.Bytes)/float64(n), "B/entry")
			})
			b.Run("read", func(b *testing.B) {
				for b.Loop() {
					y, err := ReadSnapshot(bytes.NewReader(snap), Options{Now: func() time.Time { return now }})
					if err != nil {
						b.Fatal(err)
					}
					if s, _ := y.Len(); s != n {
						b.Fatalf("%d entries read, want %d", s, n)
					}
					runtime.KeepAlive(y)
				}
				b.ReportMetric(float64(st.Bytes)/float64(n), "B/entry")
			})
		})
	}
}
