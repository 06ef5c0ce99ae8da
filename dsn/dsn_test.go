package dsn

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

func parseFile(t *testing.T, name string) (*Report, error) {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Parse(f)
}

func TestParseRFC3464(t *testing.T) {
	rep, err := parseFile(t, "postfix-userunknown.eml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if !rep.Structured || rep.Kind != KindBounce {
		t.Errorf("Structured %v Kind %q, want true bounce", rep.Structured, rep.Kind)
	}
	if rep.ReportingMTA != "mx.example.net" || rep.ENVID != "env-42" {
		t.Errorf("ReportingMTA %q ENVID %q", rep.ReportingMTA, rep.ENVID)
	}
	if rep.VERP != "tok123" {
		t.Errorf("VERP = %q, want tok123", rep.VERP)
	}
	if rep.Original.MessageID != "m1@send.example.org" || rep.Original.CorrelationID != "corr-7" {
		t.Errorf("Original = %+v", rep.Original)
	}
	if len(rep.Recipients) != 2 {
		t.Fatalf("got %d recipients, want 2: %+v", len(rep.Recipients), rep.Recipients)
	}
	want := []struct {
		addr, action, status, reply string
		reason                      Reason
		hard                        bool
	}{
		{"nobody@example.com", "failed", "5.1.1", "550", UserUnknown, true},
		{"full@example.com", "delayed", "4.2.2", "452", MailboxFull, false},
	}
	for i, w := range want {
		rc := rep.Recipients[i]
		if rc.Address != w.addr || rc.Action != w.action || rc.Status != w.status ||
			rc.ReplyCode != w.reply || rc.Reason != w.reason || rc.Hard != w.hard {
			t.Errorf("recipient %d = %+v, want %+v", i, rc, w)
		}
		if rc.RemoteMTA != "mail.example.com" {
			t.Errorf("recipient %d RemoteMTA = %q", i, rc.RemoteMTA)
		}
	}
	if rep.Recipients[0].ORCPT != "nobody@example.com" {
		t.Errorf("ORCPT = %q", rep.Recipients[0].ORCPT)
	}
	if !strings.Contains(rep.Recipients[0].Diagnostic, "User unknown in local recipient table") {
		t.Errorf("Diagnostic = %q", rep.Recipients[0].Diagnostic)
	}
}

func TestParseQmailProse(t *testing.T) {
	rep, err := parseFile(t, "qmail-prose.eml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if rep.Structured {
		t.Error("Structured = true for a prose bounce")
	}
	if rep.Original.MessageID != "orig-1@example.org" {
		t.Errorf("Original.MessageID = %q", rep.Original.MessageID)
	}
	if len(rep.Recipients) != 2 {
		t.Fatalf("got %d recipients: %+v", len(rep.Recipients), rep.Recipients)
	}
	for i, w := range []struct {
		addr, status string
		reason       Reason
	}{
		{"gone@example.jp", "5.1.1", UserUnknown},
		{"quota@example.jp", "5.2.2", MailboxFull},
	} {
		rc := rep.Recipients[i]
		if rc.Address != w.addr || rc.Status != w.status || rc.Reason != w.reason || rc.ReplyCode == "" {
			t.Errorf("recipient %d = %+v, want %+v", i, rc, w)
		}
	}
}

func TestParseEximExpired(t *testing.T) {
	rep, err := parseFile(t, "exim-expired.eml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(rep.Recipients) != 1 {
		t.Fatalf("got %d recipients: %+v", len(rep.Recipients), rep.Recipients)
	}
	rc := rep.Recipients[0]
	// No status code in the message: the synthetic code of the reason,
	// temporary since Exim retried until it gave up; the action is
	// failed and the report a bounce: Exim gave up (RFC 3464 §2.3.3).
	if rc.Address != "late@example.com" || rc.Reason != Expired || rc.Status != "4.0.947" || rc.Action != "failed" || rc.Hard {
		t.Errorf("recipient = %+v", rc)
	}
	if rep.Kind != KindBounce {
		t.Errorf("Kind = %q, want %q", rep.Kind, KindBounce)
	}
}

