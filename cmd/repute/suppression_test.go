package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"repute/api"
	"repute/internal/testenv"
	"repute/metrics"
)

// runApp starts repute serve in process and returns its base URL and a
// stop that shuts it down cleanly.
func runApp(t *testing.T, cfg serveConfig) (string, func()) {
	t.Helper()
	base, _, stop := runSendingApp(t, cfg)
	return base, stop
}

// twoAccounts is a serve configuration with the admin key "admin" and the
// accounts acme and globex (keys "acme-key", "globex-key"), on DuckDB in a
// temporary data directory or, for backend "clickhouse", on a test
// database of its own.
func twoAccounts(t *testing.T, backend string) serveConfig {
	t.Helper()
	cfg := defaultServeConfig()
	cfg.Data = t.TempDir()
	cfg.AdminKey = "admin"
	cfg.Accounts = []accountConfig{{Name: "acme", Keys: []string{api.HashKey("acme-key")}}, {Name: "globex", Keys: []string{api.HashKey("globex-key")}}}
	if backend == "clickhouse" {
		cfg.ClickHouse, cfg.ClickHouseDatabase = testenv.ClickHouseDatabase(t)
	}
	return cfg
}

type checkResult struct {
	Recipient string `json:"recipient"`
	Allowed   bool   `json:"allowed"`
	List      string `json:"list"`
	Reason    string `json:"reason"`
	Since     string `json:"since"`
	Until     string `json:"until"`
	EventID   string `json:"event_id"`
	Error     string `json:"error"`
}

