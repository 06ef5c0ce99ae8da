package main

import (
	"bufio"
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/textproto"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"repute/api"
	"repute/sender"
)

// crashRelay is go-smtp's server on 127.0.0.1:0 recording every message it
// receives, duplicates included; it answers each DATA after delay, so that
// deliveries are under way when the sender is killed.
type crashRelay struct {
	addr  string
	delay time.Duration

	mu   sync.Mutex
	msgs []crashMsg
	rcpt map[string]int // recipient → messages received
}

// crashMsg is one message the relay received.
type crashMsg struct {
	To, EnvID, MessageID, ReputeID string
	Data                           []byte
}

func startCrashRelay(t *testing.T, delay time.Duration) *crashRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &crashRelay{addr: ln.Addr().String(), delay: delay, rcpt: map[string]int{}}
	srv := smtp.NewServer(r)
	srv.Domain = "relay.test"
	srv.EnableDSN = true
	srv.MaxRecipients = 1
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *crashRelay) NewSession(*smtp.Conn) (smtp.Session, error) { return &crashSession{r: r}, nil }

// counts returns the distinct recipients and the messages received.
func (r *crashRelay) counts() (distinct, total int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.rcpt), len(r.msgs)
}

type crashSession struct {
	r   *crashRelay
	cur crashMsg
}

func (s *crashSession) Reset()        { s.cur = crashMsg{} }
func (s *crashSession) Logout() error { return nil }
func (s *crashSession) Mail(from string, opts *smtp.MailOptions) error {
	s.cur = crashMsg{}
	if opts != nil {
		s.cur.EnvID = opts.EnvelopeID
	}
	return nil
}

func (s *crashSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.To = to
	return nil
}

func (s *crashSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	h, err := textproto.NewReader(bufio.NewReader(bytes.NewReader(b))).ReadMIMEHeader()
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "bad header: " + err.Error()}
	}
	m := s.cur
	m.MessageID, m.ReputeID, m.Data = h.Get("Message-Id"), h.Get("X-Repute-Id"), b
	time.Sleep(s.r.delay) // the 250 comes after a moment, as a real relay's would
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, m)
	s.r.rcpt[m.To]++
	s.r.mu.Unlock()
	return nil
}

