package dsn

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The reports below are generated here, one per dialect, in the layout
// each MTA writes, around a returned original that is either a plain
// message or a mailing-list posting naming a dozen other addresses.

// plainOriginal is a message sent straight to its recipients.
func plainOriginal(rcpts []string) string {
	return "Return-Path: <author@send.example.org>\n" +
		"Received: from send.example.org by mx.example.net; Mon, 1 Jan 2024 00:00:00 +0000\n" +
		"From: Author <author@send.example.org>\n" +
		"To: " + strings.Join(rcpts, ", ") + "\n" +
		"Subject: Hello\n" +
		"Date: Mon, 1 Jan 2024 00:00:00 +0000\n" +
		"Message-ID: <orig-1@send.example.org>\n" +
		"\n" +
		"Hello.\n"
}

// listOriginal is a mailing-list posting (RFC 2369, RFC 2919) as the list
// server sent it to a subscriber: none of the addresses it names is the
// subscriber whose delivery failed.
func listOriginal([]string) string {
	return "Return-Path: <cats-bounces@lists.example.org>\n" +
		"Received: from lists.example.org by mx.example.net; Mon, 1 Jan 2024 00:00:00 +0000\n" +
		"From: Poster Person <poster@author.example.com>\n" +
		"To: cats@lists.example.org\n" +
		"Cc: carol@cc.example.com, dave@cc.example.com, erin@cc.example.net,\n" +
		"\tfrank@cc.example.net, grace@cc.example.org\n" +
		"Reply-To: cats@lists.example.org\n" +
		"Sender: cats-bounces@lists.example.org\n" +
		"Errors-To: cats-bounces@lists.example.org\n" +
		"Subject: [cats] Meeting\n" +
		"Date: Mon, 1 Jan 2024 00:00:00 +0000\n" +
		"Message-ID: <post-7@author.example.com>\n" +
		"List-Id: Cats <cats.lists.example.org>\n" +
		"List-Post: <mailto:cats@lists.example.org>\n" +
		"List-Help: <mailto:cats-request@lists.example.org?subject=help>\n" +
		"List-Unsubscribe: <mailto:cats-leave@lists.example.org>\n" +
		"List-Owner: <mailto:cats-owner@lists.example.org>\n" +
		"Precedence: list\n" +
		"\n" +
		"On Sunday, heidi@quoted.example.com wrote:\n" +
		"> From: ivan@quoted.example.com\n" +
		"> To: judy@quoted.example.com\n" +
		"> Please write to mallory@body.example.com or\n" +
		"> <oscar@body.example.com>: he knows.\n" +
		"\n" +
		"_______________________________________________\n" +
		"cats mailing list\n" +
		"cats@lists.example.org\n" +
		"https://lists.example.org/mailman/listinfo/cats\n"
}

// report is one generated bounce.
type dialect struct {
	name string
	// make builds the report for the failed recipients; delay makes it a
	// warning that delivery goes on.
	make func(rcpts []string, delay bool, orig string) string
}

func dsnReport(from, subject, text string, rcpts []string, delay bool, extra, orig string, headersOnly bool) string {
	var b strings.Builder
	b.WriteString("From: " + from + "\nTo: cats-bounces+sub=remote.example@lists.example.org\nSubject: " + subject +
		"\nMIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\n\n--BB\nContent-Type: text/plain\n\n")
	b.WriteString(text)
	b.WriteString("\n--BB\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n")
	for _, r := range rcpts {
		b.WriteString("\nOriginal-Recipient: rfc822;" + r + "\nFinal-Recipient: rfc822; " + r + "\n")
		if delay {
			b.WriteString("Action: delayed\nStatus: 4.4.1\nDiagnostic-Code: smtp; 451 4.4.1 try again later\n")
		} else {
			b.WriteString("Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 <" + r + ">: Recipient address rejected: User unknown\n")
		}
		b.WriteString(extra)
	}
	if headersOnly {
		hdr, _, _ := strings.Cut(orig, "\n\n")
		b.WriteString("\n--BB\nContent-Type: text/rfc822-headers\n\n" + hdr + "\n")
	} else {
		b.WriteString("\n--BB\nContent-Type: message/rfc822\n\n" + orig)
	}
	b.WriteString("\n--BB--\n")
	return b.String()
}

func proseReport(headers, text, orig string) string {
	return headers + "To: cats-bounces+sub=remote.example@lists.example.org\n" +
		"MIME-Version: 1.0\nContent-Type: text/plain; charset=us-ascii\n\n" + text + orig
}

