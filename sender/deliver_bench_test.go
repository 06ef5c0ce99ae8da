package sender

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"repute/metrics"
)

// benchItems builds n items of about 2 KB, as the composer would hand them
// over (signed bytes, CRLF).
func benchItems(n int) []*Item {
	body := bytes.Repeat([]byte("Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n"), 32)
	items := make([]*Item, n)
	for i := range items {
		it := testItem(i)
		it.Data = append(append([]byte(nil), it.Data...), body...)
		items[i] = it
	}
	return items
}

// countSink counts events and says when want have arrived.
type countSink struct {
	n    atomic.Int64
	want int64
	done chan struct{}
	once sync.Once
}

func (c *countSink) Record(_ context.Context, evs []metrics.Event) error {
	if c.n.Add(int64(len(evs))) >= c.want {
		c.once.Do(func() { close(c.done) })
	}
	return nil
}

// BenchmarkDeliver measures messages/s through the whole loop — durable
// enqueue, the queue, events, durable outcomes, the relay pool — to an
// in-process go-smtp sink that discards, with 1 and 8 connections.
// Compare with BenchmarkDeliverCeiling in the same run.
func BenchmarkDeliver(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			r := startRelay(b, "127.0.0.1:0", func(r *testRelay) { r.discard = true })
			items := benchItems(b.N)
			q, _ := openTestQueue(b, b.TempDir())
			defer q.Close()
			sink := &countSink{want: int64(b.N), done: make(chan struct{})}
			s, err := New(Options{
				Queue: q, Events: sink, Connections: conns,
				Relay: Relay{Addr: r.addr, TLS: TLSNone, Connections: conns, MaxPerConn: 1 << 30},
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			b.ResetTimer()
			start := time.Now()
			if err := s.Enqueue(items); err != nil {
				b.Fatal(err)
			}
			enq := time.Since(start)
			<-sink.done
			b.ReportMetric(float64(enq.Microseconds())/1000, "enqueue-ms")
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			cancel()
			<-done
		})
	}
}

// BenchmarkDeliverCeiling is the ceiling for BenchmarkDeliver: bare go-smtp
// clients sending the same prebuilt bytes with the same MAIL (RET, ENVID),
// RCPT (NOTIFY, ORCPT) and DATA over 1 and 8 connections, with no queue
// and no events.
func BenchmarkDeliverCeiling(b *testing.B) {
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("conns=%d", conns), func(b *testing.B) {
			benchCeilingItems(b, conns, benchItems(b.N))
		})
	}
}