func TestParseAutoReply(t *testing.T) {
	rep, err := parseFile(t, "vacation.eml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if rep.Kind != KindAutoReply || len(rep.Recipients) != 1 {
		t.Fatalf("Kind %q recipients %+v", rep.Kind, rep.Recipients)
	}
	rc := rep.Recipients[0]
	if rc.Address != "away@example.net" || rc.Reason != Vacation || rc.Status != "" || rc.Action != "" {
		t.Errorf("recipient = %+v", rc)
	}
}

func TestParseNotBounce(t *testing.T) {
	rep, err := parseFile(t, "plain.eml")
	if !errors.Is(err, ErrNotBounce) || rep != nil {
		t.Errorf("Parse = %v, %v; want nil, ErrNotBounce", rep, err)
	}
}

func TestParseTruncated(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "qmail-prose.eml"))
	if err != nil {
		t.Fatal(err)
	}
	big := append(b, strings.Repeat("x", MaxMessageSize)...)
	rep, err := ParseBytes(big)
	if !errors.Is(err, ErrTruncated) || rep == nil || len(rep.Recipients) != 2 {
		t.Errorf("ParseBytes(oversized) = %v, %v; want the report and ErrTruncated", rep, err)
	}
}

func TestParseNewlineVariants(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "postfix-userunknown.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, nl := range map[string]string{"crlf": "\r\n", "cr": "\r"} {
		rep, err := ParseBytes([]byte(strings.ReplaceAll(string(b), "\n", nl)))
		if err != nil || len(rep.Recipients) != 2 || rep.Recipients[0].Reason != UserUnknown {
			t.Errorf("%s: Parse = %+v, %v", name, rep, err)
		}
	}
}