func mimeProse(headers, text, orig string) string {
	return headers + "To: cats-bounces+sub=remote.example@lists.example.org\n" +
		"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"MM\"\n\n--MM\nContent-Type: text/plain\n\n" +
		text + "\n--MM\nContent-Type: message/rfc822\n\n" + orig + "\n--MM--\n"
}

var dialects = []dialect{
	{"postfix-dsn", func(rcpts []string, delay bool, orig string) string {
		var text strings.Builder
		text.WriteString("This is the mail system at host mx.example.net.\n\n")
		subject := "Undelivered Mail Returned to Sender"
		if delay {
			subject = "Delayed Mail (still being retried)"
			text.WriteString("####################################################################\n# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n####################################################################\n\n")
		} else {
			text.WriteString("I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients. It's attached below.\n\n")
		}
		for _, r := range rcpts {
			text.WriteString("<" + r + ">: host mx.remote.example[192.0.2.1] said: 550 5.1.1\n    <" + r + ">: Recipient address rejected (in reply to RCPT TO command)\n\n")
		}
		return dsnReport("MAILER-DAEMON@mx.example.net (Mail Delivery System)", subject, text.String(), rcpts, delay, "Remote-MTA: dns; mx.remote.example\n", orig, false)
	}},
	{"sendmail-dsn", func(rcpts []string, delay bool, orig string) string {
		var text strings.Builder
		subject := "Returned mail: see transcript for details"
		text.WriteString("The original message was received at Mon, 1 Jan 2024 00:00:00 +0000\nfrom send.example.org [192.0.2.9]\n\n")
		if delay {
			subject = "Warning: could not send message for past 4 hours"
			text.WriteString("   **********************************************\n   **      THIS IS A WARNING MESSAGE ONLY      **\n   **  YOU DO NOT NEED TO RESEND YOUR MESSAGE  **\n   **********************************************\n\n   ----- Transcript of session follows -----\n")
			for _, r := range rcpts {
				text.WriteString(r + "... Deferred: Connection timed out with mx.remote.example.\n")
			}
			text.WriteString("Warning: message still undelivered after 4 hours\nWill keep trying until message is 5 days old\n")
		} else {
			text.WriteString("   ----- The following addresses had permanent fatal errors -----\n")
			for _, r := range rcpts {
				text.WriteString("<" + r + ">\n    (reason: 550 5.1.1 User unknown)\n")
			}
			text.WriteString("\n   ----- Transcript of session follows -----\n... while talking to mx.remote.example.:\n>>> DATA\n")
			for _, r := range rcpts {
				text.WriteString("<<< 550 5.1.1 <" + r + ">... User unknown\n")
			}
		}
		return dsnReport("Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>", subject, text.String(), rcpts, delay, "", orig, true)
	}},
	{"exim", func(rcpts []string, delay bool, orig string) string {
		var text strings.Builder
		h := "From: Mail Delivery System <Mailer-Daemon@mx.example.net>\n"
		text.WriteString("This message was created automatically by mail delivery software.\n\n")
		if delay {
			h += "Subject: Warning: message 1abcDE-000Fgh-IJ delayed 24 hours\n"
			text.WriteString("A message that you sent has not yet been delivered to one or more of its\nrecipients after more than 24 hours on the queue on mx.example.net.\n\n" +
				"The message identifier is:     1abcDE-000Fgh-IJ\nThe subject of the message is: [cats] Meeting\n\n" +
				"The address to which the message has not yet been delivered is:\n\n")
			for _, r := range rcpts {
				text.WriteString("  " + r + "\n    host mx.remote.example [192.0.2.1]\n    Delay reason: SMTP error from remote mail server after RCPT TO:<" + r + ">:\n    451 4.7.1 Greylisted, try again later\n\n")
			}
			text.WriteString("No action is required on your part. Delivery attempts will continue for\nsome time, and this warning may be repeated at intervals if the message\nremains undelivered. Eventually the mail delivery software will give up,\nand when that happens, the message will be returned to you.\n")
		} else {
			h += "Subject: Mail delivery failed: returning message to sender\nX-Failed-Recipients: " + strings.Join(rcpts, ", ") + "\n"
			text.WriteString("A message that you sent could not be delivered to one or more of its\nrecipients. This is a permanent error. The following address(es) failed:\n\n")
			for _, r := range rcpts {
				text.WriteString("  " + r + "\n    host mx.remote.example [192.0.2.1]\n    SMTP error from remote mail server after RCPT TO:<" + r + ">:\n    550 5.1.1 User unknown\n\n")
			}
		}
		text.WriteString("------ This is a copy of the message, including all the headers. ------\n\n")
		return proseReport(h, text.String(), orig)
	}},
	{"qmail", func(rcpts []string, delay bool, orig string) string {
		var text strings.Builder
		h := "From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n"
		text.WriteString("Hi. This is the qmail-send program at mx.example.net.\n")
		if delay {
			h = "From: MAILER-DAEMON@mx.example.net\nSubject: Delivery delay notification\n"
			text.WriteString("Your message has been in the queue for a while; I'm still trying to deliver it to the following addresses.\n\n")
		} else {
			text.WriteString("I'm afraid I wasn't able to deliver your message to the following addresses.\nThis is a permanent error; I've given up. Sorry it didn't work out.\n\n")
		}
		for _, r := range rcpts {
			text.WriteString("<" + r + ">:\n192.0.2.1 does not like recipient.\nRemote host said: 550 5.1.1 <" + r + ">... User unknown #5.1.1\n\n")
		}
		text.WriteString("--- Below this line is a copy of the message.\n\n")
		return proseReport(h, text.String(), orig)
	}},
	{"exchange", func(rcpts []string, delay bool, orig string) string {
		var text strings.Builder
		h := "From: Microsoft Outlook <postmaster@outlook.example.com>\nSubject: Undeliverable: [cats] Meeting\n"
		if delay {
			h = "From: Microsoft Outlook <postmaster@outlook.example.com>\nSubject: Delivery delayed:[cats] Meeting\n"
			text.WriteString("Delivery is delayed to these recipients or groups:\n\n")
			for _, r := range rcpts {
				text.WriteString(r + "\n")
			}
			text.WriteString("\nSubject: [cats] Meeting\n\nThis message hasn't been delivered yet. Delivery will continue to be attempted.\n\nThe server will keep trying to deliver this message for the next 1 days, 19 hours and 53 minutes. You'll be notified if the message can't be delivered by that time.\n")
		} else {
			text.WriteString("Delivery has failed to these recipients or groups:\n\n")
			for _, r := range rcpts {
				text.WriteString(r + "\nThe email address you entered couldn't be found. Please check the recipient's email address and try to resend the message.\n\n")
			}
			text.WriteString("Diagnostic information for administrators:\n\nGenerating server: outlook.example.com\n\n")
			for _, r := range rcpts {
				text.WriteString(r + "\nRemote Server returned '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found'\n")
			}
		}
		return mimeProse(h, text.String(), orig)
	}},
	{"gmail", func(rcpts []string, delay bool, orig string) string {
		var text strings.Builder
		h := "From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
		if delay {
			h += "Subject: Delivery Status Notification (Delay)\n"
			for _, r := range rcpts {
				text.WriteString("** Message not delivered yet **\n\nThere was a temporary problem delivering your message to " + r + ". Gmail will retry for 47 more hours. You'll be notified if the delivery fails permanently.\n\n")
			}
			text.WriteString("The response was:\n\n451 4.7.1 Greylisted\n\n")
		} else {
			h += "Subject: Delivery Status Notification (Failure)\nX-Failed-Recipients: " + strings.Join(rcpts, ",") + "\n"
			for _, r := range rcpts {
				text.WriteString("** Address not found **\n\nYour message wasn't delivered to " + r + " because the address couldn't be found, or is unable to receive mail.\n\n")
			}
			text.WriteString("The response from the remote server was:\n550 5.1.1 The email account that you tried to reach does not exist.\n\n")
		}
		text.WriteString("----- Original message -----\n\n")
		return proseReport(h, text.String(), orig)
	}},
	{"courier", func(rcpts []string, delay bool, orig string) string {
		var text strings.Builder
		h := "From: Courier mail server at mx.example.net <@>\nSubject: NOTICE: mail delivery status.\n"
		text.WriteString("This is a delivery status notification from mx.example.net,\nrunning the Courier mail server, version 1.1.\n\nThe original message was received on Mon, 1 Jan 2024 00:00:00 +0000\nfrom send.example.org [192.0.2.9]\n\n---------------------------------------------------------------------------\n\n")
		if delay {
			text.WriteString("                           DELAYED DELIVERY\n\nYour message has not yet been delivered to the following recipients.\nDelivery attempts will continue.\n\n")
		} else {
			text.WriteString("                           UNDELIVERABLE MAIL\n\nYour message to the following recipients cannot be delivered:\n\n")
		}
		for _, r := range rcpts {
			text.WriteString("<" + r + ">:\n    mx.remote.example [192.0.2.1]:\n>>> RCPT TO:<" + r + ">\n<<< 550 5.1.1 User unknown\n\n")
		}
		return mimeProse(h, text.String(), orig)
	}},
	{"yahoo", func(rcpts []string, delay bool, orig string) string {
		var text strings.Builder
		h := "From: MAILER-DAEMON@yahoo.example.com\nSubject: Failure Notice\n"
		if delay {
			h = "From: MAILER-DAEMON@yahoo.example.com\nSubject: Delivery delayed\n"
			text.WriteString("Message from yahoo.example.com.\nUnable to deliver message to the following address(es) yet; we will keep trying.\n\n")
		} else {
			text.WriteString("Sorry, we were unable to deliver your message to the following address.\n\n")
		}
		for _, r := range rcpts {
			text.WriteString("<" + r + ">:\nRemote host said: 550 5.1.1 <" + r + ">: Recipient address rejected: User unknown [RCPT_TO]\n\n")
		}
		text.WriteString("--- Below this line is a copy of the message.\n\n")
		return proseReport(h, text.String(), orig)
	}},
	{"mdaemon-inline", func(rcpts []string, delay bool, orig string) string {
		// MDaemon and Mercury-style prose that names the envelope
		// sender and quotes the original right after, with no marker
		// line and no trace fields: only its header block says where
		// it starts.
		var text strings.Builder
		h := "From: MDaemon Mail Server <mdaemon@mx.example.net>\nSubject: Message delivery failure\n"
		text.WriteString("The message from <cats-bounces+sub=remote.example@lists.example.org> ")
		if delay {
			h = "From: MDaemon Mail Server <mdaemon@mx.example.net>\nSubject: Warning: message still undelivered after 4 hours\n"
			text.WriteString("has not yet been delivered. Delivery attempts will continue.\n\n")
		} else {
			text.WriteString("could not be delivered. This is a permanent error.\n\nThe following addresses failed:\n\n")
		}
		for _, r := range rcpts {
			text.WriteString("  * " + r + ": 550 5.1.1 User unknown\n")
		}
		text.WriteString("\n")
		var o strings.Builder
		for _, line := range strings.SplitAfter(orig, "\n") {
			if !strings.HasPrefix(line, "Return-Path:") && !strings.HasPrefix(line, "Received:") {
				o.WriteString(line)
			}
		}
		return proseReport(h, text.String(), o.String())
	}},
	{"generic-dsn", func(rcpts []string, delay bool, orig string) string {
		subject := "Delivery Status Notification (Failure)"
		if delay {
			subject = "Delivery Status Notification (Delay)"
		}
		return dsnReport("postmaster@mx.example.net", subject, "This is an automatically generated Delivery Status Notification.\n", rcpts, delay, "", orig, false)
	}},
}

