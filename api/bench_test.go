package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkPostEvents measures decoding and validating a 10,000-event POST
// (the spool and the store are not in it).
func BenchmarkPostEvents(b *testing.B) {
	type ev struct {
		Account      string `json:"account"`
		Kind         string `json:"kind"`
		Time         string `json:"time"`
		Recipient    string `json:"recipient"`
		SenderDomain string `json:"sender_domain"`
		Campaign     string `json:"campaign"`
		MessageID    string `json:"message_id"`
	}
	events := make([]ev, 10_000)
	for i := range events {
		events[i] = ev{"acme", "delivered", "2026-11-25T10:00:00Z", fmt.Sprintf("user%d@gmail.com", i),
			"news.example.com", "winter", fmt.Sprintf("<%d@example.com>", i)}
	}
	body, _ := json.Marshal(events)
	h := newTestHandler(b, &fakeSubmitter{}, &fakeStats{}, 0)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest("POST", "/v1/events", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+adminKey)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusAccepted {
			b.Fatalf("status %d", rec.Code)
		}
	}
	b.ReportMetric(float64(b.N*len(events))/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkAllowAddress is the per-address limit on the pixel's path:
// "one" is every request from one address (one shard's lock, the proxy
// case), "many" cycles through a million addresses against a table of
// DefaultMaxAddresses (every request an eviction, the flood case).
func BenchmarkAllowAddress(b *testing.B) {
	for _, c := range []struct {
		name  string
		addrs int
	}{{"one", 1}, {"many", 1 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			g, err := NewGuard(GuardOptions{AddressRates: map[string]Rate{LimitPixel: {PerSecond: 1e9, Burst: 1e9}}}, nil)
			if err != nil {
				b.Fatal(err)
			}
			var next atomic.Uint32
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := next.Add(1) % uint32(c.addrs)
					g.AllowAddress(LimitPixel, netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
				}
			})
		})
	}
}
