package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/metrics"
)

// clock is a settable time for the guard's buckets.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestBucketRefillsAtItsRate(t *testing.T) {
	r := Rate{PerSecond: 2, Burst: 3}
	var b bucket
	now := testNow
	for i := range 3 {
		if ok, _ := b.take(r, now); !ok {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	ok, retry := b.take(r, now)
	if ok || retry != 500*time.Millisecond {
		t.Fatalf("4th request: ok %v, retry %s; want refused, 500ms", ok, retry)
	}
	if ok, _ := b.take(r, now.Add(500*time.Millisecond)); !ok {
		t.Error("a token after 1/rate refused")
	}
	if ok, _ := b.take(r, now.Add(500*time.Millisecond)); ok {
		t.Error("a second token within the same 1/rate taken")
	}
	// A long quiet time fills the bucket to its burst, not beyond.
	later := now.Add(time.Hour)
	for i := range 3 {
		if ok, _ := b.take(r, later); !ok {
			t.Fatalf("after an hour, request %d of 3 refused", i+1)
		}
	}
	if ok, _ := b.take(r, later); ok {
		t.Error("the bucket held more than its burst")
	}
	if got := retryAfterSeconds(1500 * time.Millisecond); got != "2" {
		t.Errorf("Retry-After of 1.5s = %s, want 2 (whole seconds, rounded up)", got)
	}
	if got := retryAfterSeconds(0); got != "1" {
		t.Errorf("Retry-After of 0 = %s, want 1", got)
	}
}

func TestBoundedMapStaysBounded(t *testing.T) {
	m := newBoundedMap[netip.Addr, bucket](64)
	for i := range 100000 {
		ip := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		m.do(ip, func(b *bucket) { b.tokens = 1 })
	}
	if n := m.len(); n > 64 {
		t.Errorf("%d addresses held, want at most 64", n)
	}
	// The most recent stays; the first was evicted and starts afresh.
	var recent, first bucket
	m.do(netip.AddrFrom4([4]byte{10, 1, 134, 159}), func(b *bucket) { recent = *b }) // i = 99999
	m.do(netip.AddrFrom4([4]byte{10, 0, 0, 0}), func(b *bucket) { first = *b })
	if recent.tokens != 1 || first.tokens != 0 {
		t.Errorf("most recent %+v (want kept), first %+v (want evicted)", recent, first)
	}
}

func TestClientKeyGroupsIPv6By64(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	c := netip.MustParseAddr("2001:db8:1:3::1")
	if clientKey(a) != clientKey(b) || clientKey(a) == clientKey(c) {
		t.Errorf("keys %s %s %s: want the first two equal (one /64), the third apart", clientKey(a), clientKey(b), clientKey(c))
	}
	v4 := netip.MustParseAddr("192.0.2.7")
	if clientKey(netip.AddrFrom16(v4.As16())) != v4 {
		t.Errorf("an IPv4-mapped address is not keyed as its IPv4 address")
	}
}

func TestClientAddrBelievesOnlyTrustedProxies(t *testing.T) {
	proxies := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	for _, c := range []struct {
		peer, xff, want string
	}{
		{"192.0.2.1:5000", "198.51.100.1", "192.0.2.1"},                          // not a proxy: XFF ignored
		{"10.0.0.1:5000", "198.51.100.1", "198.51.100.1"},                        // a proxy: its client
		{"10.0.0.1:5000", "203.0.113.9, 198.51.100.1, 10.0.0.2", "198.51.100.1"}, // rightmost untrusted
		{"10.0.0.1:5000", "", "10.0.0.1"},
		{"10.0.0.1:5000", "garbage", "10.0.0.1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.peer
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if got := ClientAddr(r, proxies); got.String() != c.want {
			t.Errorf("peer %s, X-Forwarded-For %q: %s, want %s", c.peer, c.xff, got, c.want)
		}
	}
}

// guarded is a handler with a guard, its clock, log and metrics.
type guarded struct {
	h     http.Handler
	clock *clock
	log   *bytes.Buffer
	reg   *prometheus.Registry
	stats *fakeStats
	guard *Guard
}

func newGuarded(t *testing.T, o GuardOptions, opts Options) *guarded {
	t.Helper()
	g := &guarded{clock: &clock{t: testNow}, log: &bytes.Buffer{}, reg: prometheus.NewRegistry(), stats: &fakeStats{}}
	o.Now = g.clock.now
	o.Logger = slog.New(slog.NewJSONHandler(g.log, nil))
	o.Registerer = g.reg
	guard, err := NewGuard(o, []string{"acme"})
	if err != nil {
		t.Fatal(err)
	}
	g.guard = guard
	keys, err := NewKeys(adminKey, []AccountKeys{{Name: "acme", Keys: []string{HashKey(acmeKey)}}})
	if err != nil {
		t.Fatal(err)
	}
	opts.Keys, opts.Submitter, opts.Stats, opts.Guard = keys, &fakeSubmitter{}, g.stats, guard
	opts.Now, opts.Gatherer, opts.Registerer = func() time.Time { return testNow }, g.reg, g.reg
	if g.h, err = NewHandler(opts); err != nil {
		t.Fatal(err)
	}
	return g
}

// get sends GET path from addr with key.
func (g *guarded) get(t *testing.T, path, addr, key string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest("GET", path, nil)
	req.RemoteAddr = addr + ":40000"
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	rec := httptest.NewRecorder()
	g.h.ServeHTTP(rec, req)
	return rec.Result(), rec.Body.String()
}

func limitOf(t *testing.T, body string) string {
	t.Helper()
	var e struct{ Error, Limit string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
		t.Fatalf("429 body %q: want {error, limit}", body)
	}
	return e.Limit
}

func TestKeyRateLimitPerAccount(t *testing.T) {
	g := newGuarded(t, GuardOptions{KeyRate: Rate{PerSecond: 1, Burst: 2},
		AccountRates: map[string]Rate{"acme": {PerSecond: 0.5, Burst: 1}}}, Options{})
	if res, _ := g.get(t, "/v1/stats", "192.0.2.1", acmeKey); res.StatusCode != 200 {
		t.Fatalf("acme's first request: %d", res.StatusCode)
	}
	res, body := g.get(t, "/v1/stats", "192.0.2.2", acmeKey) // another address: same account
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "2" || limitOf(t, body) != LimitKey {
		t.Fatalf("acme over its rate: %d Retry-After %q %s; want 429, 2 (1 token at 0.5/s), limit key",
			res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	if !strings.Contains(body, `account \"acme\"`) {
		t.Errorf("429 body %s does not name the account", body)
	}
	// The admin key has its own bucket, of the default rate.
	for i := range 2 {
		if res, _ := g.get(t, "/v1/stats", "192.0.2.1", adminKey); res.StatusCode != 200 {
			t.Fatalf("admin request %d: %d", i+1, res.StatusCode)
		}
	}
	if res, _ := g.get(t, "/v1/stats", "192.0.2.1", adminKey); res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("admin's 3rd request at once: %d, want 429", res.StatusCode)
	}
	g.clock.add(2 * time.Second)
	if res, _ := g.get(t, "/v1/stats", "192.0.2.1", acmeKey); res.StatusCode != 200 {
		t.Errorf("acme after Retry-After: %d", res.StatusCode)
	}
	// Never limited: health, readiness, metrics.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if res, _ := g.get(t, p, "192.0.2.1", ""); res.StatusCode != 200 {
			t.Errorf("%s with every bucket empty: %d", p, res.StatusCode)
		}
	}
	if n := g.counter(t, "repute_rate_limited_total", "key"); n != 2 {
		t.Errorf("repute_rate_limited_total{limit=key} = %g, want 2", n)
	}
}

// counter is the value of the counter name{…=label}.
func (g *guarded) counter(t *testing.T, name, label string) float64 {
	t.Helper()
	mfs, err := g.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if mf.GetName() == name && l.GetValue() == label {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, label)
	return 0
}

func TestAddressLimit(t *testing.T) {
	s := &server{opts: Options{Guard: mustGuard(t, GuardOptions{AddressRates: map[string]Rate{LimitFeedback: {PerSecond: 1, Burst: 1}},
		Now: func() time.Time { return testNow }})}}
	h := s.perAddress(LimitFeedback, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(202) })
	post := func(addr string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("POST", "/v1/feedback", nil)
		r.RemoteAddr = addr
		rec := httptest.NewRecorder()
		h(rec, r)
		return rec
	}
	if rec := post("192.0.2.1:1"); rec.Code != 202 {
		t.Fatalf("first: %d", rec.Code)
	}
	rec := post("192.0.2.1:2")
	if rec.Code != http.StatusTooManyRequests || rec.Header().Get("Retry-After") != "1" || limitOf(t, rec.Body.String()) != LimitFeedback {
		t.Fatalf("second from one address: %d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body.String())
	}
	if rec := post("192.0.2.2:1"); rec.Code != 202 {
		t.Errorf("another address: %d, want 202", rec.Code)
	}
}

func mustGuard(t *testing.T, o GuardOptions) *Guard {
	t.Helper()
	g, err := NewGuard(o, nil)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestLockoutRefusesUnknownKeysOnly: after the failures, unknown keys from
// the address get 429; a valid key from it passes (one NAT, many clients);
// other addresses are untouched; the lock-out ends.
func TestLockoutRefusesUnknownKeysOnly(t *testing.T) {
	g := newGuarded(t, GuardOptions{Lockout: Lockout{Failures: 3, Window: time.Minute, Duration: 15 * time.Minute}}, Options{})
	for i := range 3 {
		if res, _ := g.get(t, "/v1/stats", "192.0.2.1", "guess-"+string(rune('a'+i))); res.StatusCode != 401 {
			t.Fatalf("failure %d: %d, want 401", i+1, res.StatusCode)
		}
	}
	res, body := g.get(t, "/v1/stats", "192.0.2.1", "guess-d")
	if res.StatusCode != http.StatusTooManyRequests || limitOf(t, body) != LimitAuthLockout || res.Header.Get("Retry-After") != "900" {
		t.Fatalf("unknown key after the lock-out: %d %q %s; want 429, Retry-After 900, limit auth_lockout", res.StatusCode, res.Header.Get("Retry-After"), body)
	}
	if res, _ := g.get(t, "/v1/stats", "192.0.2.1", ""); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("no key from the locked-out address: %d, want 429", res.StatusCode)
	}
	if res, _ := g.get(t, "/v1/stats", "192.0.2.1", acmeKey); res.StatusCode != 200 {
		t.Errorf("a valid key from the locked-out address: %d, want 200", res.StatusCode)
	}
	if res, _ := g.get(t, "/v1/stats", "192.0.2.2", "guess-e"); res.StatusCode != 401 {
		t.Errorf("another address: %d, want 401", res.StatusCode)
	}
	if n := g.counter(t, "repute_auth_failures_total", "locked_out"); n != 2 {
		t.Errorf("repute_auth_failures_total{reason=locked_out} = %g, want 2", n)
	}
	g.clock.add(15 * time.Minute)
	if res, _ := g.get(t, "/v1/stats", "192.0.2.1", "guess-f"); res.StatusCode != 401 {
		t.Errorf("after the lock-out: %d, want 401", res.StatusCode)
	}
	// Failures spread wider than the window never lock out.
	for range 5 {
		g.clock.add(time.Minute)
		if res, _ := g.get(t, "/v1/stats", "192.0.2.3", "slow-guess"); res.StatusCode != 401 {
			t.Fatalf("a failure a minute: %d, want 401", res.StatusCode)
		}
	}
	if !strings.Contains(g.log.String(), `"msg":"address locked out`) || !strings.Contains(g.log.String(), `"remote":"192.0.2.1"`) {
		t.Errorf("the lock-out is not logged with its address:\n%s", g.log.String())
	}
}

// TestKeysNeverLeak: no key, valid or not, is in the logs, the answers or
// /metrics; an unknown key is logged by the first 8 hex digits of its
// SHA-256 only.
func TestKeysNeverLeak(t *testing.T) {
	g := newGuarded(t, GuardOptions{KeyRate: Rate{PerSecond: 1, Burst: 1},
		Lockout: Lockout{Failures: 2, Window: time.Minute, Duration: time.Minute}}, Options{})
	const bad = "rk_not-a-key-but-close-to-one-0123456789"
	var bodies strings.Builder
	for _, key := range []string{bad, bad, bad, acmeKey, acmeKey, adminKey, "Bearer " + bad} {
		_, body := g.get(t, "/v1/stats", "192.0.2.1", key)
		bodies.WriteString(body)
		_, body = g.get(t, "/v1/nope", "192.0.2.1", key)
		bodies.WriteString(body)
	}
	_, m := g.get(t, "/metrics", "192.0.2.1", "")
	for what, text := range map[string]string{"log": g.log.String(), "answers": bodies.String(), "/metrics": m} {
		for _, key := range []string{bad, acmeKey, adminKey} {
			if strings.Contains(text, key) || strings.Contains(text, strings.TrimPrefix(HashKey(key), "sha256:")) {
				t.Errorf("the %s hold key %q or its hash:\n%s", what, key, text)
			}
		}
	}
	prefix := strings.TrimPrefix(HashKey(bad), "sha256:")[:8]
	if !strings.Contains(g.log.String(), `"key_sha256_prefix":"`+prefix+`"`) {
		t.Errorf("the log does not name the failed key by its hash prefix %s:\n%s", prefix, g.log.String())
	}
	if !strings.Contains(m, `repute_auth_failures_total{reason="unknown"} 2`) {
		t.Errorf("/metrics does not count the failures:\n%s", m)
	}
}

// blockingStats answers only when its context ends.
type blockingStats struct{}

func (blockingStats) Stats(ctx context.Context, _ metrics.StatsQuery) (*metrics.StatsResult, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestQueryDeadlineAnswers503NamingIt(t *testing.T) {
	keys, _ := NewKeys(adminKey, nil)
	h, err := NewHandler(Options{Keys: keys, Submitter: &fakeSubmitter{}, Stats: blockingStats{}, QueryTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	res, body := do(t, h, "GET", "/v1/stats?from=1996-01-01&to=2026-01-01&group_by=isp,day", adminKey, "", "")
	if res.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "deadline of 20ms (query_timeout)") {
		t.Errorf("a query past its deadline: %d %s; want 503 naming the deadline", res.StatusCode, body)
	}
	if strings.Count(body, "{") != 1 {
		t.Errorf("the handler's own error leaked after the deadline's: %s", body)
	}
}

func TestStatsCapAndTruncated(t *testing.T) {
	g := newGuarded(t, GuardOptions{}, Options{MaxResultRows: 7})
	g.stats.result = metrics.StatsResult{Groups: []metrics.Group{}, Truncated: true}
	_, body := g.get(t, "/v1/stats?group_by=isp,day&from=1996-01-01", "192.0.2.1", adminKey)
	if g.stats.query.MaxGroups != 7 {
		t.Errorf("the store was asked for %d groups, want max_result_rows 7", g.stats.query.MaxGroups)
	}
	if !strings.Contains(body, `"truncated":true`) {
		t.Errorf("a cut result: %s, want truncated: true", body)
	}
	g.stats.result.Truncated = false
	if _, body := g.get(t, "/v1/stats", "192.0.2.1", adminKey); strings.Contains(body, "truncated") {
		t.Errorf("a whole result says truncated: %s", body)
	}
}

// TestFloodOfUnknownKeysStaysBounded: many addresses failing at once (run
// with -race) leave at most MaxAddresses of them in the failure table,
// and a valid key keeps passing throughout.
func TestFloodOfUnknownKeysStaysBounded(t *testing.T) {
	g := newGuarded(t, GuardOptions{MaxAddresses: 64, Lockout: Lockout{Failures: 3, Window: time.Minute, Duration: time.Hour}}, Options{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				addr := netip.AddrFrom4([4]byte{198, 18, byte(w), byte(i)}).String()
				req := httptest.NewRequest("GET", "/v1/stats", nil)
				req.RemoteAddr = addr + ":1"
				req.Header.Set("Authorization", "Bearer flood")
				rec := httptest.NewRecorder()
				g.h.ServeHTTP(rec, req)
				if rec.Code != http.StatusUnauthorized && rec.Code != http.StatusTooManyRequests {
					t.Errorf("unknown key: %d", rec.Code)
					return
				}
			}
		})
	}
	for range 50 {
		if res, _ := g.get(t, "/v1/stats", "198.18.0.1", adminKey); res.StatusCode != 200 {
			t.Fatalf("a valid key during the flood: %d", res.StatusCode)
		}
	}
	wg.Wait()
	if n := g.guard.failures.len(); n > 64 {
		t.Errorf("%d addresses in the failure table, want at most 64", n)
	}
}
