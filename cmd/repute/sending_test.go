package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/duckdb/duckdb-go/v2"
	"github.com/emersion/go-message"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"

	"repute/correlate"
	"repute/metrics"
)

// relayMsg is one transaction the test relay accepted.
type relayMsg struct {
	From     string
	MailOpts smtp.MailOptions
	To       string
	RcptOpts smtp.RcptOptions
	Data     []byte
}

// testRelay is go-smtp's server on 127.0.0.1:0 recording what it
// accepts; rcpt, when set, may refuse a recipient.
type testRelay struct {
	addr string
	rcpt func(to string) error

	mu   sync.Mutex
	msgs []relayMsg
}

func startTestRelay(t *testing.T, rcpt func(to string) error) *testRelay {
	t.Helper()
	r := tryTestRelay(t, "127.0.0.1:0", rcpt)
	if r == nil {
		t.Fatal("cannot listen for the test relay")
	}
	return r
}

// tryTestRelay starts the test relay on addr; nil when it cannot listen
// there.
func tryTestRelay(t *testing.T, addr string, rcpt func(to string) error) *testRelay {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil
	}
	r := &testRelay{addr: ln.Addr().String(), rcpt: rcpt}
	srv := smtp.NewServer(r)
	srv.Domain = "relay.test"
	srv.EnableDSN = true
	srv.ErrorLog = log.New(io.Discard, "", 0)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return r
}

func (r *testRelay) NewSession(*smtp.Conn) (smtp.Session, error) { return &relaySession{r: r}, nil }

func (r *testRelay) received() []relayMsg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

type relaySession struct {
	r   *testRelay
	cur relayMsg
}

func (s *relaySession) Reset()        { s.cur = relayMsg{} }
func (s *relaySession) Logout() error { return nil }
func (s *relaySession) Mail(from string, opts *smtp.MailOptions) error {
	s.cur = relayMsg{From: from}
	if opts != nil {
		s.cur.MailOpts = *opts
	}
	return nil
}

func (s *relaySession) Rcpt(to string, opts *smtp.RcptOptions) error {
	if s.r.rcpt != nil {
		if err := s.r.rcpt(to); err != nil {
			return err
		}
	}
	s.cur.To = to
	if opts != nil {
		s.cur.RcptOpts = *opts
	}
	return nil
}

func (s *relaySession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = b
	s.r.mu.Lock()
	s.r.msgs = append(s.r.msgs, s.cur)
	s.r.mu.Unlock()
	return nil
}

// sendingKey is the signing key set of the sending tests, so that they can
// check the tokens the sender writes.
var sendingKey = strings.Repeat("s", 43)

