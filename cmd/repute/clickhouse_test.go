package main

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/internal/testenv"
)

// cuttableProxy forwards TCP to a server until cut: then it closes every
// open connection and refuses new ones, as a server that went away would.
type cuttableProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]bool
}

func newCuttableProxy(t *testing.T, target string) *cuttableProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttableProxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.setDown(true) })
	go p.serve()
	return p
}

func (p *cuttableProxy) addr() string { return p.ln.Addr().String() }

func (p *cuttableProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[s] = true, true
		p.mu.Unlock()
		go func() { io.Copy(s, c); s.Close() }()
		go func() { io.Copy(c, s); c.Close() }()
	}
}

func (p *cuttableProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

func TestServeOnClickHouseSurvivesAnOutage(t *testing.T) {
	addr, database := testenv.ClickHouseDatabase(t)
	proxy := newCuttableProxy(t, addr)
	cfg := defaultServeConfig()
	cfg.Data = t.TempDir()
	cfg.AdminKey = "admin"
	cfg.ClickHouse = proxy.addr()
	cfg.ClickHouseDatabase = database
	base := startApp(t, cfg)
	c := client{t, base, "admin"}

	events := benchEvents(12_000, testDay)
	first, later := events[:10_000], events[10_000:]
	if status, res := c.post(first); status != http.StatusAccepted || res["accepted"] != 10000.0 {
		t.Fatalf("POST: %d %v", status, res)
	}
	c.waitForTotals(dayQuery(), expectedCounts(first, ""))
	if status, res := c.post(first); status != http.StatusAccepted || res["duplicates"] != 10000.0 {
		t.Fatalf("same batch again: %d %v, want 10000 duplicates", status, res)
	}

	// ClickHouse goes away: intake keeps accepting into the spool, and
	// /readyz says why it is not ready.
	proxy.setDown(true)
	if status, res := c.post(later); status != http.StatusAccepted || res["accepted"] != 2000.0 {
		t.Fatalf("POST during the outage: %d %v", status, res)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), "store") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz during the outage: %d %s; want 503 naming the store", res.StatusCode, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Back: every spooled event lands, once.
	proxy.setDown(false)
	c.waitForTotals(dayQuery(), expectedCounts(events, ""))
}