// TestFailedRecipients parses a permanent failure and a delay warning of
// every dialect, with one and with two failed recipients, around a plain
// original and a mailing-list posting, and asserts the exact set of
// failed recipients, the Kind and the Action.
func TestFailedRecipients(t *testing.T) {
	origs := []struct {
		name string
		make func([]string) string
	}{{"plain", plainOriginal}, {"list", listOriginal}}
	for _, d := range dialects {
		for _, o := range origs {
			for _, rcpts := range [][]string{{"alice@remote.example"}, {"alice@remote.example", "bob@other.example"}} {
				for _, delay := range []bool{false, true} {
					msg := d.make(rcpts, delay, o.make(rcpts))
					wantKind, wantAction := KindBounce, "failed"
					if delay {
						wantKind, wantAction = KindDelay, "delayed"
					}
					name := d.name + "/" + o.name + "/" + string(wantKind) + "/" + strings.Join(rcpts, ",")
					rep, err := ParseBytes([]byte(msg))
					if err != nil {
						t.Errorf("%s: ParseBytes error %v", name, err)
						continue
					}
					var got []string
					for _, rc := range rep.Recipients {
						got = append(got, strings.ToLower(rc.Address))
						if rc.Action != wantAction {
							t.Errorf("%s: %s Action = %q, want %q", name, rc.Address, rc.Action, wantAction)
						}
					}
					slices.Sort(got)
					want := slices.Sorted(slices.Values(rcpts))
					if !slices.Equal(got, want) {
						t.Errorf("%s: failed recipients %q, want %q", name, got, want)
					}
					if rep.Kind != wantKind {
						t.Errorf("%s: Kind = %q, want %q", name, rep.Kind, wantKind)
					}
				}
			}
		}
	}
}