// senderConfig returns twoAccounts with the sender on, relaying to addr
// without TLS, and an Ed25519 DKIM key for news.acme.example written as
// PKCS #8 PEM; it returns the key's public half.
func sendingConfig(t *testing.T, backend, addr string) (serveConfig, ed25519.PublicKey) {
	t.Helper()
	cfg := twoAccounts(t, backend)
	if err := os.WriteFile(filepath.Join(cfg.Data, signingKeysFile), []byte(sendingKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := writeFile(t, "news.pem", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), 0o600)
	cfg.Sender = senderConfig{
		Relay: addr, TLS: "none", Connections: 2, BounceDomain: "bounces.acme.example",
		TrackingURL: "https://t.acme.example", RetryFor: 72 * time.Hour,
		DKIM: []dkimConfig{{Domain: "news.acme.example", Selector: "s2026", KeyFile: keyFile}},
	}
	return cfg, pub
}

// runSendingApp starts repute serve in process and returns its base URL,
// the app (for its store) and a stop that shuts it down cleanly.
func runSendingApp(t *testing.T, cfg serveConfig) (string, *app, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := newApp(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.run(ctx, ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), a, stop
}

type messageAnswer struct {
	Recipient string `json:"recipient"`
	MessageID string `json:"message_id"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
}

// sendMessage posts m to POST /v1/messages and wants 202.
func sendMessage(t *testing.T, base, key string, m map[string]any) []messageAnswer {
	t.Helper()
	body, _ := json.Marshal(m)
	status, out := post(t, base+"/v1/messages", key, "application/json", body)
	if status != http.StatusAccepted {
		t.Fatalf("POST /v1/messages: %d %s", status, out)
	}
	var ans struct {
		Messages []messageAnswer `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &ans); err != nil {
		t.Fatalf("answer %s: %v", out, err)
	}
	return ans.Messages
}

// TestSendingThroughServe is issue 11's path through a real repute serve:
// POST /v1/messages checks each recipient (an invalid one, one blocklisted
// by a hard bounce, one unsubscribed are dropped with their events), the
// relay gets the fine one stamped and signed, a sent event records it, and
// a success DSN for it becomes delivered; a 550 at RCPT becomes a hard
// bounce that blocklists the address for every account; a 451 waits in the
// queue as retrying.
func TestSendingThroughServe(t *testing.T) {
	t.Run("duckdb", func(t *testing.T) { testSendingThroughServe(t, "") })
	t.Run("clickhouse", func(t *testing.T) { testSendingThroughServe(t, "clickhouse") })
}

func testSendingThroughServe(t *testing.T, backend string) {
	relay := startTestRelay(t, func(to string) error {
		switch to {
		case "nobody@outlook.example":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "user unknown"}
		case "later@gmail.example":
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "try again later"}
		}
		return nil
	})
	cfg, pub := sendingConfig(t, backend, relay.addr)
	base, a, stop := runSendingApp(t, cfg)
	signer, err := correlate.New(correlate.Keys{Sign: []byte(sendingKey), Verify: [][]byte{[]byte(sendingKey)}})
	if err != nil {
		t.Fatal(err)
	}

	// A hard bounce (posted by the admin: shared) and an unsubscribe.
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	body, _ := json.Marshal([]metrics.Event{{EventID: "b1", Time: at, Kind: metrics.KindBounced, Account: "acme",
		SenderDomain: "news.acme.example", Recipient: "gone@gmail.example", BounceType: metrics.BounceHard,
		Reason: "userunknown", Status: "5.1.1"}})
	if status, out := post(t, base+"/v1/events?wait=visible", "admin", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST events: %d %s", status, out)
	}
	waitUntil(t, "the bounce to blocklist", 30*time.Second, func() bool {
		return !check(t, base, "acme-key", "news.acme.example", "gone@gmail.example")[0].Allowed
	})
	if status, out := post(t, base+"/v1/unsubscribes", "acme-key", "application/json",
		[]byte(`{"sender_domain": "news.acme.example", "recipient": "asked@yahoo.example", "reason": "phone call"}`)); status != http.StatusOK {
		t.Fatalf("POST unsubscribes: %d %s", status, out)
	}

	// a. Four recipients, answered in order.
	got := sendMessage(t, base, "acme-key", map[string]any{
		"from":    "News <news@news.acme.example>",
		"to":      []string{"gone@gmail.example", "asked@yahoo.example", "broken@@x.example", "Fine <fine@outlook.example>"},
		"subject": "Hello {{.name}}", "campaign": "winter", "category": "marketing",
		"html": `<html><body><p>Hi {{.name}}</p><a href="https://acme.example/offer">offer</a></body></html>`,
		"text": "Hi {{.name}}",
		"data": map[string]any{"Fine <fine@outlook.example>": map[string]string{"name": "Fi"}},
	})
	want := []messageAnswer{
		{Recipient: "gone@gmail.example", Status: "dropped", Reason: metrics.DropBlocklisted},
		{Recipient: "asked@yahoo.example", Status: "dropped", Reason: metrics.DropUnsubscribed},
		{Recipient: "broken@@x.example", Status: "dropped", Reason: metrics.DropInvalidRecipient},
		{Recipient: "Fine <fine@outlook.example>", Status: "queued"},
	}
	if len(got) != len(want) {
		t.Fatalf("answer %+v", got)
	}
	for i := range want {
		g := got[i]
		g.MessageID = ""
		if g != want[i] {
			t.Errorf("messages[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
	msgID := got[3].MessageID
	if !strings.HasPrefix(msgID, "<") || !strings.HasSuffix(msgID, "@news.acme.example>") {
		t.Errorf("message_id %q, want <…@news.acme.example>", msgID)
	}

	// The relay gets the fine one, stamped and signed.
	waitUntil(t, "the relay to receive the message", 30*time.Second, func() bool { return len(relay.received()) >= 1 })
	m := relay.received()[0]
	if m.To != "fine@outlook.example" {
		t.Fatalf("relay got RCPT TO %q", m.To)
	}
	local, domain, _ := strings.Cut(m.From, "@")
	token, isVERP := strings.CutPrefix(local, "bounces+")
	if !isVERP || domain != "bounces.acme.example" {
		t.Errorf("MAIL FROM %q, want bounces+TOKEN@bounces.acme.example", m.From)
	}
	ref, err := signer.Parse(token)
	if err != nil {
		t.Errorf("VERP token %q: %v", token, err)
	}
	if m.MailOpts.EnvelopeID != ref.String() || m.MailOpts.Return != smtp.DSNReturnHeaders {
		t.Errorf("MAIL FROM ENVID=%q RET=%q; want ENVID=%s RET=HDRS", m.MailOpts.EnvelopeID, m.MailOpts.Return, ref)
	}
	if n := m.RcptOpts.Notify; !slices.Contains(n, smtp.DSNNotifySuccess) || !slices.Contains(n, smtp.DSNNotifyFailure) ||
		m.RcptOpts.OriginalRecipient != "fine@outlook.example" {
		t.Errorf("RCPT NOTIFY=%v ORCPT=%q", n, m.RcptOpts.OriginalRecipient)
	}
	ent, err := message.Read(bytes.NewReader(m.Data))
	if err != nil {
		t.Fatal(err)
	}
	h := ent.Header
	if tok := h.Get("X-Repute-ID"); tok != signer.Token(ref) {
		t.Errorf("X-Repute-ID %q, want the token of %s", tok, ref)
	}
	if lu := h.Get("List-Unsubscribe"); !strings.Contains(lu, "<https://t.acme.example/t/u/") || !strings.Contains(lu, "<mailto:unsubscribe+") {
		t.Errorf("List-Unsubscribe %q: want the https and the mailto URL", lu)
	}
	if h.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" {
		t.Errorf("List-Unsubscribe-Post %q", h.Get("List-Unsubscribe-Post"))
	}
	if fid := h.Get("Feedback-ID"); !strings.HasPrefix(fid, "winter:marketing:acme:") {
		t.Errorf("Feedback-ID %q, want winter:marketing:acme:…", fid)
	}
	if h.Get("Message-Id") != msgID || h.Get("Subject") != "Hello Fi" {
		t.Errorf("Message-ID %q, Subject %q; want %q, Hello Fi", h.Get("Message-Id"), h.Get("Subject"), msgID)
	}
	lookup := func(name string) ([]string, error) {
		if name == "s2026._domainkey.news.acme.example" {
			return []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)}, nil
		}
		return nil, fmt.Errorf("no TXT for %s", name)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "news.acme.example" {
		t.Errorf("DKIM: %+v, %v; want one valid signature of news.acme.example", vs, err)
	}
	var html string
	if mr := ent.MultipartReader(); mr != nil {
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			if ct, _, _ := p.Header.ContentType(); ct == "text/html" {
				b, _ := io.ReadAll(p.Body)
				html = string(b)
			}
		}
	}
	if !strings.Contains(html, `<img src="https://t.acme.example/t/o/`) || !strings.Contains(html, "https://t.acme.example/t/c/") {
		t.Errorf("HTML part without the pixel or the tracked link:\n%s", html)
	}

	// The sent event, found by its reference.
	waitUntil(t, "the sent event", 30*time.Second, func() bool {
		s, ok, err := a.store.SendByRef(context.Background(), ref.String())
		if err != nil {
			t.Fatal(err)
		}
		if ok && (s.MessageID != strings.Trim(msgID, "<>") && s.MessageID != msgID || s.Account != "acme" || s.Campaign != "winter") {
			t.Fatalf("sent event %+v, want message id %s of acme's winter", s, msgID)
		}
		return ok
	})

	// b. A success DSN for it becomes delivered, with the send's account
	// and campaign.
	status, out := post(t, base+"/v1/feedback", "acme-key", "message/rfc822",
		[]byte(successDSN("fine@outlook.example", m.MailOpts.EnvelopeID, signer.Token(ref), msgID)))
	if status != http.StatusAccepted {
		t.Fatalf("POST feedback: %d %s", status, out)
	}
	var fb struct {
		Events []metrics.Event `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &fb); err != nil || len(fb.Events) != 1 {
		t.Fatalf("feedback answer %s (%v)", out, err)
	}
	if e := fb.Events[0]; e.Kind != metrics.KindDelivered || e.Account != "acme" || e.Campaign != "winter" ||
		e.Recipient != "fine@outlook.example" || strings.Trim(e.MessageID, "<>") != strings.Trim(msgID, "<>") {
		t.Errorf("delivered event %+v", e)
	}

	// c. 550 at RCPT: a hard bounce, shared with every account (repute's
	// own sender produced it).
	if got := sendMessage(t, base, "acme-key", map[string]any{
		"from": "news@mail.acme.example", "to": []string{"nobody@outlook.example"}, "subject": "s", "text": "t",
	}); got[0].Status != "queued" {
		t.Fatalf("to nobody: %+v", got)
	}
	var blocked checkResult
	waitUntil(t, "the 550 to blocklist for globex", 30*time.Second, func() bool {
		blocked = check(t, base, "globex-key", "news.globex.example", "nobody@outlook.example")[0]
		return !blocked.Allowed
	})
	if blocked.List != "blocklist" || blocked.Reason != "userunknown" {
		t.Errorf("globex's check of the bounced address: %+v", blocked)
	}
	if got := sendMessage(t, base, "globex-key", map[string]any{
		"from": "news@news.globex.example", "to": []string{"nobody@outlook.example"}, "subject": "s", "text": "t",
	}); got[0].Status != "dropped" || got[0].Reason != metrics.DropBlocklisted {
		t.Errorf("globex to the bounced address: %+v, want dropped blocklisted", got)
	}

	// e. 451: the message waits as retrying; only acme sees it.
	sendMessage(t, base, "acme-key", map[string]any{
		"from": "news@offers.acme.example", "to": []string{"later@gmail.example"}, "subject": "s", "text": "t",
	})
	var q struct {
		Total    int `json:"total"`
		Retrying int `json:"retrying"`
		Groups   []struct {
			SenderDomain string `json:"sender_domain"`
			Why          string `json:"why"`
			Count        int    `json:"count"`
		} `json:"groups"`
	}
	waitUntil(t, "the 451 to be retrying", 30*time.Second, func() bool {
		status, out := do(t, "GET", base+"/v1/queue", "acme-key")
		if status != http.StatusOK {
			t.Fatalf("GET /v1/queue: %d %s", status, out)
		}
		json.Unmarshal([]byte(out), &q)
		return q.Retrying == 1
	})
	if q.Total != 1 || len(q.Groups) != 1 || q.Groups[0].SenderDomain != "offers.acme.example" || q.Groups[0].Why != "retrying" {
		t.Errorf("acme's queue: %+v", q)
	}
	if status, out := do(t, "GET", base+"/v1/queue", "globex-key"); status != http.StatusOK || !strings.Contains(out, `"total":0`) {
		t.Errorf("globex's queue: %d %s; want empty", status, out)
	}
	if status, out := do(t, "GET", base+"/v1/queue", "admin"); status != http.StatusOK || !strings.Contains(out, `"total":1`) {
		t.Errorf("the admin's queue: %d %s", status, out)
	}
	status, out = do(t, "GET", base+"/metrics", "")
	for _, line := range []string{`repute_sender_queue{why="retrying"} 1`, `repute_sender_messages_total{outcome="sent"} 1`,
		`repute_sender_messages_total{outcome="bounced"} 1`, `repute_sender_messages_total{outcome="dropped"} 4`} {
		if !strings.Contains(out, line) {
			t.Errorf("/metrics lacks %s", line)
		}
	}

	if backend != "" {
		return
	}
	// The events as stored (DuckDB, once the app is stopped).
	stop()
	db, err := sql.Open("duckdb", filepath.Join(cfg.Data, "repute.duckdb"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT kind, account, recipient, reason, diagnostic, bounce_type, source, message_id, source_ref
		FROM events WHERE source = 'sender' ORDER BY kind, recipient`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var stored []string
	for rows.Next() {
		var kind, account, rcpt, reason, diag, bt, source, mid, sref string
		if err := rows.Scan(&kind, &account, &rcpt, &reason, &diag, &bt, &source, &mid, &sref); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, strings.Join([]string{kind, account, rcpt, reason, bt}, " "))
		switch {
		case kind == "dropped" && rcpt == "gone@gmail.example" && !strings.Contains(diag, "blocklist: userunknown (event b1)"):
			t.Errorf("the blocklisted drop's diagnostic %q: want the list, the reason and the event", diag)
		case kind == "dropped" && rcpt == "asked@yahoo.example" && !strings.Contains(diag, "unsubscribe: phone call"):
			t.Errorf("the unsubscribed drop's diagnostic %q", diag)
		case kind == "sent" && (sref != ref.String() || strings.Trim(mid, "<>") != strings.Trim(msgID, "<>")):
			t.Errorf("sent event source_ref %q message_id %q, want %s %s", sref, mid, ref, msgID)
		}
	}
	wantStored := []string{
		"bounced acme nobody@outlook.example userunknown hard",
		"deferred acme later@gmail.example blocked ", // 4.7.1
		"dropped acme asked@yahoo.example unsubscribed ",
		"dropped acme broken@@x.example invalid_recipient ",
		"dropped acme gone@gmail.example blocklisted ",
		"dropped globex nobody@outlook.example blocklisted ",
		"sent acme fine@outlook.example  ",
	}
	if strings.Join(stored, "\n") != strings.Join(wantStored, "\n") {
		t.Errorf("sender events stored:\n%s\nwant:\n%s", strings.Join(stored, "\n"), strings.Join(wantStored, "\n"))
	}
}

