package track

import (
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/api"
)

// TestOverTheLimit: a pixel or click over its per-address limit is
// answered all the same (the GIF, the redirect) but not recorded, and
// counted as dropped{rate_limited}; the unsubscribe page gets 429 with
// Retry-After. Each endpoint has its own limit.
func TestOverTheLimit(t *testing.T) {
	guard, err := api.NewGuard(api.GuardOptions{AddressRates: map[string]api.Rate{
		api.LimitPixel: {PerSecond: 1, Burst: 1}, api.LimitClick: {PerSecond: 1, Burst: 1}, api.LimitUnsubscribe: {PerSecond: 1, Burst: 1},
	}, Now: func() time.Time { return time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC) }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		asked []string
	)
	f := newFixture(t, func(o *Options) {
		o.Limit = func(endpoint string, ip netip.Addr) (bool, time.Duration) {
			mu.Lock()
			asked = append(asked, endpoint+" "+ip.String())
			mu.Unlock()
			return guard.AllowAddress(endpoint, ip)
		}
	})
	f.start()
	pixel := "/t/o/" + f.signer.OpenToken(f.ref) + ".gif"
	for i, ua := range []string{"first", "second"} {
		if status, b := f.get(t, pixel, "User-Agent", ua); status != 200 || len(b) != 43 {
			t.Fatalf("pixel %d: %d, %d bytes; want the GIF", i+1, status, len(b))
		}
	}
	click := "/t/c/" + f.signer.ClickToken(f.ref, "https://acme.example/x")
	for i := range 2 {
		if status, _ := f.get(t, click); status != http.StatusFound {
			t.Fatalf("click %d: %d, want 302", i+1, status)
		}
	}
	unsub := "/t/u/" + f.signer.UnsubscribeToken(f.ref)
	if status, _ := f.get(t, unsub); status != 200 {
		t.Fatalf("unsubscribe page: %d", status)
	}
	status, b := f.get(t, unsub)
	if status != http.StatusTooManyRequests || !strings.Contains(string(b), "Too many requests") {
		t.Fatalf("unsubscribe page over the limit: %d %s; want 429 and the page", status, b)
	}
	f.shutdown(t)
	if n := len(f.sink.all()); n != 2 {
		t.Errorf("%d events, want 2: the first pixel and the first click", n)
	}
	if d := counter(t, f.reg, "repute_tracking_dropped_total", "reason", "rate_limited"); d != 2 {
		t.Errorf("dropped{rate_limited} = %v, want 2", d)
	}
	hits := counter(t, f.reg, "repute_tracking_hits_total")
	acc := counter(t, f.reg, "repute_tracking_events_total") + counter(t, f.reg, "repute_tracking_duplicates_total") + counter(t, f.reg, "repute_tracking_dropped_total")
	if hits != acc {
		t.Errorf("hits %v != events + duplicates + dropped %v", hits, acc)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) == 0 || asked[0] != "pixel 127.0.0.1" {
		t.Errorf("limits asked %q, want the pixel's for 127.0.0.1 first", asked)
	}
}