// TestFailedRecipientsNotFromOriginal checks, for every dialect, that none
// of the addresses a returned mailing-list posting names (its list, its
// -bounces, -request and -owner addresses, author, Cc, quoted headers and
// body) nor the bounce's own addresses comes out as a failed recipient.
func TestFailedRecipientsNotFromOriginal(t *testing.T) {
	orig := listOriginal(nil)
	others := appendAddresses(nil, orig)
	others = appendAddresses(others, "cats-bounces+sub=remote.example@lists.example.org")
	if len(others) < 12 {
		t.Fatalf("the posting names %d addresses, want a dozen", len(others))
	}
	for _, d := range dialects {
		for _, delay := range []bool{false, true} {
			rep, err := ParseBytes([]byte(d.make([]string{"alice@remote.example"}, delay, orig)))
			if err != nil {
				t.Errorf("%s: %v", d.name, err)
				continue
			}
			for _, rc := range rep.Recipients {
				for _, o := range others {
					if strings.EqualFold(rc.Address, o.addr) {
						t.Errorf("%s (delay %v): %s of the returned posting reported failed", d.name, delay, rc.Address)
					}
				}
			}
			if len(rep.Recipients) != 1 || rep.Recipients[0].Address != "alice@remote.example" {
				t.Errorf("%s (delay %v): recipients %+v, want alice@remote.example alone", d.name, delay, rep.Recipients)
			}
		}
	}
}