// successDSN is an RFC 3464 report that the message went to rcpt.
func successDSN(rcpt, envid, token, msgID string) string {
	var b strings.Builder
	b.WriteString("From: Mail Delivery System <MAILER-DAEMON@relay.example.net>\nTo: bounces@bounces.acme.example\n")
	fmt.Fprintf(&b, "Subject: Successful Mail Delivery Report\nDate: %s\nMessage-ID: <ok-%d@relay.example.net>\n",
		time.Now().UTC().Format(time.RFC1123Z), time.Now().UnixNano())
	b.WriteString("MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n")
	b.WriteString("--B\nContent-Type: text/plain\n\nYour message was delivered.\n\n")
	b.WriteString("--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; relay.example.net\n")
	fmt.Fprintf(&b, "Original-Envelope-Id: %s\n\n", envid)
	fmt.Fprintf(&b, "Original-Recipient: rfc822;%s\nFinal-Recipient: rfc822;%s\nAction: delivered\nStatus: 2.0.0\n\n", rcpt, rcpt)
	fmt.Fprintf(&b, "--B\nContent-Type: text/rfc822-headers\n\nFrom: News <news@news.acme.example>\nTo: %s\nSubject: Hello Fi\nMessage-ID: %s\nX-Repute-ID: %s\n",
		rcpt, msgID, token)
	b.WriteString("\n--B--\n")
	return b.String()
}

