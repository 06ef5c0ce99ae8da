package track

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"repute/correlate"
	"repute/metrics"
	"repute/sender"
)

type fakeSends map[string]metrics.Send

func (f fakeSends) SendByRef(_ context.Context, ref string) (metrics.Send, bool, error) {
	s, ok := f[ref]
	return s, ok, nil
}

type sink struct {
	mu     sync.Mutex
	seen   map[string]bool
	events []metrics.Event
}

func (s *sink) submit(_ context.Context, events []metrics.Event) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	dups := 0
	for _, e := range events {
		if s.seen[e.EventID] {
			dups++
			continue
		}
		s.seen[e.EventID] = true
		s.events = append(s.events, e)
	}
	return dups, nil
}

func (s *sink) all() []metrics.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]metrics.Event(nil), s.events...)
}

type fixture struct {
	h      *Handler
	srv    *httptest.Server
	signer *sender.TrackingSigner
	sink   *sink
	ref    correlate.Ref
	reg    *prometheus.Registry
	now    time.Time
	run    chan error
}

func newFixture(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	signer, err := sender.NewTrackingSigner(correlate.Keys{Sign: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{signer: signer, sink: &sink{seen: map[string]bool{}}, ref: correlate.NewRef(), reg: prometheus.NewRegistry(),
		now: time.Date(2026, 11, 29, 10, 0, 0, 200e6, time.UTC), run: make(chan error, 1)}
	o := Options{
		Signer: signer,
		Sends: fakeSends{f.ref.String(): {Account: "acme", SenderDomain: "news.acme.example", Recipient: "a@example.com",
			MessageID: "<m@acme.example>", Time: f.now.Add(-time.Hour)}},
		Submit:     f.sink.submit,
		Registerer: f.reg,
		Now:        func() time.Time { return f.now },
		ISPs:       metrics.NewISPMap(nil),
	}
	if mod != nil {
		mod(&o)
	}
	if f.h, err = New(o); err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(f.h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) start() { go func() { f.run <- f.h.Run(context.Background()) }() }

func (f *fixture) shutdown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-f.run; err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) get(t *testing.T, path string, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func counter(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.Metric {
			for i := 0; i+1 < len(labels); i += 2 {
				for _, lp := range m.Label {
					if lp.GetName() == labels[i] && lp.GetValue() != labels[i+1] {
						continue metric
					}
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func TestGIF(t *testing.T) {
	if len(GIF) != 43 || string(GIF[:6]) != "GIF89a" || GIF[len(GIF)-1] != 0x3b {
		t.Errorf("GIF: %d bytes %x", len(GIF), GIF)
	}
}

// TestPixelDuplicatesAndShutdown: identical hits within a second are one
// event, the rest counted as duplicates; Shutdown hands the queued hits to
// intake before Run returns.
func TestPixelDuplicatesAndShutdown(t *testing.T) {
	f := newFixture(t, nil)
	f.start()
	path := "/t/o/" + f.signer.OpenToken(f.ref) + ".gif"
	for range 3 {
		if status, b := f.get(t, path, "User-Agent", "Thunderbird"); status != 200 || len(b) != 43 {
			t.Fatalf("pixel: %d %d bytes", status, len(b))
		}
	}
	f.shutdown(t)
	if got := len(f.sink.all()); got != 1 {
		t.Errorf("%d events of 3 identical hits within a second, want 1", got)
	}
	hits := counter(t, f.reg, "repute_tracking_hits_total")
	ev, dup := counter(t, f.reg, "repute_tracking_events_total"), counter(t, f.reg, "repute_tracking_duplicates_total")
	if hits != 3 || ev != 1 || dup != 2 {
		t.Errorf("hits %v events %v duplicates %v; want 3, 1, 2", hits, ev, dup)
	}
	e := f.sink.all()[0]
	if e.Account != "acme" || e.Kind != metrics.KindOpened || e.Source != SourcePixel || e.Recipient != "a@example.com" ||
		e.ClientIP != "127.0.0.0/24" || e.UserAgent != "Thunderbird" || e.Time != f.now.Truncate(time.Second) {
		t.Errorf("event %+v", e)
	}
}

// TestQueueFull: with the worker stopped and the queue full, the GIF is
// answered all the same and the hit counted as dropped.
func TestQueueFull(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.QueueSize = 1 })
	path := "/t/o/" + f.signer.OpenToken(f.ref) + ".gif"
	for range 3 {
		if status, _ := f.get(t, path); status != 200 {
			t.Fatalf("pixel with a full queue: %d", status)
		}
	}
	if d := counter(t, f.reg, "repute_tracking_dropped_total", "reason", "queue_full"); d != 2 {
		t.Errorf("dropped (queue_full) %v, want 2", d)
	}
	f.start()
	f.shutdown(t)
	hits := counter(t, f.reg, "repute_tracking_hits_total")
	acc := counter(t, f.reg, "repute_tracking_events_total") + counter(t, f.reg, "repute_tracking_duplicates_total") + counter(t, f.reg, "repute_tracking_dropped_total")
	if hits != 3 || acc != 3 {
		t.Errorf("hits %v, accounted %v; want 3 and 3", hits, acc)
	}
	// After Shutdown a hit is still answered, and counted as dropped.
	if status, _ := f.get(t, path); status != 200 || counter(t, f.reg, "repute_tracking_dropped_total", "reason", "shutdown") != 1 {
		t.Errorf("pixel after shutdown: %d, dropped (shutdown) %v", status, counter(t, f.reg, "repute_tracking_dropped_total", "reason", "shutdown"))
	}
}

// TestClientIP: X-Forwarded-For counts only from a trusted proxy, and then
// its rightmost untrusted address is the client's.
func TestClientIP(t *testing.T) {
	for _, tt := range []struct {
		trusted []string
		remote  string
		xff     []string
		want    string
	}{
		{nil, "198.51.100.7:4000", []string{"172.224.224.7"}, "198.51.100.7"},
		{[]string{"10.0.0.0/8"}, "198.51.100.7:4000", []string{"172.224.224.7"}, "198.51.100.7"},
		{[]string{"10.0.0.0/8"}, "10.1.2.3:4000", []string{"172.224.224.7"}, "172.224.224.7"},
		{[]string{"10.0.0.0/8"}, "10.1.2.3:4000", []string{"6.6.6.6, 172.224.224.7, 10.9.9.9"}, "172.224.224.7"},
		{[]string{"10.0.0.0/8"}, "10.1.2.3:4000", []string{"6.6.6.6", "172.224.224.7"}, "172.224.224.7"},
		{[]string{"10.0.0.0/8"}, "10.1.2.3:4000", []string{"junk"}, "10.1.2.3"},
		{[]string{"10.0.0.0/8"}, "10.1.2.3:4000", nil, "10.1.2.3"},
		{nil, "[::ffff:192.0.2.1]:80", nil, "192.0.2.1"},
	} {
		var ps []netip.Prefix
		for _, s := range tt.trusted {
			ps = append(ps, netip.MustParsePrefix(s))
		}
		h := &Handler{o: Options{TrustedProxies: ps}}
		r := httptest.NewRequest("GET", "/t/o/x.gif", nil)
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := h.clientIP(r).String(); got != tt.want {
			t.Errorf("clientIP(trusted %v, peer %s, XFF %q) = %s, want %s", tt.trusted, tt.remote, tt.xff, got, tt.want)
		}
	}
}

// TestUnknownSendAndForged: a valid token of an unknown send gets the GIF
// and is counted; a forged one gets 404 and is counted as rejected.
func TestUnknownSendAndForged(t *testing.T) {
	f := newFixture(t, nil)
	f.start()
	if status, b := f.get(t, "/t/o/"+f.signer.OpenToken(correlate.NewRef())+".gif"); status != 200 || len(b) != 43 {
		t.Errorf("unknown send: %d %d bytes", status, len(b))
	}
	other, _ := sender.NewTrackingSigner(correlate.Keys{Sign: []byte("fedcba9876543210fedcba9876543210")})
	if status, _ := f.get(t, "/t/o/"+other.OpenToken(f.ref)+".gif"); status != 404 {
		t.Errorf("forged: %d", status)
	}
	if status, b := f.get(t, "/t/u/"+other.UnsubscribeToken(f.ref)); status != 404 || !strings.Contains(string(b), "not valid") {
		t.Errorf("forged unsubscribe: %d %s", status, b)
	}
	f.shutdown(t)
	if u, d := counter(t, f.reg, "repute_tracking_unknown_total"), counter(t, f.reg, "repute_tracking_dropped_total", "reason", "unknown_send"); u != 1 || d != 1 {
		t.Errorf("unknown %v, dropped unknown_send %v; want 1, 1", u, d)
	}
	if r := counter(t, f.reg, "repute_tracking_rejected_total"); r != 2 {
		t.Errorf("rejected %v, want 2", r)
	}
	if n := len(f.sink.all()); n != 0 {
		t.Errorf("%d events, want none", n)
	}
}

// TestTruncateIP: the stored client address is its network.
func TestTruncateIP(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.77":          "203.0.113.0/24",
		"::ffff:203.0.113.77":   "203.0.113.0/24",
		"2001:db8:1234:5678::1": "2001:db8:1234::/48",
		"":                      "",
	} {
		var ip netip.Addr
		if in != "" {
			ip = netip.MustParseAddr(in)
		}
		if got := truncateIP(ip); got != want {
			t.Errorf("truncateIP(%q) = %q, want %q", in, got, want)
		}
	}
}
