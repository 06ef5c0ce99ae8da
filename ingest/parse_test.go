package ingest

import (
	"strings"
	"testing"
)

const testBounce = `From: MAILER-DAEMON@mx.example.net
To: bounces+tok42@send.example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

<gone@example.com>: host mx.example.com said: 550 5.1.1 User unknown
    (in reply to RCPT TO command)

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Original-Envelope-Id: env-1

Final-Recipient: rfc822; gone@example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 5.1.1 <gone@example.com>: User unknown

--b
Content-Type: text/rfc822-headers

From: news@send.example.org
To: gone@example.com
Message-ID: <m42@send.example.org>
X-Repute-ID: c-42

--b--
`

const testComplaint = `From: feedback@fbl.example.net
To: fbl@send.example.org
Subject: FW: spam report
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="f"

--f
Content-Type: text/plain

This is an email abuse report.

--f
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Rcpt-To: reader@example.com
Source-IP: 192.0.2.1

--f
Content-Type: message/rfc822

From: news@send.example.org
To: reader@example.com
Message-ID: <m43@send.example.org>
Subject: news

hello
--f--
`

const testPlain = `From: friend@example.com
To: news@send.example.org
Subject: hi

hello
`

func TestParseMessageBounce(t *testing.T) {
	res, err := ParseMessage(strings.NewReader(testBounce))
	if err != nil {
		t.Fatalf("ParseMessage: %v", err)
	}
	if len(res) != 1 {
		t.Fatalf("got %d results, want 1: %+v", len(res), res)
	}
	r := res[0]
	want := Result{
		Recipient: "gone@example.com", Action: "failed", Status: "5.1.1", ReplyCode: "550",
		Reason: "userunknown", HardBounce: true, MessageID: "m42@send.example.org",
		Kind: "bounce", RemoteMTA: "mx.example.com", Correlation: "header", CorrelationID: "c-42",
		VERP: "tok42", ENVID: "env-1",
	}
	r.DiagnosticCode = ""
	if r != want {
		t.Errorf("result\n got %+v\nwant %+v", r, want)
	}
}

func TestParseMessageComplaint(t *testing.T) {
	res, err := ParseMessage(strings.NewReader(testComplaint))
	if err != nil {
		t.Fatalf("ParseMessage: %v", err)
	}
	if len(res) != 1 {
		t.Fatalf("got %d results, want 1: %+v", len(res), res)
	}
	r := res[0]
	if r.Recipient != "reader@example.com" || r.Reason != "feedback" || r.FeedbackType != "abuse" ||
		r.Kind != KindFeedback || r.MessageID != "m43@send.example.org" || r.HardBounce || r.Status != "" {
		t.Errorf("result = %+v", r)
	}
}

func TestParseMessageNotReport(t *testing.T) {
	res, err := ParseMessage(strings.NewReader(testPlain))
	if err != nil || len(res) != 0 {
		t.Errorf("ParseMessage(plain) = %+v, %v; want no results", res, err)
	}
}

func TestSplitMbox(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"single message", "From: a@b\n\nbody\n", []string{"From: a@b\n\nbody\n"}},
		{"leading separator", "From MAILER-DAEMON Thu Jul  2 12:05:05 2020\nA: 1\n", []string{"A: 1\n"}},
		{"two messages", "From x@y Thu Jul  2 12:05:05 2020\nA: 1\n\nFrom z@y Thu Jul  2 12:06:05 2020\nB: 2\n",
			[]string{"A: 1\n\n", "B: 2\n"}},
		{"body line From is not a separator", "A: 1\n\nFrom here on\n", []string{"A: 1\n\nFrom here on\n"}},
		{"CR line ends", "From x@y Thu Jul  2 2020\rA: 1\rFrom z@y Thu Jul  2 2020\rB: 2\r",
			[]string{"A: 1\r", "B: 2\r"}},
		{"CRLF line ends", "From x@y Thu Jul  2 2020\r\nA: 1\r\nFrom z@y Thu Jul  2 2020\r\nB: 2\r\n",
			[]string{"A: 1\r\n", "B: 2\r\n"}},
	}
	for _, tt := range tests {
		got := SplitMbox([]byte(tt.in))
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if strings.Join(gs, "|") != strings.Join(tt.want, "|") || len(gs) != len(tt.want) {
			t.Errorf("%s: SplitMbox(%q) = %q, want %q", tt.name, tt.in, gs, tt.want)
		}
	}
}

