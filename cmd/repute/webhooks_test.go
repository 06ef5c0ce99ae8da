package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/api"
	"repute/metrics"
	"repute/suppress/webhook"
)

// TestWebhookThroughServe: a complaint and a re-subscription reach the
// account's webhook in order, signed, after two failed attempts; the
// deliveries endpoint shows them; a restart delivers nothing again.
func TestWebhookThroughServe(t *testing.T) {
	// Restored after the servers stop (cleanups run last first).
	saved, savedSettle := webhookMinBackoff, webhookSettle
	t.Cleanup(func() { webhookMinBackoff, webhookSettle = saved, savedSettle })
	webhookMinBackoff, webhookSettle = 50*time.Millisecond, 200*time.Millisecond

	secret := []byte("hook-secret")
	type delivery struct {
		id      string
		payload webhook.Payload
	}
	var (
		mu       sync.Mutex
		got      []delivery
		requests int
		bad      []string
	)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		if err := webhook.Verify(secret, r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			bad = append(bad, err.Error())
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			bad = append(bad, "content type "+ct)
		}
		if requests <= 2 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		var p webhook.Payload
		if err := json.Unmarshal(body, &p); err != nil {
			bad = append(bad, err.Error())
		}
		got = append(got, delivery{r.Header.Get(webhook.HeaderDelivery), p})
	}))
	defer recv.Close()
	received := func(n int) []delivery {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			out := append([]delivery{}, got...)
			mu.Unlock()
			if len(out) >= n || time.Now().After(deadline) {
				return out
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	cfg := twoAccounts(t, "")
	cfg.Accounts[0].WebhookURL = recv.URL + "/hook"
	cfg.Accounts[0].webhookSecret = string(secret)
	base, stop := runApp(t, cfg)

	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	body, _ := json.Marshal([]metrics.Event{{EventID: "c1", Time: at, Kind: metrics.KindComplained, Account: "acme",
		SenderDomain: "news.acme.example", Recipient: "angry@yahoo.example", FeedbackType: "abuse"}})
	if status, out := post(t, base+"/v1/events?wait=visible", "admin", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST events: %d %s", status, out)
	}
	check(t, base, "acme-key", "news.acme.example", "angry@yahoo.example") // waits for the lists to load
	resub := func(addr string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, out := do(t, "DELETE", base+"/v1/unsubscribes?sender_domain=news.acme.example&recipient="+addr+"&reason=came+back", "acme-key")
			if status == http.StatusOK {
				return
			}
			if status != http.StatusNotFound || time.Now().After(deadline) {
				t.Fatalf("re-subscribing %s: %d %s", addr, status, out)
			}
			time.Sleep(20 * time.Millisecond) // the complaint is not yet observed
		}
	}
	resub("angry@yahoo.example")

	d := received(2)
	var actions []string
	for _, x := range d {
		actions = append(actions, x.payload.Action+" "+x.payload.Address)
		if x.id != x.payload.ID {
			t.Errorf("X-Repute-Delivery %q, body id %q", x.id, x.payload.ID)
		}
	}
	if s := strings.Join(actions, ", "); s != "unsubscribed angry@yahoo.example, resubscribed angry@yahoo.example" {
		t.Fatalf("delivered: %s", s)
	}
	if d[0].payload.EventID != "c1" || d[0].payload.SenderDomain != "news.acme.example" || d[1].payload.Reason != "came back" {
		t.Errorf("payloads: %+v", d)
	}
	// The delivery ids are the change ids of the log.
	status, out := do(t, "GET", base+"/v1/audit?account=acme", "admin")
	var audit struct {
		Changes []struct {
			ID     string `json:"id"`
			Action string `json:"action"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(out), &audit); status != http.StatusOK || err != nil {
		t.Fatalf("audit: %d %s", status, out)
	}
	var ids []string
	for _, c := range audit.Changes {
		if c.Action == "unsubscribed" || c.Action == "resubscribed" {
			ids = append(ids, c.ID)
		}
	}
	if len(ids) != 2 || ids[0] != d[0].id || ids[1] != d[1].id {
		t.Errorf("change ids %v, delivery ids %q %q", ids, d[0].id, d[1].id)
	}

	// The deliveries endpoint: two failures, then the two deliveries.
	var st struct {
		Accounts []struct {
			Account string `json:"account"`
			URL     string `json:"url"`
			Cursor  struct {
				ID string `json:"id"`
			} `json:"cursor"`
			Pending  int `json:"pending"`
			Attempts []struct {
				ChangeID  string     `json:"change_id"`
				Attempt   int        `json:"attempt"`
				Status    int        `json:"status"`
				Error     string     `json:"error"`
				NextRetry *time.Time `json:"next_retry"`
			} `json:"attempts"`
		} `json:"accounts"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, out = do(t, "GET", base+"/v1/webhooks/deliveries", "acme-key")
		if err := json.Unmarshal([]byte(out), &st); status != http.StatusOK || err != nil || len(st.Accounts) != 1 {
			t.Fatalf("deliveries: %d %s", status, out)
		}
		if st.Accounts[0].Cursor.ID == d[1].id || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the cursor moves just after the answer
	}
	a := st.Accounts[0]
	if a.Account != "acme" || a.URL != recv.URL+"/hook" || a.Cursor.ID != d[1].id || a.Pending != 0 || len(a.Attempts) != 4 {
		t.Fatalf("deliveries: %s", out)
	}
	for i, want := range []struct {
		attempt, status int
		failed          bool
	}{{1, 500, true}, {2, 500, true}, {3, 200, false}, {1, 200, false}} {
		x := a.Attempts[i]
		if x.Attempt != want.attempt || x.Status != want.status || (x.Error != "") != want.failed || (x.NextRetry != nil) != want.failed {
			t.Errorf("attempt %d: %+v, want %+v", i, x, want)
		}
	}
	if a.Attempts[0].ChangeID != d[0].id || a.Attempts[3].ChangeID != d[1].id {
		t.Errorf("attempts' change ids: %s", out)
	}
	if status, out := do(t, "GET", base+"/v1/webhooks/deliveries", "globex-key"); status != http.StatusOK || out != "{\"accounts\":[]}\n" {
		t.Errorf("globex, no webhook: %d %q", status, out)
	}
	if status, _ := do(t, "GET", base+"/v1/webhooks/deliveries?account=acme", "globex-key"); status != http.StatusForbidden {
		t.Errorf("globex reading acme's: %d, want 403", status)
	}
	if status, out := do(t, "GET", base+"/v1/webhooks/deliveries?account=acme", "admin"); status != http.StatusOK || !strings.Contains(out, `"account":"acme"`) {
		t.Errorf("admin: %d %s", status, out)
	}

	// A restart resumes after the cursor: a new change is delivered, the
	// old ones are not again.
	stop()
	base, _ = runApp(t, cfg)
	check(t, base, "acme-key", "news.acme.example", "x@y.example") // waits for the lists to load
	if status, out := post(t, base+"/v1/unsubscribes", "acme-key", "application/json",
		[]byte(`{"sender_domain": "news.acme.example", "recipient": "asked@gmail.example", "reason": "phone call"}`)); status != http.StatusOK {
		t.Fatalf("POST unsubscribes: %d %s", status, out)
	}
	received(3)
	// A change about an old event, written after the others: the log's
	// order by time puts it before the cursor, the order written after.
	old, _ := json.Marshal([]metrics.Event{{EventID: "u-old", Time: at.Add(-30 * 24 * time.Hour), Kind: metrics.KindUnsubscribed,
		Account: "acme", SenderDomain: "news.acme.example", Recipient: "late@gmail.example"}})
	if status, out := post(t, base+"/v1/events?wait=visible", "admin", "application/json", old); status != http.StatusAccepted {
		t.Fatalf("POST events: %d %s", status, out)
	}
	received(4)
	time.Sleep(300 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 4 || got[2].payload.Action != "unsubscribed" || got[2].payload.Address != "asked@gmail.example" ||
		got[3].payload.Address != "late@gmail.example" || got[3].payload.EventID != "u-old" {
		t.Errorf("after a restart, delivered %+v; want only the new change, then the late one", got[2:])
	}
	if len(bad) > 0 {
		t.Errorf("the receiver refused: %v", bad)
	}
}

func TestWebhookConfig(t *testing.T) {
	dir := t.TempDir()
	key := `["sha256:` + strings.Repeat("ab", 32) + `"]`
	load := func(account string, env map[string]string) (serveConfig, error) {
		file := filepath.Join(dir, "c.yaml")
		os.WriteFile(file, []byte("accounts:\n  - name: acme\n    keys: "+key+"\n"+account), 0o600)
		return loadServeConfig([]string{"--config", file}, func(k string) string { return env[k] }, io.Discard)
	}
	env := map[string]string{"HOOK": "s3cret"}
	cfg, err := load("    webhook_url: https://hooks.acme.example/repute\n    webhook_secret_env: HOOK\n", env)
	if err != nil {
		t.Fatal(err)
	}
	if a := cfg.Accounts[0]; a.WebhookURL != "https://hooks.acme.example/repute" || a.webhookSecret != "s3cret" {
		t.Errorf("account: %+v", a)
	}
	if _, err := load("    webhook_url: http://127.0.0.1:9999/hook\n    webhook_secret_env: HOOK\n", env); err != nil {
		t.Errorf("plain http to loopback: %v", err)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"    webhook_url: http://hooks.acme.example/x\n    webhook_secret_env: HOOK\n", "https is required"},
		{"    webhook_url: ftp://hooks.acme.example/x\n    webhook_secret_env: HOOK\n", "http:// or https://"},
		{"    webhook_url: /relative\n    webhook_secret_env: HOOK\n", "http:// or https://"},
		{"    webhook_url: https://hooks.acme.example/x\n", `account "acme": webhook_url needs a secret`},
		{"    webhook_secret_env: HOOK\n", "without webhook_url"},
		{"    webhook_url: https://hooks.acme.example/x\n    webhook_secret_env: NOPE\n", "NOPE is not set"},
		{"    webhook_url: https://hooks.acme.example/x\n    webhook_secret: plain\n", "never a plain value"},
	} {
		if _, err := load(tt.yaml, env); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v; want an error naming %q", tt.yaml, err, tt.want)
		}
	}
}

func TestWebhookCursorFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "webhooks", "acme.cursor")
	if cur, err := readWebhookCursor(path); err != nil || !cur.Time.IsZero() || cur.ID != "" {
		t.Fatalf("missing file: %+v %v", cur, err)
	}
	want := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	logged := want.Add(time.Hour + 7)
	for _, id := range []string{"a", "b"} {
		if err := writeWebhookCursor(path, api.WebhookCursor{Time: want, Logged: logged, ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	cur, err := readWebhookCursor(path)
	if err != nil || !cur.Time.Equal(want) || !cur.Logged.Equal(logged) || cur.ID != "b" {
		t.Errorf("read back %+v %v", cur, err)
	}
	// A file from before the cursor followed the order written: its time
	// stands in, as the stores take old changes as logged at their time.
	if err := os.WriteFile(path, []byte(`{"time_ns":1767323045000000006,"id":"c"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if cur, err := readWebhookCursor(path); err != nil || !cur.Logged.Equal(want) || cur.ID != "c" {
		t.Errorf("an old file read back %+v %v", cur, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
}