// TestNoRecipientNamed checks that a report naming nobody yields no
// recipient and ErrNoRecipient, not a guess from the returned original
// (whose To, for a list posting, is the list).
func TestNoRecipientNamed(t *testing.T) {
	for _, o := range []struct {
		name, orig string
	}{{"plain", plainOriginal([]string{"bob@remote.example"})}, {"list", listOriginal(nil)}} {
		for _, layout := range []struct {
			name string
			msg  string
		}{
			{"inline", proseReport("From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n",
				"Your message could not be delivered. This is a permanent error.\n\n----- Original message -----\n", o.orig)},
			{"attached", mimeProse("From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n",
				"Your message could not be delivered. This is a permanent error.\n", o.orig)},
			{"headers only, no marker", proseReport("From: MAILER-DAEMON@mx.example.net\nSubject: Returned mail\n",
				"Your message could not be delivered to one or more recipients.\n\n", o.orig)},
		} {
			rep, err := ParseBytes([]byte(layout.msg))
			if !errors.Is(err, ErrNoRecipient) {
				t.Errorf("%s/%s: error %v, want ErrNoRecipient", o.name, layout.name, err)
			}
			if rep == nil || len(rep.Recipients) != 0 {
				t.Errorf("%s/%s: report %+v, want one without recipients", o.name, layout.name, rep)
			}
		}
	}
}

// TestDelayOrFinal checks that prose saying the MTA gave up is a final
// failure (Kind bounce, Action failed) even when it speaks of retries,
// and that a warning that delivery goes on is a delay.
func TestDelayOrFinal(t *testing.T) {
	tests := []struct {
		subject, text string
		delay         bool
	}{
		{"Mail delivery failed", "  alice@remote.example\n    retry timeout exceeded\n", false},                                          // Exim
		{"failure notice", "<alice@remote.example>:\nI'm not going to try again; this message has been in the queue too long.\n", false}, // qmail
		{"Undeliverable", "Delivery to alice@remote.example has been failing for a long time; giving up.\n", false},
		{"Returned mail: Cannot send message for 5 days", "<alice@remote.example>... Deferred\nMessage could not be delivered for 5 days\nMessage will be deleted from queue\n", false}, // Sendmail
		{"Warning: message 1abc delayed 24 hours", "The address to which the message has not yet been delivered is:\n\n  alice@remote.example\n", true},
		{"Warning: could not send message for past 4 hours", "<alice@remote.example>... Deferred\nWill keep trying until message is 5 days old\n", true},
		{"Delivery Status Notification (Delay)", "Delivery to the following recipient has been delayed:\n\n     alice@remote.example\n\nMessage will be retried for 2 more day(s)\n", true},
		{"Undelivered mail", "<alice@remote.example>:\nstill trying; delivery attempts will continue.\n", true},
	}
	for _, tt := range tests {
		msg := "From: MAILER-DAEMON@mx.example.net\nTo: sender@send.example.org\nSubject: " + tt.subject + "\n\n" + tt.text
		rep, err := ParseBytes([]byte(msg))
		if err != nil || len(rep.Recipients) != 1 {
			t.Errorf("%q: %+v, %v", tt.subject, rep, err)
			continue
		}
		wantKind, wantAction := KindBounce, "failed"
		if tt.delay {
			wantKind, wantAction = KindDelay, "delayed"
		}
		if rep.Kind != wantKind || rep.Recipients[0].Action != wantAction {
			t.Errorf("%q: Kind %q Action %q, want %q %q", tt.subject, rep.Kind, rep.Recipients[0].Action, wantKind, wantAction)
		}
	}
}