func TestParseMessageMbox(t *testing.T) {
	in := "From MAILER-DAEMON Thu Jul  2 12:05:05 2020\n" + testBounce +
		"From MAILER-DAEMON Thu Jul  2 12:05:06 2020\n" + strings.ReplaceAll(testBounce, "gone@", "other@")
	res, err := ParseMessage(strings.NewReader(in))
	if err != nil {
		t.Fatalf("ParseMessage: %v", err)
	}
	if len(res) != 2 || res[0].Recipient != "gone@example.com" || res[1].Recipient != "other@example.com" {
		t.Errorf("results = %+v", res)
	}
}

func TestCorrelation(t *testing.T) {
	for _, tt := range []struct {
		r    Result
		want string
	}{
		{Result{CorrelationID: "c", VERP: "v", MessageID: "m"}, "header"},
		{Result{VERP: "v", MessageID: "m"}, "verp"},
		{Result{MessageID: "m", ENVID: "e"}, "message_id"},
		{Result{ENVID: "e"}, "envid"},
		{Result{}, "none"},
	} {
		if got := correlation(tt.r); got != tt.want {
			t.Errorf("correlation(%+v) = %q, want %q", tt.r, got, tt.want)
		}
	}
}

func TestParseMessageNoRecipient(t *testing.T) {
	// A bounce that names nobody gives no results but an error, so that
	// the caller can quarantine it rather than drop it.
	msg := "From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail Returned to Sender\n\nSomething failed.\n"
	res, err := ParseMessage(strings.NewReader(msg))
	if len(res) != 0 || err == nil {
		t.Errorf("ParseMessage = %+v, %v; want no results and an error", res, err)
	}
}

// TestComplaintLooksLikeAutoReply: a feedback report stays a complaint when
// its From, Subject or body look like an automatic reply (RFC 3834), and when
// it was re-wrapped on its way, as long as it carries its
// message/feedback-report part.
func TestComplaintLooksLikeAutoReply(t *testing.T) {
	autoReply := strings.NewReplacer(
		"From: feedback@fbl.example.net", "From: MAILER-DAEMON@fbl.example.net\nAuto-Submitted: auto-replied\nX-Autoreply: yes",
		"Subject: FW: spam report", "Subject: Out of Office: news",
		"This is an email abuse report.", "I am out of the office until Monday and will reply on my return.",
		"Subject: news", "Subject: news\nAuto-Submitted: auto-replied\nPrecedence: auto_reply",
	).Replace(testComplaint)
	tests := []struct{ name, msg string }{
		{"auto-reply look", autoReply},
		{"auto-reply look, CRLF", strings.ReplaceAll(autoReply, "\n", "\r\n")},
		{"re-wrapped as multipart/mixed", strings.Replace(autoReply,
			"multipart/report; report-type=feedback-report;", "multipart/mixed;", 1)},
		{"multipart/report without report-type", strings.Replace(autoReply,
			"multipart/report; report-type=feedback-report;", "multipart/report;", 1)},
	}
	for _, tt := range tests {
		res, err := ParseBytes([]byte(tt.msg))
		if err != nil && len(res) == 0 {
			t.Errorf("%s: ParseBytes: %v", tt.name, err)
			continue
		}
		if len(res) != 1 {
			t.Errorf("%s: got %d results, want 1: %+v", tt.name, len(res), res)
			continue
		}
		r := res[0]
		if r.Kind != KindFeedback || r.Reason != "feedback" || r.FeedbackType != "abuse" ||
			r.Recipient != "reader@example.com" || r.RecipientRecoveredFrom != "original-rcpt-to" ||
			r.MessageID != "m43@send.example.org" {
			t.Errorf("%s: result = %+v; want the complaint about reader@example.com", tt.name, r)
		}
	}
}
