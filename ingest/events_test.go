package ingest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"repute/correlate"
	"repute/dsn"
	"repute/metrics"
)

// now is the injected clock of every test Converter.
var testNow = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

// A fixed fallback time, as an IMAP INTERNALDATE would give.
var internalDate = time.Date(2026, 11, 29, 11, 30, 0, 0, time.UTC)

func testSigner(t *testing.T) *correlate.Signer {
	t.Helper()
	s, err := correlate.New(correlate.Keys{Sign: []byte("test-signing-key-0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testRef(t *testing.T, b byte) correlate.Ref {
	t.Helper()
	ref, err := correlate.ReadRef(strings.NewReader(strings.Repeat(string(rune(b)), correlate.RefSize)))
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// dsnMsg generates a Postfix DSN. Empty values leave their field out.
type dsnMsg struct {
	messageID, date     string // of the report
	to                  string // the bounce's envelope recipient (our VERP address)
	envid               string
	arrival             string
	action, status      string
	diag                string
	lastAttempt         string
	recipient, orcpt    string
	origID, correlation string // of the returned original
}

func (m dsnMsg) String() string {
	var b strings.Builder
	w := func(name, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		}
	}
	w("Return-Path", "<>")
	w("Delivered-To", m.to)
	w("From", "MAILER-DAEMON@mx.example.net (Mail Delivery System)")
	w("To", m.to)
	w("Subject", "Undelivered Mail Returned to Sender")
	w("Date", m.date)
	w("Message-ID", m.messageID)
	b.WriteString("MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n")
	b.WriteString("--B\nContent-Type: text/plain\n\nThis is the mail system at host mx.example.net.\n\nI'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n")
	b.WriteString("--B\nContent-Type: message/delivery-status\n\n")
	w("Reporting-MTA", "dns; mx.example.net")
	w("Original-Envelope-Id", m.envid)
	w("Arrival-Date", m.arrival)
	b.WriteString("\n")
	w("Final-Recipient", "rfc822; "+m.recipient)
	if m.orcpt != "" {
		w("Original-Recipient", "rfc822; "+m.orcpt)
	}
	w("Action", m.action)
	w("Status", m.status)
	w("Remote-MTA", "dns; mx.gmail.example")
	w("Diagnostic-Code", m.diag)
	w("Last-Attempt-Date", m.lastAttempt)
	b.WriteString("\n--B\nContent-Type: text/rfc822-headers\n\n")
	w("From", "news@acme.example")
	w("To", m.recipient)
	w("Subject", "Our news")
	w("Message-ID", m.origID)
	w("X-Repute-ID", m.correlation)
	b.WriteString("\n--B--\n")
	return b.String()
}

const (
	arrival     = "Sun, 29 Nov 2026 09:00:00 +0000"
	lastAttempt = "Sun, 29 Nov 2026 09:05:00 +0000"
	reportDate  = "Sun, 29 Nov 2026 09:10:00 +0000"
)

var (
	tArrival = time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC)
	tLast    = time.Date(2026, 11, 29, 9, 5, 0, 0, time.UTC)
	tDate    = time.Date(2026, 11, 29, 9, 10, 0, 0, time.UTC)
)

func hardBounce() dsnMsg {
	return dsnMsg{
		messageID: "<20261129091000.A1@mx.example.net>", date: reportDate,
		to:      "bounces@bounces.acme.example",
		arrival: arrival, action: "failed", status: "5.1.1",
		diag:        "smtp; 550 5.1.1 <gone@gmail.example>: Recipient address rejected: User unknown in virtual mailbox table",
		lastAttempt: lastAttempt, recipient: "Gone@gmail.example",
		origID: "<orig-1@acme.example>",
	}
}

func complaint(origID, correlation string) string {
	return "From: staff@hotmail.example\nTo: fbl@acme.example\nSubject: complaint about message\n" +
		"Date: " + reportDate + "\nMessage-ID: <fbl-1@hotmail.example>\nMIME-Version: 1.0\n" +
		"Content-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\n\n" +
		"--F\nContent-Type: text/plain\n\nThis is an email abuse report.\n\n" +
		"--F\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: SomeGenerator/1.0\nVersion: 1\n" +
		"Original-Rcpt-To: user@hotmail.example\nArrival-Date: " + arrival + "\n\n" +
		"--F\nContent-Type: text/rfc822-headers\n\nFrom: news@acme.example\nTo: user@hotmail.example\nSubject: Our news\n" +
		"Message-ID: " + origID + "\n" + correlation + "\n--F--\n"
}

const autoReply = "From: away@example.org\nTo: news@acme.example\nSubject: Out of office\nDate: " + reportDate + "\n" +
	"Message-ID: <ooo-1@example.org>\nAuto-Submitted: auto-replied\n\nI am away until Monday.\n"

func unsubscribeMsg(to string) string {
	return "From: Some User <User@example.org>\nTo: " + to + "\nSubject: unsubscribe\nDate: " + reportDate + "\n" +
		"Message-ID: <unsub-1@example.org>\n\nunsubscribe\n"
}

func newTestConverter(t *testing.T, o Options) *Converter {
	t.Helper()
	if o.Now == nil {
		o.Now = func() time.Time { return testNow }
	}
	c, err := NewConverter(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestEventsKinds(t *testing.T) {
	signer := testSigner(t)
	ref := testRef(t, 1)
	token := signer.Token(ref)
	sends := &MemorySends{}
	sends.Add(ref.String(), "", Send{Account: "acme", SenderDomain: "acme.example", Campaign: "nov",
		SendingIP: "192.0.2.1", MessageID: "orig-1@acme.example", Recipient: "user@example.org"})
	c := newTestConverter(t, Options{Signer: signer, Sends: sends, Account: "fallback"})
	src := Source{Name: SourceIMAP, Ref: "bounces/INBOX/7/42", Time: internalDate}

	delay := hardBounce()
	delay.action, delay.status, delay.diag = "delayed", "4.2.2", "smtp; 452 4.2.2 Mailbox full"
	success := hardBounce()
	success.action, success.status, success.diag = "delivered", "2.0.0", "smtp; 250 2.0.0 OK"
	withHeader := hardBounce()
	withHeader.correlation = token
	farFuture := hardBounce()
	farFuture.arrival, farFuture.lastAttempt, farFuture.date = "", "Fri, 29 Nov 2030 09:00:00 +0000", "Sat, 1 Jan 1999 00:00:00 +0000"
	onlyDate := hardBounce()
	onlyDate.arrival, onlyDate.lastAttempt = "", ""

	for _, tc := range []struct {
		name    string
		msg     string
		ignored bool
		want    metrics.Event // the fields checked
	}{
		{"hard bounce", hardBounce().String(), false, metrics.Event{Kind: metrics.KindBounced, Time: tLast,
			Recipient: "gone@gmail.example", BounceType: "hard", Reason: "userunknown", Status: "5.1.1", ReplyCode: 550,
			RemoteMTA: "mx.gmail.example", Account: "fallback", Correlation: "none", MessageID: "orig-1@acme.example"}},
		{"delay", delay.String(), false, metrics.Event{Kind: metrics.KindDeferred, Time: tLast,
			Recipient: "gone@gmail.example", Reason: "mailboxfull", Status: "4.2.2", ReplyCode: 452,
			RemoteMTA: "mx.gmail.example", Account: "fallback", Correlation: "none", MessageID: "orig-1@acme.example"}},
		{"success", success.String(), false, metrics.Event{Kind: metrics.KindDelivered, Time: tLast,
			Recipient: "gone@gmail.example", Status: "2.0.0", ReplyCode: 250,
			RemoteMTA: "mx.gmail.example", Account: "fallback", Correlation: "none", MessageID: "orig-1@acme.example"}},
		{"bounce with header", withHeader.String(), false, metrics.Event{Kind: metrics.KindBounced, Time: tLast,
			Recipient: "gone@gmail.example", BounceType: "hard", Reason: "userunknown", Status: "5.1.1", ReplyCode: 550,
			RemoteMTA: "mx.gmail.example", Account: "acme", SenderDomain: "acme.example", Campaign: "nov",
			SendingIP: "192.0.2.1", Correlation: "header", MessageID: "orig-1@acme.example"}},
		{"out-of-range dates fall through", farFuture.String(), false, metrics.Event{Kind: metrics.KindBounced,
			Time: internalDate, Recipient: "gone@gmail.example", BounceType: "hard", Reason: "userunknown",
			Status: "5.1.1", ReplyCode: 550, RemoteMTA: "mx.gmail.example", Account: "fallback", Correlation: "none",
			MessageID: "orig-1@acme.example"}},
		{"report date", onlyDate.String(), false, metrics.Event{Kind: metrics.KindBounced,
			Time: tDate, Recipient: "gone@gmail.example", BounceType: "hard", Reason: "userunknown",
			Status: "5.1.1", ReplyCode: 550, RemoteMTA: "mx.gmail.example", Account: "fallback", Correlation: "none",
			MessageID: "orig-1@acme.example"}},
		{"complaint", complaint("<orig-2@acme.example>", ""), false, metrics.Event{Kind: metrics.KindComplained,
			Time: tArrival, Recipient: "user@hotmail.example", FeedbackType: "abuse",
			RecipientRecoveredFrom: "original-rcpt-to", Account: "fallback", Correlation: "none",
			MessageID: "orig-2@acme.example"}},
		{"auto-reply", autoReply, true, metrics.Event{}},
		{"unsubscribe", unsubscribeMsg("<unsubscribe+" + token + "@bounces.acme.example>"), false,
			metrics.Event{Kind: metrics.KindUnsubscribed, Time: tDate, Recipient: "user@example.org",
				Account: "acme", SenderDomain: "acme.example", Campaign: "nov", SendingIP: "192.0.2.1",
				Correlation: "verp", MessageID: "orig-1@acme.example"}},
		{"unsubscribe, forged token", unsubscribeMsg("unsubscribe+" + forge(token) + "@bounces.acme.example"), true, metrics.Event{}},
		{"unsubscribe prefix wrong", unsubscribeMsg("bounces+" + token + "@bounces.acme.example"), true, metrics.Event{}},
		{"ordinary mail", "From: a@example.org\nTo: b@acme.example\nSubject: hi\n\nhello\n", true, metrics.Event{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, ignored, err := c.Events(context.Background(), []byte(tc.msg), src)
			if err != nil {
				t.Fatalf("Events: %v", err)
			}
			if ignored != tc.ignored {
				t.Fatalf("ignored = %v, want %v (events %+v)", ignored, tc.ignored, evs)
			}
			if tc.ignored {
				if len(evs) != 0 {
					t.Fatalf("ignored with events %+v", evs)
				}
				return
			}
			if len(evs) != 1 {
				t.Fatalf("%d events, want 1: %+v", len(evs), evs)
			}
			got, want := evs[0], tc.want
			check := func(field string, got, want any) {
				if got != want {
					t.Errorf("%s = %q, want %q", field, got, want)
				}
			}
			check("kind", got.Kind, want.Kind)
			if !got.Time.Equal(want.Time) {
				t.Errorf("time = %v, want %v", got.Time, want.Time)
			}
			check("recipient", got.Recipient, want.Recipient)
			check("bounce_type", got.BounceType, want.BounceType)
			check("reason", got.Reason, want.Reason)
			check("status", got.Status, want.Status)
			check("reply_code", got.ReplyCode, want.ReplyCode)
			check("remote_mta", got.RemoteMTA, want.RemoteMTA)
			check("account", got.Account, want.Account)
			check("sender_domain", got.SenderDomain, want.SenderDomain)
			check("campaign", got.Campaign, want.Campaign)
			check("sending_ip", got.SendingIP, want.SendingIP)
			check("correlation", got.Correlation, want.Correlation)
			check("message_id", got.MessageID, want.MessageID)
			check("feedback_type", got.FeedbackType, want.FeedbackType)
			check("recipient_recovered_from", got.RecipientRecoveredFrom, want.RecipientRecoveredFrom)
			check("source", got.Source, "imap")
			check("source_ref", got.SourceRef, "bounces/INBOX/7/42")
			if got.Kind == metrics.KindBounced && !strings.Contains(got.Diagnostic, "User unknown") {
				t.Errorf("diagnostic = %q", got.Diagnostic)
			}
			if len(got.EventID) != 32 || got.RecipientDomain == "" {
				t.Errorf("not normalized: event_id %q, recipient_domain %q", got.EventID, got.RecipientDomain)
			}
		})
	}
}

// forge changes one character of a token, keeping its shape.
func forge(token string) string {
	c := byte('a')
	if token[20] == 'a' {
		c = 'b'
	}
	return token[:20] + string(c) + token[21:]
}

// The event id depends on the report, the recipient and the kind only:
// not on the source, the account, or how the send was found. The same
// report read over IMAP (CRLF) and from a file (LF) without a Message-ID
// is one event too.
func TestEventsIDStable(t *testing.T) {
	signer := testSigner(t)
	ref := testRef(t, 2)
	msg := hardBounce()
	msg.correlation = signer.Token(ref)
	msg.messageID = ""
	lf := msg.String()
	crlf := strings.ReplaceAll(lf, "\n", "\r\n")

	sends := &MemorySends{}
	sends.Add(ref.String(), "", Send{Account: "acme", MessageID: "orig-1@acme.example"})
	byHeader := newTestConverter(t, Options{Signer: signer, Sends: sends})
	unmatched := newTestConverter(t, Options{Account: "other"})
	byMessageID := &MemorySends{}
	byMessageID.Add("", "", Send{Account: "acme2", MessageID: "orig-1@acme.example"})
	viaMID := newTestConverter(t, Options{Sends: byMessageID})

	var ids []string
	for _, run := range []struct {
		c       *Converter
		raw     string
		src     Source
		account string
		how     string
	}{
		{byHeader, crlf, Source{Name: SourceIMAP, Ref: "bounces/INBOX/1/1", Time: internalDate}, "acme", "header"},
		{unmatched, lf, Source{Name: SourceFile, Ref: "/tmp/x.eml"}, "other", "none"},
		{viaMID, lf, Source{Name: SourceKafka, Ref: "bounces/0/17", Time: testNow}, "acme2", "message_id"},
	} {
		evs, _, err := run.c.Events(context.Background(), []byte(run.raw), run.src)
		if err != nil || len(evs) != 1 {
			t.Fatalf("Events: %v, %d events", err, len(evs))
		}
		if evs[0].Account != run.account || evs[0].Correlation != run.how {
			t.Errorf("account %q correlation %q, want %q %q", evs[0].Account, evs[0].Correlation, run.account, run.how)
		}
		if !evs[0].Time.Equal(tLast) {
			t.Errorf("time %v, want %v (the report's, whatever the source)", evs[0].Time, tLast)
		}
		ids = append(ids, evs[0].EventID)
	}
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Errorf("event ids differ: %q", ids)
		}
	}
	want := metrics.DerivedID(metrics.ReportIdentity("", []byte(lf)), "gone@gmail.example", metrics.KindBounced)
	if ids[0] != want {
		t.Errorf("event id %q, want DerivedID %q", ids[0], want)
	}
}

// Correlation tries the header, the VERP token, the Message-ID and the
// ENVID in that order; a forged token is passed over.
func TestEventsCorrelationOrder(t *testing.T) {
	signer := testSigner(t)
	hdrRef, verpRef := testRef(t, 3), testRef(t, 4)
	sends := &MemorySends{}
	sends.Add(hdrRef.String(), "", Send{Account: "by-header"})
	sends.Add(verpRef.String(), "", Send{Account: "by-verp"})
	sends.Add("", "", Send{Account: "by-mid", MessageID: "orig-1@acme.example"})
	sends.Add("", "env-9", Send{Account: "by-envid"})
	verpAddr, err := correlate.VERPAddress("bounces", signer.Token(verpRef), "bounces.acme.example")
	if err != nil {
		t.Fatal(err)
	}
	c := newTestConverter(t, Options{Signer: signer, Sends: sends, Account: "fallback"})

	for _, tc := range []struct {
		name             string
		header, to       string
		origID, envid    string
		account, how     string
		complaintMessage bool
	}{
		{"all", signer.Token(hdrRef), verpAddr, "<orig-1@acme.example>", "env-9", "by-header", "header", false},
		{"forged header", forge(signer.Token(hdrRef)), verpAddr, "<orig-1@acme.example>", "env-9", "by-verp", "verp", false},
		{"verp in capitals", "", strings.ToUpper(verpAddr), "<orig-1@acme.example>", "env-9", "by-verp", "verp", false},
		{"message id", "", "bounces@bounces.acme.example", "<orig-1@acme.example>", "env-9", "by-mid", "message_id", false},
		{"unknown message id", "", "bounces@bounces.acme.example", "<other@acme.example>", "env-9", "by-envid", "envid", false},
		{"envid", "", "", "", "env-9", "by-envid", "envid", false},
		{"nothing", "", "", "<other@acme.example>", "env-0", "fallback", "none", false},
		{"complaint header", signer.Token(hdrRef), "", "<orig-1@acme.example>", "", "by-header", "header", true},
		{"complaint message id", "", "", "<orig-1@acme.example>", "", "by-mid", "message_id", true},
		{"complaint unmatched", "", "", "<x@acme.example>", "", "fallback", "none", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var raw string
			if tc.complaintMessage {
				hdr := ""
				if tc.header != "" {
					hdr = "X-Repute-ID: " + tc.header + "\n"
				}
				raw = complaint(tc.origID, hdr)
			} else {
				m := hardBounce()
				m.correlation, m.to, m.origID, m.envid = tc.header, tc.to, tc.origID, tc.envid
				raw = m.String()
			}
			evs, _, err := c.Events(context.Background(), []byte(raw), Source{Name: SourceHTTP})
			if err != nil || len(evs) != 1 {
				t.Fatalf("Events: %v, %d events", err, len(evs))
			}
			if evs[0].Account != tc.account || evs[0].Correlation != tc.how {
				t.Errorf("account %q correlation %q, want %q %q", evs[0].Account, evs[0].Correlation, tc.account, tc.how)
			}
		})
	}
}

func TestEventsErrors(t *testing.T) {
	ctx := context.Background()
	noAccount := newTestConverter(t, Options{})
	if _, _, err := noAccount.Events(ctx, []byte(hardBounce().String()), Source{Name: SourceFile}); !errors.Is(err, ErrUnattributed) {
		t.Errorf("unmatched without account: %v, want ErrUnattributed", err)
	}

	noTime := hardBounce()
	noTime.arrival, noTime.lastAttempt, noTime.date = "", "", ""
	c := newTestConverter(t, Options{Account: "acme"})
	if _, _, err := c.Events(ctx, []byte(noTime.String()), Source{Name: SourceFile}); !errors.Is(err, ErrNoTime) {
		t.Errorf("no time: %v, want ErrNoTime", err)
	}

	noRcpt := "From: MAILER-DAEMON@mx.example.net\nTo: bounces@acme.example\nSubject: Undelivered Mail Returned to Sender\n\n" +
		"Your message could not be delivered.\n"
	if _, _, err := c.Events(ctx, []byte(noRcpt), Source{Name: SourceFile, Time: internalDate}); !errors.Is(err, dsn.ErrNoRecipient) {
		t.Errorf("no recipient: %v, want dsn.ErrNoRecipient", err)
	}

	signer := testSigner(t)
	failing := &MemorySends{}
	failing.Fail(errors.New("store down"))
	m := hardBounce()
	m.correlation = signer.Token(testRef(t, 5))
	lc := newTestConverter(t, Options{Signer: signer, Sends: failing, Account: "acme"})
	if _, _, err := lc.Events(ctx, []byte(m.String()), Source{Name: SourceFile}); !errors.Is(err, ErrLookup) {
		t.Errorf("lookup failure: %v, want ErrLookup", err)
	}

	if _, err := NewConverter(Options{UnsubscribePrefix: "un+sub"}); err == nil {
		t.Error("NewConverter accepted prefix un+sub")
	}
}

// Every message of the bounce corpus converts, except those dsn finds no
// recipient in, which give an error wrapping dsn.ErrNoRecipient.
func TestEventsCorpus(t *testing.T) {
	dir := corpusDir
	if _, err := os.Stat(filepath.Join(dir, "maildir")); err != nil {
		t.Skipf("no corpus: %v", err)
	}
	c := newTestConverter(t, Options{Account: "acme", Now: time.Now})
	counts := map[string]int{}
	err := filepath.WalkDir(filepath.Join(dir, "maildir"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		evs, ignored, err := c.Events(context.Background(), raw, Source{Name: SourceFile, Ref: path, Time: internalDate})
		switch {
		case errors.Is(err, dsn.ErrNoRecipient):
			counts["no recipient"]++
		case err != nil:
			t.Errorf("%s: %v", path, err)
		case ignored:
			counts["ignored"]++
		}
		for _, ev := range evs {
			counts[string(ev.Kind)]++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("corpus: %v", counts)
}