func check(t *testing.T, base, key, senderDomain string, recipients ...string) []checkResult {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"sender_domain": senderDomain, "recipients": recipients})
	var status int
	var out string
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, out = post(t, base+"/v1/suppressions/check", key, "application/json", body)
		if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // the lists are loading
	}
	if status != http.StatusOK {
		t.Fatalf("check: %d %s", status, out)
	}
	var res struct {
		Results []checkResult `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Results) != len(recipients) {
		t.Fatalf("check answer %s (%v)", out, err)
	}
	return res.Results
}

// TestSuppressionThroughServe is issue 10's path through a real repute
// serve, on both stores: bounces and complaints posted as events reach the
// lists once stored; the check answers in order, by scope and trust; and a
// restart rebuilds the same answers from the store's log.
func TestSuppressionThroughServe(t *testing.T) {
	t.Run("duckdb", func(t *testing.T) { testSuppressionThroughServe(t, "") })
	t.Run("clickhouse", func(t *testing.T) { testSuppressionThroughServe(t, "clickhouse") })
}

func testSuppressionThroughServe(t *testing.T, backend string) {
	cfg := twoAccounts(t, backend)
	base, stop := runApp(t, cfg)

	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	bounce := func(id, account, rcpt, reason, status string) metrics.Event {
		return metrics.Event{EventID: id, Time: at, Kind: metrics.KindBounced, Account: account, SenderDomain: "news." + account + ".example",
			Recipient: rcpt, BounceType: metrics.BounceHard, Reason: reason, Status: status}
	}
	postEvents := func(key string, events ...metrics.Event) {
		t.Helper()
		body, _ := json.Marshal(events)
		if status, out := post(t, base+"/v1/events?wait=visible", key, "application/json", body); status != http.StatusAccepted {
			t.Fatalf("POST events: %d %s", status, out)
		}
	}
	postEvents("admin",
		bounce("b1", "acme", "gone@gmail.example", "userunknown", "5.1.1"),
		bounce("b2", "acme", "blocked-us@gmail.example", "blocked", "5.7.1"), // a reputation refusal: the sender's problem
		metrics.Event{EventID: "c1", Time: at, Kind: metrics.KindComplained, Account: "acme", SenderDomain: "news.acme.example",
			Recipient: "angry@yahoo.example", FeedbackType: "abuse"},
	)
	postEvents("globex-key", bounce("g1", "globex", "theirs@outlook.example", "userunknown", "5.1.1"))

	answers := func() []checkResult {
		return check(t, base, "acme-key", "news.acme.example",
			"gone@gmail.example", "Gone@GMAIL.example ", "ok@gmail.example", "blocked-us@gmail.example",
			"angry@yahoo.example", "theirs@outlook.example", "not an address")
	}
	got := answers()
	wantUntil := at.Add(14 * 24 * time.Hour).Format(time.RFC3339)
	if r := got[0]; r.Allowed || r.List != "blocklist" || r.Reason != "userunknown" || r.Until != wantUntil || r.EventID != "b1" {
		t.Errorf("a hard bounce: %+v; want blocklisted until %s naming b1", r, wantUntil)
	}
	if r := got[1]; r.Allowed || r.Recipient != "Gone@GMAIL.example " {
		t.Errorf("the same address written otherwise: %+v", r)
	}
	if !got[2].Allowed || !got[3].Allowed {
		t.Errorf("an unknown address and a reputation refusal must pass: %+v, %+v", got[2], got[3])
	}
	if r := got[4]; r.Allowed || r.List != "unsubscribe" || r.Until != "" {
		t.Errorf("a complaint: %+v; want on the unsubscribe list, no expiry", r)
	}
	if !got[5].Allowed {
		t.Errorf("a bounce posted with globex's key must not suppress for acme: %+v", got[5])
	}
	if got[6].Allowed || got[6].Error == "" {
		t.Errorf("not an address: %+v", got[6])
	}
	// Another sender domain of acme: the complaint does not apply.
	if r := check(t, base, "acme-key", "offers.acme.example", "angry@yahoo.example"); !r[0].Allowed {
		t.Errorf("a complaint unsubscribes from its sender domain only: %+v", r[0])
	}
	// globex sees the shared entry without acme's event id, and its own.
	g := check(t, base, "globex-key", "news.globex.example", "gone@gmail.example", "theirs@outlook.example", "angry@yahoo.example")
	if g[0].Allowed || g[0].EventID != "" {
		t.Errorf("globex on the shared entry: %+v; want refused, without acme's event id", g[0])
	}
	if g[1].Allowed || g[1].EventID != "g1" || !g[2].Allowed {
		t.Errorf("globex: own entry %+v, acme's unsubscribe %+v", g[1], g[2])
	}

	// Lifts: globex may not lift the entry acme's sends caused (403 says
	// why), the admin may; a reason is required.
	if status, out := do(t, "DELETE", base+"/v1/blocklist/gone@gmail.example?reason=mine", "globex-key"); status != http.StatusForbidden ||
		!strings.Contains(out, "another account") {
		t.Errorf("globex lifting acme's entry: %d %s; want 403 saying why", status, out)
	}
	if status, out := do(t, "DELETE", base+"/v1/blocklist/gone@gmail.example", "admin"); status != http.StatusBadRequest {
		t.Errorf("a lift without a reason: %d %s; want 400", status, out)
	}
	if status, out := do(t, "DELETE", base+"/v1/blocklist/gone@gmail.example?reason=ticket+42", "admin"); status != http.StatusOK {
		t.Errorf("the admin lifting: %d %s", status, out)
	}
	if status, _ := do(t, "DELETE", base+"/v1/blocklist/never@gmail.example?reason=x", "admin"); status != http.StatusNotFound {
		t.Errorf("lifting what is not listed: %d, want 404", status)
	}
	// The audit shows the entry, both lift attempts and who made them.
	status, out := do(t, "GET", base+"/v1/audit?address=Gone@gmail.example", "admin")
	var audit struct {
		Changes []struct {
			Action  string `json:"action"`
			By      string `json:"by"`
			EventID string `json:"event_id"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(out), &audit); status != http.StatusOK || err != nil {
		t.Fatalf("GET audit: %d %s", status, out)
	}
	var actions []string
	for _, c := range audit.Changes {
		actions = append(actions, c.Action+" by "+c.By)
	}
	if got := strings.Join(actions, ", "); got != "added by http, lift_refused by account globex, lifted by admin" {
		t.Errorf("audit of gone@gmail.example: %s", got)
	}
	if audit.Changes[0].EventID != "b1" {
		t.Errorf("the entry's change names event %q, want b1", audit.Changes[0].EventID)
	}
	if status, out := do(t, "GET", base+"/v1/audit?address=gone@gmail.example", "globex-key"); status != http.StatusOK ||
		strings.Contains(out, `"b1"`) || !strings.Contains(out, "lift_refused") {
		t.Errorf("globex's audit: %d %s; want its refused lift only", status, out)
	}
	if status, _ := do(t, "GET", base+"/v1/audit?account=acme", "globex-key"); status != http.StatusForbidden {
		t.Errorf("globex reading acme's audit: %d, want 403", status)
	}

	// Unsubscribes through the API, and a re-subscription.
	if status, out := post(t, base+"/v1/unsubscribes", "acme-key", "application/json",
		[]byte(`{"sender_domain": "news.acme.example", "recipient": "asked@gmail.example", "reason": "phone call"}`)); status != http.StatusOK {
		t.Errorf("POST unsubscribes: %d %s", status, out)
	}
	if status, out := do(t, "DELETE", base+"/v1/unsubscribes?sender_domain=news.acme.example&recipient=angry@yahoo.example&reason=asked+to+come+back", "acme-key"); status != http.StatusOK {
		t.Errorf("re-subscribing: %d %s", status, out)
	}
	got = answers()
	if !got[0].Allowed || !got[4].Allowed {
		t.Errorf("after the lift and the re-subscription: %+v, %+v; want both allowed", got[0], got[4])
	}
	if r := check(t, base, "acme-key", "news.acme.example", "asked@gmail.example"); r[0].Allowed {
		t.Errorf("unsubscribed through the API: %+v", r[0])
	}
	status, out = do(t, "GET", base+"/v1/suppressions/theirs@outlook.example", "globex-key")
	if status != http.StatusOK || !strings.Contains(out, `"event_id":"g1"`) {
		t.Errorf("GET suppressions: %d %s", status, out)
	}

	// A restart rebuilds the lists from the store's log.
	stop()
	base, _ = runApp(t, cfg)
	if again := answers(); !equalResults(again, got) {
		t.Errorf("after a restart:\n%+v\nbefore:\n%+v", again, got)
	}
	if r := check(t, base, "acme-key", "news.acme.example", "asked@gmail.example"); r[0].Allowed {
		t.Errorf("after a restart, the API's unsubscribe is gone: %+v", r[0])
	}
}

