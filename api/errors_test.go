package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"repute/intake"
)

// Every error of the API, the mux's own 404 and 405 too, is a JSON object
// with an "error" string.
func TestNotFoundAndMethodNotAllowedAreJSON(t *testing.T) {
	h := newTestHandler(t, &fakeSubmitter{}, &fakeStats{}, 0)
	for _, tc := range []struct {
		method, path string
		status       int
		allow, says  string
	}{
		{"GET", "/v1/nothing", http.StatusNotFound, "", "no such endpoint: /v1/nothing"},
		{"GET", "/", http.StatusNotFound, "", "no such endpoint"},
		{"GET", "/v1/events", http.StatusMethodNotAllowed, "POST", "method GET not allowed on /v1/events"},
		{"DELETE", "/v1/stats", http.StatusMethodNotAllowed, "GET", "method DELETE not allowed"},
	} {
		res, body := do(t, h, tc.method, tc.path, adminKey, "", "")
		var e struct{ Error string }
		err := json.Unmarshal([]byte(body), &e)
		if res.StatusCode != tc.status || err != nil || !strings.Contains(e.Error, tc.says) ||
			res.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: %d %q (%v), want %d with a JSON error saying %q", tc.method, tc.path, res.StatusCode, body, err, tc.status, tc.says)
		}
		if tc.allow != "" && !strings.Contains(res.Header.Get("Allow"), tc.allow) {
			t.Errorf("%s %s: Allow %q, want %s in it", tc.method, tc.path, res.Header.Get("Allow"), tc.allow)
		}
	}
}

func TestPostWithoutEventsSaysNoEvents(t *testing.T) {
	sub := &fakeSubmitter{}
	h := newTestHandler(t, sub, &fakeStats{}, 0)
	for _, tc := range []struct{ contentType, body string }{
		{"", ""},
		{"", " \n"},
		{"", "[]"},
		{"application/x-ndjson", ""},
		{"application/x-ndjson", "\n\n"},
	} {
		res, body := do(t, h, "POST", "/v1/events", adminKey, tc.contentType, tc.body)
		var e struct{ Error string }
		json.Unmarshal([]byte(body), &e)
		if res.StatusCode != http.StatusBadRequest || !strings.HasPrefix(e.Error, "no events") {
			t.Errorf("body %q (%s): %d %s, want 400 saying no events", tc.body, tc.contentType, res.StatusCode, body)
		}
	}
	if len(sub.events) != 0 {
		t.Errorf("stored %d events", len(sub.events))
	}
}

// waitingSubmitter's events become visible when visible is closed.
type waitingSubmitter struct {
	fakeSubmitter
	visible chan struct{}
}

func (w *waitingSubmitter) WaitVisible(ctx context.Context) error {
	select {
	case <-w.visible:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

var _ VisibleWaiter = (*intake.Pipeline)(nil)

func TestPostWaitVisible(t *testing.T) {
	keys, _ := NewKeys(adminKey, nil)
	sub := &waitingSubmitter{visible: make(chan struct{})}
	h, err := NewHandler(Options{Keys: keys, Submitter: sub, Stats: &fakeStats{}, VisibleTimeout: 300 * time.Millisecond,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	body := "[" + event("sent", "acme", "a@example.com") + "]"

	// Not visible in time: 504, saying the events were accepted all the same.
	start := time.Now()
	res, raw := do(t, h, "POST", "/v1/events?wait=visible", adminKey, "", body)
	var r struct {
		Error    string
		Accepted int
	}
	json.Unmarshal([]byte(raw), &r)
	if res.StatusCode != http.StatusGatewayTimeout || r.Accepted != 1 || !strings.Contains(r.Error, "accepted") {
		t.Errorf("not visible: %d %s, want 504 with accepted 1", res.StatusCode, raw)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
		t.Errorf("504 after %v, want after the 300ms VisibleTimeout", d)
	}

	// Without wait: 202 at once, visible or not.
	if res, raw := do(t, h, "POST", "/v1/events", adminKey, "", body); res.StatusCode != http.StatusAccepted {
		t.Errorf("no wait: %d %s", res.StatusCode, raw)
	}

	// Visible: 202 once WaitVisible returns, not before.
	go func() {
		time.Sleep(100 * time.Millisecond)
		close(sub.visible)
	}()
	start = time.Now()
	if res, raw := do(t, h, "POST", "/v1/events?wait=visible", adminKey, "", body); res.StatusCode != http.StatusAccepted {
		t.Errorf("visible: %d %s", res.StatusCode, raw)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("202 after %v, before the events were visible", d)
	}

	if res, _ := do(t, h, "POST", "/v1/events?wait=forever", adminKey, "", body); res.StatusCode != http.StatusBadRequest {
		t.Errorf("wait=forever: %d, want 400", res.StatusCode)
	}
	if len(sub.events) != 3 {
		t.Errorf("%d events submitted, want 3 (a 504 still accepted them)", len(sub.events))
	}
}
