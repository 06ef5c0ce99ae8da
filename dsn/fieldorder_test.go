package dsn

import "testing"

// RFC 3464 §2.3 sets no order for the fields of a recipient; Sendmail's
// X-Actual-Recipient may come before Final-Recipient and is still the
// same recipient.
func TestActualRecipientBeforeFinal(t *testing.T) {
	for _, group := range []string{
		"Final-Recipient: rfc822; info@example.jp\nX-Actual-Recipient: rfc822; alias@example.net\nAction: failed\nStatus: 5.7.1\n",
		"X-Actual-Recipient: rfc822; alias@example.net\nAction: failed\nFinal-Recipient: rfc822; info@example.jp\nStatus: 5.7.1\n",
		"Action: failed\nStatus: 5.7.1\nX-Actual-Recipient: rfc822; alias@example.net\nFinal-Recipient: rfc822; info@example.jp\n",
	} {
		msg := "From: MAILER-DAEMON@mx.example.jp\nSubject: Returned mail\nMIME-Version: 1.0\n" +
			"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n" +
			"--b\nContent-Type: text/plain\n\nThe message could not be delivered.\n\n" +
			"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.jp\n\n" + group +
			"\n--b--\n"
		rep, err := ParseBytes([]byte(msg))
		if err != nil {
			t.Fatalf("%q: %v", group, err)
		}
		if len(rep.Recipients) != 1 || rep.Recipients[0].Address != "info@example.jp" {
			var got []string
			for _, rc := range rep.Recipients {
				got = append(got, rc.Address)
			}
			t.Errorf("group %q: recipients %q, want [info@example.jp]", group, got)
		}
	}
}

// Amazon SES bounce notifications sent by SNS to an e-mail endpoint are
// recognised by their notificationType, whatever the server's words.
func TestSESNotificationIsBounce(t *testing.T) {
	msg := "From: SES <no-reply@sns.amazonaws.com>\nSubject: AWS Notification Message\n\n" +
		`{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bouncedRecipients":[{"emailAddress":"gone@example.com","action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 unknown recipient"}]}}` + "\n"
	if _, err := ParseBytes([]byte(msg)); err == ErrNotBounce {
		t.Fatal("SES notification: ErrNotBounce")
	}
}
