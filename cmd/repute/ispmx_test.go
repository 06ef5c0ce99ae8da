package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"repute/metrics"
)

// loopbackMX is a DNS server on loopback UDP answering MX queries from a
// table (name → MX host), NXDOMAIN for the rest; it counts the queries per
// name. Tests never ask the internet.
type loopbackMX struct {
	addr   string
	mu     sync.Mutex
	counts map[string]int
}

func (s *loopbackMX) count(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[dns.Fqdn(name)]
}

func startLoopbackMX(t *testing.T, mx map[string]string) *loopbackMX {
	t.Helper()
	s := &loopbackMX{counts: map[string]int{}}
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
			q := req.Question[0]
			name := strings.ToLower(q.Name)
			s.mu.Lock()
			s.counts[name]++
			s.mu.Unlock()
			host, ok := mx[strings.TrimSuffix(name, ".")]
			switch {
			case !ok:
				m.Rcode = dns.RcodeNameError
			case q.Qtype == dns.TypeMX:
				m.Answer = append(m.Answer, &dns.MX{Preference: 1, Mx: dns.Fqdn(host),
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeMX, Class: dns.ClassINET, Ttl: 300}})
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return s
}

// TestISPFromMXThroughServe is issue 13's MX lookup end to end: with
// isp_mx on, events posted for user@customdomain.test, whose MX (served by
// the test's loopback DNS) is aspmx.l.google.com, are stored with isp
// gmail once the background lookup has answered — the first one, posted
// before, keeps "other"; one query serves them all. A domain whose MX is
// its own stays "other", and a domain of the ISP map is never looked up.
func TestISPFromMXThroughServe(t *testing.T) {
	dnsSrv := startLoopbackMX(t, map[string]string{
		"customdomain.test": "aspmx.l.google.com",
		"self.test":         "mx.self.test",
	})
	cfg := twoAccounts(t, "")
	cfg.ISPMX = ispMXConfig{Enabled: true, Server: dnsSrv.addr}
	base, stop := runApp(t, cfg)

	at := testDay.Add(10 * time.Hour)
	n := 0
	postOne := func(rcpt string) {
		t.Helper()
		n++
		body, _ := json.Marshal([]metrics.Event{{Time: at, Kind: metrics.KindDelivered, Account: "acme",
			SenderDomain: "news.acme.example", MessageID: fmt.Sprintf("<m%d@acme.example>", n), Recipient: rcpt}})
		if status, out := post(t, base+"/v1/events?wait=visible", "acme-key", "application/json", body); status != http.StatusAccepted {
			t.Fatalf("POST events: %d %s", status, out)
		}
	}
	postOne("first@customdomain.test")
	postOne("user@self.test")
	postOne("user@yahoo.com")
	waitUntil(t, "the MX query of customdomain.test", 10*time.Second, func() bool { return dnsSrv.count("customdomain.test") > 0 })
	c := client{t: t, base: base, key: "acme-key"}
	waitUntil(t, "an event of customdomain.test stored as gmail", 20*time.Second, func() bool {
		postOne(fmt.Sprintf("user%d@customdomain.test", n))
		_, st := c.stats(dayQuery() + "&group_by=isp")
		for _, g := range st.Groups {
			if key, _ := g["key"].(map[string]any); key["isp"] == "gmail" {
				return true
			}
		}
		return false
	})
	postOne("last@customdomain.test")
	postOne("user@self.test")
	if q := dnsSrv.count("customdomain.test"); q != 1 {
		t.Errorf("%d MX queries of customdomain.test, want 1 (cached)", q)
	}
	if q := dnsSrv.count("yahoo.com"); q != 0 {
		t.Errorf("%d MX queries of yahoo.com, which the ISP map knows; want 0", q)
	}
	stop()

	db, err := sql.Open("duckdb", duckdbPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	isp := func(rcpt string) []string {
		t.Helper()
		rows, err := db.Query(`SELECT isp FROM events WHERE recipient = ? ORDER BY message_id`, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	for rcpt, want := range map[string]string{
		"first@customdomain.test": "[other]", // before the lookup's answer
		"last@customdomain.test":  "[gmail]",
		"user@self.test":          "[other other]",
		"user@yahoo.com":          "[yahoo]",
	} {
		if got := fmt.Sprint(isp(rcpt)); got != want {
			t.Errorf("stored isp of %s: %s, want %s", rcpt, got, want)
		}
	}
}

// isp_mx in the file: read, a misspelt key named, a server that is not
// host:port refused; off by default.
func TestISPMXConfig(t *testing.T) {
	noenv := func(string) string { return "" }
	file := filepath.Join(t.TempDir(), "repute.yaml")
	if err := os.WriteFile(file, []byte("listen: 127.0.0.1:8080\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadServeConfig([]string{"--config", file}, noenv, io.Discard)
	if err != nil || cfg.ISPMX != (ispMXConfig{}) {
		t.Fatalf("default isp_mx %+v, %v; want off", cfg.ISPMX, err)
	}
	os.WriteFile(file, []byte("isp_mx:\n  enabled: true\n  server: 127.0.0.53:53\n"), 0o600)
	cfg, err = loadServeConfig([]string{"--config", file}, noenv, io.Discard)
	if err != nil || cfg.ISPMX != (ispMXConfig{Enabled: true, Server: "127.0.0.53:53"}) {
		t.Errorf("isp_mx = %+v, %v", cfg.ISPMX, err)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"isp_mx:\n  enable: true\n", `isp_mx: unknown key "enable"`},
		{"isp_mx:\n  enabled: true\n  server: 127.0.0.53\n", `isp_mx.server "127.0.0.53": want host:port`},
	} {
		os.WriteFile(file, []byte(tt.yaml), 0o600)
		if _, err := loadServeConfig([]string{"--config", file}, noenv, io.Discard); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("config %q: error %v, want one containing %q", tt.yaml, err, tt.want)
		}
	}
}
