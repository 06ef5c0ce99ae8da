package kafka

import (
	"errors"
	"strings"
	"testing"
	"time"

	"repute/metrics"
)

func TestKumoEvents(t *testing.T) {
	fallback := time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)
	const ts = `"timestamp": 1796115600` // 2026-12-01T09:00:00Z
	at := time.Unix(1796115600, 0).UTC()
	tests := []struct {
		name   string
		record string
		want   []metrics.Event // EventID not compared (see TestKumoEventID)
	}{
		{"reception", `{"type":"Reception","id":"m1","sender":"news@Shop.example","recipient":"Bob@gmail.com",` + ts + `,
			"egress_pool":"pool-a","headers":{"Message-ID":"<abc@shop.example>"},"meta":{"campaign":"winter"}}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindSent, Account: "acme", SenderDomain: "shop.example",
				SendingIP: "pool-a", Campaign: "winter", MessageID: "<abc@shop.example>", Recipient: "Bob@gmail.com"}}},
		{"delivery", `{"type":"Delivery","id":"m1","sender":"a@shop.example","recipient":"b@gmail.com",` + ts + `,
			"response":{"code":250,"content":"2.0.0 OK","command":".\r\n"},
			"peer_address":{"name":"gmail-smtp-in.l.google.com","addr":"142.250.1.27"},
			"egress_source":"ip-1","source_address":{"address":"192.0.2.10:40001"},"meta":{"account":"other"}}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindDelivered, Account: "other", SenderDomain: "shop.example",
				SendingIP: "192.0.2.10", RemoteMTA: "gmail-smtp-in.l.google.com", Recipient: "b@gmail.com"}}},
		{"hard bounce at RCPT", `{"type":"Bounce","id":"m2","sender":"a@shop.example","recipient":"nobody@example.org",` + ts + `,
			"response":{"code":550,"enhanced_code":{"class":5,"subject":1,"detail":1},"content":"The email account that you tried to reach does not exist","command":"RCPT TO:<nobody@example.org>\r\n"},
			"peer_address":{"name":"","addr":"203.0.113.5"},"egress_source":"ip-1"}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindBounced, Account: "acme", SenderDomain: "shop.example",
				SendingIP: "ip-1", RemoteMTA: "203.0.113.5", Recipient: "nobody@example.org",
				BounceType: metrics.BounceHard, Reason: "userunknown", Status: "5.1.1", ReplyCode: 550,
				Diagnostic: "The email account that you tried to reach does not exist"}}},
		{"soft bounce mailbox full", `{"type":"Bounce","id":"m3","recipient":"c@example.org",` + ts + `,
			"response":{"code":552,"enhanced_code":{"class":5,"subject":2,"detail":2},"content":"Mailbox full","command":"DATA\r\n"}}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindBounced, Account: "acme", Recipient: "c@example.org",
				BounceType: metrics.BounceSoft, Reason: "mailboxfull", Status: "5.2.2", ReplyCode: 552, Diagnostic: "Mailbox full"}}},
		{"transient failure", `{"type":"TransientFailure","id":"m4","recipient":"d@example.org",` + ts + `,
			"response":{"code":421,"enhanced_code":{"class":4,"subject":7,"detail":0},"content":"Try again later, too many connections","command":"MAIL FROM:<a@shop.example>\r\n"}}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindDeferred, Account: "acme", Recipient: "d@example.org",
				Reason: "toomanyconn", Status: "4.7.0", ReplyCode: 421, Diagnostic: "Try again later, too many connections"}}},
		{"expiration", `{"type":"Expiration","id":"m5","recipient":"e@example.org",` + ts + `,
			"response":{"code":551,"enhanced_code":{"class":5,"subject":4,"detail":7},"content":"Next delivery time would be at 2026-12-02 which exceeds the expiry time"}}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindBounced, Account: "acme", Recipient: "e@example.org",
				BounceType: metrics.BounceSoft, Reason: "expired", Status: "5.4.7", ReplyCode: 551,
				Diagnostic: "Next delivery time would be at 2026-12-02 which exceeds the expiry time"}}},
		{"admin bounce", `{"type":"AdminBounce","id":"m6","recipient":"f@example.org",` + ts + `,
			"response":{"code":551,"enhanced_code":{"class":5,"subject":7,"detail":1},"content":"Administrator bounced: campaign halted"}}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindDropped, Account: "acme", Recipient: "f@example.org",
				Reason: metrics.DropPaused, Diagnostic: "Administrator bounced: campaign halted"}}},
		{"oob", `{"type":"OOB","id":"m7","recipient":"g@example.org",` + ts + `,
			"response":{"code":550,"enhanced_code":{"class":5,"subject":1,"detail":1},"content":"user unknown"}}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindBounced, Account: "acme", Recipient: "g@example.org",
				BounceType: metrics.BounceHard, Reason: "userunknown", Status: "5.1.1", ReplyCode: 550, Diagnostic: "user unknown"}}},
		{"feedback", `{"type":"Feedback","id":"m8","recipient":"h@yahoo.com",` + ts + `,"feedback_report":{"feedback_type":"abuse","user_agent":"Yahoo!-Mail-Feedback/2.0"}}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindComplained, Account: "acme", Recipient: "h@yahoo.com", FeedbackType: "abuse"}}},
		{"feedback without report", `{"type":"Feedback","id":"m8","recipient":"h@yahoo.com",` + ts + `}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindComplained, Account: "acme", Recipient: "h@yahoo.com", FeedbackType: "abuse"}}},
		{"no timestamp: the record's time", `{"type":"Delivery","id":"m9","recipient":"i@example.org"}`,
			[]metrics.Event{{Time: fallback, Kind: metrics.KindDelivered, Account: "acme", Recipient: "i@example.org"}}},
		{"timestamp before 2000: the record's time", `{"type":"Delivery","id":"m9","recipient":"i@example.org","timestamp":86400}`,
			[]metrics.Event{{Time: fallback, Kind: metrics.KindDelivered, Account: "acme", Recipient: "i@example.org"}}},
		{"timestamp in the future: the record's time", `{"type":"Delivery","id":"m9","recipient":"i@example.org","timestamp":4102444800}`,
			[]metrics.Event{{Time: fallback, Kind: metrics.KindDelivered, Account: "acme", Recipient: "i@example.org"}}},
		{"recipient list", `{"type":"Reception","id":"m10","recipient":["j@example.org","k@example.org"],` + ts + `}`,
			[]metrics.Event{{Time: at, Kind: metrics.KindSent, Account: "acme", Recipient: "j@example.org"},
				{Time: at, Kind: metrics.KindSent, Account: "acme", Recipient: "k@example.org"}}},
		{"rejection: no event", `{"type":"Rejection","id":"m11","recipient":"l@example.org",` + ts + `}`, nil},
		{"admin rebind: no event", `{"type":"AdminRebind","id":"m12","recipient":"l@example.org",` + ts + `}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := KumoEvents([]byte(tt.record), "acme", fallback)
			if err != nil {
				t.Fatalf("KumoEvents: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("KumoEvents gave %d events, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if got[i].EventID == "" {
					t.Errorf("event %d has no id", i)
				}
				got[i].EventID = ""
				if got[i] != tt.want[i] {
					t.Errorf("event %d:\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
				e := got[i]
				if err := e.Normalize(metrics.ISPMap{}, at); err != nil {
					t.Errorf("event %d does not normalize: %v", i, err)
				}
			}
		})
	}
}

func TestKumoEventsErrors(t *testing.T) {
	tests := []struct {
		record, want string
	}{
		{`{"type":"Mystery","id":"x","recipient":"a@b.example"}`, "unknown KumoMTA record type"},
		{`{"type":"Delivery","id":"x"}`, "has no recipient"},
		{`{"type":"Delivery",`, "unexpected EOF"},
		{`not json`, "invalid character"},
		{`{"type":"Delivery","recipient":42}`, "recipient"},
		{`{"type":"Delivery","recipient":"a@b.example"} {}`, "more than one JSON value"},
	}
	for _, tt := range tests {
		_, err := KumoEvents([]byte(tt.record), "acme", time.Now())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("KumoEvents(%q) error = %v, want one containing %q", tt.record, err, tt.want)
		}
	}
	_, err := KumoEvents([]byte(`{"type":"Mystery","recipient":"a@b.example"}`), "acme", time.Now())
	if !errors.Is(err, ErrUnknownKumoType) {
		t.Errorf("unknown type error %v is not ErrUnknownKumoType", err)
	}
}

// TestKumoEventID: the id comes from the record's own identity (id, type,
// recipient, timestamp), so a replayed record is one event and two
// attempts of one message are two.
func TestKumoEventID(t *testing.T) {
	id := func(record string) string {
		t.Helper()
		evs, err := KumoEvents([]byte(record), "acme", time.Now())
		if err != nil || len(evs) != 1 {
			t.Fatalf("KumoEvents(%q) = %v, %v", record, evs, err)
		}
		return evs[0].EventID
	}
	base := id(`{"type":"TransientFailure","id":"m1","recipient":"a@b.example","timestamp":1796115600}`)
	if again := id(`{"type":"TransientFailure","id":"m1","recipient":"A@b.example","timestamp":1796115600,"num_attempts":3,"meta":{"account":"x"}}`); again != base {
		t.Errorf("the same record gave ids %s and %s", base, again)
	}
	for _, other := range []string{
		`{"type":"TransientFailure","id":"m1","recipient":"a@b.example","timestamp":1796115660}`,
		`{"type":"TransientFailure","id":"m2","recipient":"a@b.example","timestamp":1796115600}`,
		`{"type":"TransientFailure","id":"m1","recipient":"c@b.example","timestamp":1796115600}`,
		`{"type":"Bounce","id":"m1","recipient":"a@b.example","timestamp":1796115600}`,
		`{"type":"Expiration","id":"m1","recipient":"a@b.example","timestamp":1796115600}`,
	} {
		if got := id(other); got == base {
			t.Errorf("%s has the id of another record", other)
		}
	}
}

func TestKumoPhase(t *testing.T) {
	for cmd, want := range map[string]string{
		"RCPT TO:<a@b>\r\n": "rcpt", "rcpt to:<a@b>": "rcpt", "MAIL FROM:<>\r\n": "mail",
		"DATA\r\n": "data", ".\r\n": "end-of-data", "EHLO mta.example\r\n": "helo", "": "", "NOOP": "",
	} {
		if got := string(kumoPhase(cmd)); got != want {
			t.Errorf("kumoPhase(%q) = %q, want %q", cmd, got, want)
		}
	}
}
