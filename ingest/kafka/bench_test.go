package kafka

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"repute/ingest"
	"repute/intake"
	"repute/internal/corpustest"
	"repute/metrics/duckdb"
	"repute/spool"
)

// BenchmarkRawTopicToStore measures raw reports from a Kafka topic end to
// end into the embedded store: fetched, parsed, correlated against the
// store's sends, evidence stored, events spooled, drained into DuckDB and
// queryable, offsets committed. Beside it, in the same run, the parser's
// own single-goroutine rate over the same messages: the target is
// a ratio of at least 0.5. msgs/s counts from the consumer's start (the
// group join included); steady-msgs/s, and the ratio, from the first
// commit.
//
//	go test -run '^$' -bench RawTopicToStore -benchtime 1x ./ingest/kafka/
func BenchmarkRawTopicToStore(b *testing.B) {
	const n = 20_000
	msgs := corpustest.Variants(b, n)
	var bytes int64
	start := time.Now()
	for _, m := range msgs {
		bytes += int64(len(m))
		_, _ = ingest.ParseBytes(m)
	}
	parserRate := float64(n) / time.Since(start).Seconds()

	for range b.N {
		b.StopTimer()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		cl := newCluster(b, 4, "raw", "dead")
		brokers := cl.ListenAddrs()
		records := make([]kafkago.Message, n)
		for i, m := range msgs {
			records[i] = kafkago.Message{Topic: "raw", Value: m, Time: time.Now().Add(-time.Hour)}
		}
		produce(ctx, b, brokers, records...)

		dir := b.TempDir()
		store, err := duckdb.Open(filepath.Join(dir, "repute.duckdb"), duckdb.Options{})
		if err != nil {
			b.Fatal(err)
		}
		sp, err := spool.Open(filepath.Join(dir, "spool"), spool.Options{})
		if err != nil {
			b.Fatal(err)
		}
		pipe := intake.New(sp, store, intake.Options{})
		pctx, pcancel := context.WithCancel(ctx)
		pdone := make(chan error, 1)
		go func() { pdone <- pipe.Run(pctx) }()
		conv, err := ingest.NewConverter(ingest.Options{Account: "acme", Sends: store})
		if err != nil {
			b.Fatal(err)
		}
		cons, err := New(pipe, Options{Brokers: brokers, Group: "bench", RawTopics: []string{"raw"}, DeadLetterTopic: "dead",
			Raw: ingest.NewProcessor(conv, 0, nil), Evidence: store, Account: "acme", ReaderConfig: fastGroup, MaxBatch: 1000})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		cctx, ccancel := context.WithCancel(ctx)
		cdone := make(chan error, 1)
		go func() { cdone <- cons.Run(cctx) }()
		// Steady state: from the first commit (the group joined, the first
		// batch stored) to the end, over the records committed after it.
		var firstAt time.Time
		var firstDone int64
		for !allCommitted(cl, "bench", "raw") {
			if firstAt.IsZero() {
				if done := committedSum(cl, "bench", "raw"); done > 0 {
					firstAt, firstDone = time.Now(), done
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := pipe.WaitVisible(ctx); err != nil {
			b.Fatal(err)
		}
		elapsed := b.Elapsed()
		steady := float64(n-firstDone) / time.Since(firstAt).Seconds()
		b.StopTimer()
		ccancel()
		<-cdone
		pcancel()
		<-pdone
		sp.Close()
		store.Close()
		cl.Close()
		cancel()
		rate := float64(n) / elapsed.Seconds()
		b.ReportMetric(rate, "msgs/s")
		b.ReportMetric(steady, "steady-msgs/s")
		b.ReportMetric(parserRate, "parser-msgs/s")
		b.ReportMetric(steady/parserRate, "ratio")
		b.ReportMetric(float64(bytes)/float64(n), "B/msg")
	}
}

// committedSum is the number of records of topic the group has committed.
func committedSum(c *kfake.Cluster, group, topic string) int64 {
	var sum int64
	for _, off := range committed(c, group, topic) {
		sum += off
	}
	return sum
}