// TestSendingRefusals: the sender off, a sender domain outside the
// account's, the admin without an account, too many recipients, and a
// malformed or incomplete message.
func TestSendingRefusals(t *testing.T) {
	off := twoAccounts(t, "")
	base, _ := runApp(t, off)
	for _, path := range []string{"/v1/messages", "/v1/queue"} {
		method := "GET"
		var status int
		var out string
		if path == "/v1/messages" {
			method = "POST"
			status, out = post(t, base+path, "acme-key", "application/json", []byte(`{}`))
		} else {
			status, out = do(t, method, base+path, "acme-key")
		}
		if status != http.StatusServiceUnavailable || !strings.Contains(out, "sender.relay") {
			t.Errorf("%s %s with the sender off: %d %s; want 503 naming sender.relay", method, path, status, out)
		}
	}

	cfg, _ := sendingConfig(t, "", "127.0.0.1:1") // nothing is ever queued
	cfg.Accounts[0].SenderDomains = []string{"news.acme.example"}
	base, _ = runApp(t, cfg)
	check(t, base, "acme-key", "news.acme.example", "x@y.example") // the lists are loaded
	msg := func(from string, to ...string) string {
		b, _ := json.Marshal(map[string]any{"from": from, "to": to, "subject": "s", "text": "t"})
		return string(b)
	}
	many := make([]string, 10_001)
	for i := range many {
		many[i] = fmt.Sprintf("r%d@x.example", i)
	}
	for _, tt := range []struct {
		name, key, query, body string
		status                 int
		want                   string
	}{
		{"another tenant's domain", "acme-key", "", msg("news@news.globex.example", "a@x.example"), http.StatusForbidden, `news.globex.example`},
		{"admin without account", "admin", "", msg("news@news.acme.example", "a@x.example"), http.StatusBadRequest, "?account="},
		{"admin, unknown account", "admin", "?account=nope", msg("news@news.acme.example", "a@x.example"), http.StatusBadRequest, "no such account"},
		{"too many recipients", "acme-key", "", msg("news@news.acme.example", many...), http.StatusBadRequest, "at most 10000"},
		{"bad JSON", "acme-key", "", `{"from": `, http.StatusBadRequest, "malformed message"},
		{"unknown field", "acme-key", "", `{"form": "x"}`, http.StatusBadRequest, "malformed message"},
		{"no subject", "acme-key", "", `{"from": "news@news.acme.example", "to": ["a@x.example"], "text": "t"}`, http.StatusBadRequest, "subject is required"},
		{"no usable recipient", "acme-key", "", msg("news@news.acme.example", "not an address"), http.StatusBadRequest, "no usable recipient"},
		{"bad template", "acme-key", "", `{"from": "news@news.acme.example", "to": ["a@x.example"], "subject": "{{", "text": "t"}`, http.StatusBadRequest, "subject template"},
	} {
		status, out := post(t, base+"/v1/messages"+tt.query, tt.key, "application/json", []byte(tt.body))
		if status != tt.status || !strings.Contains(out, tt.want) {
			t.Errorf("%s: %d %s; want %d naming %s", tt.name, status, out, tt.status, tt.want)
		}
	}
	// The admin names acme.
	if status, out := post(t, base+"/v1/messages?account=acme", "admin", "application/json",
		[]byte(msg("news@news.acme.example", "a@x.example"))); status != http.StatusAccepted || !strings.Contains(out, `"queued"`) {
		t.Errorf("the admin for acme: %d %s", status, out)
	}
	// repute send against this server: globex has no sender_domains.
	text := writeFile(t, "body.txt", "Hi", 0o600)
	var stdout, stderr bytes.Buffer
	code := runMain([]string{"send", "--server", base, "--key", "globex-key", "--table", "--from", "news@any.globex.example",
		"--to", "b@y.example", "--to", "not an address", "--subject", "s", "--text", text}, &stdout, &stderr)
	if out := stdout.String(); code != 0 || !strings.Contains(out, "b@y.example") || !strings.Contains(out, "queued") ||
		!strings.Contains(out, "invalid_recipient") {
		t.Errorf("repute send: %d\n%s%s", code, out, stderr.String())
	}
}

