package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"repute/intake"
	"repute/metrics"
	"repute/spool"
)

const (
	adminKey = "admin-secret"
	acmeKey  = "acme-secret"
)

var testNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

type fakeSubmitter struct {
	events []metrics.Event
	err    error
}

func (f *fakeSubmitter) Submit(_ context.Context, events []metrics.Event) (intake.Result, error) {
	if f.err != nil {
		return intake.Result{}, f.err
	}
	f.events = append(f.events, events...)
	return intake.Result{Duplicates: 1}, nil
}

type fakeStats struct {
	query  metrics.StatsQuery
	result metrics.StatsResult
}

func (f *fakeStats) Stats(_ context.Context, q metrics.StatsQuery) (*metrics.StatsResult, error) {
	f.query = q
	return &f.result, nil
}

func newTestHandler(t testing.TB, sub *fakeSubmitter, st *fakeStats, maxBody int64) http.Handler {
	t.Helper()
	keys, err := NewKeys(adminKey, []AccountKeys{{Name: "acme", Keys: []string{HashKey(acmeKey)}}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Options{Keys: keys, Submitter: sub, Stats: st, MaxBodyBytes: maxBody,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func do(t *testing.T, h http.Handler, method, path, key, contentType, body string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func event(kind, account, recipient string) string {
	acc := ""
	if account != "" {
		acc = fmt.Sprintf(`"account":%q,`, account)
	}
	return fmt.Sprintf(`{%s"kind":%q,"time":"2026-11-25T10:00:00Z","recipient":%q}`, acc, kind, recipient)
}

func decodePost(t *testing.T, body string) postResponse {
	t.Helper()
	var r postResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("response %q: %v", body, err)
	}
	return r
}

func TestAuthRequired(t *testing.T) {
	h := newTestHandler(t, &fakeSubmitter{}, &fakeStats{}, 0)
	for _, key := range []string{"", "wrong"} {
		res, _ := do(t, h, "GET", "/v1/stats", key, "", "")
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("key %q: status %d, want 401", key, res.StatusCode)
		}
	}
	if res, _ := do(t, h, "GET", "/healthz", "", "", ""); res.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d", res.StatusCode)
	}
}

func TestPostKeepsValidItemsAndNamesBadOnes(t *testing.T) {
	sub := &fakeSubmitter{}
	h := newTestHandler(t, sub, &fakeStats{}, 0)
	body := "[" + strings.Join([]string{
		event("delivered", "acme", "a@example.com"),
		event("exploded", "acme", "b@example.com"),
		`{"kind":"sent","account":"acme","time":"2026-11-25T10:00:00Z","recipient":"c@exa` + "\xff" + `mple.com"}`,
		event("sent", "acme", ""),
		event("sent", "", "d@example.com"), // admin must name the account
		`{"kind":"sent","account":"acme","recipient":"e@example.com","time":"2026-11-25T10:00:00Z","recipent":"typo"}`,
		event("opened", "other", "f@example.com"), // admin may name any account
		`{"kind":"sent","account":"acme","recipient":"g@example.com","time":"yesterday"}`,
		event("dropped", "acme", "h@example.com"),
		`{"kind":"sent","account":"acme","recipient":"i@example.com","time":"2026-11-25T10:00:00Z","category":"promo"}`,
	}, ",") + "]"
	res, raw := do(t, h, "POST", "/v1/events", adminKey, "application/json", body)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, body %s", res.StatusCode, raw)
	}
	r := decodePost(t, raw)
	if r.Accepted != 2 || r.Duplicates != 1 {
		t.Errorf("accepted %d duplicates %d, want 2 and 1", r.Accepted, r.Duplicates)
	}
	wantErr := map[int]string{1: "unknown kind", 2: "invalid UTF-8", 3: "recipient", 4: "account", 5: "recipent",
		7: `time "yesterday": not a time: want RFC 3339, e.g. 2026-11-29T10:00:00Z, between 2000-01-01 and one hour from now`,
		8: `reason: missing field: want blocklisted, unsubscribed, paused or invalid_recipient`,
		9: `category "promo": invalid value`}
	if len(r.Rejected) != len(wantErr) {
		t.Fatalf("rejected %+v, want indices 1-5 and 7-9", r.Rejected)
	}
	for _, rej := range r.Rejected {
		if !strings.Contains(rej.Error, wantErr[rej.Index]) {
			t.Errorf("rejected[%d] = %q, want it to mention %q", rej.Index, rej.Error, wantErr[rej.Index])
		}
	}
	if len(sub.events) != 2 || sub.events[0].Recipient != "a@example.com" || sub.events[1].Account != "other" {
		t.Errorf("submitted %+v", sub.events)
	}
	if sub.events[0].Source != "http" || sub.events[0].EventID == "" {
		t.Errorf("source %q id %q: want http and a computed id", sub.events[0].Source, sub.events[0].EventID)
	}
}

func TestPostMalformedJSONStoresNothing(t *testing.T) {
	sub := &fakeSubmitter{}
	h := newTestHandler(t, sub, &fakeStats{}, 0)
	for _, body := range []string{
		"[" + event("sent", "acme", "a@example.com") + ",{",
		`{"kind":"sent"}`,
		"[" + event("sent", "acme", "a@example.com") + "] trailing",
		"",
	} {
		res, raw := do(t, h, "POST", "/v1/events", adminKey, "application/json", body)
		if res.StatusCode != http.StatusBadRequest || !strings.Contains(raw, "error") {
			t.Errorf("body %q: status %d, %s; want 400 with an error", body, res.StatusCode, raw)
		}
	}
	if len(sub.events) != 0 {
		t.Errorf("stored %d events from malformed bodies", len(sub.events))
	}
}

func TestPostNDJSONIndicesAreLineNumbers(t *testing.T) {
	sub := &fakeSubmitter{}
	h := newTestHandler(t, sub, &fakeStats{}, 0)
	body := event("sent", "", "a@example.com") + "\n\n{not json\n" + event("sent", "", "b@example.com") + "\n" +
		`{"kind":"sent","recipient":"c@example.com","time":"2026-11-25 10:00"}` + "\n"
	res, raw := do(t, h, "POST", "/v1/events", acmeKey, "application/x-ndjson", body)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.StatusCode, raw)
	}
	r := decodePost(t, raw)
	if r.Accepted != 2 || len(r.Rejected) != 2 || r.Rejected[0].Index != 2 || r.Rejected[1].Index != 4 ||
		!strings.HasPrefix(r.Rejected[1].Error, `time "2026-11-25 10:00": not a time: want RFC 3339`) {
		t.Errorf("got %+v; want 2 accepted, line 2 rejected and line 4 for its time", r)
	}
	for _, e := range sub.events {
		if e.Account != "acme" {
			t.Errorf("account key: account %q, want acme filled in", e.Account)
		}
	}
}

