package suppress

import (
	"encoding/binary"
	"encoding/hex"
	"iter"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// benchAddress returns a realistic address (about 30 bytes) for i.
func benchAddress(buf []byte, i int) []byte {
	domains := [...]string{"gmail.com", "outlook.com", "yahoo.co.jp", "qq.com", "example.org", "mail.example.net"}
	buf = append(buf[:0], "reader."...)
	buf = strconv.AppendInt(buf, int64(i)*2654435761%1_000_000_007, 36)
	buf = append(buf, '@')
	if i%10 == 9 {
		buf = append(buf, "corp"...)
		buf = strconv.AppendInt(buf, int64(i%5000), 10)
		return append(buf, ".example"...)
	}
	return append(buf, domains[i%len(domains)]...)
}

// benchEntries yields n shared blocklist entries as the store would hold
// them: hex event ids, a few reasons, a hundred accounts.
func benchEntries(n int, now time.Time) iter.Seq[Entry] {
	reasons := [...]string{"userunknown", "hostunknown", "mailboxfull", "hasmoved", "suspend"}
	return func(yield func(Entry) bool) {
		var buf []byte
		var id [16]byte
		for i := range n {
			buf = benchAddress(buf, i)
			binary.LittleEndian.PutUint64(id[:], uint64(i))
			binary.LittleEndian.PutUint64(id[8:], uint64(i)*0x9e3779b97f4a7c15)
			e := Entry{List: Blocklist, Address: string(buf), Account: "account-" + strconv.Itoa(i%100), Shared: true,
				Reason: reasons[i%len(reasons)], Since: now.Add(-time.Duration(i%86400) * time.Second),
				Until: now.Add(time.Duration(1+i%(14*86400)) * time.Second), EventID: hex.EncodeToString(id[:])}
			if !yield(e) {
				return
			}
		}
	}
}

func heapAfterGC() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

const tenMillion = 10_000_000

// BenchmarkLoad rebuilds the index from 10 million entries, as at start,
// and reports the time per rebuild and the heap it holds: "B/entry" is
// HeapAlloc after GC, after the load minus before, over the entries.
// Heavy (a few GB of allocation, tens of seconds): it runs only with
// -bench, e.g. go test -run '^$' -bench Load -benchtime 1x ./suppress/
func BenchmarkLoad(b *testing.B) {
	now := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		b.StopTimer()
		before := heapAfterGC()
		b.StartTimer()
		x, err := New(Options{Now: func() time.Time { return now }, SizeHint: tenMillion})
		if err != nil {
			b.Fatal(err)
		}
		if err := x.Load(benchEntries(tenMillion, now)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		after := heapAfterGC()
		if s, _ := x.Len(); s != tenMillion {
			b.Fatalf("%d entries loaded, want %d", s, tenMillion)
		}
		b.ReportMetric(float64(after-before)/tenMillion, "B/entry")
		b.ReportMetric(float64(tenMillion), "entries")
		runtime.KeepAlive(x)
		b.StartTimer()
	}
}

// BenchmarkMemoryNoHint is BenchmarkLoad without Options.SizeHint: the
// index grows step by step, as when the store cannot count first.
func BenchmarkMemoryNoHint(b *testing.B) {
	now := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	for b.Loop() {
		b.StopTimer()
		before := heapAfterGC()
		b.StartTimer()
		x, _ := New(Options{Now: func() time.Time { return now }})
		if err := x.Load(benchEntries(tenMillion, now)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		b.ReportMetric(float64(heapAfterGC()-before)/tenMillion, "B/entry")
		runtime.KeepAlive(x)
		b.StartTimer()
	}
}

// BenchmarkCheck checks recipients in batches of 1,000 against an index of
// a million shared entries (one recipient in ten on it) and an
// unsubscribe list, on one goroutine: "checks/s" is recipients per second
// per core.
func BenchmarkCheck(b *testing.B) {
	now := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	x, err := New(Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	if err := x.Load(benchEntries(n, now)); err != nil {
		b.Fatal(err)
	}
	by := Principal{Account: "account-7"}
	var buf []byte
	for i := range 1000 {
		buf = benchAddress(buf, n+i)
		x.Unsubscribe(by, "news.acme.example", string(buf), "")
	}
	recipients := make([]string, 1000)
	for i := range recipients {
		j := n + 5000 + i // not on any list
		switch {
		case i%10 == 0:
			j = i * 997 % n // on the blocklist
		case i%100 == 1:
			j = n + i // unsubscribed
		}
		buf = benchAddress(buf, j)
		recipients[i] = string(buf)
	}
	out := make([]Verdict, len(recipients))
	b.ReportAllocs()
	b.ResetTimer()
	checked := 0
	for b.Loop() {
		x.CheckInto(out, by, "news.acme.example", recipients)
		checked += len(recipients)
	}
	b.ReportMetric(float64(checked)/b.Elapsed().Seconds(), "checks/s")
	blocked := 0
	for _, v := range out {
		if !v.Allowed {
			blocked++
		}
	}
	if blocked != 110 {
		b.Fatalf("%d of 1000 refused, want 110", blocked)
	}
}

// BenchmarkBlocklistPage reads pages of 100 of a blocklist of a million
// shared entries, the first and then one further on (a cursor): each is a
// scan of the whole table under the read lock (Index.Blocklist).
func BenchmarkBlocklistPage(b *testing.B) {
	now := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	x, err := New(Options{Now: func() time.Time { return now }})
	if err != nil {
		b.Fatal(err)
	}
	const n = 1_000_000
	if err := x.Load(benchEntries(n, now)); err != nil {
		b.Fatal(err)
	}
	by := Principal{Account: "account-7"}
	_, next, err := x.Blocklist(by, ListQuery{Limit: 1000})
	if err != nil || next == "" {
		b.Fatal(next, err)
	}
	for _, bb := range []struct {
		name string
		q    ListQuery
	}{
		{"first", ListQuery{}},
		{"cursor", ListQuery{Cursor: next}},
		{"reason", ListQuery{Reason: "hasmoved"}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				page, _, err := x.Blocklist(by, bb.q)
				if err != nil || len(page) != DefaultListLimit {
					b.Fatal(len(page), err)
				}
			}
		})
	}
}