func do(t *testing.T, method, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func equalResults(a, b []checkResult) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSuppressionCheckErrors(t *testing.T) {
	cfg := defaultServeConfig()
	cfg.Data = t.TempDir()
	cfg.AdminKey = "admin"
	base, _ := runApp(t, cfg)
	for _, tt := range []struct{ body, want string }{
		{`{"recipients": ["a@b.example"]}`, "sender_domain is required"},
		{`{"sender_domain": "x.example", "recipients": "a@b.example"}`, "malformed check"},
		{`{"sender_domain": "x.example", "recipients": [` + strings.Repeat(`"a@b.example",`, api.MaxCheckRecipients) + `"a@b.example"]}`, "at most 10000"},
	} {
		status, out := post(t, base+"/v1/suppressions/check", "admin", "application/json", []byte(tt.body))
		if status != http.StatusBadRequest || !strings.Contains(out, tt.want) {
			t.Errorf("%.60s: %d %s; want 400 naming %q", tt.body, status, out, tt.want)
		}
	}
}

// TestSuppressionTwoProcesses runs two repute serve on one ClickHouse
// database, as a deployment past one machine does: a bounce stored by one,
// a lift and an unsubscribe made through the other, each reach the other's
// checks by following the store's log.
func TestSuppressionTwoProcesses(t *testing.T) {
	saved, savedSettle := suppressionFollow, suppressionSettle
	t.Cleanup(func() { suppressionFollow, suppressionSettle = saved, savedSettle })
	suppressionFollow, suppressionSettle = 50*time.Millisecond, 300*time.Millisecond

	cfgA := twoAccounts(t, "clickhouse")
	cfgB := cfgA
	cfgB.Data = t.TempDir()
	baseA, _ := runApp(t, cfgA)
	baseB, _ := runApp(t, cfgB)
	check(t, baseB, "acme-key", "news.acme.example", "x@y.example") // waits for B's lists to load

	// waitFor polls base's check of addr until its answer is allowed.
	waitFor := func(base, addr string, allowed bool, list string) checkResult {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			r := check(t, base, "acme-key", "news.acme.example", addr)[0]
			if r.Allowed == allowed && r.List == list {
				return r
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s on %s: %+v, want allowed=%v list=%q", addr, base, r, allowed, list)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	body, _ := json.Marshal([]metrics.Event{{EventID: "b1", Time: at, Kind: metrics.KindBounced, Account: "acme",
		SenderDomain: "news.acme.example", Recipient: "gone@gmail.example", BounceType: metrics.BounceHard,
		Reason: "userunknown", Status: "5.1.1"}})
	if status, out := post(t, baseA+"/v1/events?wait=visible", "admin", "application/json", body); status != http.StatusAccepted {
		t.Fatalf("POST events to A: %d %s", status, out)
	}
	waitFor(baseA, "gone@gmail.example", false, "blocklist")
	if r := waitFor(baseB, "gone@gmail.example", false, "blocklist"); r.EventID != "b1" || r.Reason != "userunknown" {
		t.Errorf("B's entry: %+v, want A's event b1", r)
	}

	if status, out := do(t, "DELETE", baseB+"/v1/blocklist/gone@gmail.example?reason=mailbox+restored", "acme-key"); status != http.StatusOK {
		t.Fatalf("lift on B: %d %s", status, out)
	}
	waitFor(baseB, "gone@gmail.example", true, "")
	waitFor(baseA, "gone@gmail.example", true, "")

	if status, out := post(t, baseA+"/v1/unsubscribes", "acme-key", "application/json",
		[]byte(`{"sender_domain": "news.acme.example", "recipient": "asked@gmail.example", "reason": "phone call"}`)); status != http.StatusOK {
		t.Fatalf("unsubscribe on A: %d %s", status, out)
	}
	waitFor(baseB, "asked@gmail.example", false, "unsubscribe")
	if status, out := do(t, "DELETE", baseB+"/v1/unsubscribes?sender_domain=news.acme.example&recipient=asked@gmail.example&reason=came+back", "acme-key"); status != http.StatusOK {
		t.Fatalf("re-subscribe on B: %d %s", status, out)
	}
	waitFor(baseA, "asked@gmail.example", true, "")
}