func TestPostAccountKeyCannotWriteOtherAccount(t *testing.T) {
	sub := &fakeSubmitter{}
	h := newTestHandler(t, sub, &fakeStats{}, 0)
	res, raw := do(t, h, "POST", "/v1/events", acmeKey, "", "["+event("sent", "globex", "a@example.com")+"]")
	if res.StatusCode != http.StatusBadRequest || len(sub.events) != 0 {
		t.Fatalf("status %d, stored %d; want 400 and nothing", res.StatusCode, len(sub.events))
	}
	if r := decodePost(t, raw); len(r.Rejected) != 1 || !strings.Contains(r.Rejected[0].Error, "globex") {
		t.Errorf("rejections %+v", r.Rejected)
	}
}

func TestPostBodyOverCap(t *testing.T) {
	sub := &fakeSubmitter{}
	h := newTestHandler(t, sub, &fakeStats{}, 100)
	body := "[" + event("sent", "acme", "a@example.com") + "," + event("sent", "acme", "b@example.com") + "]"
	res, raw := do(t, h, "POST", "/v1/events", adminKey, "", body)
	if res.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(raw, "100 bytes") {
		t.Errorf("status %d %s, want 413 naming the cap", res.StatusCode, raw)
	}
	if len(sub.events) != 0 {
		t.Error("stored events from an oversized body")
	}
}

func TestPostSpoolFullIs503(t *testing.T) {
	sub := &fakeSubmitter{err: fmt.Errorf("intake: spool: %w", spool.ErrFull)}
	h := newTestHandler(t, sub, &fakeStats{}, 0)
	res, _ := do(t, h, "POST", "/v1/events", adminKey, "", "["+event("sent", "acme", "a@example.com")+"]")
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("status %d Retry-After %q, want 503 with Retry-After", res.StatusCode, res.Header.Get("Retry-After"))
	}
}

