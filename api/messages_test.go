package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"repute/metrics"
	"repute/sender"
	"repute/suppress"
)

// fakeLists answers Check from a map of address → verdict; the other
// methods of Suppressions are not used by the sender's routes.
type fakeLists struct {
	Suppressions
	refused map[string]suppress.Verdict
	err     error
	by      suppress.Principal
}

func (f *fakeLists) Check(by suppress.Principal, senderDomain string, recipients []string) ([]suppress.Verdict, error) {
	if f.err != nil {
		return nil, f.err
	}
	f.by = by
	out := make([]suppress.Verdict, len(recipients))
	for i, r := range recipients {
		v, ok := f.refused[r]
		if !ok {
			v = suppress.Verdict{Allowed: true}
		}
		v.Recipient = r
		out[i] = v
	}
	return out, nil
}

type fakeSender struct {
	recorded  []metrics.Event
	queued    []*sender.Item
	recordErr error
	queueErr  error
	calls     []string
}

func (f *fakeSender) Compose(p *sender.Prepared, account, recipient string) (*sender.Item, error) {
	return &sender.Item{Account: account, SenderDomain: p.SenderDomain, Recipient: recipient,
		MessageID: "<" + strings.NewReplacer("@", ".", " ", "", "<", "", ">", "").Replace(recipient) + "@" + p.SenderDomain + ">"}, nil
}

func (f *fakeSender) Record(_ context.Context, events []metrics.Event) error {
	f.calls = append(f.calls, "record")
	if f.recordErr != nil {
		return f.recordErr
	}
	f.recorded = append(f.recorded, events...)
	return nil
}

func (f *fakeSender) Enqueue(items []*sender.Item) error {
	f.calls = append(f.calls, "enqueue")
	if f.queueErr != nil {
		return f.queueErr
	}
	f.queued = append(f.queued, items...)
	return nil
}

func (f *fakeSender) Summary(account string) sender.QueueSummary {
	return sender.QueueSummary{Total: len(account), Groups: []sender.QueueGroup{}}
}

func newSenderHandler(t *testing.T, lists *fakeLists, snd *fakeSender) http.Handler {
	t.Helper()
	keys, err := NewKeys(adminKey, []AccountKeys{{Name: "acme", Keys: []string{HashKey(acmeKey)}}})
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHandler(Options{Keys: keys, Submitter: &fakeSubmitter{}, Stats: &fakeStats{},
		Suppressions: lists, Sender: snd, Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

const fourRecipients = `{"from": "News <news@news.acme.example>", "subject": "s", "text": "t", "campaign": "winter", "category": "marketing",
	"to": ["gone@gmail.example", "Ok <ok@x.example>", "not an address", "asked@yahoo.example", "ok@x.example"]}`

func TestPostMessages(t *testing.T) {
	lists := &fakeLists{refused: map[string]suppress.Verdict{
		"gone@gmail.example":  {List: suppress.Blocklist, Reason: "userunknown", EventID: "b1", Since: testNow.Add(-time.Hour)},
		"asked@yahoo.example": {List: suppress.Unsubscribe, Reason: "phone call"},
	}}
	snd := &fakeSender{}
	h := newSenderHandler(t, lists, snd)
	res, body := do(t, h, "POST", "/v1/messages", acmeKey, "application/json", fourRecipients)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	var ans struct {
		Messages []messageResult `json:"messages"`
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatal(err)
	}
	want := []messageResult{
		{Recipient: "gone@gmail.example", Status: "dropped", Reason: "blocklisted"},
		{Recipient: "Ok <ok@x.example>", Status: "queued", MessageID: "<Okok.x.example@news.acme.example>"},
		{Recipient: "not an address", Status: "dropped", Reason: "invalid_recipient"},
		{Recipient: "asked@yahoo.example", Status: "dropped", Reason: "unsubscribed"},
		{Recipient: "ok@x.example", Status: "dropped", Reason: "invalid_recipient"}, // the same address again
	}
	if len(ans.Messages) != len(want) {
		t.Fatalf("answer %s", body)
	}
	for i := range want {
		if ans.Messages[i] != want[i] {
			t.Errorf("messages[%d] = %+v, want %+v", i, ans.Messages[i], want[i])
		}
	}
	if strings.Join(snd.calls, ",") != "record,enqueue" || len(snd.queued) != 1 {
		t.Errorf("calls %v, %d queued; want the dropped events recorded, then one enqueue", snd.calls, len(snd.queued))
	}
	if lists.by != (suppress.Principal{Account: "acme"}) {
		t.Errorf("checked as %+v", lists.by)
	}
	// "not an address" has no @: no event can hold it. The other three do.
	if len(snd.recorded) != 3 {
		t.Fatalf("recorded %+v", snd.recorded)
	}
	for _, e := range snd.recorded {
		if e.Kind != metrics.KindDropped || e.Source != sender.EventSource || e.Account != "acme" || e.SenderDomain != "news.acme.example" ||
			e.Campaign != "winter" || e.Category != "marketing" || e.EventID == "" || e.PostedBy != "" || !e.Time.Equal(testNow) {
			t.Errorf("dropped event %+v", e)
		}
	}
	if d := snd.recorded[0].Diagnostic; !strings.Contains(d, "blocklist: userunknown (event b1)") {
		t.Errorf("blocklisted diagnostic %q", d)
	}
	if d := snd.recorded[2].Diagnostic; !strings.Contains(d, "the same address") {
		t.Errorf("duplicate diagnostic %q", d)
	}

	// The admin acts for a named account only.
	if res, body := do(t, h, "POST", "/v1/messages", adminKey, "application/json", fourRecipients); res.StatusCode != http.StatusBadRequest {
		t.Errorf("admin without account: %d %s", res.StatusCode, body)
	}
	if res, body := do(t, h, "POST", "/v1/messages?account=acme", adminKey, "application/json", fourRecipients); res.StatusCode != http.StatusAccepted {
		t.Errorf("admin for acme: %d %s", res.StatusCode, body)
	}
	if res, body := do(t, h, "GET", "/v1/queue", acmeKey, "", ""); res.StatusCode != http.StatusOK || !strings.Contains(body, `"total":4`) {
		t.Errorf("GET /v1/queue for acme: %d %s; want the summary of account acme", res.StatusCode, body)
	}
}

// TestPostMessagesNothingQueued: a failure answers 503, and nothing is
// queued.
func TestPostMessagesNothingQueued(t *testing.T) {
	for _, tt := range []struct {
		name  string
		lists *fakeLists
		snd   *fakeSender
		calls string
	}{
		{"lists loading", &fakeLists{err: ErrNotReady}, &fakeSender{}, ""},
		{"record fails", &fakeLists{refused: map[string]suppress.Verdict{"gone@gmail.example": {List: suppress.Blocklist}}},
			&fakeSender{recordErr: errors.New("spool full")}, "record"},
		{"enqueue fails", &fakeLists{}, &fakeSender{queueErr: errors.New("disk full")}, "record,enqueue"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newSenderHandler(t, tt.lists, tt.snd)
			res, body := do(t, h, "POST", "/v1/messages", acmeKey, "application/json", fourRecipients)
			if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" || !strings.Contains(body, "nothing was queued") {
				t.Errorf("%d %s; want 503 with Retry-After saying nothing was queued", res.StatusCode, body)
			}
			if got := strings.Join(tt.snd.calls, ","); got != tt.calls || len(tt.snd.queued) != 0 {
				t.Errorf("calls %q, %d queued; want %q, none", got, len(tt.snd.queued), tt.calls)
			}
		})
	}
}
