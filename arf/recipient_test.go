package arf

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// The tests of this file generate their reports: every way a report carries
// the complained-about recipient, crossed with every malformation seen in
// real reports, with LF and CRLF line ends.

// carrier is a way of carrying the recipient: report fields and header
// fields of the returned message, with the lower-trust sources holding
// other addresses, so that the order of trust is checked too.
type carrier struct {
	name         string
	fields       []string // extra message/feedback-report fields
	returned     []string // extra header fields of the returned message
	jmrp         bool     // Microsoft JMRP: multipart/mixed, no report part
	feedbackType string   // "" for abuse

	want     []string
	from     string
	redacted bool
	provider string
}

var carriers = []carrier{
	{
		name:     "original-rcpt-to",
		fields:   []string{"Original-Rcpt-To: <alice@isp.example.net>"},
		returned: []string{"X-Original-To: other@isp.example.net", "To: news-list@send.example.org"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredOriginalRcptTo,
	},
	{
		name:   "original-rcpt-to repeated",
		fields: []string{"Original-Rcpt-To: rfc822; alice@isp.example.net", "Original-Rcpt-To: <bob@isp.example.net>"},
		// RFC 5965 §3.2 allows one field per recipient.
		returned: []string{"To: news-list@send.example.org"},
		want:     []string{"alice@isp.example.net", "bob@isp.example.net"}, from: RecoveredOriginalRcptTo,
	},
	{
		name:         "removal-recipient",
		fields:       []string{"Removal-Recipient: alice@isp.example.net"},
		returned:     []string{"Delivered-To: other@isp.example.net", "To: news-list@send.example.org"},
		feedbackType: "opt-out",
		want:         []string{"alice@isp.example.net"}, from: RecoveredRemovalRecipient,
	},
	{
		name:     "x-hmxmroriginalrecipient",
		returned: []string{"X-HmXmrOriginalRecipient: <alice@isp.example.net>", "X-Original-To: other@isp.example.net", "To: xxxxxxxx@isp.example.net"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredHmXmr, provider: ProviderJMRP, redacted: false,
	},
	{
		name:     "jmrp without report part",
		jmrp:     true,
		returned: []string{"X-HmXmrOriginalRecipient: alice@isp.example.net", "To: \"Alice\" <alice@isp.example.net>"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredHmXmr, provider: ProviderJMRP,
	},
	{
		name:     "x-original-to",
		returned: []string{"X-Original-To: alice@isp.example.net", "Delivered-To: alice.box@mbox.isp.example.net", "To: news-list@send.example.org"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredXOriginalTo,
	},
	{
		name:     "envelope-to",
		returned: []string{"Envelope-To: alice@isp.example.net", "Delivered-To: other@isp.example.net", "To: news-list@send.example.org"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredEnvelopeTo,
	},
	{
		name:     "x-envelope-to",
		returned: []string{"X-Envelope-To: <alice@isp.example.net>", "To: news-list@send.example.org"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredXEnvelopeTo,
	},
	{
		name:     "x-apparently-to",
		returned: []string{"X-Apparently-To: alice@isp.example.net via 192.0.2.45; Thu, 01 Oct 2026 10:00:00 +0000", "Delivered-To: other@isp.example.net", "To: news-list@send.example.org"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredApparentlyTo,
	},
	{
		name: "delivered-to",
		// The first (top) field is the last delivery's.
		returned: []string{"Delivered-To: alice@isp.example.net", "Delivered-To: forwarder@old.example.com", "To: news-list@send.example.org"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredDeliveredTo,
	},
	{
		name:     "to",
		returned: []string{"To: \"Alice Example\" <alice@isp.example.net>"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredTo,
	},
	{
		name:     "to, two addresses",
		returned: []string{"To: alice@isp.example.net, \"Bob\" <bob@isp.example.net>"},
		want:     []string{"alice@isp.example.net", "bob@isp.example.net"}, from: RecoveredTo,
	},
	{
		name:     "redacted with x's",
		fields:   []string{"Original-Rcpt-To: xxxxxxx@isp.example.net"},
		returned: []string{"To: xxxxxxx@isp.example.net"},
		redacted: true,
	},
	{
		name:     "redacted with a hash",
		fields:   []string{"Original-Rcpt-To: <5f4dcc3b5aa765d61d8327deb882cf99@isp.example.net>"},
		returned: []string{"To: 5f4dcc3b5aa765d61d8327deb882cf99@isp.example.net"},
		redacted: true,
	},
	{
		name:     "redacted placeholder",
		fields:   []string{"Redacted-Address: redacted"},
		returned: []string{"To: redacted@isp.example.net"},
		redacted: true,
	},
	{
		name:     "local part removed",
		fields:   []string{"Original-Rcpt-To: <@isp.example.net>"},
		returned: []string{"To: undisclosed-recipients:;"},
		redacted: true,
	},
	{
		name: "redacted report field, trace field in the clear",
		// The reporter's redaction covers its own field only; the
		// returned message still names the recipient.
		fields:   []string{"Original-Rcpt-To: xxxxxxx@isp.example.net"},
		returned: []string{"X-Original-To: alice@isp.example.net", "To: xxxxxxx@isp.example.net"},
		want:     []string{"alice@isp.example.net"}, from: RecoveredXOriginalTo, redacted: true,
	},
	{
		name:     "no recipient anywhere",
		returned: []string{"To: undisclosed-recipients:;"},
	},
}

// malformation is a way real reports deviate from RFC 5965.
type malformation struct {
	name          string
	unterminated  bool // no closing boundary
	headersOnly   bool // the last part is text/rfc822-headers ending without a blank line (with unterminated)
	otherBoundary bool // the body uses another boundary than the declared one
	mixedNL       bool // the report part uses the other line end
	textPlain     bool // the returned message is inlined as text/plain
	folded        bool // header fields folded right after the colon and at commas
	autoReply     bool // subject and fields of an automatic reply
	rewrapped     bool // top level multipart/mixed with an "Out of office" subject
	noReportType  bool // multipart/report without report-type
	needsReport   bool // not for JMRP reports, which have no report part
}

var malformations = []malformation{
	{name: "well-formed"},
	{name: "unterminated", unterminated: true},
	{name: "unterminated headers", unterminated: true, headersOnly: true},
	{name: "other boundary", otherBoundary: true},
	{name: "mixed line ends", mixedNL: true},
	{name: "returned as text/plain", textPlain: true, needsReport: true},
	{name: "odd folding", folded: true},
	{name: "auto-reply look", autoReply: true},
	{name: "rewrapped", rewrapped: true},
	{name: "no report-type", noReportType: true},
	{name: "all at once", unterminated: true, otherBoundary: true, mixedNL: true, textPlain: true, folded: true, autoReply: true, needsReport: true},
}

// buildReport writes the report of carrier c with malformation m and line
// end nl.
func buildReport(c carrier, m malformation, nl string) string {
	var b strings.Builder
	line := func(s string) { b.WriteString(s + nl) }
	field := func(s string, nl string) {
		if m.folded {
			// RFC 5322 §3.2.2 allows folding white space right
			// after the colon and between the items of a list.
			name, value, _ := strings.Cut(s, ": ")
			s = name + ":" + nl + "\t" + strings.ReplaceAll(value, ", ", ","+nl+"  ")
		}
		b.WriteString(s + nl)
	}
	boundary, declared := "=_gen_1", "=_gen_1"
	if m.otherBoundary {
		declared = "=_gen_declared"
	}

	if c.jmrp {
		line("From: staff@hotmail.com")
	} else {
		line("From: Feedback Loop <fbl@isp.example.net>")
	}
	line("To: fbl@send.example.org")
	switch {
	case m.autoReply || m.rewrapped:
		line("Subject: Out of Office: Weekly deals")
		line("Auto-Submitted: auto-replied")
	case c.jmrp:
		line("Subject: complaint about message from 192.0.2.7")
	default:
		line("Subject: Abuse report")
	}
	line("MIME-Version: 1.0")
	switch {
	case c.jmrp || m.rewrapped:
		field(`Content-Type: multipart/mixed; boundary="`+declared+`"`, nl)
	case m.noReportType:
		field(`Content-Type: multipart/report; boundary="`+declared+`"`, nl)
	default:
		field(`Content-Type: multipart/report; report-type=feedback-report; boundary="`+declared+`"`, nl)
	}
	line("")
	line("This is a MIME-formatted message.")
	line("--" + boundary)
	field("Content-Type: text/plain; charset=us-ascii", nl)
	line("")
	line("This is an email abuse report for a message from send.example.org.")
	line("")

	if !c.jmrp {
		rnl := nl
		if m.mixedNL {
			rnl = map[string]string{"\n": "\r\n", "\r\n": "\n"}[nl]
		}
		line("--" + boundary)
		field("Content-Type: message/feedback-report", rnl)
		b.WriteString(rnl)
		ft := c.feedbackType
		if ft == "" {
			ft = "abuse"
		}
		field("Feedback-Type: "+ft, rnl)
		field("User-Agent: GenFBL/1.0", rnl)
		field("Version: 1", rnl)
		for _, f := range c.fields {
			field(f, rnl)
		}
		field("Source-IP: 192.0.2.7", rnl)
		b.WriteString(rnl)
	}

	line("--" + boundary)
	switch {
	case m.textPlain:
		field("Content-Type: text/plain; charset=us-ascii", nl)
	case m.headersOnly:
		field("Content-Type: text/rfc822-headers", nl)
	default:
		field("Content-Type: message/rfc822", nl)
	}
	field("Content-Disposition: inline", nl)
	line("")
	field("Received: from mta.send.example.org (mta.send.example.org [192.0.2.7]) by mx.isp.example.net; Thu, 01 Oct 2026 10:00:00 +0000", nl)
	for _, f := range c.returned {
		field(f, nl)
	}
	field("From: News <news@send.example.org>", nl)
	field("Subject: Weekly deals", nl)
	field("Message-ID: <gen-1@send.example.org>", nl)
	field("X-Repute-ID: gen-corr-1", nl)
	if m.autoReply {
		// RFC 3834 §5: what an automatic reply carries.
		field("Auto-Submitted: auto-replied", nl)
		field("X-Autoreply: yes", nl)
	}
	if m.headersOnly {
		return b.String() // ends after the last field: no blank line, no boundary
	}
	line("")
	line("Hello, here are this week's deals.")
	if !m.unterminated {
		line("--" + boundary + "--")
	}
	return b.String()
}

// TestRecipientCarriers parses every carrier with every malformation, with
// LF and CRLF line ends.
func TestRecipientCarriers(t *testing.T) {
	for _, c := range carriers {
		for _, m := range malformations {
			if m.needsReport && c.jmrp {
				continue
			}
			for _, nl := range []string{"\n", "\r\n"} {
				name := c.name + "/" + m.name + "/" + map[string]string{"\n": "LF", "\r\n": "CRLF"}[nl]
				msg := buildReport(c, m, nl)
				t.Run(name, func(t *testing.T) {
					for _, parse := range []struct {
						name string
						fn   func(string) (*Report, error)
					}{
						{"Parse", func(s string) (*Report, error) { return Parse(strings.NewReader(s)) }},
						{"ParseBytes", func(s string) (*Report, error) { return ParseBytes([]byte(s)) }},
					} {
						r, err := parse.fn(msg)
						if r == nil || (err != nil && !errors.Is(err, ErrMalformed)) {
							t.Fatalf("%s = %v, %v; want a report\n%s", parse.name, r, err, msg)
						}
						checkCarrier(t, parse.name, c, r)
					}
				})
			}
		}
	}
}

func checkCarrier(t *testing.T, parse string, c carrier, r *Report) {
	t.Helper()
	want := c.feedbackType
	if want == "" {
		want = "abuse"
	}
	if r.FeedbackType != want {
		t.Errorf("%s: FeedbackType = %q, want %q", parse, r.FeedbackType, want)
	}
	if !slices.Equal(r.Recipients, c.want) {
		t.Errorf("%s: Recipients = %q, want %q", parse, r.Recipients, c.want)
	}
	if r.RecipientRecoveredFrom != c.from {
		t.Errorf("%s: RecipientRecoveredFrom = %q, want %q", parse, r.RecipientRecoveredFrom, c.from)
	}
	if r.RecipientRedacted != c.redacted {
		t.Errorf("%s: RecipientRedacted = %v, want %v", parse, r.RecipientRedacted, c.redacted)
	}
	if r.Provider != c.provider {
		t.Errorf("%s: Provider = %q, want %q", parse, r.Provider, c.provider)
	}
	if r.Original.MessageID != "gen-1@send.example.org" || r.Original.CorrelationID != "gen-corr-1" {
		t.Errorf("%s: Original.MessageID, CorrelationID = %q, %q; want the returned message's", parse, r.Original.MessageID, r.Original.CorrelationID)
	}
}

// TestRedacted lists what counts as a redacted address (RFC 6590) and what
// does not.
func TestRedacted(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{"xxxxxxx@example.com", true},
		{"XXXX@example.com", true},
		{"****@example.com", true},
		{"redacted@example.com", true},
		{"[redacted]@example.com", true},
		{"@example.com", true},
		{"5f4dcc3b5aa765d61d8327deb882cf99@example.com", true},         // MD5
		{"e38ad214943daad1d64c102faec29de4afe9da3d@example.com", true}, // SHA-1
		{"alice@example.com", false},
		{"xavier@example.com", false},
		{"xx@example.com", false},
		{"12345678901@example.com", false}, // digits only: a phone number or a QQ number
		{"deadbeef@example.com", false},    // too short for a hash
		{"alice.smith.1985@example.com", false},
		{"abcdefabcdefabcdef@example.com", false}, // letters only
	}
	for _, tt := range tests {
		if got := redacted(tt.addr); got != tt.want {
			t.Errorf("redacted(%q) = %v, want %v", tt.addr, got, tt.want)
		}
	}
}

// TestNotFeedbackMultipart: a multipart that is no report, with or without
// a look-alike subject, stays no complaint, and a DSN is decided on its
// header.
func TestNotFeedbackMultipart(t *testing.T) {
	tests := []struct{ name, msg string }{
		{"mixed, no report part", "Subject: Out of office\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nI am away.\n--b--\n"},
		{"report without report-type, a DSN", "Content-Type: multipart/report; boundary=b\n\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.com\n\nFinal-Recipient: rfc822; a@example.com\nAction: failed\nStatus: 5.1.1\n--b--\n"},
		{"mixed, mentions feedback-report in text", "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nWe do not send message/feedback-report here.\n--b--\n"},
	}
	for _, tt := range tests {
		for _, parse := range []func() (*Report, error){
			func() (*Report, error) { return Parse(strings.NewReader(tt.msg)) },
			func() (*Report, error) { return ParseBytes([]byte(tt.msg)) },
		} {
			if r, err := parse(); r != nil || err != ErrNotFeedback {
				t.Errorf("%s: Parse = %v, %v; want nil, ErrNotFeedback", tt.name, r, err)
			}
		}
	}
}

// TestHasFeedbackPart checks the byte search of the cheap pre-check.
func TestHasFeedbackPart(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{"--b\nContent-Type: message/feedback-report\n\n", true},
		{"--b\nContent-Type: Message/Feedback-Report\n\n", true},
		{"--b\ncontent-type: MESSAGE/FEEDBACK-REPORT\n\n", true},
		{"feedback-report", true},
		{"--b\nContent-Type: message/delivery-status\n\n", false},
		{"eedback-report", false},
		{"-report", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := hasFeedbackPart([]byte(tt.body)); got != tt.want {
			t.Errorf("hasFeedbackPart(%q) = %v, want %v", tt.body, got, tt.want)
		}
	}
}
