package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"repute/ingest"
	"repute/intake"
	"repute/metrics"
)

// memEvidence is an in-memory evidence store; log records the order of
// writes shared with orderedSubmitter.
type memEvidence struct {
	mu  sync.Mutex
	all map[[2]string]metrics.Evidence
	log *[]string
	err error
}

func (m *memEvidence) PutEvidence(_ context.Context, ev []metrics.Evidence) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if m.all == nil {
		m.all = map[[2]string]metrics.Evidence{}
	}
	for _, e := range ev {
		m.all[[2]string{e.Account, e.ID}] = e
		if m.log != nil {
			*m.log = append(*m.log, "evidence "+e.ID)
		}
	}
	return nil
}

func (m *memEvidence) PurgeEvidence(context.Context, time.Time) (int64, error) { return 0, nil }

func (m *memEvidence) Evidence(_ context.Context, account, id string) (metrics.Evidence, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, e := range m.all {
		if k[1] == id && (account == "" || k[0] == account) {
			return e, true, nil
		}
	}
	return metrics.Evidence{}, false, nil
}

type orderedSubmitter struct {
	fakeSubmitter
	log *[]string
}

func (o *orderedSubmitter) Submit(ctx context.Context, events []metrics.Event) (intake.Result, error) {
	for _, e := range events {
		*o.log = append(*o.log, "event "+e.EvidenceID)
	}
	return o.fakeSubmitter.Submit(ctx, events)
}

// bounce is a Postfix DSN for recipient about the original Message-ID
// origID.
func bounce(msgID, recipient, origID string) string {
	return "From: MAILER-DAEMON@mx.example.net\nTo: bounces@acme.example\nSubject: Undelivered Mail Returned to Sender\n" +
		"Date: Tue, 24 Nov 2026 09:10:00 +0000\nMessage-ID: <" + msgID + ">\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n" +
		"--B\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n" +
		"--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n" +
		"Final-Recipient: rfc822; " + recipient + "\nAction: failed\nStatus: 5.1.1\n" +
		"Diagnostic-Code: smtp; 550 5.1.1 <" + recipient + ">: Recipient address rejected: User unknown\n\n" +
		"--B\nContent-Type: text/rfc822-headers\n\nFrom: news@acme.example\nTo: " + recipient +
		"\nSubject: news\nMessage-ID: <" + origID + ">\n\n--B--\n"
}

const autoReply = "From: someone@example.org\nTo: news@acme.example\nSubject: Out of office\n" +
	"Auto-Submitted: auto-replied\nDate: Tue, 24 Nov 2026 09:10:00 +0000\nMessage-ID: <ooo-1@example.org>\n\n" +
	"I am away until Monday.\n"

type feedbackEnv struct {
	h        http.Handler
	sub      *orderedSubmitter
	evidence *memEvidence
	sends    *ingest.MemorySends
	log      []string
}

