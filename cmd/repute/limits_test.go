package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/api"
	"repute/correlate"
	"repute/metrics"
	"repute/sender"
	"repute/track"
)

// lockedBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestServeLimits runs `repute serve` as a child with small limits and
// checks, through HTTP only: the lock-out of an address after failed
// authentications, which a valid key from the same address passes; an
// account's own rate (429, Retry-After, the limit named); the pixel over
// its per-address limit answered but not recorded; the stats cap
// (truncated: true); /healthz, /readyz and /metrics answering all along;
// and no key in the child's log, the answers or /metrics.
func TestServeLimits(t *testing.T) {
	const (
		adminSecret = "adm_Zq9-limits-test-secret"
		acmeSecret  = "rk_acme-limits-test-secret"
		badKey      = "rk_guessed-limits-test-key"
	)
	data := t.TempDir()
	cfgFile := filepath.Join(t.TempDir(), "repute.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf(`log_level: info
max_result_rows: 2
rate_limits:
  pixel: {rate: 0.001, burst: 1}
auth_lockout: {failures: 5, window: 1m, duration: 15m}
accounts:
  - name: acme
    keys: [%q]
    rate_limit: {rate: 0.001, burst: 4}
  - name: globex
    keys: [%q]
`, api.HashKey(acmeSecret), api.HashKey("rk_globex-limits-test-secret"))), 0o600)

	cmd := childCommand("serve", "--config", cfgFile, "--listen", "127.0.0.1:0", "--data", data)
	cmd.Env = append(cmd.Env, "REPUTE_ADMIN_KEY="+adminSecret) // the last one wins
	var logs lockedBuffer
	cmd.Stderr = &logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	_, rest, ok := strings.Cut(line, "listening on ")
	if err != nil || !ok {
		t.Fatalf("child banner %q: %v\n%s", line, err, logs.String())
	}
	go io.Copy(io.Discard, stdout)
	base := strings.Fields(rest)[0]

	var answers strings.Builder
	get := func(path, key string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		answers.Write(b)
		return res, string(b)
	}
	// /readyz may say "not ready" (503, loading) on a busy machine, never
	// that a limit was hit.
	alive := func(when string) {
		t.Helper()
		for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
			if res, body := get(p, ""); res.StatusCode != 200 && (p != "/readyz" || res.StatusCode != http.StatusServiceUnavailable) {
				t.Errorf("%s: %s answers %d %s", when, p, res.StatusCode, body)
			}
		}
	}
	alive("at start")

	// A send of acme's, for the pixel, and events of three accounts.
	ref := correlate.NewRef()
	events := append(benchEvents(300, testDay), metrics.Event{Time: time.Now().UTC().Add(-time.Hour).Truncate(time.Second),
		Kind: metrics.KindSent, Source: "sender", SourceRef: ref.String(), Account: "acme", SenderDomain: "news.acme.example",
		MessageID: "<limits@acme.example>", Recipient: "reader@example.com"})
	body, _ := json.Marshal(events)
	if status, out := post(t, base+"/v1/events?wait=visible", adminSecret, "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST events: %d %s", status, out)
	}

	// The lock-out: 5 failures from 127.0.0.1, then unknown keys get
	// 429 while acme's key still passes.
	for i := range 5 {
		if res, _ := get("/v1/stats", badKey); res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, res.StatusCode)
		}
	}
	res, out := get("/v1/stats", badKey)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "900" || !strings.Contains(out, `"limit":"auth_lockout"`) {
		t.Errorf("an unknown key from the locked-out address: %d Retry-After %q %s", res.StatusCode, res.Header.Get("Retry-After"), out)
	}
	if res, out := get("/v1/stats", acmeSecret); res.StatusCode != 200 {
		t.Errorf("acme's key from the locked-out address: %d %s, want 200", res.StatusCode, out)
	}
	alive("locked out")

	// acme's own bucket: 4 at once (one taken above), then 429.
	for i := range 3 {
		if res, out := get("/v1/stats", acmeSecret); res.StatusCode != 200 {
			t.Fatalf("acme request %d of its burst: %d %s", i+2, res.StatusCode, out)
		}
	}
	res, out = get("/v1/stats", acmeSecret)
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" || !strings.Contains(out, `"limit":"key"`) {
		t.Errorf("acme over its rate: %d Retry-After %q %s; want 429 naming the key limit", res.StatusCode, res.Header.Get("Retry-After"), out)
	}
	alive("acme limited")

	// The stats cap: three accounts, max_result_rows 2.
	res, out = get("/v1/stats?"+dayQuery()+"&group_by=account", adminSecret)
	var st struct {
		Groups    []json.RawMessage `json:"groups"`
		Truncated bool              `json:"truncated"`
		Totals    metrics.Counts    `json:"totals"`
	}
	json.Unmarshal([]byte(out), &st)
	if res.StatusCode != 200 || len(st.Groups) != 2 || !st.Truncated || st.Totals != expectedCounts(events[:300], "") {
		t.Errorf("group_by=account over max_result_rows 2: %d, %d groups, truncated %v, totals %+v; want 2 groups, truncated, all the totals",
			res.StatusCode, len(st.Groups), st.Truncated, st.Totals)
	}

	// The pixel, 1 a burst from one address: the second still gets the
	// GIF, and is not recorded.
	ks, _, _, err := loadSigningKeys(secret{}, data, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := sender.NewTrackingSigner(correlate.Keys(ks))
	for i := range 2 {
		if res, b := get("/t/o/"+signer.OpenToken(ref)+".gif", ""); res.StatusCode != 200 || b != string(track.GIF) {
			t.Fatalf("pixel %d: %d, want 200 and the GIF", i+1, res.StatusCode)
		}
	}
	c := waitAccounted(t, base)
	if c["events"] != 1 || c["dropped{reason=rate_limited}"] != 1 {
		t.Errorf("tracking counters %v; want 1 event, 1 dropped as rate_limited", c)
	}

	_, metricsText := get("/metrics", "")
	for _, want := range []string{`repute_auth_failures_total{reason="unknown"} 5`, `repute_auth_failures_total{reason="locked_out"} 1`,
		`repute_rate_limited_total{limit="key"} 1`, `repute_rate_limited_total{limit="pixel"} 1`, `repute_auth_lockouts_total 1`} {
		if !strings.Contains(metricsText, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	log := logs.String()
	if !strings.Contains(log, `"msg":"address locked out`) || !strings.Contains(log, `"remote":"127.0.0.1"`) {
		t.Errorf("the lock-out is not logged with its address:\n%s", log)
	}
	for what, text := range map[string]string{"log": log, "answers": answers.String()} {
		for _, key := range []string{adminSecret, acmeSecret, badKey, strings.TrimPrefix(api.HashKey(badKey), "sha256:")} {
			if strings.Contains(text, key) {
				t.Errorf("the %s hold %q", what, key)
			}
		}
	}
}
