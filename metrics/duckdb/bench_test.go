package duckdb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"repute/metrics"
	"repute/metrics/duckdb"
)

// benchEvents returns n distinct normalized events within one day, with
// ids unique across calls that pass different seeds.
func benchEvents(tb testing.TB, seed, n int) []metrics.Event {
	tb.Helper()
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	kinds := []metrics.Kind{metrics.KindSent, metrics.KindSent, metrics.KindDelivered,
		metrics.KindDelivered, metrics.KindOpened, metrics.KindBounced, metrics.KindClicked}
	domains := []string{"gmail.com", "outlook.com", "yahoo.com", "qq.com", "163.com", "example.org"}
	isps := metrics.NewISPMap(nil)
	out := make([]metrics.Event, n)
	for i := range out {
		k := seed*n + i
		e := metrics.Event{
			Time:         day.Add(time.Duration(k%86400) * time.Second),
			Kind:         kinds[k%len(kinds)],
			Source:       "bench",
			Account:      "acme",
			SenderDomain: "news.acme.test",
			SendingIP:    fmt.Sprintf("192.0.2.%d", k%8),
			Campaign:     fmt.Sprintf("c%d", k%20),
			MessageID:    fmt.Sprintf("<%d@acme.test>", k),
			Recipient:    fmt.Sprintf("user%d@%s", k, domains[k%len(domains)]),
		}
		if e.Kind == metrics.KindBounced {
			e.BounceType, e.Status, e.ReplyCode = metrics.BounceHard, "5.1.1", 550
			e.Diagnostic = "smtp; 550 5.1.1 user unknown"
		}
		if err := e.Normalize(isps, day.Add(48*time.Hour)); err != nil {
			tb.Fatal(err)
		}
		out[i] = e
	}
	return out
}

const benchBatch = 10000

// BenchmarkAppend appends fresh 10,000-event batches to one store.
func BenchmarkAppend(b *testing.B) {
	s, err := duckdb.Open(filepath.Join(b.TempDir(), "repute.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	batches := make([][]metrics.Event, b.N)
	for i := range batches {
		batches[i] = benchEvents(b, i, benchBatch)
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Append(ctx, batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAppendDuplicates appends a 10,000-event batch already stored.
func BenchmarkAppendDuplicates(b *testing.B) {
	s, err := duckdb.Open(filepath.Join(b.TempDir(), "repute.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	events := benchEvents(b, 0, benchBatch)
	ctx := context.Background()
	if err := s.Append(ctx, events); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		if err := s.Append(ctx, events); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchBatch)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRawAppend is the ceiling: the plain Appender, no key, the same
// rows, a fresh file each time.
func BenchmarkRawAppend(b *testing.B) {
	events := benchEvents(b, 0, benchBatch)
	var total time.Duration
	for i := range b.N {
		took, err := duckdb.RawAppend(context.Background(), filepath.Join(b.TempDir(), fmt.Sprintf("raw%d.duckdb", i)), events)
		if err != nil {
			b.Fatal(err)
		}
		total += took
	}
	b.ReportMetric(float64(b.N*benchBatch)/total.Seconds(), "events/s")
}

// BenchmarkKnown asks about 10,000 events, half of them stored, in a
// store of 500,000 events over one day.
func BenchmarkKnown(b *testing.B) {
	s, err := duckdb.Open(filepath.Join(b.TempDir(), "repute.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := range 50 {
		if err := s.Append(ctx, benchEvents(b, i, benchBatch)); err != nil {
			b.Fatal(err)
		}
	}
	ask := append(benchEvents(b, 10, benchBatch/2), benchEvents(b, 1000, benchBatch/2)...)
	b.ResetTimer()
	for range b.N {
		known, err := s.Known(ctx, ask)
		if err != nil {
			b.Fatal(err)
		}
		if len(known) != benchBatch/2 {
			b.Fatalf("Known: %d, want %d", len(known), benchBatch/2)
		}
	}
}

// BenchmarkStats groups 500,000 events of one day by hour and ISP.
func BenchmarkStats(b *testing.B) {
	s, err := duckdb.Open(filepath.Join(b.TempDir(), "repute.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for i := range 50 {
		if err := s.Append(ctx, benchEvents(b, i, benchBatch)); err != nil {
			b.Fatal(err)
		}
	}
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	q := metrics.StatsQuery{From: day, To: day.Add(24 * time.Hour),
		GroupBy: []metrics.GroupBy{metrics.GroupHour, metrics.GroupISP}}
	b.ResetTimer()
	for range b.N {
		if _, err := s.Stats(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendLookup finds sends by Message-ID and recipient in a store of
// 1,000,000 sent events (the sends index, not a scan of events).
func BenchmarkSendLookup(b *testing.B) {
	s, err := duckdb.Open(filepath.Join(b.TempDir(), "repute.duckdb"), duckdb.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	const total = 1_000_000
	day := time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)
	batch := make([]metrics.Event, 0, 50_000)
	for k := range total {
		batch = append(batch, metrics.Event{
			EventID:   fmt.Sprintf("e%d", k),
			Time:      day.Add(time.Duration(k%86400) * time.Second),
			Kind:      metrics.KindSent,
			Source:    "bench",
			SourceRef: fmt.Sprintf("ref%013d", k),
			Account:   "acme", SenderDomain: "news.acme.test", Campaign: fmt.Sprintf("c%d", k%20),
			SendingIP: fmt.Sprintf("192.0.2.%d", k%8), MessageID: fmt.Sprintf("<%d@acme.test>", k),
			Recipient: fmt.Sprintf("user%d@gmail.com", k), RecipientDomain: "gmail.com", ISP: "gmail",
		})
		if len(batch) == cap(batch) {
			if err := s.Append(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	b.ResetTimer()
	for i := range b.N {
		k := (i * 7919) % total
		got, ok, err := s.SendByMessageID(ctx, fmt.Sprintf("%d@acme.test", k), fmt.Sprintf("user%d@gmail.com", k))
		if err != nil || !ok || got.Campaign != fmt.Sprintf("c%d", k%20) {
			b.Fatalf("SendByMessageID(%d) = %+v, %v, %v", k, got, ok, err)
		}
	}
}