func TestClassifyReply(t *testing.T) {
	tests := []struct {
		code     int
		enhanced string
		text     string
		reason   Reason
		hard     bool
	}{
		{550, "5.1.1", "<a@example.com>: Recipient address rejected: User unknown", UserUnknown, true},
		{552, "5.2.2", "Mailbox full", MailboxFull, false},
		{550, "", "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", Blocked, false},
		{550, "5.7.26", "Unauthenticated email from example.org is not accepted due to domain's DMARC policy", AuthFailure, false},
		{421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints", BadReputation, false},
		{421, "4.7.0", "Messages from 192.0.2.1 temporarily deferred due to unexpected volume", Speeding, false},
		{550, "5.1.2", "Host unknown", HostUnknown, true},
		{556, "5.1.10", "Recipient address has null MX", NotAccept, true},
		{554, "5.7.1", "Relay access denied", NoRelaying, false},
		{550, "", "Mailbox is frozen", Suspend, false},
		{250, "2.0.0", "Ok", Delivered, false},
		{0, "", "", Undefined, false},
	}
	for _, tt := range tests {
		r, hard := ClassifyReply(tt.code, tt.enhanced, tt.text, PhaseUnknown)
		if r != tt.reason || hard != tt.hard {
			t.Errorf("ClassifyReply(%d, %q, %q) = %q, %v; want %q, %v", tt.code, tt.enhanced, tt.text, r, hard, tt.reason, tt.hard)
		}
	}
}

func TestSyntheticStatus(t *testing.T) {
	tests := []struct {
		r    Reason
		temp bool
		want string
	}{
		{UserUnknown, false, "5.0.911"},
		{Filtered, true, "4.0.924"},
		{Expired, true, "4.0.947"},
		{Vacation, false, ""},
	}
	for _, tt := range tests {
		if got := SyntheticStatus(tt.r, tt.temp); got != tt.want {
			t.Errorf("SyntheticStatus(%q, %v) = %q, want %q", tt.r, tt.temp, got, tt.want)
		}
	}
}

func TestFindCodes(t *testing.T) {
	for _, tt := range []struct{ in, status, reply string }{
		{"smtp; 550 5.1.1 <a@b.c>... User unknown", "5.1.1", "550"},
		{"host 192.0.2.153 said: 552-5.2.2 full", "5.2.2", "552"},
		{"Exim 4.60 relay 10.0.2.15", "", ""},
		{"5.1.0 - Unknown address error 550-'5.7.1 <x@y.z>... Access denied'", "5.7.1", "550"},
	} {
		if got := replyStatus(tt.in); got != tt.status {
			t.Errorf("replyStatus(%q) = %q, want %q", tt.in, got, tt.status)
		}
		if got := findReplyCode(tt.in); got != tt.reply {
			t.Errorf("findReplyCode(%q) = %q, want %q", tt.in, got, tt.reply)
		}
	}
}

func TestSplitMultipartNesting(t *testing.T) {
	// Deeply nested multiparts stop at maxDepth without failing.
	var b strings.Builder
	b.WriteString("From: MAILER-DAEMON@x.example\nSubject: Undelivered\n")
	for i := 0; i < 50; i++ {
		b.WriteString("Content-Type: multipart/mixed; boundary=\"b" + strings.Repeat("x", i) + "\"\n\n--b" + strings.Repeat("x", i) + "\n")
	}
	b.WriteString("\nuser unknown <u@example.com>\n")
	if _, err := ParseBytes([]byte(b.String())); err != nil && !errors.Is(err, ErrNoRecipient) {
		t.Errorf("nested: %v", err)
	}
}

func TestClassifyReplyTemporaryUnknown(t *testing.T) {
	// An unexplained synchronous 4xx has no known cause; it is not a
	// queue expiry.
	if r, hard := ClassifyReply(451, "", "try later", PhaseUnknown); r == Expired || hard {
		t.Errorf("ClassifyReply(451, try later) = %q, %v", r, hard)
	}
}

func TestParseOrdinaryMailIsNotBounce(t *testing.T) {
	for _, msg := range []string{
		"From: billing@example.com\nTo: a@example.org\nSubject: Error in your invoice\n\nPlease write to help@example.com.\n",
		"From: friend@example.com\nTo: a@example.org\nSubject: Re: the warning we got\n\nSee you.\n",
	} {
		if rep, err := ParseBytes([]byte(msg)); !errors.Is(err, ErrNotBounce) {
			t.Errorf("ParseBytes(%.40q) = %+v, %v; want ErrNotBounce", msg, rep, err)
		}
	}
}

func TestParsePathological(t *testing.T) {
	// A header folded over many lines and a body naming many addresses
	// are parsed in linear time, and the recipients are capped.
	var b strings.Builder
	b.WriteString("From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail\nX-Long: a\n")
	for i := 0; i < 100000; i++ {
		b.WriteString(" continued\n")
	}
	b.WriteString("\nThe following addresses had permanent fatal errors:\n")
	for i := 0; i < 50000; i++ {
		b.WriteString("<user")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(string(rune('a'+i%26)) + "@example.com>: 550 5.1.1 User unknown\n")
	}
	rep, err := ParseBytes([]byte(b.String()))
	if err != nil {
		t.Fatalf("ParseBytes: %v", err)
	}
	if n := len(rep.Recipients); n == 0 || n > maxTextRecipients {
		t.Errorf("got %d recipients, want 1..%d", n, maxTextRecipients)
	}
}

func TestParseRepeatedAddress(t *testing.T) {
	// One address named on every line of a long text: the places
	// searched per address are capped, so this stays linear.
	var b strings.Builder
	b.WriteString("From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail\n\n")
	for i := 0; i < 200000; i++ {
		b.WriteString("<same@example.com> failed\n")
	}
	rep, err := ParseBytes([]byte(b.String()))
	if err != nil || len(rep.Recipients) != 1 || rep.Recipients[0].Address != "same@example.com" {
		t.Fatalf("ParseBytes = %+v, %v", rep, err)
	}
}

func TestParseSuccessAndDelay(t *testing.T) {
	const tmpl = `From: MAILER-DAEMON@mx.example.net
Subject: Delivery Status Notification
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; someone@example.com
Action: ACTION
Status: STATUS

--b--
`
	for _, tt := range []struct {
		action, status string
		kind           Kind
		reason         Reason
	}{
		{"delivered", "2.0.0", KindSuccess, Delivered},
		{"relayed", "2.0.0", KindSuccess, Delivered},
		{"delayed", "4.4.7", KindDelay, Expired},
		{"delayed", "4.2.2", KindDelay, MailboxFull},
	} {
		msg := strings.NewReplacer("ACTION", tt.action, "STATUS", tt.status).Replace(tmpl)
		rep, err := ParseBytes([]byte(msg))
		if err != nil {
			t.Fatalf("%s %s: %v", tt.action, tt.status, err)
		}
		rc := rep.Recipients[0]
		if rep.Kind != tt.kind || rc.Reason != tt.reason || rc.Status != tt.status || rc.Hard {
			t.Errorf("%s %s: kind %q, recipient %+v; want %q %q", tt.action, tt.status, rep.Kind, rc, tt.kind, tt.reason)
		}
	}
}

func TestParseGlobalDSN(t *testing.T) {
	// RFC 6533: message/global-delivery-status with a UTF-8 address.
	msg := `From: MAILER-DAEMON@mx.example.net
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=global-delivery-status; boundary="b"

--b
Content-Type: message/global-delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: utf-8; 用户@例子.广告
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 mailbox unavailable

--b
Content-Type: message/global-headers

Message-ID: <g1@example.net>

--b--
`
	rep, err := ParseBytes([]byte(msg))
	if err != nil {
		t.Fatalf("ParseBytes: %v", err)
	}
	if len(rep.Recipients) != 1 || rep.Recipients[0].Address != "用户@例子.广告" || rep.Recipients[0].Reason != UserUnknown {
		t.Errorf("recipients = %+v", rep.Recipients)
	}
	if rep.Original.MessageID != "g1@example.net" {
		t.Errorf("Original.MessageID = %q", rep.Original.MessageID)
	}
}

func TestIsAutoReply(t *testing.T) {
	for _, tt := range []struct {
		hdr  string
		want bool
	}{
		{"Auto-Submitted: auto-replied\nSubject: Away until May 5", true},
		{"Subject: Auto reply: Nyaan", true},
		{"Subject: Out of Office: hello", true},
		{"Subject: Automatic reply: hello", true},
		{"Auto-Submitted: auto-generated\nSubject: news", false},
		{"Subject: vacation photos", false},
		{"Subject: our autoreply settings", false},
	} {
		h, _ := new(arena).parseHeader(tt.hdr + "\n\n")
		if got := isAutoReply(h); got != tt.want {
			t.Errorf("isAutoReply(%q) = %v, want %v", tt.hdr, got, tt.want)
		}
	}
}

// TestParseBytesKeepsNoInput checks that no string of a Report points
// into the slice given to ParseBytes, which the caller may change or
// reuse afterwards (the parser reads the slice in place; see
// arena.detach).
func TestParseBytesKeepsNoInput(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// Without CR the input is not copied.
		b = bytes.ReplaceAll(b, []byte("\r"), nil)
		rep, _ := ParseBytes(b)
		if rep == nil {
			continue
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		hi := lo + uintptr(len(b))
		var walk func(v reflect.Value, path string)
		walk = func(v reflect.Value, path string) {
			switch v.Kind() {
			case reflect.String:
				s := v.String()
				if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); s != "" && p >= lo && p < hi {
					t.Errorf("%s: %s points into the input", f, path)
				}
			case reflect.Struct:
				for i := range v.NumField() {
					walk(v.Field(i), path+"."+v.Type().Field(i).Name)
				}
			case reflect.Slice:
				for i := range v.Len() {
					walk(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
				}
			case reflect.Pointer:
				walk(v.Elem(), path)
			}
		}
		walk(reflect.ValueOf(rep), "Report")
	}
}
