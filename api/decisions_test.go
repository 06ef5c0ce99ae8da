package api

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeDecisions is the rule engine in memory: a history of decisions (all
// of them in force), active flags, and the operator actions it was asked
// for.
type fakeDecisions struct {
	mu        sync.Mutex
	hist      []Decision
	dropped   int64 // decisions up to this seq are gone from the history
	flags     []Flag
	notify    chan struct{}
	audit     []string
	overrides []OverrideRequest
}

func newFakeDecisions() *fakeDecisions { return &fakeDecisions{notify: make(chan struct{})} }

func (f *fakeDecisions) add(d Decision) Decision {
	f.mu.Lock()
	defer f.mu.Unlock()
	d.Seq = int64(len(f.hist)) + 1
	f.hist = append(f.hist, d)
	close(f.notify)
	f.notify = make(chan struct{})
	return d
}

func (f *fakeDecisions) Current(_ context.Context, s DecisionScope) ([]Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Decision
	for _, d := range f.hist {
		if matches(s, d.Scope) && d.Action != "gone" {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeDecisions) Since(_ context.Context, seq int64) (DecisionPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := DecisionPage{Latest: int64(len(f.hist)), Complete: seq >= f.dropped, Watch: f.notify}
	for _, d := range f.hist {
		if d.Seq > seq && d.Seq > f.dropped {
			p.Decisions = append(p.Decisions, d)
		}
	}
	return p, nil
}

func (f *fakeDecisions) ActiveFlags(context.Context) ([]Flag, error) { return f.flags, nil }

func (f *fakeDecisions) Cancel(_ context.Context, id, who, reason string) (Decision, error) {
	f.mu.Lock()
	found := false
	var scope DecisionScope
	for _, d := range f.hist {
		if d.ID == id {
			found, scope = true, d.Scope
		}
	}
	f.mu.Unlock()
	if !found {
		return Decision{}, fmt.Errorf("rules: %w: %q", ErrDecisionNotFound, id)
	}
	f.mu.Lock()
	f.audit = append(f.audit, fmt.Sprintf("cancel %s by %s: %s", id, who, reason))
	f.mu.Unlock()
	return f.add(Decision{ID: "dec_resume", Scope: scope, Action: "resume", Source: "operator",
		Reasons: []DecisionReason{{Rule: "operator_cancel"}}, IssuedAt: dTestNow}), nil
}

func (f *fakeDecisions) Override(_ context.Context, req OverrideRequest, who string) (Decision, error) {
	if req.Action == "faster" {
		return Decision{}, fmt.Errorf("rules: %w: action %q", ErrDecisionInvalid, req.Action)
	}
	f.mu.Lock()
	f.overrides = append(f.overrides, req)
	f.audit = append(f.audit, fmt.Sprintf("override %s by %s: %s", req.Scope.SenderDomain, who, req.Reason))
	f.mu.Unlock()
	exp := req.ExpiresAt
	return f.add(Decision{ID: "dec_override", Scope: req.Scope, Action: req.Action, DailyLimit: req.Limits.DailyLimit,
		Reasons: []DecisionReason{{Rule: "operator_override"}}, IssuedAt: dTestNow, ExpiresAt: &exp, Source: "operator"}), nil
}

type owners map[string][]string

func (o owners) OwnsSenderDomain(account, domain string) bool {
	for _, d := range o[account] {
		if d == domain {
			return true
		}
	}
	return false
}

var dTestNow = time.Date(2026, 3, 2, 9, 30, 0, 0, time.UTC)

func newDecisionsHandler(t *testing.T, d Decisions, owner SenderDomainOwner, heartbeat time.Duration) http.Handler {
	t.Helper()
	keys, err := NewKeys(adminKey, []AccountKeys{{Name: "acme", Keys: []string{HashKey(acmeKey)}}})
	if err != nil {
		t.Fatal(err)
	}
	base := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { writeError(w, http.StatusTeapot, "base") })
	h, err := WithDecisions(base, DecisionsOptions{Keys: keys, Decisions: d, Owner: owner, Heartbeat: heartbeat})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func seedDecisions(f *fakeDecisions) {
	exp := dTestNow.Add(2 * time.Hour)
	f.add(Decision{ID: "dec_a", Scope: DecisionScope{SenderDomain: "a.example"}, Action: "hold", WarmupDay: 1,
		DailyLimit: 1000, HourlyLimit: 200, Reasons: []DecisionReason{{Rule: "warmup_new", Window: "1d"}},
		IssuedAt: dTestNow, ExpiresAt: &exp, Source: "rule"})
	ten, one := 10, 1
	f.add(Decision{ID: "dec_b", Scope: DecisionScope{SenderDomain: "b.example", ISP: "gmail"}, Action: "slow", WarmupDay: 3,
		DailyLimit: 1000, HourlyLimit: 200, MinuteLimit: &ten, MaxConnections: &one,
		Reasons:  []DecisionReason{{Rule: "gmail_unusual_rate", Value: 2, Threshold: 2, Sample: 2, Window: "1h"}},
		IssuedAt: dTestNow, Source: "rule"})
}

func TestGetDecisionsShapeAndScoping(t *testing.T) {
	f := newFakeDecisions()
	seedDecisions(f)
	h := newDecisionsHandler(t, f, owners{"acme": {"a.example"}}, 0)

	res, body := do(t, h, "GET", "/v1/decisions", adminKey, "", "")
	want := `{"decisions":[` +
		`{"id":"dec_a","scope":{"sender_domain":"a.example","sending_ip":"","isp":""},"action":"hold","warmup_day":1,` +
		`"daily_limit":1000,"hourly_limit":200,"minute_limit":null,"max_connections":null,` +
		`"reasons":[{"rule":"warmup_new","value":0,"threshold":0,"sample":0,"window":"1d"}],` +
		`"issued_at":"2026-03-02T09:30:00Z","expires_at":"2026-03-02T11:30:00Z","source":"rule"},` +
		`{"id":"dec_b","scope":{"sender_domain":"b.example","sending_ip":"","isp":"gmail"},"action":"slow","warmup_day":3,` +
		`"daily_limit":1000,"hourly_limit":200,"minute_limit":10,"max_connections":1,` +
		`"reasons":[{"rule":"gmail_unusual_rate","value":2,"threshold":2,"sample":2,"window":"1h"}],` +
		`"issued_at":"2026-03-02T09:30:00Z","expires_at":null,"source":"rule"}]}` + "\n"
	if res.StatusCode != 200 || body != want {
		t.Errorf("GET /v1/decisions: %d\n got %s\nwant %s", res.StatusCode, body, want)
	}
	for _, tc := range []struct {
		key, path string
		status    int
		ids       []string
	}{
		{adminKey, "/v1/decisions?isp=gmail", 200, []string{"dec_b"}},
		{adminKey, "/v1/decisions?sender_domain=A.example", 200, []string{"dec_a"}},
		{acmeKey, "/v1/decisions", 200, []string{"dec_a"}},
		{acmeKey, "/v1/decisions?sender_domain=a.example", 200, []string{"dec_a"}},
		{acmeKey, "/v1/decisions?sender_domain=b.example", 403, nil},
		{"", "/v1/decisions", 401, nil},
		{acmeKey, "/v1/flags?sender_domain=b.example", 403, nil},
	} {
		res, body := do(t, h, "GET", tc.path, tc.key, "", "")
		if res.StatusCode != tc.status {
			t.Errorf("%s (key %q): %d %s, want %d", tc.path, tc.key, res.StatusCode, body, tc.status)
			continue
		}
		for _, id := range []string{"dec_a", "dec_b"} {
			if want := contains(tc.ids, id); strings.Contains(body, `"`+id+`"`) != want {
				t.Errorf("%s (key %q): %s; want %s shown: %v", tc.path, tc.key, body, id, want)
			}
		}
	}
	// Without owners, account keys see nothing.
	h2 := newDecisionsHandler(t, f, nil, 0)
	if res, _ := do(t, h2, "GET", "/v1/decisions", acmeKey, "", ""); res.StatusCode != 403 {
		t.Errorf("no owner: account key got %d", res.StatusCode)
	}
	// Other routes go to the base handler.
	if res, _ := do(t, h, "GET", "/v1/stats", adminKey, "", ""); res.StatusCode != http.StatusTeapot {
		t.Errorf("GET /v1/stats did not reach the base handler: %d", res.StatusCode)
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func TestGetFlagsShape(t *testing.T) {
	f := newFakeDecisions()
	f.flags = []Flag{
		{Rule: "complaint_rate", Scope: FlagScope{SenderDomain: "a.example"}, Severity: "critical", Value: 0.004,
			Threshold: 0.003, Sample: 5000, Window: "7d", Since: dTestNow},
		{Rule: "hard_bounce_rate", Scope: FlagScope{SenderDomain: "b.example", ISP: "yahoo"}, Severity: "warning",
			Value: 0.06, Threshold: 0.05, Sample: 1200, Window: "7d", Since: dTestNow},
	}
	h := newDecisionsHandler(t, f, owners{"acme": {"a.example"}}, 0)
	res, body := do(t, h, "GET", "/v1/flags?active=true&sender_domain=a.example", acmeKey, "", "")
	want := `{"flags":[{"rule":"complaint_rate","scope":{"sender_domain":"a.example"},"severity":"critical",` +
		`"value":0.004,"threshold":0.003,"sample":5000,"window":"7d","since":"2026-03-02T09:30:00Z"}]}` + "\n"
	if res.StatusCode != 200 || body != want {
		t.Errorf("GET /v1/flags: %d\n got %s\nwant %s", res.StatusCode, body, want)
	}
	if _, body := do(t, h, "GET", "/v1/flags", adminKey, "", ""); !strings.Contains(body, "hard_bounce_rate") || !strings.Contains(body, "complaint_rate") {
		t.Errorf("admin flags: %s", body)
	}
	if res, _ := do(t, h, "GET", "/v1/flags?active=false", adminKey, "", ""); res.StatusCode != 400 {
		t.Errorf("active=false: %d", res.StatusCode)
	}
}

func TestCancelAndOverrideAudited(t *testing.T) {
	f := newFakeDecisions()
	seedDecisions(f)
	h := newDecisionsHandler(t, f, owners{"acme": {"a.example", "b.example"}}, 0)

	if res, _ := do(t, h, "POST", "/v1/decisions/dec_b/cancel", acmeKey, "application/json", `{"reason":"x"}`); res.StatusCode != 403 {
		t.Errorf("account key cancel: %d, want 403", res.StatusCode)
	}
	if res, _ := do(t, h, "POST", "/v1/decisions/dec_b/cancel", adminKey, "application/json", `{}`); res.StatusCode != 400 {
		t.Errorf("cancel without reason: %d, want 400", res.StatusCode)
	}
	if res, _ := do(t, h, "POST", "/v1/decisions/dec_zzz/cancel", adminKey, "application/json", `{"reason":"x"}`); res.StatusCode != 404 {
		t.Errorf("cancel of unknown: %d, want 404", res.StatusCode)
	}
	req := httptest.NewRequest("POST", "/v1/decisions/dec_b/cancel", strings.NewReader(`{"reason":"Gmail postmaster says fine"}`))
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("X-Repute-Operator", "alice")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), `{"decision":{"id":"dec_resume","scope":{"sender_domain":"b.example","sending_ip":"","isp":"gmail"},"action":"resume"`) {
		t.Errorf("cancel: %d %s", rec.Code, rec.Body)
	}

	body := `{"scope":{"sender_domain":"A.example","sending_ip":"","isp":""},"action":"slow",` +
		`"limits":{"daily_limit":500,"hourly_limit":50,"minute_limit":2,"max_connections":1},` +
		`"expires_at":"2026-03-02T12:00:00Z","reason":"new list, go slowly"}`
	if res, _ := do(t, h, "POST", "/v1/overrides", acmeKey, "application/json", body); res.StatusCode != 403 {
		t.Errorf("account key override: %d, want 403", res.StatusCode)
	}
	res, out := do(t, h, "POST", "/v1/overrides", adminKey, "application/json", body)
	if res.StatusCode != 201 || !strings.Contains(out, `"id":"dec_override"`) || !strings.Contains(out, `"source":"operator"`) ||
		!strings.Contains(out, `"expires_at":"2026-03-02T12:00:00Z"`) {
		t.Errorf("override: %d %s", res.StatusCode, out)
	}
	got := f.overrides[0]
	if got.Scope.SenderDomain != "a.example" || got.Action != "slow" ||
		got.Limits != (OverrideLimits{500, 50, 2, 1}) || !got.ExpiresAt.Equal(time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)) {
		t.Errorf("override request as passed on: %+v", got)
	}
	for _, bad := range []string{
		`{"scope":{"sender_domain":"a.example"},"action":"pause","reason":"x"}`,                                      // no expiry
		`{"scope":{"sender_domain":"a.example"},"action":"pause","expires_at":"2026-03-02T12:00:00Z"}`,               // no reason
		`{"scope":{},"action":"pause","expires_at":"2026-03-02T12:00:00Z","reason":"x"}`,                             // no domain
		`{"scope":{"sender_domain":"a.example"},"action":"faster","expires_at":"2026-03-02T12:00:00Z","reason":"x"}`, // engine refuses
		`{"scope":{"sender_domain":"a.example"},"action":"pause","until":"x"}`,                                       // unknown field
	} {
		if res, out := do(t, h, "POST", "/v1/overrides", adminKey, "application/json", bad); res.StatusCode != 400 {
			t.Errorf("override %s: %d %s, want 400", bad, res.StatusCode, out)
		}
	}
	want := []string{"cancel dec_b by admin:alice: Gmail postmaster says fine", "override a.example by admin: new list, go slowly"}
	if fmt.Sprint(f.audit) != fmt.Sprint(want) {
		t.Errorf("audit %q, want %q", f.audit, want)
	}
}

// sseEvent is one event (or comment) read from a stream.
type sseEvent struct {
	id, data, comment string
}

func readSSE(t *testing.T, sc *bufio.Scanner) sseEvent {
	t.Helper()
	var e sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if e != (sseEvent{}) {
				return e
			}
		case strings.HasPrefix(line, ":"):
			e.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "id: "):
			e.id = line[4:]
		case strings.HasPrefix(line, "data: "):
			e.data = line[6:]
		}
	}
	t.Fatalf("stream ended: %v", sc.Err())
	return e
}