// TestSendingConfig holds the sender: section to the keys, its
// defaults and errors that name the key.
func TestSendingConfig(t *testing.T) {
	const base = "sender:\n  relay: smtp.example.net:587\n  tracking_url: https://t.acme.example\n"
	cfg, err := loadYAML(t, base+"  user: relay-user\n  password_env: RELAY_PW\n  bounce_domain: Bounces.Acme.Example\n"+
		"  dkim:\n    - {domain: news.acme.example, selector: s2026, key_file: /etc/repute/dkim/news.pem}\n",
		map[string]string{"RELAY_PW": "pw"})
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Sender
	if s.TLS != "starttls" || s.Connections != 8 || s.RetryFor != 72*time.Hour || s.password != "pw" ||
		s.BounceDomain != "bounces.acme.example" || len(s.DKIM) != 1 || s.DKIM[0].Selector != "s2026" {
		t.Errorf("sender defaults: %+v", s)
	}
	if cfg, err := loadYAML(t, base+"  warmed_domains: [News.Acme.Example, bücher.example]\n", nil); err != nil ||
		!slices.Equal(cfg.Sender.WarmedDomains, []string{"news.acme.example", "xn--bcher-kva.example"}) {
		t.Errorf("warmed_domains: %q, %v", cfg.Sender.WarmedDomains, err)
	}
	if off, err := loadYAML(t, "listen: 127.0.0.1:1\n", nil); err != nil || off.Sender.on() {
		t.Errorf("no sender section: on=%v, %v", off.Sender.on(), err)
	}
	if cfg, err := loadYAML(t, "accounts:\n  - name: acme\n    sender_domains: [News.Acme.Example]\n", nil); err != nil ||
		cfg.Accounts[0].SenderDomains[0] != "news.acme.example" {
		t.Errorf("sender_domains: %+v, %v", cfg.Accounts, err)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"tls", base + "  tls: foo\n", `sender.tls: "foo": want starttls, implicit or none`},
		{"tls none remote", base + "  tls: none\n", "sender.tls: none"},
		{"relay", "sender:\n  relay: smtp.example.net\n  tracking_url: https://t.acme.example\n", "sender.relay"},
		{"tracking_url http", "sender:\n  relay: smtp.example.net:587\n  tracking_url: http://t.acme.example\n", "sender.tracking_url"},
		{"tracking_url missing", "sender:\n  relay: smtp.example.net:587\n", "sender.tracking_url: required"},
		{"tracking_url relative", "sender:\n  relay: smtp.example.net:587\n  tracking_url: /t\n", "sender.tracking_url"},
		{"bounce_domain", base + "  bounce_domain: not a domain\n", "sender.bounce_domain"},
		{"connections", base + "  connections: -1\n", "sender.connections"},
		{"password plain", base + "  user: u\n  password: pw\n", "sender.password: a secret is never a plain value"},
		{"password missing", base + "  user: u\n", "sender.user is set"},
		{"password unset", base + "  user: u\n  password_env: NOPE\n", "environment variable NOPE"},
		{"dkim key_file", base + "  dkim:\n    - {domain: news.acme.example, selector: s}\n", "sender.dkim[0].key_file: required"},
		{"dkim domain", base + "  dkim:\n    - {domain: x, selector: s, key_file: k}\n", "sender.dkim[0].domain"},
		{"typo", base + "  relay_is_finale: true\n", "did you mean relay_is_final"},
		{"sender_domains", "accounts:\n  - name: acme\n    sender_domains: [\"a b\"]\n", "sender_domains[0]"},
		{"skip_warmup without domains", "accounts:\n  - name: acme\n    skip_warmup: true\n", `account "acme": skip_warmup needs sender_domains`},
		{"warmed_domains", base + "  warmed_domains: [news.acme.example, \"a b\"]\n", `sender.warmed_domains[1]: "a b": want a domain`},
		{"warmed_domains literal", base + "  warmed_domains: [\"[192.0.2.1]\"]\n", "sender.warmed_domains[0]"},
		{"warmed_domains one label", base + "  warmed_domains: [localhost]\n", "sender.warmed_domains[0]"},
	} {
		if _, err := loadYAML(t, tt.yaml, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v; want an error naming %q", tt.name, err, tt.want)
		}
	}
	// tls none to a loopback relay and http tracking to a loopback host are
	// allowed (tests, a local proxy).
	if _, err := loadYAML(t, "sender:\n  relay: 127.0.0.1:2525\n  tls: none\n  tracking_url: http://localhost:8080\n", nil); err != nil {
		t.Errorf("loopback: %v", err)
	}

	// A bad key file is a start-up error naming the file.
	cfg = twoAccounts(t, "")
	bad := writeFile(t, "bad.pem", "not a key", 0o600)
	cfg.Sender = senderConfig{Relay: "127.0.0.1:1", TLS: "none", TrackingURL: "https://t.acme.example", Connections: 1,
		RetryFor: time.Hour, DKIM: []dkimConfig{{Domain: "news.acme.example", Selector: "s", KeyFile: bad}}}
	if _, err := newApp(context.Background(), cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("a bad DKIM key file: %v; want an error naming %s", err, bad)
	}
}

