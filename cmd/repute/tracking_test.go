package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"repute/correlate"
	"repute/metrics"
	"repute/sender"
	"repute/track"
)

// trackEnv is a running repute serve with two sends, one per account, and
// the signer of its tokens.
type trackEnv struct {
	t      *testing.T
	cfg    serveConfig
	base   string
	stop   func()
	signer *sender.TrackingSigner
	// acme and globex are the refs of a send of each account.
	acme, globex correlate.Ref
}

const (
	acmeDomain   = "news.acme.example"
	globexDomain = "mail.globex.example"
	acmeRcpt     = "reader@icloud.com"
	globexRcpt   = "someone@gmail.com"
)

func newTrackEnv(t *testing.T, cfg serveConfig) *trackEnv {
	t.Helper()
	base, stop := runApp(t, cfg)
	ks, _, _, err := loadSigningKeys(secret{}, cfg.Data, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := sender.NewTrackingSigner(correlate.Keys(ks))
	if err != nil {
		t.Fatal(err)
	}
	env := &trackEnv{t: t, cfg: cfg, base: base, stop: stop, signer: signer,
		acme: correlate.NewRef(), globex: correlate.NewRef()}
	sentAt := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	sends := []metrics.Event{
		{Time: sentAt, Kind: metrics.KindSent, Source: "sender", SourceRef: env.acme.String(), Account: "acme",
			SenderDomain: acmeDomain, Campaign: "spring", SendingIP: "192.0.2.10", MessageID: "<m1@acme.example>", Recipient: acmeRcpt},
		{Time: sentAt, Kind: metrics.KindSent, Source: "sender", SourceRef: env.globex.String(), Account: "globex",
			SenderDomain: globexDomain, Campaign: "launch", SendingIP: "192.0.2.20", MessageID: "<m2@globex.example>", Recipient: globexRcpt},
	}
	body, _ := json.Marshal(sends)
	if status, out := post(t, base+"/v1/events?wait=visible", "admin", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST sent events: %d %s", status, out)
	}
	return env
}

// get fetches path without following redirects.
func (e *trackEnv) get(method, path string, header map[string]string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.base+path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func (e *trackEnv) postForm(path, contentType, body string) (*http.Response, string) {
	e.t.Helper()
	res, err := http.Post(e.base+path, contentType, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// trackingCounters reads the repute_tracking_* counters of /metrics, the
// labelled ones summed and also by label ("dropped{reason=unknown_send}").
func trackingCounters(t *testing.T, base string) map[string]float64 {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer admin")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(name, "repute_tracking_") {
			continue
		}
		v, err := strconv.ParseFloat(rest, 64)
		if err != nil {
			continue
		}
		short := strings.TrimSuffix(strings.TrimPrefix(name, "repute_tracking_"), "_total")
		base, label, _ := strings.Cut(short, "{")
		base = strings.TrimSuffix(base, "_total")
		out[base] += v
		if label != "" {
			out[base+"{"+strings.ReplaceAll(label, `"`, "")] = v
		}
	}
	return out
}

// waitAccounted waits until every tracking hit is an event, a duplicate
// or dropped, and returns the counters.
func waitAccounted(t *testing.T, base string) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := trackingCounters(t, base)
		if c["hits"] == c["events"]+c["duplicates"]+c["dropped"] {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("tracking hits not accounted for: %v", c)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitUnsubscribed polls the suppression check until rcpt is no longer
// allowed for senderDomain.
func waitUnsubscribed(t *testing.T, base, key, senderDomain, rcpt string) checkResult {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := check(t, base, key, senderDomain, rcpt)[0]
		if !r.Allowed || time.Now().After(deadline) {
			return r
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type storedHit struct {
	Account, Kind, Source, Domain, Campaign, IP, MessageID, Recipient, UA, ClientIP, URL, Reason, Machine string
}

// storedTrackingEvents reads the opens, clicks and unsubscribes from the
// DuckDB file of a stopped serve.
func storedTrackingEvents(t *testing.T, cfg serveConfig) []storedHit {
	t.Helper()
	db, err := sql.Open("duckdb", duckdbPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT account, kind, source, sender_domain, campaign, sending_ip, message_id, recipient, user_agent,
		client_ip, url, reason, machine, machine_reason FROM events WHERE kind IN ('opened', 'clicked', 'unsubscribed')
		ORDER BY kind, account, source`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []storedHit
	for rows.Next() {
		var h storedHit
		var machine sql.NullBool
		var reason string
		if err := rows.Scan(&h.Account, &h.Kind, &h.Source, &h.Domain, &h.Campaign, &h.IP, &h.MessageID, &h.Recipient, &h.UA,
			&h.ClientIP, &h.URL, &h.Reason, &machine, &reason); err != nil {
			t.Fatal(err)
		}
		h.Machine = "null"
		if machine.Valid {
			h.Machine = fmt.Sprint(machine.Bool) + " " + reason
		}
		out = append(out, h)
	}
	return out
}

// TestTrackingEndpoints is issue 12's tracking endpoints through a real
// repute serve on DuckDB: the pixel, the redirect and the unsubscribe page,
// forged and altered tokens, a token of another account's message, a GET
// that must not unsubscribe, and the unsubscribe list afterwards.
func TestTrackingEndpoints(t *testing.T) {
	cfg := twoAccounts(t, "")
	cfg.MachineOpens.AppleRangesFile = testAppleRanges
	cfg.Accounts[0].DisplayName = "Acme Newsletters"
	// The test's client is the "proxy": its X-Forwarded-For is believed.
	cfg.TrustedProxies = []string{"127.0.0.1/32"}
	env := newTrackEnv(t, cfg)

	// The pixel: Apple's proxy (bare user agent, an address of the
	// synthetic ranges) behind a trusted proxy.
	apple := map[string]string{"User-Agent": "Mozilla/5.0", "X-Forwarded-For": "172.224.224.7"}
	res, body := env.get("GET", "/t/o/"+env.signer.OpenToken(env.acme)+".gif", apple)
	if res.StatusCode != http.StatusOK || !bytes.Equal(body, track.GIF) || len(body) != 43 {
		t.Fatalf("pixel: %d, %d bytes %q; want 200 and the 43-byte GIF", res.StatusCode, len(body), body)
	}
	if !bytes.HasPrefix(body, []byte("GIF89a")) {
		t.Errorf("pixel is not a GIF89a: %q", body[:6])
	}
	for k, v := range map[string]string{"Content-Type": "image/gif", "Cache-Control": "no-store", "Pragma": "no-cache",
		"Expires": "0", "Content-Length": "43"} {
		if got := res.Header.Get(k); got != v {
			t.Errorf("pixel %s: %q, want %q", k, got, v)
		}
	}
	if res, body := env.get("HEAD", "/t/o/"+env.signer.OpenToken(env.acme)+".gif", apple); res.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD pixel: %d, %d bytes", res.StatusCode, len(body))
	}

	// Forged, altered, cut and other-kind tokens: 404, nothing recorded.
	open := env.signer.OpenToken(env.acme)
	altered := []byte(open)
	altered[20] = map[bool]byte{true: 'b', false: 'a'}[altered[20] == 'a']
	click := env.signer.ClickToken(env.acme, "https://acme.example/offer?x=1&y=2")
	cs, _ := correlate.New(correlate.Keys{Sign: []byte("another-key-another-key-another-key")})
	other, _ := sender.NewTrackingSigner(correlate.Keys{Sign: []byte("another-key-another-key-another-key")})
	corrKey, _, _, _ := loadSigningKeys(secret{}, cfg.Data, os.Getenv)
	ours, _ := correlate.New(correlate.Keys(corrKey))
	for _, path := range []string{
		"/t/o/" + other.OpenToken(env.acme) + ".gif", // another key: forged
		"/t/o/" + string(altered) + ".gif",           // one character changed
		"/t/o/" + open[:len(open)-1] + ".gif",        // truncated
		"/t/o/" + open,                               // no .gif
		"/t/o/" + env.signer.UnsubscribeToken(env.acme) + ".gif",
		"/t/o/" + ours.Token(env.acme) + ".gif", // a correlation token of ours
		"/t/o/" + cs.Token(env.acme) + ".gif",
		"/t/c/" + open + ".gif", // an open token at /t/c/
		"/t/c/" + open,
		"/t/c/" + click[:len(click)-2],
		"/t/c/" + other.ClickToken(env.acme, "https://evil.example/"),
		"/t/u/" + open, // an open token at /t/u/
		"/t/u/" + ours.Token(env.acme),
		"/t/x/" + open,
	} {
		if res, _ := env.get("GET", path, apple); res.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, res.StatusCode)
		}
	}
	if res, _ := env.postForm("/t/u/"+ours.Token(env.acme), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); res.StatusCode != http.StatusNotFound {
		t.Errorf("one-click POST with a correlation token: %d, want 404", res.StatusCode)
	}

	// A click: 302 to the signed URL exactly.
	res, _ = env.get("GET", "/t/c/"+click, map[string]string{"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"})
	if res.StatusCode != http.StatusFound || res.Header.Get("Location") != "https://acme.example/offer?x=1&y=2" || res.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("click: %d Location %q Cache-Control %q", res.StatusCode, res.Header.Get("Location"), res.Header.Get("Cache-Control"))
	}

	// The other account's message: its pixel, fetched twice within a
	// second by the same client, is one event of globex's.
	gopen := "/t/o/" + env.signer.OpenToken(env.globex) + ".gif"
	thunderbird := map[string]string{"User-Agent": "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.9.0", "X-Forwarded-For": "203.0.113.5"}
	for {
		before := time.Now().Unix()
		env.get("GET", gopen, thunderbird)
		env.get("GET", gopen, thunderbird)
		if time.Now().Unix() == before {
			break
		}
		// The two hits straddled a second: two events, legitimately; the
		// counts below allow for it only through this retry.
		t.Log("hits straddled a second; again")
		time.Sleep(100 * time.Millisecond)
		thunderbird["X-Forwarded-For"] = "203.0.113.6"
	}

	// The unsubscribe page: it names the sender domain and display name,
	// and GET unsubscribes nobody.
	unsub := "/t/u/" + env.signer.UnsubscribeToken(env.acme)
	res, body = env.get("GET", unsub, nil)
	page := string(body)
	if res.StatusCode != 200 || !strings.Contains(page, acmeDomain) || !strings.Contains(page, "Acme Newsletters") ||
		!strings.Contains(page, `method="post"`) || !strings.Contains(page, `name="viewport"`) || strings.Contains(page, "<script") ||
		strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Errorf("unsubscribe page: %d\n%s", res.StatusCode, page)
	}
	if res.Header.Get("Cache-Control") != "no-store" || !strings.Contains(res.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Errorf("unsubscribe page headers: %v", res.Header)
	}
	if r := check(t, env.base, "acme-key", acmeDomain, acmeRcpt)[0]; !r.Allowed {
		t.Fatalf("after GET of the unsubscribe page: %+v; want allowed", r)
	}
	if res, body := env.get("GET", "/t/u/"+other.UnsubscribeToken(env.acme), nil); res.StatusCode != 404 || !strings.Contains(string(body), "not valid") {
		t.Errorf("forged unsubscribe page: %d %s", res.StatusCode, body)
	}

	// RFC 8058 one-click POST: a short 200, then the list says so.
	res, out := env.postForm(unsub, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")
	if res.StatusCode != 200 {
		t.Fatalf("one-click POST: %d %s", res.StatusCode, out)
	}
	if r := waitUnsubscribed(t, env.base, "acme-key", acmeDomain, acmeRcpt); r.Allowed || r.List != "unsubscribe" && r.Reason != "unsubscribed" {
		t.Errorf("after one-click: %+v; want unsubscribed", r)
	}
	// The other sender domain of the same account is not affected.
	if r := check(t, env.base, "acme-key", "other.acme.example", acmeRcpt)[0]; !r.Allowed {
		t.Errorf("another sender domain after one-click: %+v; want allowed", r)
	}

	// The page's form (multipart here, as a browser may send it): the
	// confirmation page, and globex's list.
	var mp bytes.Buffer
	mp.WriteString("--XyZ\r\nContent-Disposition: form-data; name=\"unsubscribe\"\r\n\r\npage\r\n--XyZ--\r\n")
	res, out = env.postForm("/t/u/"+env.signer.UnsubscribeToken(env.globex), "multipart/form-data; boundary=XyZ", mp.String())
	if res.StatusCode != 200 || !strings.Contains(out, "You are unsubscribed") || !strings.Contains(out, globexDomain) || !strings.Contains(out, ">globex<") {
		t.Errorf("form POST: %d\n%s", res.StatusCode, out)
	}
	if r := waitUnsubscribed(t, env.base, "globex-key", globexDomain, globexRcpt); r.Allowed {
		t.Errorf("after the form: %+v; want unsubscribed", r)
	}
	// A POST of neither body: 400, nothing recorded.
	if res, _ := env.postForm(unsub, "application/x-www-form-urlencoded", "foo=bar"); res.StatusCode != http.StatusBadRequest {
		t.Errorf("POST without the one-click body: %d, want 400", res.StatusCode)
	}

	c := waitAccounted(t, env.base)
	if c["hits"] != 6 || c["events"] != 5 || c["duplicates"] != 1 || c["dropped"] != 0 {
		t.Errorf("counters %v; want 6 hits (an acme open, a click, two globex opens, two unsubscribes), 5 events, 1 duplicate", c)
	}
	env.stop()

	got := storedTrackingEvents(t, cfg)
	want := []storedHit{
		{"acme", "clicked", "click", acmeDomain, "spring", "192.0.2.10", "<m1@acme.example>", acmeRcpt,
			"Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
			"127.0.0.0/24", "https://acme.example/offer?x=1&y=2", "", "false "},
		{"acme", "opened", "pixel", acmeDomain, "spring", "192.0.2.10", "<m1@acme.example>", acmeRcpt, "Mozilla/5.0", "172.224.224.0/24", "", "", "true apple_mpp"},
		{"globex", "opened", "pixel", globexDomain, "launch", "192.0.2.20", "<m2@globex.example>", globexRcpt, thunderbird["User-Agent"], "203.0.113.0/24", "", "", "false "},
		{"acme", "unsubscribed", "one-click", acmeDomain, "spring", "192.0.2.10", "<m1@acme.example>", acmeRcpt, "Go-http-client/1.1", "127.0.0.0/24", "", "one-click", "null"},
		{"globex", "unsubscribed", "page", globexDomain, "launch", "192.0.2.20", "<m2@globex.example>", globexRcpt, "Go-http-client/1.1", "127.0.0.0/24", "", "page", "null"},
	}
	if len(got) != len(want) {
		t.Fatalf("stored %d tracking events, want %d:\n%+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

// TestTrackingListen: with tracking_listen the endpoints are served there
// and not on listen; a valid token of a send the store does not know gets
// the GIF all the same, and is counted, not recorded.
func TestTrackingListen(t *testing.T) {
	cfg := twoAccounts(t, "")
	cfg.Listen = "127.0.0.1:0"
	cfg.TrackingListen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	pr, pw := io.Pipe()
	go func() { done <- serve(ctx, cfg, slog.New(slog.DiscardHandler), pw); pw.Close() }()
	addrs := make(chan [2]string, 1)
	go func() {
		var api, tr string
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			line := sc.Text()
			if a, ok := strings.CutPrefix(line, "tracking endpoints (/t/o, /t/c, /t/u) on "); ok {
				tr = a
			}
			if rest, ok := strings.CutPrefix(line, "repute serve listening on "); ok {
				api, _, _ = strings.Cut(rest, " ")
			}
			if api != "" && tr != "" {
				addrs <- [2]string{api, tr}
				api = ""
			}
		}
	}()
	var apiBase, trackBase string
	select {
	case a := <-addrs:
		apiBase, trackBase = a[0], a[1]
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no tracking listener announced")
	}
	ks, _, _, err := loadSigningKeys(secret{}, cfg.Data, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := sender.NewTrackingSigner(correlate.Keys(ks))
	pixel := "/t/o/" + signer.OpenToken(correlate.NewRef()) + ".gif"
	get := func(u string) (int, []byte) {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	if status, b := get(trackBase + pixel); status != 200 || !bytes.Equal(b, track.GIF) {
		t.Errorf("pixel of an unknown send on tracking_listen: %d %q; want 200 and the GIF", status, b)
	}
	if status, _ := get(apiBase + pixel); status != http.StatusNotFound {
		t.Errorf("pixel on listen with tracking_listen set: %d, want 404", status)
	}
	if status, _ := get(trackBase + "/healthz"); status != http.StatusNotFound {
		t.Errorf("the API on tracking_listen: %d, want 404", status)
	}
	c := waitAccounted(t, apiBase)
	if c["hits"] != 1 || c["unknown"] != 1 || c["dropped{reason=unknown_send}"] != 1 || c["events"] != 0 {
		t.Errorf("counters %v; want 1 hit, unknown and dropped as unknown_send", c)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestUnsubscribeMailtoAndOneClick: a mailto unsubscribe (a message to
// unsubscribe+TOKEN@bounce domain, posted to /v1/feedback as a mailbox
// reader would hand it over) and an RFC 8058 one-click POST end in the same
// state: an unsubscribed event of the send's account, sender domain and
// recipient, and the same kind of entry of the unsubscribe list.
func TestUnsubscribeMailtoAndOneClick(t *testing.T) {
	cfg := twoAccounts(t, "")
	env := newTrackEnv(t, cfg)
	// A second send of acme's, to another reader, for the mailto way.
	ks, _, _, _ := loadSigningKeys(secret{}, cfg.Data, os.Getenv)
	cs, err := correlate.New(correlate.Keys(ks))
	if err != nil {
		t.Fatal(err)
	}
	mailRef := correlate.NewRef()
	send := metrics.Event{Time: time.Now().UTC().Add(-time.Hour).Truncate(time.Second), Kind: metrics.KindSent, Source: "sender",
		SourceRef: mailRef.String(), Account: "acme", SenderDomain: acmeDomain, Campaign: "spring", MessageID: "<m3@acme.example>",
		Recipient: "other.reader@icloud.com"}
	body, _ := json.Marshal([]metrics.Event{send})
	if status, out := post(t, env.base+"/v1/events?wait=visible", "acme-key", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST send: %d %s", status, out)
	}
	to, err := correlate.VERPAddress("unsubscribe", cs.Token(mailRef), "bounces.acme.example")
	if err != nil {
		t.Fatal(err)
	}
	msg := "From: Other Reader <other.reader@icloud.com>\nTo: <" + to + ">\nSubject: unsubscribe\nDate: " +
		time.Now().UTC().Format(time.RFC1123Z) + "\nMessage-ID: <unsub-mailto-1@icloud.com>\n\nunsubscribe\n"
	if status, out := post(t, env.base+"/v1/feedback", "acme-key", "message/rfc822", []byte(msg)); status != http.StatusAccepted {
		t.Fatalf("POST /v1/feedback (mailto unsubscribe): %d %s", status, out)
	}
	if res, out := env.postForm("/t/u/"+env.signer.UnsubscribeToken(env.acme), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); res.StatusCode != 200 {
		t.Fatalf("one-click: %d %s", res.StatusCode, out)
	}
	byMail := waitUnsubscribed(t, env.base, "acme-key", acmeDomain, "other.reader@icloud.com")
	byClick := waitUnsubscribed(t, env.base, "acme-key", acmeDomain, acmeRcpt)
	if byMail.Allowed || byClick.Allowed || byMail.List != byClick.List || byMail.Reason != byClick.Reason {
		t.Errorf("mailto: %+v\none-click: %+v\nwant both unsubscribed alike", byMail, byClick)
	}
	env.stop()
	var got []string
	for _, h := range storedTrackingEvents(t, cfg) {
		got = append(got, h.Kind+" "+h.Account+" "+h.Domain+" "+h.Recipient)
	}
	want := "unsubscribed acme " + acmeDomain + " other.reader@icloud.com, unsubscribed acme " + acmeDomain + " " + acmeRcpt
	if g := strings.Join(got, ", "); g != want {
		t.Errorf("stored: %s\nwant %s", g, want)
	}
}

// TestTrackingConfig: tracking_listen is a key, a flag and
// REPUTE_TRACKING_LISTEN; trusted_proxies and display_name are file keys;
// a bad prefix stops the start naming it.
func TestTrackingConfig(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/repute.yaml"
	os.WriteFile(file, []byte("tracking_listen: 127.0.0.1:9001\ntrusted_proxies: [10.0.0.0/8, 192.0.2.7]\naccounts:\n  - name: acme\n    display_name: Acme Newsletters\n"), 0o600)
	cfg, err := loadServeConfig([]string{"--config", file}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TrackingListen != "127.0.0.1:9001" || len(cfg.TrustedProxies) != 2 || cfg.Accounts[0].DisplayName != "Acme Newsletters" {
		t.Errorf("config: tracking_listen %q, trusted_proxies %v, accounts %+v", cfg.TrackingListen, cfg.TrustedProxies, cfg.Accounts)
	}
	env := func(k string) string {
		return map[string]string{"REPUTE_TRACKING_LISTEN": "127.0.0.1:9002"}[k]
	}
	if cfg, err = loadServeConfig([]string{"--config", file}, env, io.Discard); err != nil || cfg.TrackingListen != "127.0.0.1:9002" {
		t.Errorf("REPUTE_TRACKING_LISTEN: %q %v", cfg.TrackingListen, err)
	}
	if cfg, err = loadServeConfig([]string{"--config", file, "--tracking-listen", "127.0.0.1:9003"}, env, io.Discard); err != nil || cfg.TrackingListen != "127.0.0.1:9003" {
		t.Errorf("--tracking-listen: %q %v", cfg.TrackingListen, err)
	}
	ps, err := parseTrustedProxies([]string{"10.0.0.0/8", "192.0.2.7", "2001:db8::/32"})
	if err != nil || len(ps) != 3 || ps[1].String() != "192.0.2.7/32" {
		t.Errorf("parseTrustedProxies: %v %v", ps, err)
	}
	os.WriteFile(file, []byte("trusted_proxies: [10.0.0.0/33]\n"), 0o600)
	if _, err := loadServeConfig([]string{"--config", file}, func(string) string { return "" }, io.Discard); err == nil || !strings.Contains(err.Error(), "trusted_proxies") {
		t.Errorf("a bad prefix: %v", err)
	}
}
