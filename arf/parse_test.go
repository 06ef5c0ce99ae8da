package arf

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the testdata/*.json golden files")

// dialectCase is what a test file must give, written out by hand from the
// message.
type dialectCase struct {
	file          string
	feedbackType  string
	provider      string
	recipients    []string
	recoveredFrom string
	redacted      bool
	messageID     string
	correlationID string
	malformed     bool // the error wraps ErrMalformed
	check         func(t *testing.T, r *Report)
}

var dialectCases = []dialectCase{
	{
		file:         "rfc5965-abuse.eml",
		feedbackType: "abuse", recipients: []string{"user@example.com"},
		recoveredFrom: RecoveredOriginalRcptTo,
		messageID:     "8787KJKJ3K4J3K4J3K4J3.mail@example.net",
		check: func(t *testing.T, r *Report) {
			eq(t, "UserAgent", r.UserAgent, "SomeGenerator/1.0")
			eq(t, "Version", r.Version, "1")
			eq(t, "OriginalMailFrom", r.OriginalMailFrom, "somespammer@example.net")
			eq(t, "SourceIP", r.SourceIP, "192.0.2.1")
			eq(t, "ReportingMTA", r.ReportingMTA, "mail.example.com")
			eqList(t, "ReportedDomain", r.ReportedDomain, []string{"example.net"})
			eqList(t, "ReportedURI", r.ReportedURI, []string{"http://example.net/earn_money.html", "mailto:user@example.com"})
			eqTime(t, r.ArrivalDate, "2005-03-08T14:00:00-04:00") // EDT, RFC 5322 §4.3
			if !strings.HasPrefix(r.AuthenticationResults, "mail.example.com;") || !strings.HasSuffix(r.AuthenticationResults, "spf=fail smtp.mail=somespammer@example.com") {
				t.Errorf("AuthenticationResults = %q", r.AuthenticationResults)
			}
		},
	},
	{
		file:         "rfc5965-minimal.eml",
		feedbackType: "abuse", recipients: []string{"subscriber@example.com"},
		recoveredFrom: RecoveredTo,
		messageID:     "20050308185841.1201.news@example.net",
		correlationID: "c0ffee01-0001-4a2b-9c3d-000000000001",
		check: func(t *testing.T, r *Report) {
			eq(t, "Original.FeedbackID", r.Original.FeedbackID, "spring-sale:campaign-7:acct-42:repute")
			if !r.Original.HeadersOnly {
				t.Error("Original.HeadersOnly = false for a text/rfc822-headers part")
			}
		},
	},
	{
		file:         "rfc5965-optout.eml",
		feedbackType: "opt-out", recipients: []string{"alice@isp.example.org", "bob@isp.example.org"},
		recoveredFrom: RecoveredOriginalRcptTo,
		messageID:     "20261103085859.77.news@mail.example.com",
		correlationID: "5f0c1e2d-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
		check: func(t *testing.T, r *Report) {
			// The report part is base64-encoded.
			eq(t, "OriginalEnvelopeID", r.OriginalEnvelopeID, "env-000042")
			eq(t, "ReportingMTA", r.ReportingMTA, "mx1.isp.example.org")
			eq(t, "Original.Subject", r.Original.Subject, "Autumn sale — 30% off")
			eq(t, "Original.DKIMDomain", r.Original.DKIMDomain, "mail.example.com")
			if r.Incidents != 2 {
				t.Errorf("Incidents = %d, want 2", r.Incidents)
			}
		},
	},
	{
		file:         "rfc6591-dkim.eml",
		feedbackType: "auth-failure", recipients: []string{"user@example.com"},
		recoveredFrom: RecoveredOriginalRcptTo,
		messageID:     "20050308175958.1234.randomuser@example.net",
		check: func(t *testing.T, r *Report) {
			eq(t, "AuthFailure", r.AuthFailure, "signature")
			eq(t, "DeliveryResult", r.DeliveryResult, "spam")
			want := DKIMFields{
				Domain: "example.net", Identity: "@example.net", Selector: "news",
				CanonicalizedHeader: "ZnJvbTpKb2UgU2l4UGFjayA8am9lQGZvb3RiYWxsLmV4YW1wbGUuY29tPg0K",
				CanonicalizedBody:   "SGkuDQoNCldlIGxvc3QgdGhlIGdhbWUuDQo=",
			}
			if r.DKIM != want {
				t.Errorf("DKIM = %+v, want %+v", r.DKIM, want)
			}
			eq(t, "Original.DKIMDomain", r.Original.DKIMDomain, "example.net")
		},
	},
	{
		file:         "rfc6591-spf.eml",
		feedbackType: "auth-failure", recipients: []string{"carol@receiver.example.org"},
		recoveredFrom: RecoveredOriginalRcptTo,
		messageID:     "inv-55821@mail.example.com",
		check: func(t *testing.T, r *Report) {
			eq(t, "AuthFailure", r.AuthFailure, "spf")
			eq(t, "SourceIP", r.SourceIP, "2001:db8::25")
			if r.SourcePort != 49152 { // RFC 6692
				t.Errorf("SourcePort = %d, want 49152", r.SourcePort)
			}
			eqList(t, "SPFDNS", r.SPFDNS, []string{
				`txt : example.com : "v=spf1 ip4:192.0.2.0/24 -all"`,
				`txt : _spf.example.com : "v=spf1 -all"`,
			})
			eq(t, "IdentityAlignment", r.IdentityAlignment, "none")
			eq(t, "DeliveryResult", r.DeliveryResult, "reject")
		},
	},
	{
		file:         "jmrp-mixed.eml",
		feedbackType: "abuse", provider: ProviderJMRP, recipients: []string{"dave@outlook.example.com"},
		recoveredFrom: RecoveredHmXmr,
		messageID:     "20261102065929.12.news@mail.example.com",
		correlationID: "7a6b5c4d-0000-4e1f-9a8b-1c2d3e4f5a6b",
	},
	{
		file:         "jmrp-report.eml",
		feedbackType: "abuse", provider: ProviderJMRP, recipients: []string{"erin@hotmail.example.com"},
		recoveredFrom: RecoveredHmXmr,
		messageID:     "20261103184710.99.news@mail.example.com",
		correlationID: "0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9",
	},
	{
		file:         "yahoo-cfl.eml",
		feedbackType: "abuse", provider: ProviderYahoo, redacted: true,
		messageID:     "20261104145818.31.news@mail.example.com",
		correlationID: "11112222-3333-4444-5555-666677778888",
		check: func(t *testing.T, r *Report) {
			eq(t, "Original.DKIMDomain", r.Original.DKIMDomain, "mail.example.com")
			eq(t, "Original.FeedbackID", r.Original.FeedbackID, "weekly-deals:c42:acct7:repute")
			eqList(t, "ReportedDomain", r.ReportedDomain, []string{"mail.example.com"})
		},
	},
	{
		file:         "yahoo-blankline.eml",
		feedbackType: "abuse", provider: ProviderYahoo, recipients: []string{"ivy@yahoo.example.com"},
		recoveredFrom: RecoveredApparentlyTo,
		messageID:     "members-0001.list@example.net",
		check: func(t *testing.T, r *Report) {
			eqTime(t, r.ArrivalDate, "2026-11-12T03:55:00-08:00") // Received-Date, PST
			eq(t, "AuthenticationResults", r.AuthenticationResults, "")
		},
	},
	{
		file:         "aol-abuse.eml",
		feedbackType: "abuse", provider: ProviderAOL, redacted: true,
		messageID:     "20261105003912.8.news@mail.example.com",
		correlationID: "aaaabbbb-cccc-4ddd-8eee-ffff00001111",
		check: func(t *testing.T, r *Report) {
			eqTime(t, r.ArrivalDate, "2026-11-05T00:39:14Z") // from Received-Date
			eq(t, "SourceIP", r.SourceIP, "203.0.113.9")
		},
	},
	{
		file:         "mailru-abuse.eml",
		feedbackType: "abuse", provider: ProviderMailRu, recipients: []string{"grigory@mail.example.net"},
		recoveredFrom: RecoveredOriginalRcptTo,
		messageID:     "20261106043138.5.news@mail.example.com",
		correlationID: "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
		check: func(t *testing.T, r *Report) {
			eq(t, "Original.MailruMsgtype", r.Original.MailruMsgtype, "weekly_promo")
			eq(t, "Original.Subject", r.Original.Subject, "Распродажа")
		},
	},
	{
		file:         "lookalike-text.eml",
		feedbackType: "abuse", recipients: []string{"frank@isp.example.net"},
		recoveredFrom: RecoveredOriginalRcptTo,
		messageID:     "20261107104208.3.news@mail.example.com",
		correlationID: "01234567-89ab-4cde-8f01-23456789abcd",
		malformed:     true,
	},
	{
		file:         "lookalike-mixed.eml",
		feedbackType: "abuse", recipients: []string{"grace@cable.example.net"},
		recoveredFrom: RecoveredTo,
		messageID:     "20261108140958.4.news@mail.example.com",
		correlationID: "fedcba98-7654-4321-8fed-cba987654321",
		malformed:     true,
	},
	{
		file:         "malformed.eml",
		feedbackType: "abuse", recipients: []string{"heidi@small.example.org"},
		recoveredFrom: RecoveredOriginalRcptTo,
		messageID:     "20261109095900.1.news@mail.example.com",
		malformed:     true,
		check: func(t *testing.T, r *Report) {
			if r.SourcePort != 0 || !r.ArrivalDate.IsZero() {
				t.Errorf("SourcePort = %d, ArrivalDate = %v; want both unset", r.SourcePort, r.ArrivalDate)
			}
		},
	},
}

func TestDialects(t *testing.T) {
	for _, tc := range dialectCases {
		t.Run(tc.file, func(t *testing.T) {
			r, err := parseFile(t, filepath.Join("testdata", tc.file))
			if r == nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := errors.Is(err, ErrMalformed); got != tc.malformed {
				t.Errorf("Parse error = %v, want malformed %v", err, tc.malformed)
			}
			eq(t, "FeedbackType", r.FeedbackType, tc.feedbackType)
			eq(t, "Provider", r.Provider, tc.provider)
			eqList(t, "Recipients", r.Recipients, tc.recipients)
			eq(t, "RecipientRecoveredFrom", r.RecipientRecoveredFrom, tc.recoveredFrom)
			if r.RecipientRedacted != tc.redacted {
				t.Errorf("RecipientRedacted = %v, want %v", r.RecipientRedacted, tc.redacted)
			}
			eq(t, "Original.MessageID", r.Original.MessageID, tc.messageID)
			eq(t, "Original.CorrelationID", r.Original.CorrelationID, tc.correlationID)
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
}

func TestMalformedErrors(t *testing.T) {
	_, err := parseFile(t, "testdata/malformed.eml")
	for _, want := range []string{
		`Source-Port "sixty"`,
		`Arrival-Date "yesterday"`,
		"no User-Agent",
		"no Version",
		"without closing boundary",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse error = %v, want it to mention %q", err, want)
		}
	}
}

// TestGolden compares the whole Report of every testdata message with its
// golden JSON file (go test -update rewrites them; review the diff).
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.eml")
	if len(files) == 0 {
		t.Fatal("no testdata")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			r, err := parseFile(t, file)
			got := golden{Report: r}
			if err != nil {
				got.Error = err.Error()
			}
			b, _ := json.MarshalIndent(got, "", "\t")
			b = append(b, '\n')
			path := strings.TrimSuffix(file, ".eml") + ".json"
			if *update {
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("Parse(%s) differs from %s:\ngot:\n%s\nwant:\n%s", file, path, b, want)
			}
		})
	}
}

type golden struct {
	Report *Report `json:"report"`
	Error  string  `json:"error,omitempty"`
}

// TestLineEndings parses every testdata message with CRLF and with lone-CR
// line ends: the result must be the one of the LF file.
func TestLineEndings(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.eml")
	for _, file := range files {
		lf, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := Parse(bytes.NewReader(lf))
		for _, nl := range []string{"\r\n", "\r"} {
			b := bytes.ReplaceAll(lf, []byte("\n"), []byte(nl))
			got, err := Parse(bytes.NewReader(b))
			if (err == nil) != (wantErr == nil) || errors.Is(err, ErrNotFeedback) != errors.Is(wantErr, ErrNotFeedback) {
				t.Errorf("%s with %q line ends: error %v, want %v", file, nl, err, wantErr)
			}
			if want == nil || got == nil {
				if want != got {
					t.Errorf("%s with %q line ends: report %v, want %v", file, nl, got, want)
				}
				continue
			}
			// Folded values keep their (different) white space.
			got.AuthenticationResults, want.AuthenticationResults = "", ""
			gj, _ := json.Marshal(got)
			wj, _ := json.Marshal(want)
			if !bytes.Equal(gj, wj) {
				t.Errorf("%s with %q line ends:\ngot  %s\nwant %s", file, nl, gj, wj)
			}
		}
	}
}

func TestNotFeedback(t *testing.T) {
	tests := []struct{ name, msg string }{
		{"empty", ""},
		{"header only", "From: a@example.com\nSubject: hello\n"},
		{"no header", "\n\nFeedback-Type: abuse\n"},
		{"garbage", "\x00\xff\xfe binary \r\r\n\n"},
		{"plain", "From: a@example.com\nContent-Type: text/plain\n\nFeedback-Type: abuse\n"},
		{"feedback subject, no fields", "Subject: Abuse report\nContent-Type: text/plain\n\nNothing here.\n"},
		{"multipart/mixed, no report", "Subject: Spam report\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\nhi\n--b--\n"},
	}
	for _, tt := range tests {
		r, err := Parse(strings.NewReader(tt.msg))
		if r != nil || !errors.Is(err, ErrNotFeedback) {
			t.Errorf("%s: Parse = %v, %v; want nil, ErrNotFeedback", tt.name, r, err)
		}
	}
	for _, file := range []string{"testdata/not-dsn.eml", "testdata/not-spam-report.eml"} {
		r, err := parseFile(t, file)
		if r != nil || err != ErrNotFeedback {
			t.Errorf("%s: Parse = %v, %v; want nil, ErrNotFeedback", file, r, err)
		}
	}
}

// TestNotFeedbackReadsHeaderOnly checks that a message that is no complaint
// is rejected after reading no more than its header (and one buffer).
func TestNotFeedbackReadsHeaderOnly(t *testing.T) {
	dsn, err := os.ReadFile("testdata/not-dsn.eml")
	if err != nil {
		t.Fatal(err)
	}
	msg := append(dsn, bytes.Repeat([]byte("padding line\n"), 100000)...)
	r := bytes.NewReader(msg)
	if _, err := Parse(r); err != ErrNotFeedback {
		t.Fatalf("Parse = %v, want ErrNotFeedback", err)
	}
	if read := len(msg) - r.Len(); read > 8192 {
		t.Errorf("Parse read %d bytes of a %d-byte bounce, want at most 8192", read, len(msg))
	}
}

func TestLimits(t *testing.T) {
	head := "From: fbl@example.org\nContent-Type: multipart/report; report-type=feedback-report; boundary=b0\n\n"
	report := "Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: t/1\nVersion: 1\nOriginal-Rcpt-To: a@example.com\n"

	t.Run("size", func(t *testing.T) {
		msg := head + "--b0\n" + report + "\n--b0\nContent-Type: text/plain\n\n" +
			strings.Repeat("x", MaxSize) + "\n--b0--\n"
		r, err := Parse(strings.NewReader(msg))
		if r == nil || r.FeedbackType != "abuse" || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("Parse of %d bytes = %+v, %v; want the report and a truncation error", len(msg), r, err)
		}
	})
	t.Run("nesting", func(t *testing.T) {
		var b strings.Builder
		b.WriteString(head)
		const depth = 50
		for i := 1; i <= depth; i++ {
			b.WriteString("--b" + itoa(i-1) + "\nContent-Type: multipart/mixed; boundary=b" + itoa(i) + "\n\n")
		}
		b.WriteString("--b" + itoa(depth) + "\n" + report)
		for i := depth; i >= 0; i-- {
			b.WriteString("\n--b" + itoa(i) + "--\n")
		}
		r, err := Parse(strings.NewReader(b.String()))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "nesting") {
			t.Errorf("Parse of %d nested multiparts = %+v, %v; want a nesting error", depth, r, err)
		}
	})
	t.Run("parts", func(t *testing.T) {
		msg := head + "--b0\n" + report + strings.Repeat("\n--b0\nContent-Type: text/plain\n\nx\n", 2*maxParts) + "\n--b0--\n"
		r, err := Parse(strings.NewReader(msg))
		if r == nil || r.FeedbackType != "abuse" || !strings.Contains(fmt.Sprint(err), "parts") {
			t.Errorf("Parse of %d parts = %+v, %v; want the report and a parts error", 2*maxParts+1, r, err)
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestConcurrent parses every testdata message from several goroutines at
// once; run with -race.
func TestConcurrent(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.eml")
	msgs := make([][]byte, len(files))
	want := make([]string, len(files))
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		msgs[i] = b
		r, err := Parse(bytes.NewReader(b))
		want[i] = result(r, err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, b := range msgs {
				r, err := Parse(bytes.NewReader(b))
				if got := result(r, err); got != want[i] {
					t.Errorf("%s: concurrent Parse = %s, want %s", files[i], got, want[i])
				}
			}
		}()
	}
	wg.Wait()
}

func result(r *Report, err error) string {
	b, _ := json.Marshal(r)
	return string(b) + " " + fmt.Sprint(err)
}

func parseFile(t *testing.T, path string) (*Report, error) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Parse(f)
}

func eq(t *testing.T, name, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func eqList(t *testing.T, name string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", name, got, want)
	}
}

func eqTime(t *testing.T, got time.Time, want string) {
	t.Helper()
	w, err := time.Parse(time.RFC3339, want)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(w) || got.Format(time.RFC3339) != want {
		t.Errorf("ArrivalDate = %s, want %s", got.Format(time.RFC3339), want)
	}
}

func TestManyRecipients(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/report; report-type=feedback-report; boundary=b\n\n--b\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: t/1\nVersion: 1\n")
	for i := 0; i < 3*maxRecipients; i++ {
		fmt.Fprintf(&b, "Original-Rcpt-To: u%d@example.com\n", i)
	}
	b.WriteString("\n--b--\n")
	r, err := Parse(strings.NewReader(b.String()))
	if r == nil {
		t.Fatalf("Parse: %v", err)
	}
	if len(r.Recipients) != maxRecipients || !strings.Contains(fmt.Sprint(err), "recipients") {
		t.Fatalf("Parse of %d recipients: %d recipients, error %v; want %d and an error", 3*maxRecipients, len(r.Recipients), err, maxRecipients)
	}
	eq(t, "last recipient", r.Recipients[maxRecipients-1], fmt.Sprintf("u%d@example.com", maxRecipients-1))
}

// TestLenientTopHeader: an mbox "From " line and a line that is no header
// field do not hide the report.
func TestLenientTopHeader(t *testing.T) {
	b, err := os.ReadFile("testdata/rfc5965-minimal.eml")
	if err != nil {
		t.Fatal(err)
	}
	msg := "From arf-daemon@example.com Thu Mar  8 17:40:36 2005\n" +
		strings.Replace(string(b), "MIME-Version: 1.0\n", "MIME-Version: 1.0\nthis line is no header field\n", 1)
	r, err := Parse(strings.NewReader(msg))
	if r == nil || err != nil {
		t.Fatalf("Parse = %v, %v", r, err)
	}
	eq(t, "FeedbackType", r.FeedbackType, "abuse")
	eq(t, "Original.MessageID", r.Original.MessageID, "20050308185841.1201.news@example.net")
}

// TestBareReport: a message/feedback-report sent alone, not inside a
// multipart/report.
func TestBareReport(t *testing.T) {
	const msg = "From: fbl@example.org\nContent-Type: message/feedback-report\n\n" +
		"Feedback-Type: fraud\nUser-Agent: t/1\nVersion: 1\nOriginal-Rcpt-To: <kim@example.org>\n"
	r, err := Parse(strings.NewReader(msg))
	if r == nil || err != nil {
		t.Fatalf("Parse = %v, %v", r, err)
	}
	eq(t, "FeedbackType", r.FeedbackType, "fraud")
	eqList(t, "Recipients", r.Recipients, []string{"kim@example.org"})
}

// TestQuotedFieldsInText: the human-readable part of a real report may quote
// ARF fields; only the message/feedback-report part counts.
func TestQuotedFieldsInText(t *testing.T) {
	b, err := os.ReadFile("testdata/rfc5965-abuse.eml")
	if err != nil {
		t.Fatal(err)
	}
	msg := strings.Replace(string(b), "This is an email abuse report", "Feedback-Type: fraud\nThis is an email abuse report", 1)
	r, err := Parse(strings.NewReader(msg))
	if r == nil || err != nil {
		t.Fatalf("Parse = %v, %v", r, err)
	}
	eq(t, "FeedbackType", r.FeedbackType, "abuse")
}

// TestParseBytes checks that ParseBytes gives what Parse gives, on testdata
// and on the whole corpus, and leaves its input alone.
func TestParseBytes(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.eml")
	corpus, _ := filepath.Glob(filepath.Join(corpusDir, "maildir", "*", "*.eml"))
	files = append(files, corpus...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		orig := bytes.Clone(b)
		want := result(Parse(bytes.NewReader(b)))
		if got := result(ParseBytes(b)); got != want {
			t.Errorf("%s: ParseBytes = %s, Parse = %s", f, got, want)
		}
		if !bytes.Equal(b, orig) {
			t.Errorf("%s: ParseBytes modified its input", f)
		}
	}
}

// TestParseBytesNotFeedbackAllocs: turning a bounce away allocates nothing.
func TestParseBytesNotFeedbackAllocs(t *testing.T) {
	b, err := os.ReadFile("testdata/not-dsn.eml")
	if err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ParseBytes(b); err != ErrNotFeedback {
			t.Fatalf("ParseBytes = %v, want ErrNotFeedback", err)
		}
	})
	if allocs != 0 {
		t.Errorf("ParseBytes of a bounce: %v allocations, want 0", allocs)
	}
}

// TestNestedPartsBudget: parts are counted over the whole message, so that
// nesting cannot multiply them.
func TestNestedPartsBudget(t *testing.T) {
	var b strings.Builder
	b.WriteString("Content-Type: multipart/report; report-type=feedback-report; boundary=top\n\n")
	for i := 0; i < maxParts; i++ {
		b.WriteString("--top\nContent-Type: multipart/mixed; boundary=in\n\n")
		b.WriteString(strings.Repeat("--in\nContent-Type: text/plain\n\nx\n", maxParts))
		b.WriteString("--in--\n")
	}
	b.WriteString("--top--\n")
	r, err := Parse(strings.NewReader(b.String()))
	if r == nil || !strings.Contains(fmt.Sprint(err), fmt.Sprintf("more than %d MIME parts", maxParts)) {
		t.Errorf("Parse = %+v, %v; want a report and a parts error", r, err)
	}
}

// TestOddsBounded: the error lists a bounded number of oddities.
func TestOddsBounded(t *testing.T) {
	msg := "Content-Type: message/feedback-report\n\nFeedback-Type: abuse\nUser-Agent: t/1\nVersion: 1\n" +
		strings.Repeat("Source-Port: x\n", 1000)
	r, err := Parse(strings.NewReader(msg))
	if r == nil || err == nil {
		t.Fatalf("Parse = %v, %v; want a report and an error", r, err)
	}
	if n := strings.Count(err.Error(), "Source-Port"); n != maxOdds {
		t.Errorf("error lists %d oddities, want %d: %v", n, maxOdds, err)
	}
}

// TestEncodedParts: transfer-encoded report and original parts are decoded;
// raw 8-bit header text becomes valid UTF-8.
func TestEncodedParts(t *testing.T) {
	const original = "From: news@example.com\r\nTo: lee@example.org\r\nSubject: caf\xe9\r\nMessage-ID: <b64@example.com>\r\n\r\nbody\r\n"
	msg := "Content-Type: multipart/report; report-type=feedback-report; boundary=b\n\n" +
		"--b\nContent-Type: message/feedback-report\nContent-Transfer-Encoding: quoted-printable\n\n" +
		"Feedback-Type: abuse\nUser-Agent: t/1\nVersion: 1\nOriginal-Rcpt-To: lee=40example.org\n\n" +
		"--b\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n" +
		base64.StdEncoding.EncodeToString([]byte(original)) + "\n--b--\n"
	r, err := Parse(strings.NewReader(msg))
	if r == nil || err != nil {
		t.Fatalf("Parse = %v, %v", r, err)
	}
	eqList(t, "Recipients", r.Recipients, []string{"lee@example.org"})
	eq(t, "Original.MessageID", r.Original.MessageID, "b64@example.com")
	eq(t, "Original.Subject", r.Original.Subject, "caf\uFFFD")
}