func newFeedbackEnv(t *testing.T) *feedbackEnv {
	t.Helper()
	env := &feedbackEnv{sends: &ingest.MemorySends{}}
	env.sub = &orderedSubmitter{log: &env.log}
	env.evidence = &memEvidence{log: &env.log}
	env.sends.Add("", "", metrics.Send{Account: "other", MessageID: "theirs@other.example", Recipient: "x@gmail.example"})
	env.sends.Add("", "", metrics.Send{Account: "acme", MessageID: "ours@acme.example", Recipient: "y@gmail.example",
		Campaign: "november"})
	keys, err := NewKeys(adminKey, []AccountKeys{{Name: "acme", Keys: []string{HashKey(acmeKey)}}, {Name: "other"}})
	if err != nil {
		t.Fatal(err)
	}
	feedback := func(ctx context.Context, raw []byte, src ingest.Source, account string) (ingest.Report, error) {
		conv, err := ingest.NewConverter(ingest.Options{Sends: env.sends, Account: account, Now: func() time.Time { return testNow }})
		if err != nil {
			return ingest.Report{}, err
		}
		return ingest.NewProcessor(conv, 0, func() time.Time { return testNow }).Process(ctx, raw, src)
	}
	env.h, err = NewHandler(Options{Keys: keys, Submitter: env.sub, Stats: &fakeStats{},
		Feedback: feedback, Evidence: env.evidence, EvidenceReader: env.evidence,
		Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func decodeFeedback(t *testing.T, body string) feedbackResponse {
	t.Helper()
	var r feedbackResponse
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return r
}

func TestFeedbackAccountKey(t *testing.T) {
	env := newFeedbackEnv(t)
	// Correlated to acme's own send.
	res, body := do(t, env.h, "POST", "/v1/feedback", acmeKey, "message/rfc822", bounce("b1@mx", "y@gmail.example", "ours@acme.example"))
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	r := decodeFeedback(t, body)
	if len(r.Events) != 1 || r.Ignored {
		t.Fatalf("response %s", body)
	}
	e := r.Events[0]
	if e.Kind != metrics.KindBounced || e.Account != "acme" || e.Recipient != "y@gmail.example" || e.Correlation != "message_id" ||
		e.Campaign != "november" || !metrics.ValidEvidenceID(e.EvidenceID) || e.EventID == "" || r.EvidenceID != e.EvidenceID ||
		e.Source != "http" || e.SourceRef != "account:acme" {
		t.Errorf("event %+v", e)
	}
	if len(env.sub.events) != 1 || len(env.evidence.all) != 1 {
		t.Fatalf("submitted %d events, stored %d evidence", len(env.sub.events), len(env.evidence.all))
	}
	if want := []string{"evidence " + e.EvidenceID, "event " + e.EvidenceID}; strings.Join(env.log, ",") != strings.Join(want, ",") {
		t.Errorf("order %v, want %v", env.log, want)
	}

	// Unmatched: the key's account, correlation none.
	res, body = do(t, env.h, "POST", "/v1/feedback", acmeKey, "message/global", bounce("b2@mx", "z@gmail.example", "unknown@x"))
	if r := decodeFeedback(t, body); res.StatusCode != http.StatusAccepted || len(r.Events) != 1 ||
		r.Events[0].Account != "acme" || r.Events[0].Correlation != "none" {
		t.Fatalf("unmatched: status %d: %s", res.StatusCode, body)
	}

	// Another account's send: 403, nothing stored, the account not named.
	before := len(env.log)
	res, body = do(t, env.h, "POST", "/v1/feedback", acmeKey, "message/rfc822", bounce("b3@mx", "x@gmail.example", "theirs@other.example"))
	if res.StatusCode != http.StatusForbidden || !strings.Contains(body, "another account") || strings.Contains(body, "other\"") ||
		strings.Contains(body, `"other`) {
		t.Errorf("other account's send: status %d: %s", res.StatusCode, body)
	}
	if len(env.log) != before {
		t.Errorf("a refused report stored %v", env.log[before:])
	}

	// An account key may not name another account.
	res, body = do(t, env.h, "POST", "/v1/feedback?account=other", acmeKey, "message/rfc822", bounce("b4@mx", "z@gmail.example", "u@x"))
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("?account=other with an account key: status %d: %s", res.StatusCode, body)
	}
}

func TestFeedbackIgnoredAndUnusable(t *testing.T) {
	env := newFeedbackEnv(t)
	res, body := do(t, env.h, "POST", "/v1/feedback", acmeKey, "message/rfc822", autoReply)
	if r := decodeFeedback(t, body); res.StatusCode != http.StatusAccepted || !r.Ignored || len(r.Events) != 0 ||
		!strings.Contains(body, `"events":[]`) {
		t.Errorf("auto-reply: status %d: %s", res.StatusCode, body)
	}
	for name, tc := range map[string]struct {
		ctype, body string
		status      int
		want        string
	}{
		"json":         {"application/json", `{"a":1}`, http.StatusUnsupportedMediaType, "message/rfc822"},
		"none":         {"", bounce("b@mx", "y@gmail.example", "ours@acme.example"), http.StatusUnsupportedMediaType, "message/rfc822"},
		"garbage":      {"message/rfc822", "\x00\x01binary garbage\xff", http.StatusUnprocessableEntity, "not an email message"},
		"no recipient": {"message/rfc822", strings.ReplaceAll(bounce("b@mx", "y@gmail.example", "o@x"), "Final-Recipient: rfc822; y@gmail.example\n", ""), http.StatusUnprocessableEntity, "unusable report"},
	} {
		res, body := do(t, env.h, "POST", "/v1/feedback", acmeKey, tc.ctype, tc.body)
		if res.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: status %d: %s", name, res.StatusCode, body)
		}
	}
	if len(env.log) != 0 {
		t.Errorf("stored %v", env.log)
	}
}

func TestFeedbackAdmin(t *testing.T) {
	env := newFeedbackEnv(t)
	// Unmatched without ?account=: 400.
	res, body := do(t, env.h, "POST", "/v1/feedback", adminKey, "message/rfc822", bounce("b1@mx", "z@gmail.example", "u@x"))
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "?account=") {
		t.Errorf("admin, unmatched, no account: status %d: %s", res.StatusCode, body)
	}
	// An unknown account: 400.
	res, body = do(t, env.h, "POST", "/v1/feedback?account=nobody", adminKey, "message/rfc822", bounce("b1@mx", "z@gmail.example", "u@x"))
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(body, "nobody") {
		t.Errorf("admin, unknown account: status %d: %s", res.StatusCode, body)
	}
	res, body = do(t, env.h, "POST", "/v1/feedback?account=other", adminKey, "message/rfc822", bounce("b1@mx", "z@gmail.example", "u@x"))
	if r := decodeFeedback(t, body); res.StatusCode != http.StatusAccepted || len(r.Events) != 1 || r.Events[0].Account != "other" ||
		r.Events[0].SourceRef != "admin" {
		t.Errorf("admin, ?account=other: status %d: %s", res.StatusCode, body)
	}
	// A matched report needs no account, and may be any account's.
	res, body = do(t, env.h, "POST", "/v1/feedback", adminKey, "message/rfc822", bounce("b2@mx", "x@gmail.example", "theirs@other.example"))
	if r := decodeFeedback(t, body); res.StatusCode != http.StatusAccepted || len(r.Events) != 1 || r.Events[0].Account != "other" {
		t.Errorf("admin, matched: status %d: %s", res.StatusCode, body)
	}
}

