package sender

import (
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPacerTakeDone measures one Take and its Done for a warmed
// domain (no limit binds), over 64 keys: the pacer's own cost per
// delivery.
func BenchmarkPacerTakeDone(b *testing.B) {
	p := newTestPacer(b, PacerOptions{Schedule: func(int) Limits { return WarmupLimits(61) }})
	keys := paceBenchKeys()
	now := paceT0
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(10 * time.Microsecond)
		k := keys[i%len(keys)]
		if ok, r := p.Take(k, now); !ok {
			b.Fatalf("Take refused (retry %v)", r)
		}
		p.Done(k, true)
	}
}

// BenchmarkPacerTakeDoneParallel is the same from GOMAXPROCS goroutines
// at once (one mutex guards the pacer).
func BenchmarkPacerTakeDoneParallel(b *testing.B) {
	p := newTestPacer(b, PacerOptions{Schedule: func(int) Limits { return Limits{} }})
	keys := paceBenchKeys()
	var clock atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k := keys[i%len(keys)]
			i++
			if ok, _ := p.Take(k, paceT0.Add(time.Duration(clock.Add(1)))); ok {
				p.Done(k, true)
			}
		}
	})
}

func paceBenchKeys() []PaceKey {
	var keys []PaceKey
	for _, d := range []string{"news.acme.example", "mail.shop.example"} {
		for _, ip := range []string{"192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"} {
			for _, pr := range []string{"gmail", "microsoft", "yahoo", "apple", "tencent", "netease", "other", "x.example"} {
				keys = append(keys, PaceKey{d, ip, pr})
			}
		}
	}
	return keys
}
