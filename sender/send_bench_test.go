package sender

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"repute/correlate"
)

// BenchmarkSend is issue 11's measure: messages/s composed, stamped,
// signed and delivered — the newsletter of BenchmarkCompose to one
// recipient each, through the durable queue and the relay pool, to an
// in-process go-smtp sink that discards — beside the ceiling, a bare
// go-smtp client sending the same bytes (one composed message) with the
// same MAIL, RCPT and DATA, in the same run. Composing runs on every core
// (as the API composes a request's recipients), in batches of 100 handed
// to Enqueue while earlier ones are delivered. Compare msgs/s of
// send/<dkim>/conns=N with ceiling/conns=N.
func BenchmarkSend(b *testing.B) {
	keys := map[string][]DKIMKey{
		"none":    nil,
		"ed25519": {{Domain: "news.acme.example", Selector: "ed", Signer: testEd25519(b)}},
		"rsa2048": {{Domain: "news.acme.example", Selector: "rsa", Signer: testRSA(b, 2048)}},
	}
	m := newsletter()
	for _, conns := range []int{1, 8} {
		b.Run(fmt.Sprintf("ceiling/conns=%d", conns), func(b *testing.B) {
			it, _, err := newBenchComposer(b, nil).Compose(mustPrepare(b, m), "acme", "a@x.example")
			if err != nil {
				b.Fatal(err)
			}
			benchCeiling(b, conns, it)
		})
		for _, name := range []string{"none", "ed25519", "rsa2048"} {
			b.Run(fmt.Sprintf("send/%s/conns=%d", name, conns), func(b *testing.B) {
				benchSend(b, conns, keys[name], m)
			})
		}
	}
}

// newBenchComposer is a composer safe for concurrent use (crypto/rand).
func newBenchComposer(b *testing.B, keys []DKIMKey) *Composer {
	cs, err := correlate.New(testKeys)
	if err != nil {
		b.Fatal(err)
	}
	ts, err := NewTrackingSigner(testKeys)
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewComposer(ComposerOptions{Correlate: cs, Tracking: ts, TrackingURL: "https://t.acme.example/",
		BounceDomain: "bounces.acme.example", DKIM: keys, Rand: crand.Reader})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func benchSend(b *testing.B, conns int, keys []DKIMKey, m *Message) {
	r := startRelay(b, "127.0.0.1:0", func(r *testRelay) { r.discard = true })
	q, _ := openTestQueue(b, b.TempDir())
	defer q.Close()
	c := newBenchComposer(b, keys)
	p := mustPrepare(b, m)
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

	const batch = 100
	b.ResetTimer()
	start := time.Now()
	batches := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for n := range batches {
				items := make([]*Item, n)
				for i := range items {
					it, _, err := c.Compose(p, "acme", "a@x.example")
					if err != nil {
						b.Error(err)
						return
					}
					items[i] = it
				}
				if err := s.Enqueue(items); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for left := b.N; left > 0; left -= batch {
		batches <- min(left, batch)
	}
	close(batches)
	wg.Wait()
	<-sink.done
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	cancel()
	<-done
}

// benchCeiling sends it b.N times over conns bare go-smtp clients.
func benchCeiling(b *testing.B, conns int, it *Item) {
	items := make([]*Item, b.N)
	for i := range items {
		items[i] = it
	}
	benchCeilingItems(b, conns, items)
}

// benchCeilingItems sends items over conns bare go-smtp clients, with the
// MAIL (RET, ENVID), RCPT (NOTIFY, ORCPT) and DATA the sender uses, no
// queue and no events: the ceiling of BenchmarkDeliver and BenchmarkSend.
func benchCeilingItems(b *testing.B, conns int, items []*Item) {
	r := startRelay(b, "127.0.0.1:0", func(r *testRelay) { r.discard = true })
	clients := make([]*smtp.Client, conns)
	for i := range clients {
		c, err := smtp.Dial(r.addr)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Hello("localhost"); err != nil {
			b.Fatal(err)
		}
		clients[i] = c
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w, c := range clients {
		wg.Go(func() {
			for i := w; i < len(items); i += conns {
				it := items[i]
				if err := c.Mail(it.EnvelopeFrom, &smtp.MailOptions{Return: smtp.DSNReturnHeaders, EnvelopeID: it.Ref.String(), Size: int64(len(it.Data))}); err != nil {
					b.Error(err)
					return
				}
				if err := c.Rcpt(it.Recipient, &smtp.RcptOptions{
					Notify:                []smtp.DSNNotify{smtp.DSNNotifySuccess, smtp.DSNNotifyFailure, smtp.DSNNotifyDelayed},
					OriginalRecipientType: smtp.DSNAddressTypeRFC822, OriginalRecipient: it.Recipient,
				}); err != nil {
					b.Error(err)
					return
				}
				w, err := c.Data()
				if err == nil {
					_, err = w.Write(it.Data)
				}
				if err == nil {
					err = w.Close()
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	for _, c := range clients {
		c.Quit()
	}
}