// TestSendingCrash is issue 11's "kill -9 of repute serve mid-queue": a
// real repute serve sending 2,000 messages (a warmed sender domain, so no
// warm-up limit holds them; 4 connections) to a relay that answers each
// after 2 ms is killed with SIGKILL once the relay has ~600, and restarted
// on the same data directory. Every recipient gets its message; a message
// goes out twice only within the window the Sender documents (the
// deliveries in flight: Connections + Pipeline), and then as the same
// bytes; the store has one sent event per recipient.
func TestSendingCrash(t *testing.T) {
	const (
		total       = 2000
		batch       = 500
		connections = 4
		killAt      = 600
	)
	start := time.Now()
	relay := startCrashRelay(t, 2*time.Millisecond)
	data := t.TempDir()
	config := filepath.Join(data, "repute.yaml")
	writeConfig(t, config, fmt.Sprintf(`accounts:
  - name: acme
    keys: [%q]
sender:
  relay: %s
  tls: none
  connections: %d
  bounce_domain: bounces.acme.example
  tracking_url: https://t.acme.example
  warmed_domains: [news.acme.example]
`, api.HashKey("acme-key"), relay.addr, connections))
	dataDir := filepath.Join(data, "var")
	args := []string{"--config", config, "--data", dataDir, "--listen", "127.0.0.1:0"}

	srv := startServe(t, args)
	// The recipients spread over providers (the connection cap is per
	// provider): gmail, outlook, yahoo and others.
	domains := []string{"gmail.com", "outlook.com", "yahoo.com", "x.example", "y.example"}
	want := map[string]string{} // recipient → the Message-ID answered
	for b := 0; b < total/batch; b++ {
		to := make([]string, batch)
		vals := map[string]map[string]any{}
		for i := range to {
			n := b*batch + i
			to[i] = fmt.Sprintf("r%04d@%s", n, domains[n%len(domains)])
			vals[to[i]] = map[string]any{"n": n}
		}
		ans := postMessagesRetry(t, srv.base, "acme-key", map[string]any{
			"from": "News <news@news.acme.example>", "to": to, "subject": "Crash {{.n}}",
			"html": `<p>Hello {{.n}}</p><a href="https://acme.example/x">x</a>`, "text": "Hello",
			"campaign": "crash", "category": "marketing", "data": vals,
		})
		if len(ans) != batch {
			t.Fatalf("batch %d: %d answers, want %d", b, len(ans), batch)
		}
		for i, a := range ans {
			if a.Status != "queued" || a.Recipient != to[i] || a.MessageID == "" {
				t.Fatalf("batch %d: answer %d %+v", b, i, a)
			}
			want[a.Recipient] = a.MessageID
		}
	}
	if len(want) != total {
		t.Fatalf("%d distinct recipients queued, want %d", len(want), total)
	}
	posted := time.Now()
	t.Logf("started and posted %d recipients in %s", total, posted.Sub(start).Round(time.Millisecond))

	waitFor := func(what string, timeout time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %s waiting for %s", timeout, what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("the relay to receive ~600", 2*time.Minute, func() bool { _, n := relay.counts(); return n >= killAt })
	srv.kill()
	_, atKill := relay.counts()
	t.Logf("killed after %s with %d messages received", time.Since(start).Round(time.Millisecond), atKill)
	if atKill >= total {
		t.Fatalf("every message had gone out before the kill: the test did not crash mid-queue")
	}

	restarted := time.Now()
	srv = startServe(t, args)
	up := time.Now()
	waitFor("every recipient to receive its message", 2*time.Minute, func() bool { d, _ := relay.counts(); return d == total })
	t.Logf("restarted in %s; the remaining %d received %s later", up.Sub(restarted).Round(time.Millisecond), total-atKill, time.Since(up).Round(time.Millisecond))
	cl := client{t, srv.base, "admin"}
	query := "from=2000-01-01&to=" + time.Now().Add(48*time.Hour).Format(time.DateOnly)
	waitUntil(t, "2,000 sent events stored and the queue empty", time.Minute, func() bool {
		_, body := cl.stats(query)
		_, q := do(t, "GET", srv.base+"/v1/queue", "admin")
		return body.Totals.Sent >= total && strings.Contains(q, `"total":0`)
	})
	_, body := cl.stats(query)
	srv.stop()

	// What the relay received: every recipient once, the repeats within
	// the documented window and identical.
	relay.mu.Lock()
	msgs := relay.msgs
	relay.mu.Unlock()
	first := map[string]crashMsg{}
	dups := 0
	for _, m := range msgs {
		if m.MessageID != want[m.To] {
			t.Errorf("%s received Message-ID %s, the 202 answered %s", m.To, m.MessageID, want[m.To])
		}
		if m.EnvID == "" || m.ReputeID == "" {
			t.Errorf("%s: ENVID %q, X-Repute-ID %q", m.To, m.EnvID, m.ReputeID)
		}
		f, seen := first[m.To]
		if !seen {
			first[m.To] = m
			continue
		}
		dups++
		if f.MessageID != m.MessageID || f.ReputeID != m.ReputeID || f.EnvID != m.EnvID || !bytes.Equal(f.Data, m.Data) {
			t.Errorf("%s received twice, not the same message: %s %s %s / %s %s %s", m.To,
				f.MessageID, f.ReputeID, f.EnvID, m.MessageID, m.ReputeID, m.EnvID)
		}
	}
	for rcpt := range want {
		if _, ok := first[rcpt]; !ok {
			t.Errorf("%s received nothing", rcpt)
		}
	}
	bound := connections + sender.DefaultPipeline
	t.Logf("%d messages received for %d recipients: %d received twice (bound %d = connections %d + pipeline %d); %s in all",
		len(msgs), len(first), dups, bound, connections, sender.DefaultPipeline, time.Since(start).Round(time.Millisecond))
	if dups > bound {
		t.Errorf("%d messages received twice, more than the %d in flight the Sender documents", dups, bound)
	}

	// One sent event per recipient.
	if body.Totals.Sent != total {
		t.Errorf("GET /v1/stats: %d sent, want %d", body.Totals.Sent, total)
	}
	db, err := sql.Open("duckdb", filepath.Join(dataDir, "repute.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT recipient, message_id, count(*) FROM events WHERE kind = 'sent' GROUP BY recipient, message_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	stored := 0
	for rows.Next() {
		var rcpt, mid string
		var n int
		if err := rows.Scan(&rcpt, &mid, &n); err != nil {
			t.Fatal(err)
		}
		stored++
		if n != 1 || mid != want[rcpt] {
			t.Errorf("stored: %d sent events for %s (%s), want 1 for %s", n, rcpt, mid, want[rcpt])
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if stored != total {
		t.Errorf("sent events stored for %d recipients, want %d", stored, total)
	}
}

// postMessagesRetry posts m to POST /v1/messages, waiting out the 503 of
// the suppression lists loading at start, and wants 202.
func postMessagesRetry(t *testing.T, base, key string, m map[string]any) []messageAnswer {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ans, status, out := tryPostMessages(t, base, key, m)
		if status == http.StatusAccepted {
			return ans
		}
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST /v1/messages: %d %s", status, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tryPostMessages(t *testing.T, base, key string, m map[string]any) ([]messageAnswer, int, string) {
	t.Helper()
	body, _ := json.Marshal(m)
	status, out := post(t, base+"/v1/messages", key, "application/json", body)
	if status != http.StatusAccepted {
		return nil, status, out
	}
	var ans struct {
		Messages []messageAnswer `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &ans); err != nil {
		t.Fatalf("answer %s: %v", out, err)
	}
	return ans.Messages, status, out
}
