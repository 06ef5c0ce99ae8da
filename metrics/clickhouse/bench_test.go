package clickhouse

import (
	"fmt"
	"testing"
	"time"

	"repute/metrics"
)

// benchEvents returns n varied, normalized events within one UTC day (one
// partition), ids prefixed by round so that each round is new data.
func benchEvents(b *testing.B, n, round int) []metrics.Event {
	b.Helper()
	kinds := []metrics.Kind{metrics.KindSent, metrics.KindDelivered, metrics.KindOpened,
		metrics.KindClicked, metrics.KindBounced, metrics.KindDeferred}
	domains := []string{"gmail.com", "qq.com", "outlook.com", "163.com", "example.org"}
	events := make([]metrics.Event, n)
	for i := range events {
		e := metrics.Event{
			EventID:      fmt.Sprintf("r%d-%d", round, i),
			Time:         testDay.Add(time.Duration(i*7%86400) * time.Second),
			Kind:         kinds[i%len(kinds)],
			Source:       "bench",
			Account:      fmt.Sprintf("acct%d", i%3),
			SenderDomain: "news.acme.test",
			SendingIP:    fmt.Sprintf("192.0.2.%d", i%8),
			Campaign:     fmt.Sprintf("campaign-%d", i%20),
			MessageID:    fmt.Sprintf("<%d.%d@mta.acme.test>", round, i),
			Recipient:    fmt.Sprintf("user%d@%s", i, domains[i%len(domains)]),
		}
		if e.Kind == metrics.KindBounced {
			e.BounceType, e.Status, e.ReplyCode = metrics.BounceHard, "5.1.1", 550
			e.Diagnostic = "smtp; 550 5.1.1 <user@example.org>: Recipient address rejected: User unknown"
		}
		if err := e.Normalize(metrics.ISPMap{}, testDay.Add(48*time.Hour)); err != nil {
			b.Fatal(err)
		}
		events[i] = e
	}
	return events
}

const benchBatch = 10_000

// BenchmarkAppend measures Store.Append with 10,000-event calls within one
// day's partition, and in the same iterations RawInsert of the same rows
// (the ceiling: a plain clickhouse-go batch into a scratch table), so that
// both see the same load on this shared machine. It reports both rates and
// their ratio.
func BenchmarkAppend(b *testing.B) {
	o := testOptions(b)
	s := openStore(b, o)
	defer s.Close()
	ctx := testCtx(b)
	if err := s.Ping(ctx); err != nil {
		b.Fatal(err)
	}
	var appendTime, rawTime time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		events := benchEvents(b, benchBatch, i)
		b.StartTimer()
		start := time.Now()
		if err := s.Append(ctx, events); err != nil {
			b.Fatal(err)
		}
		appendTime += time.Since(start)
		b.StopTimer()
		d, err := RawInsert(ctx, o, events)
		if err != nil {
			b.Fatal(err)
		}
		rawTime += d
		b.StartTimer()
	}
	rows := float64(b.N * benchBatch)
	b.ReportMetric(rows/appendTime.Seconds(), "append-rows/s")
	b.ReportMetric(rows/rawTime.Seconds(), "raw-rows/s")
	b.ReportMetric(rawTime.Seconds()/appendTime.Seconds(), "append/raw")
}

// BenchmarkStats measures Stats (read-time dedup, unique opens and clicks)
// over 1,000,000 events of one day, 10% of them stored twice, grouped by ISP
// and by hour.
func BenchmarkStats(b *testing.B) {
	s := openStore(b, testOptions(b))
	defer s.Close()
	ctx := testCtx(b)
	const rounds = 100
	for i := 0; i < rounds; i++ {
		events := benchEvents(b, benchBatch, i)
		if err := s.Append(ctx, events); err != nil {
			b.Fatal(err)
		}
		if i%10 == 0 {
			if err := s.Append(ctx, events); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, groupBy := range [][]metrics.GroupBy{{metrics.GroupISP}, {metrics.GroupHour}} {
		b.Run(string(groupBy[0]), func(b *testing.B) {
			q := metrics.StatsQuery{From: testDay, To: testDay.Add(24 * time.Hour), GroupBy: groupBy}
			for i := 0; i < b.N; i++ {
				r, err := s.Stats(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				if want := int64(rounds * ((benchBatch + 5) / 6)); r.Totals.Sent != want {
					b.Fatalf("sent = %d, want %d", r.Totals.Sent, want)
				}
			}
		})
	}
	b.Run("known", func(b *testing.B) {
		events := benchEvents(b, benchBatch, rounds/2)
		for i := 0; i < b.N; i++ {
			known, err := s.Known(ctx, events)
			if err != nil {
				b.Fatal(err)
			}
			if len(known) != benchBatch {
				b.Fatalf("known %d of %d", len(known), benchBatch)
			}
		}
	})
}
