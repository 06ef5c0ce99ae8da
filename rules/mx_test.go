package rules

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"repute/metrics"
)

// mxZone is one test domain's answer.
type mxZone struct {
	rcode int
	ttl   uint32
	mx    []*dns.MX // Hdr filled in by the server
	hold  chan struct{}
}

// mxServer is a DNS server on loopback UDP that answers MX queries from a
// fixed table and counts the queries per name.
type mxServer struct {
	addr  string
	zones map[string]*mxZone

	mu     sync.Mutex
	counts map[string]int
}

func (s *mxServer) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[dns.Fqdn(name)]
}

func startMXServer(t *testing.T, zones map[string]*mxZone) *mxServer {
	t.Helper()
	s := &mxServer{zones: zones, counts: map[string]int{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = pc.LocalAddr().String()
	started := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Authoritative, m.RecursionAvailable = true, true
			if len(req.Question) != 1 {
				m.Rcode = dns.RcodeFormatError
				w.WriteMsg(m)
				return
			}
			q := req.Question[0]
			name := strings.ToLower(q.Name)
			s.mu.Lock()
			s.counts[name]++
			s.mu.Unlock()
			z, ok := s.zones[name]
			switch {
			case !ok:
				m.Rcode = dns.RcodeNameError
			case z.hold != nil:
				<-z.hold
			}
			if ok {
				m.Rcode = z.rcode
				if q.Qtype == dns.TypeMX && z.rcode == dns.RcodeSuccess {
					for _, mx := range z.mx {
						rr := *mx
						rr.Hdr = dns.RR_Header{Name: q.Name, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: z.ttl}
						m.Answer = append(m.Answer, &rr)
					}
				}
			}
			if len(m.Answer) == 0 && (m.Rcode == dns.RcodeSuccess || m.Rcode == dns.RcodeNameError) {
				m.Ns = append(m.Ns, &dns.SOA{
					Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 3600},
					Ns:  "ns.example.", Mbox: "hostmaster.example.", Serial: 1,
					Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 3600,
				})
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

type mxClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *mxClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *mxClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func testMXZones() map[string]*mxZone {
	return map[string]*mxZone{
		"shop.example.": {ttl: 300, mx: []*dns.MX{
			{Preference: 1, Mx: "aspmx.l.google.com."},
			{Preference: 5, Mx: "alt1.aspmx.l.google.com."},
		}},
		"corp.example.": {ttl: 3600, mx: []*dns.MX{
			{Preference: 0, Mx: "corp-example.mail.protection.outlook.com."},
		}},
		"self.example.": {ttl: 300, mx: []*dns.MX{{Preference: 10, Mx: "mx.self.example."}}},
		// A filtering gateway in front of Google: the gateway receives.
		"filtered.example.": {ttl: 300, mx: []*dns.MX{
			{Preference: 20, Mx: "aspmx.l.google.com."},
			{Preference: 10, Mx: "in.filter.example."},
		}},
		"tiny.example.":   {ttl: 0, mx: []*dns.MX{{Preference: 10, Mx: "mx01.mail.icloud.com."}}},
		"empty.example.":  {ttl: 300},
		"broken.example.": {rcode: dns.RcodeServerFailure},
	}
}

func newTestMX(t *testing.T, s *mxServer, clock *mxClock, o MXOptions) *MXResolver {
	t.Helper()
	o.Server = s.addr
	o.Now = clock.Now
	r, err := NewMXResolver(o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestMXProvider(t *testing.T) {
	s := startMXServer(t, testMXZones())
	clock := &mxClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := newTestMX(t, s, clock, MXOptions{})
	ctx := context.Background()

	tests := []struct {
		domain, want string
		queries      int // queries for domain at the server after the call
	}{
		{"shop.example", "gmail", 1},
		{"Shop.Example.", "gmail", 1}, // cached, names normalised
		{"corp.example", "microsoft", 1},
		{"self.example", "", 1},      // unknown MX host
		{"filtered.example", "", 1},  // only the most preferred hosts count
		{"gone.example", "", 1},      // NXDOMAIN
		{"empty.example", "", 1},     // no MX records
		{"tiny.example", "apple", 1}, // TTL 0, clamped to MinTTL
		{"gmail.com", "gmail", 0},    // the ISP map: no lookup
		{"mail.yahoo.co.jp", "yahoo", 0},
	}
	for _, tt := range tests {
		got, err := r.Provider(ctx, tt.domain)
		if err != nil {
			t.Errorf("Provider(%q): %v", tt.domain, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Provider(%q) = %q, want %q", tt.domain, got, tt.want)
		}
		if n := s.count(strings.ToLower(tt.domain)); n != tt.queries {
			t.Errorf("after Provider(%q): %d queries, want %d", tt.domain, n, tt.queries)
		}
	}
	// Everything again: all cached (the ISP map's domains never queried).
	for _, tt := range tests {
		if got, err := r.Provider(ctx, tt.domain); err != nil || got != tt.want {
			t.Errorf("cached Provider(%q) = %q, %v; want %q", tt.domain, got, err, tt.want)
		}
		if n := s.count(strings.ToLower(tt.domain)); n != tt.queries {
			t.Errorf("cached Provider(%q): %d queries, want %d", tt.domain, n, tt.queries)
		}
	}
	if n := r.Len(); n != 7 {
		t.Errorf("Len() = %d, want 7", n)
	}
}

func TestMXCacheExpiry(t *testing.T) {
	s := startMXServer(t, testMXZones())
	clock := &mxClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := newTestMX(t, s, clock, MXOptions{})
	ctx := context.Background()
	lookup := func(domain, want string, queries int) {
		t.Helper()
		got, err := r.Provider(ctx, domain)
		if err != nil || got != want {
			t.Fatalf("Provider(%q) = %q, %v; want %q", domain, got, err, want)
		}
		if n := s.count(domain); n != queries {
			t.Fatalf("Provider(%q) at %v: %d queries, want %d", domain, clock.Now(), n, queries)
		}
	}
	lookup("shop.example", "gmail", 1)     // TTL 300 s
	lookup("corp.example", "microsoft", 1) // TTL 3600 s
	lookup("gone.example", "", 1)          // negative: 1 h
	lookup("tiny.example", "apple", 1)     // TTL 0 → MinTTL 1 min

	clock.Add(59 * time.Second)
	lookup("tiny.example", "apple", 1)
	clock.Add(2 * time.Second) // 61 s
	lookup("tiny.example", "apple", 2)

	clock.Add(238 * time.Second) // 299 s
	lookup("shop.example", "gmail", 1)
	clock.Add(2 * time.Second) // 301 s
	lookup("shop.example", "gmail", 2)
	lookup("corp.example", "microsoft", 1)

	clock.Add(59 * time.Minute) // ~64 min
	lookup("corp.example", "microsoft", 2)
	lookup("gone.example", "", 2)
	lookup("gone.example", "", 2)
}

func TestMXFailureNotCached(t *testing.T) {
	s := startMXServer(t, testMXZones())
	clock := &mxClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := newTestMX(t, s, clock, MXOptions{Timeout: 2 * time.Second})
	ctx := context.Background()

	got, err := r.Provider(ctx, "broken.example")
	if err == nil || got != "" {
		t.Fatalf("Provider(broken.example) = %q, %v; want an error", got, err)
	}
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Errorf("error %v does not wrap a *net.DNSError", err)
	} else if dnsErr.Server != s.addr || dnsErr.IsNotFound {
		t.Errorf("DNSError{Server: %q, IsNotFound: %v}, want Server %q, not IsNotFound", dnsErr.Server, dnsErr.IsNotFound, s.addr)
	}
	first := s.count("broken.example")
	if first == 0 {
		t.Fatal("no query reached the server")
	}
	if _, err := r.Provider(ctx, "broken.example"); err == nil {
		t.Fatal("second Provider(broken.example): no error")
	}
	if n := s.count("broken.example"); n <= first {
		t.Errorf("a failure was cached: %d queries after the second call, %d after the first", n, first)
	}
	if n := r.Len(); n != 0 {
		t.Errorf("Len() = %d after failures, want 0", n)
	}
}

func TestMXCoalesce(t *testing.T) {
	zones := testMXZones()
	hold := make(chan struct{})
	zones["slow.example."] = &mxZone{ttl: 300, hold: hold,
		mx: []*dns.MX{{Preference: 1, Mx: "aspmx.l.google.com."}}}
	s := startMXServer(t, zones)
	clock := &mxClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := newTestMX(t, s, clock, MXOptions{})

	const callers = 20
	results := make([]string, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { results[i], errs[i] = r.Provider(context.Background(), "slow.example") })
	}
	// Wait until every caller has joined the one lookup in flight.
	deadline := time.Now().Add(3 * time.Second)
	for {
		r.mu.Lock()
		c := r.flight["slow.example"]
		joined := c != nil && c.waiters == callers-1
		r.mu.Unlock()
		if joined {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the callers did not join one lookup")
		}
		time.Sleep(time.Millisecond)
	}
	close(hold)
	wg.Wait()
	for i := range callers {
		if errs[i] != nil || results[i] != "gmail" {
			t.Errorf("caller %d: %q, %v; want gmail", i, results[i], errs[i])
		}
	}
	if n := s.count("slow.example"); n != 1 {
		t.Errorf("%d queries for %d concurrent callers, want 1", n, callers)
	}
}

func TestMXCallerCancel(t *testing.T) {
	zones := testMXZones()
	hold := make(chan struct{})
	zones["slow.example."] = &mxZone{ttl: 300, hold: hold,
		mx: []*dns.MX{{Preference: 1, Mx: "aspmx.l.google.com."}}}
	s := startMXServer(t, zones)
	clock := &mxClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := newTestMX(t, s, clock, MXOptions{})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.Provider(ctx, "slow.example"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Provider with a cancelled context: %v, want context.Canceled", err)
	}
	// The lookup goes on for others and fills the cache.
	close(hold)
	got, err := r.Provider(context.Background(), "slow.example")
	if err != nil || got != "gmail" {
		t.Fatalf("Provider(slow.example) = %q, %v; want gmail", got, err)
	}
	if n := s.count("slow.example"); n != 1 {
		t.Errorf("%d queries, want 1 (the abandoned lookup shared)", n)
	}
}

func TestMXCacheBound(t *testing.T) {
	s := startMXServer(t, testMXZones())
	clock := &mxClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := newTestMX(t, s, clock, MXOptions{MaxEntries: 2})
	ctx := context.Background()
	for _, d := range []string{"shop.example", "corp.example", "shop.example", "self.example"} {
		if _, err := r.Provider(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Len(); n != 2 {
		t.Fatalf("Len() = %d, want 2", n)
	}
	// corp.example was the least recently used: evicted, queried again;
	// shop.example was used after it: still cached.
	r.Provider(ctx, "shop.example")
	r.Provider(ctx, "corp.example")
	if n := s.count("shop.example"); n != 1 {
		t.Errorf("shop.example: %d queries, want 1", n)
	}
	if n := s.count("corp.example"); n != 2 {
		t.Errorf("corp.example: %d queries, want 2", n)
	}
}

func TestMXHostProvider(t *testing.T) {
	tests := []struct{ host, want string }{
		{"aspmx.l.google.com.", "gmail"},
		{"ALT2.ASPMX.L.GOOGLE.COM", "gmail"},
		{"aspmx2.googlemail.com", "gmail"},
		{"smtp.google.com", "gmail"},
		{"contoso-com.mail.protection.outlook.com", "microsoft"},
		{"hotmail-com.olc.protection.outlook.com", "microsoft"},
		{"mta5.am0.yahoodns.net", "yahoo"},
		{"mx01.mail.icloud.com", "apple"},
		{"mx.zoho.eu", "zoho"},
		{"mail.protonmail.ch", "proton"},
		{"mx.yandex.net", "yandex"},
		{"mxs.mail.ru", "mailru"},
		{"mxdomain.qq.com", "tencent"},
		{"mxbiz1.qq.com", "tencent"},
		{"mx.ym.163.com", "netease"},
		{"qiye163mx01.mxmail.netease.com", "netease"},
		{"notgoogle.com", ""},
		{"google.com.evil.example", ""},
		{"mx.example.com", ""},
		{"", ""},
	}
	for _, tt := range tests {
		if got := mxHostProvider(tt.host); got != tt.want {
			t.Errorf("mxHostProvider(%q) = %q, want %q", tt.host, got, tt.want)
		}
	}
	// Every provider of the table is a name the ISP map uses.
	names := map[string]bool{}
	for _, d := range []string{"gmail.com", "outlook.com", "yahoo.com", "icloud.com", "zoho.com",
		"protonmail.com", "yandex.ru", "mail.ru", "qq.com", "163.com", "gmx.de", "aliyun.com"} {
		names[metrics.ISPMap{}.Lookup(d)] = true
	}
	for host, p := range mxProviders {
		if !names[p] {
			t.Errorf("mxProviders[%q] = %q: not an ISP map group", host, p)
		}
	}
}

func TestNewMXResolverOptions(t *testing.T) {
	for _, o := range []MXOptions{
		{MaxEntries: -1},
		{NegativeTTL: -time.Second},
		{MinTTL: time.Hour, MaxTTL: time.Minute},
		{Server: "127.0.0.1"}, // no port
	} {
		if _, err := NewMXResolver(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewMXResolver(%+v): %v, want ErrInvalid", o, err)
		}
	}
	r, err := NewMXResolver(MXOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Provider(context.Background(), " "); !errors.Is(err, ErrInvalid) {
		t.Errorf("Provider(\" \"): %v, want ErrInvalid", err)
	}
	// The zero value's ISP map answers without the network.
	if got, err := r.Provider(context.Background(), "hotmail.com"); err != nil || got != "microsoft" {
		t.Errorf("Provider(hotmail.com) = %q, %v; want microsoft", got, err)
	}
}

// waitFor polls cond for up to 10 s: Cached's lookups run in the
// background.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Cached answers from the ISP map and the cache without waiting; a miss
// starts one lookup in the background whose answer serves the next calls;
// an answer past its TTL is still given while it is refreshed.
func TestMXCached(t *testing.T) {
	s := startMXServer(t, testMXZones())
	clock := &mxClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := newTestMX(t, s, clock, MXOptions{})

	if p, ok := r.Cached("Gmail.com"); p != "gmail" || !ok {
		t.Errorf("Cached(Gmail.com) = %q, %v; want the ISP map's gmail", p, ok)
	}
	if p, ok := r.Cached("shop.example"); p != "" || ok {
		t.Fatalf("first Cached(shop.example) = %q, %v; want a miss", p, ok)
	}
	r.Cached("shop.example") // in flight: no second query
	waitFor(t, "the lookup of shop.example", func() bool { return r.Len() == 1 })
	if p, ok := r.Cached("shop.example"); p != "gmail" || !ok {
		t.Errorf("Cached(shop.example) after its lookup = %q, %v; want gmail", p, ok)
	}
	if n := s.count("shop.example"); n != 1 {
		t.Errorf("%d queries for shop.example, want 1", n)
	}
	if st := r.Stats(); st != (MXStats{Started: 1}) {
		t.Errorf("stats %+v, want one lookup started", st)
	}

	// Past its TTL (300 s): the old answer at once, and a refresh.
	clock.Add(301 * time.Second)
	if p, ok := r.Cached("shop.example"); p != "gmail" || !ok {
		t.Errorf("Cached(shop.example) past its TTL = %q, %v; want the stale gmail", p, ok)
	}
	waitFor(t, "the refresh of shop.example", func() bool { return s.count("shop.example") == 2 && r.Stats().Started == 2 })
	if p, ok := r.Cached("shop.example"); p != "gmail" || !ok {
		t.Errorf("Cached(shop.example) after the refresh = %q, %v", p, ok)
	}
}

// A failed lookup is not retried for RetryAfter, and at most
// MaxBackground lookups run at once; the misses that start nothing are
// counted.
func TestMXCachedBounds(t *testing.T) {
	zones := testMXZones()
	hold := make(chan struct{})
	zones["held.example."] = &mxZone{ttl: 300, hold: hold, mx: []*dns.MX{{Preference: 1, Mx: "mx.zoho.com."}}}
	s := startMXServer(t, zones)
	clock := &mxClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	r := newTestMX(t, s, clock, MXOptions{MaxBackground: 1, Timeout: 2 * time.Second})

	r.Cached("broken.example")
	waitFor(t, "the failure of broken.example", func() bool { return r.Stats().Failed == 1 })
	queries := s.count("broken.example")
	if p, ok := r.Cached("broken.example"); p != "" || ok {
		t.Errorf("Cached(broken.example) = %q, %v; want a miss", p, ok)
	}
	if st := r.Stats(); st.Busy != 1 || st.Started != 1 {
		t.Errorf("stats %+v, want the retry refused (busy 1)", st)
	}
	clock.Add(DefaultMXRetryAfter)
	r.Cached("broken.example")
	waitFor(t, "the retry of broken.example", func() bool { return r.Stats().Failed == 2 })
	if n := s.count("broken.example"); n <= queries {
		t.Errorf("no query after RetryAfter (%d, then %d)", queries, n)
	}

	r.Cached("held.example") // the one lookup allowed, held by the server
	waitFor(t, "the query of held.example", func() bool { return s.count("held.example") == 1 })
	if _, ok := r.Cached("corp.example"); ok || s.count("corp.example") != 0 || r.Stats().Busy != 2 {
		t.Errorf("a second lookup beside the held one: ok %v, %d queries, stats %+v; want none, busy 2",
			ok, s.count("corp.example"), r.Stats())
	}
	close(hold)
	waitFor(t, "held.example's answer", func() bool { p, _ := r.Cached("held.example"); return p == "zoho" })
	r.Cached("corp.example")
	waitFor(t, "corp.example's answer", func() bool { p, _ := r.Cached("corp.example"); return p == "microsoft" })
}

// BenchmarkMXCachedHit is the cost Cached adds to intake for an event of
// a custom domain already cached (a lock, a map lookup, an LRU move).
func BenchmarkMXCachedHit(b *testing.B) {
	r, err := NewMXResolver(MXOptions{Server: "127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	r.mu.Lock()
	r.store("shop.example", "gmail", time.Now().Add(time.Hour))
	r.mu.Unlock()
	b.ReportAllocs()
	for b.Loop() {
		if p, ok := r.Cached("shop.example"); p != "gmail" || !ok {
			b.Fatal(p, ok)
		}
	}
}