func TestStatsQueryAndShape(t *testing.T) {
	st := &fakeStats{result: metrics.StatsResult{
		Groups: []metrics.Group{{Key: map[metrics.GroupBy]string{metrics.GroupISP: "gmail"},
			Counts: metrics.Counts{Sent: 10, BouncedHard: 1}}},
		Totals: metrics.Counts{Sent: 10, BouncedHard: 1},
	}}
	h := newTestHandler(t, &fakeSubmitter{}, st, 0)
	res, raw := do(t, h, "GET", "/v1/stats?from=2026-11-01&to=2026-11-02T06:00:00%2B02:00&group_by=isp", adminKey, "", "")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, raw)
	}
	if want := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC); !st.query.From.Equal(want) {
		t.Errorf("from = %v, want %v", st.query.From, want)
	}
	if want := time.Date(2026, 11, 2, 4, 0, 0, 0, time.UTC); !st.query.To.Equal(want) {
		t.Errorf("to = %v, want %v", st.query.To, want)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	g := got["groups"].([]any)[0].(map[string]any)
	if g["key"].(map[string]any)["isp"] != "gmail" || g["bounce_rate"] != 0.1 || g["open_rate"] != nil {
		t.Errorf("group = %v", g)
	}
	totals := got["totals"].(map[string]any)
	if _, hasKey := totals["key"]; hasKey || totals["sent"] != 10.0 {
		t.Errorf("totals = %v", totals)
	}
	for _, field := range []string{"delivered", "deferred", "bounced_soft", "complained", "opened_human",
		"opened_machine", "opened_unverified", "clicked", "unsubscribed", "dropped", "complaint_rate", "machine_open_share"} {
		if _, ok := totals[field]; !ok {
			t.Errorf("totals lack %q", field)
		}
	}
}

func TestStatsDefaultsAndErrors(t *testing.T) {
	st := &fakeStats{}
	h := newTestHandler(t, &fakeSubmitter{}, st, 0)
	res, raw := do(t, h, "GET", "/v1/stats", adminKey, "", "")
	if res.StatusCode != http.StatusOK || !strings.Contains(raw, `"groups":[]`) {
		t.Fatalf("status %d: %s", res.StatusCode, raw)
	}
	if !st.query.To.Equal(testNow) || st.query.To.Sub(st.query.From) != 168*time.Hour || st.query.Account != "" {
		t.Errorf("default query %+v", st.query)
	}
	for path, want := range map[string]int{
		"/v1/stats?from=yesterday":                      400,
		"/v1/stats?group_by=week":                       400,
		"/v1/stats?from=2026-11-02&to=2026-11-01":       400,
		"/v1/stats?group_by=account":                    200,
		"/v1/stats?group_by=category,isp":               200,
		"/v1/stats?account=acme&group_by=day,isp,hour":  200,
		"/v1/stats?from=2026-11-01T00:00:00Z&group_by=": 200,
	} {
		if res, raw := do(t, h, "GET", path, adminKey, "", ""); res.StatusCode != want {
			t.Errorf("%s: status %d (%s), want %d", path, res.StatusCode, raw, want)
		}
	}
}

func TestStatsAccountKeyIsolation(t *testing.T) {
	st := &fakeStats{}
	h := newTestHandler(t, &fakeSubmitter{}, st, 0)
	if res, _ := do(t, h, "GET", "/v1/stats", acmeKey, "", ""); res.StatusCode != 200 || st.query.Account != "acme" {
		t.Errorf("status %d account %q, want 200 and acme", res.StatusCode, st.query.Account)
	}
	for _, path := range []string{"/v1/stats?account=globex", "/v1/stats?group_by=account"} {
		if res, _ := do(t, h, "GET", path, acmeKey, "", ""); res.StatusCode != http.StatusForbidden {
			t.Errorf("%s with an account key: status %d, want 403", path, res.StatusCode)
		}
	}
}

func TestNewKeysRejectsBadHashes(t *testing.T) {
	for _, k := range []string{"plaintext", "sha256:abc", "md5:" + strings.Repeat("0", 64)} {
		if _, err := NewKeys("", []AccountKeys{{Name: "acme", Keys: []string{k}}}); err == nil {
			t.Errorf("NewKeys accepted %q", k)
		}
	}
}
