package dsn

import (
	"strings"
	"testing"
)

const sesHeader = "From: AWS Notifications <no-reply@sns.amazonaws.com>\nTo: ops@example.org\nSubject: AWS Notification Message\nContent-Type: text/plain; charset=UTF-8\n\n"

const sesFooter = "\n\n--\nIf you wish to stop receiving notifications from this topic, please click or visit the link below to unsubscribe:\nhttps://sns.us-east-1.amazonaws.com/unsubscribe.html?SubscriptionArn=arn:aws:sns:us-east-1:123456789012:ses:abc&Endpoint=ops@example.org\n"

// sesMail is the "mail" object of a notification: it names the source,
// the sending identity and the original's headers, none of which failed.
const sesMail = `"mail":{"source":"news@acme.example","sourceArn":"arn:aws:ses:us-east-1:123456789012:identity/news@acme.example","messageId":"0100017abc","destination":["gone@example.com","full@example.net","ok@example.org"],"headers":[{"name":"From","value":"news@acme.example"},{"name":"Reply-To","value":"help@acme.example"},{"name":"Cc","value":"boss@acme.example"}],"commonHeaders":{"from":["news@acme.example"],"to":["gone@example.com"],"messageId":"<m-42@acme.example>"}}`

func TestParseSESNotifications(t *testing.T) {
	type want struct {
		addr, action, status string
		reason               Reason
		hard                 bool
	}
	tests := []struct {
		name string
		body string
		kind Kind
		want []want
	}{
		{"bounce", `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[` +
			`{"emailAddress":"gone@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 <gone@example.com>: Recipient address rejected: User unknown"},` +
			`{"emailAddress":"Full <full@example.net>","action":"failed","status":"5.2.2","diagnosticCode":"smtp; 552 5.2.2 Mailbox full"}],` +
			`"reportingMTA":"dsn; a8-1.smtp-out.amazonses.com"},` + sesMail + `}`,
			KindBounce, []want{{"gone@example.com", "failed", "5.1.1", UserUnknown, true}, {"full@example.net", "failed", "5.2.2", MailboxFull, false}}},
		{"transient without a DSN", `{"notificationType":"Bounce","bounce":{"bounceType":"Transient","bounceSubType":"MailboxFull","bouncedRecipients":[{"emailAddress":"full@example.net"}]},` + sesMail + `}`,
			KindBounce, []want{{"full@example.net", "failed", "5.0.922", MailboxFull, false}}},
		{"permanent without a DSN", `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"NoEmail","bouncedRecipients":[{"emailAddress":"gone@example.com"}]},` + sesMail + `}`,
			KindBounce, []want{{"gone@example.com", "failed", "5.0.911", UserUnknown, true}}},
		{"event publishing", `{"eventType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"gone@example.com","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 unknown"}]},` + sesMail + `}`,
			KindBounce, []want{{"gone@example.com", "failed", "5.1.1", UserUnknown, true}}},
		{"delivery", `{"notificationType":"Delivery","delivery":{"recipients":["ok@example.org"],"smtpResponse":"250 2.6.0 Message received","reportingMTA":"a8-1.smtp-out.amazonses.com"},` + sesMail + `}`,
			KindSuccess, []want{{"ok@example.org", "delivered", "2.0.0", Delivered, false}}},
		{"sendmail broke the long line", strings.Replace(`{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"gone@example.com","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 unknown"}]},`+sesMail+`}`, `"headers"`, "!\n\"headers\"", 1),
			KindBounce, []want{{"gone@example.com", "failed", "5.1.1", UserUnknown, true}}},
	}
	// An Email-JSON subscription wraps the notification in SNS's
	// envelope, as an escaped string.
	inner := `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"gone@example.com","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 unknown"}]},` + sesMail + `}`
	tests = append(tests, struct {
		name string
		body string
		kind Kind
		want []want
	}{"sns envelope", `{"Type":"Notification","MessageId":"x","TopicArn":"arn:aws:sns:us-east-1:1:ses","Message":"` + strings.ReplaceAll(inner, `"`, `\"`) + `"}`,
		KindBounce, []want{{"gone@example.com", "failed", "5.1.1", UserUnknown, true}}})

	for _, tt := range tests {
		rep, err := ParseBytes([]byte(sesHeader + tt.body + sesFooter))
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if rep.Kind != tt.kind || len(rep.Recipients) != len(tt.want) {
			t.Errorf("%s: kind %q, %d recipients %+v; want %q, %d", tt.name, rep.Kind, len(rep.Recipients), rep.Recipients, tt.kind, len(tt.want))
			continue
		}
		for i, w := range tt.want {
			rc := rep.Recipients[i]
			if rc.Address != w.addr || rc.Action != w.action || rc.Status != w.status || rc.Reason != w.reason || rc.Hard != w.hard {
				t.Errorf("%s: recipient %d = %s %s %s %s %v, want %+v", tt.name, i, rc.Address, rc.Action, rc.Status, rc.Reason, rc.Hard, w)
			}
		}
		if tt.name == "bounce" && rep.Original.MessageID != "m-42@acme.example" {
			t.Errorf("%s: Original.MessageID = %q", tt.name, rep.Original.MessageID)
		}
	}
}