func TestFeedbackStoreDown(t *testing.T) {
	env := newFeedbackEnv(t)
	env.sends.Fail(errors.New("store down"))
	res, body := do(t, env.h, "POST", "/v1/feedback", acmeKey, "message/rfc822", bounce("b1@mx", "y@gmail.example", "ours@acme.example"))
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("lookup failing: status %d: %s", res.StatusCode, body)
	}
	env.sends.Fail(nil)
	env.evidence.err = errors.New("disk full")
	res, body = do(t, env.h, "POST", "/v1/feedback", acmeKey, "message/rfc822", bounce("b1@mx", "y@gmail.example", "ours@acme.example"))
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || len(env.sub.events) != 0 {
		t.Errorf("evidence failing: status %d, %d events submitted: %s", res.StatusCode, len(env.sub.events), body)
	}
}

func TestFeedbackRoutesOptional(t *testing.T) {
	h := newTestHandler(t, &fakeSubmitter{}, &fakeStats{}, 0)
	for _, path := range []string{"/v1/feedback", "/v1/evidence/0123456789abcdef0123456789abcdef"} {
		method := "GET"
		if path == "/v1/feedback" {
			method = "POST"
		}
		res, body := do(t, h, method, path, adminKey, "message/rfc822", "Subject: x\n\nx\n")
		if res.StatusCode != http.StatusNotFound || !strings.Contains(body, "no such endpoint") {
			t.Errorf("%s without the option: status %d: %s", path, res.StatusCode, body)
		}
	}
}

func TestGetEvidence(t *testing.T) {
	env := newFeedbackEnv(t)
	msg := bounce("b1@mx", "y@gmail.example", "ours@acme.example")
	res, body := do(t, env.h, "POST", "/v1/feedback", acmeKey, "message/rfc822", msg)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	id := decodeFeedback(t, body).EvidenceID
	// The other account's report, posted by the admin.
	res, body = do(t, env.h, "POST", "/v1/feedback", adminKey, "message/rfc822", bounce("b2@mx", "x@gmail.example", "theirs@other.example"))
	otherID := decodeFeedback(t, body).EvidenceID
	if res.StatusCode != http.StatusAccepted || otherID == "" {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}

	res, body = do(t, env.h, "GET", "/v1/evidence/"+id, acmeKey, "", "")
	var ev EvidenceResponse
	if err := json.Unmarshal([]byte(body), &ev); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("own: status %d: %s", res.StatusCode, body)
	}
	if ev.ID != id || ev.Account != "acme" || ev.Message != msg || ev.Size != len(msg) || ev.Truncated ||
		ev.Source != "http" || ev.SourceRef != "account:acme" || ev.Encoding != "" || !ev.Stored.Equal(testNow) {
		t.Errorf("own: %+v", ev)
	}
	// Another account's id is not found, as an unknown one.
	res, body = do(t, env.h, "GET", "/v1/evidence/"+otherID, acmeKey, "", "")
	res2, body2 := do(t, env.h, "GET", "/v1/evidence/"+strings.Repeat("0", 32), acmeKey, "", "")
	if res.StatusCode != http.StatusNotFound || res2.StatusCode != http.StatusNotFound ||
		strings.ReplaceAll(body, otherID, "") != strings.ReplaceAll(body2, strings.Repeat("0", 32), "") {
		t.Errorf("other's: %d %s; unknown: %d %s", res.StatusCode, body, res2.StatusCode, body2)
	}
	// The admin sees any.
	res, body = do(t, env.h, "GET", "/v1/evidence/"+otherID, adminKey, "", "")
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `"account":"other"`) {
		t.Errorf("admin: status %d: %s", res.StatusCode, body)
	}
	for _, bad := range []string{"xyz", strings.Repeat("A", 32), strings.Repeat("0", 33)} {
		res, body = do(t, env.h, "GET", "/v1/evidence/"+bad, acmeKey, "", "")
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("id %q: status %d: %s", bad, res.StatusCode, body)
		}
	}
	// Accept: message/rfc822 gives the message itself.
	req := httptest.NewRequest("GET", "/v1/evidence/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+acmeKey)
	req.Header.Set("Accept", "message/rfc822")
	rec := httptest.NewRecorder()
	env.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "message/rfc822" || rec.Body.String() != msg {
		t.Errorf("rfc822: status %d, type %q: %q", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
	}
}

func TestEvidenceResponseBase64(t *testing.T) {
	raw := []byte("Subject: x\n\n\xff\xfe latin-1 \xe9t\xe9\n")
	ev := metrics.Evidence{ID: strings.Repeat("a", 32), Account: "acme", Data: metrics.EncodeEvidence(raw)}
	out, err := NewEvidenceResponse(ev)
	if err != nil || out.Encoding != "base64" {
		t.Fatalf("%+v, %v", out, err)
	}
	if got, err := base64.StdEncoding.DecodeString(out.Message); err != nil || string(got) != string(raw) {
		t.Errorf("decoded %q, %v", got, err)
	}
}