func openStream(t *testing.T, url, key, lastID string) (*bufio.Scanner, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	return bufio.NewScanner(res.Body), func() { cancel(); res.Body.Close() }
}

func TestDecisionStreamResumeAndScoping(t *testing.T) {
	f := newFakeDecisions()
	seedDecisions(f) // seq 1 (a.example), 2 (b.example)
	srv := httptest.NewServer(newDecisionsHandler(t, f, owners{"acme": {"a.example"}}, time.Hour))
	defer srv.Close()

	// Resume after 1: the replay holds 2, then the live 3.
	sc, stop := openStream(t, srv.URL+"/v1/decisions/stream", adminKey, "1")
	defer stop()
	if e := readSSE(t, sc); e.id != "2" || !strings.Contains(e.data, `"id":"dec_b"`) {
		t.Fatalf("replay: %+v", e)
	}
	f.add(Decision{ID: "dec_c", Scope: DecisionScope{SenderDomain: "a.example", SendingIP: "192.0.2.1"}, Action: "pause", Source: "rule"})
	if e := readSSE(t, sc); e.id != "3" || !strings.HasPrefix(e.data, `{"id":"dec_c","scope":{"sender_domain":"a.example","sending_ip":"192.0.2.1","isp":""},"action":"pause"`) {
		t.Fatalf("live: %+v", e)
	}

	// An account key resuming from 0 sees only its own domain's.
	sc2, stop2 := openStream(t, srv.URL+"/v1/decisions/stream", acmeKey, "0")
	defer stop2()
	if e := readSSE(t, sc2); e.id != "1" {
		t.Fatalf("acme first: %+v", e)
	}
	f.add(Decision{ID: "dec_d", Scope: DecisionScope{SenderDomain: "b.example"}, Action: "hold", Source: "rule"})
	f.add(Decision{ID: "dec_e", Scope: DecisionScope{SenderDomain: "a.example"}, Action: "advance", Source: "rule"})
	if e := readSSE(t, sc2); e.id != "3" {
		t.Fatalf("acme second: %+v (want 3: b.example's 2 and 4 are not its)", e)
	}
	if e := readSSE(t, sc2); e.id != "5" {
		t.Fatalf("acme third: %+v", e)
	}

	// Without Last-Event-ID: the decisions in force, then the new ones.
	sc3, stop3 := openStream(t, srv.URL+"/v1/decisions/stream?sender_domain=b.example", adminKey, "")
	defer stop3()
	for _, want := range []string{"2", "4"} {
		if e := readSSE(t, sc3); e.id != want {
			t.Fatalf("in force: %+v, want id %s", e, want)
		}
	}
	f.add(Decision{ID: "dec_f", Scope: DecisionScope{SenderDomain: "b.example"}, Action: "advance", Source: "rule"})
	if e := readSSE(t, sc3); e.id != "6" {
		t.Fatalf("after the ones in force: %+v", e)
	}
}

func TestDecisionStreamHeartbeatAndLostHistory(t *testing.T) {
	f := newFakeDecisions()
	seedDecisions(f)
	f.dropped = 1
	srv := httptest.NewServer(newDecisionsHandler(t, f, nil, 20*time.Millisecond))
	defer srv.Close()
	sc, stop := openStream(t, srv.URL+"/v1/decisions/stream", adminKey, "0")
	defer stop()
	if e := readSSE(t, sc); !strings.Contains(e.comment, "no longer holds") {
		t.Fatalf("lost history: %+v", e)
	}
	if e := readSSE(t, sc); e.id != "2" {
		t.Fatalf("after the gap: %+v", e)
	}
	if e := readSSE(t, sc); e.comment != "heartbeat" {
		t.Fatalf("idle stream: %+v, want a heartbeat", e)
	}
}

func TestDecisionStreamBadLastEventID(t *testing.T) {
	h := newDecisionsHandler(t, newFakeDecisions(), nil, 0)
	req := httptest.NewRequest("GET", "/v1/decisions/stream", nil)
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Last-Event-ID", "abc")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 400 {
		t.Errorf("Last-Event-ID abc: %d", rec.Code)
	}
}