// TestSendingQueueSurvivesRestart: a message queued while the relay cannot
// be reached waits on disk; after a restart of repute serve, with the relay
// up, it is delivered once.
func TestSendingQueueSurvivesRestart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there yet
	cfg, _ := sendingConfig(t, "", addr)
	base, _, stop := runSendingApp(t, cfg)
	check(t, base, "acme-key", "news.acme.example", "x@y.example") // the lists are loaded
	got := sendMessage(t, base, "acme-key", map[string]any{
		"from": "news@news.acme.example", "to": []string{"later@x.example"}, "subject": "s", "text": "t",
	})
	if got[0].Status != "queued" {
		t.Fatalf("%+v", got)
	}
	waitUntil(t, "the relay to be held as down", 30*time.Second, func() bool {
		_, out := do(t, "GET", base+"/v1/queue", "acme-key")
		return strings.Contains(out, `"relay_down":1`)
	})
	stop()

	var relay *testRelay
	for range 50 { // the port may take a moment to be free
		if relay = tryTestRelay(t, addr, nil); relay != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if relay == nil {
		t.Fatalf("cannot listen on %s again", addr)
	}
	base, _, _ = runSendingApp(t, cfg)
	waitUntil(t, "the queued message to reach the relay", 30*time.Second, func() bool { return len(relay.received()) == 1 })
	if m := relay.received()[0]; m.To != "later@x.example" {
		t.Errorf("relay got %q", m.To)
	}
	waitUntil(t, "the queue to empty", 30*time.Second, func() bool {
		_, out := do(t, "GET", base+"/v1/queue", "acme-key")
		return strings.Contains(out, `"total":0`)
	})
}
