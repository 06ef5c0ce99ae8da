package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const parseTestBounce = `From: MAILER-DAEMON@mx.example.net
To: sender@example.org
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b"

--b
Content-Type: text/plain

The mail system could not deliver your message.

--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net

Final-Recipient: rfc822; nobody-here@example.com
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <nobody-here@example.com>: Recipient address rejected: User unknown

--b
Content-Type: text/rfc822-headers

From: sender@example.org
To: nobody-here@example.com
Message-ID: <abc123@example.org>
Subject: hello

--b--
`

const parseTestPlain = `From: friend@example.com
To: sender@example.org
Subject: lunch?

Shall we?
`

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseOneInput(t *testing.T) {
	p := writeTemp(t, "bounce.eml", parseTestBounce)
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"parse", p}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	var got []map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout is not a JSON array: %v\n%s", err, stdout.String())
	}
	if len(got) != 1 {
		t.Fatalf("got %d results, want 1: %s", len(got), stdout.String())
	}
	want := map[string]any{
		"recipient": "nobody-here@example.com", "action": "failed", "status": "5.1.1",
		"replycode": "550", "reason": "userunknown", "hardbounce": true,
		"feedbacktype": "", "messageid": "abc123@example.org",
	}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s = %v, want %v", k, got[0][k], v)
		}
	}
	if _, ok := got[0]["diagnosticcode"]; !ok {
		t.Error("diagnosticcode missing")
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr = %q, want empty", stderr.String())
	}
}

func TestParseNotBounce(t *testing.T) {
	p := writeTemp(t, "plain.eml", parseTestPlain)
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"parse", p}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if got := strings.TrimSpace(stdout.String()); got != "[]" {
		t.Errorf("stdout = %q, want []", got)
	}
}

func TestParseSeveralInputs(t *testing.T) {
	a := writeTemp(t, "a.eml", parseTestBounce)
	b := writeTemp(t, "b.eml", parseTestPlain)
	missing := filepath.Join(t.TempDir(), "missing.eml")
	var stdout, stderr bytes.Buffer
	code := runMain([]string{"parse", a, missing, b}, &stdout, &stderr)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), missing) {
		t.Errorf("stderr %q does not name %s", stderr.String(), missing)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), stdout.String())
	}
	var first, second parseOutput
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first.File != a || len(first.Results) != 1 || first.Results[0].Reason != "userunknown" {
		t.Errorf("first line = %+v", first)
	}
	if second.File != b || second.Results == nil || len(second.Results) != 0 {
		t.Errorf("second line = %+v, want no results", second)
	}
	if !strings.Contains(lines[1], `"results":[]`) {
		t.Errorf("second line %q should hold an empty array", lines[1])
	}
}

func TestParseMbox(t *testing.T) {
	mbox := "From MAILER-DAEMON Thu Jul  2 12:05:05 2020\n" + parseTestBounce +
		"From MAILER-DAEMON Thu Jul  2 12:06:05 2020\n" +
		strings.ReplaceAll(parseTestBounce, "nobody-here", "second")
	p := writeTemp(t, "two.mbox", mbox)
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"parse", p}, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	var got []map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0]["recipient"] != "nobody-here@example.com" || got[1]["recipient"] != "second@example.com" {
		t.Errorf("results = %v", got)
	}
}

// TestParseExplainAndConfigPhrases checks --explain and that the
// configuration's bounce_phrases decide before the built-in lexicon.
func TestParseExplainAndConfigPhrases(t *testing.T) {
	bounce := strings.Replace(parseTestBounce,
		"550 5.1.1 <nobody-here@example.com>: Recipient address rejected: User unknown",
		"550 <nobody-here@example.com>: Compte en sommeil depuis un an (in reply to RCPT TO command)", 1)
	bounce = strings.Replace(bounce, "Status: 5.1.1", "Status: 5.0.0", 1)
	in := writeTemp(t, "b.eml", bounce)

	var out, errb bytes.Buffer
	if code := runParse([]string{"--explain", in}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	var res []struct {
		Reason  string `json:"reason"`
		Explain struct {
			Phase, Rule, Phrase, Entry string
		} `json:"explain"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != 1 {
		t.Fatalf("output %s: %v", out.String(), err)
	}
	if res[0].Reason != "onhold" || res[0].Explain.Phase != "rcpt" || res[0].Explain.Rule != "onhold" {
		t.Errorf("without the operator's phrase: %+v", res[0])
	}

	cfg := writeTemp(t, "repute.yaml", "bounce_phrases:\n  - reason: suspend\n    phrases: [\"Compte en sommeil\", \"/depuis (un|deux) ans?/\"]\n")
	out.Reset()
	if code := runParse([]string{"--explain", "--config", cfg, in}, &out, &errb); code != 0 {
		t.Fatalf("exit %d, stderr %s", code, errb.String())
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || len(res) != 1 {
		t.Fatalf("output %s: %v", out.String(), err)
	}
	if e := res[0].Explain; res[0].Reason != "suspend" || e.Rule != "lexicon" || e.Phrase != "compte en sommeil" || e.Entry != "config bounce_phrases" {
		t.Errorf("with the operator's phrase: %+v", res[0])
	}

	bad := writeTemp(t, "bad.yaml", "bounce_phrases:\n  - reason: nosuchreason\n    phrases: [\"x y z\"]\n")
	errb.Reset()
	if code := runParse([]string{"--config", bad, in}, &out, &errb); code != 2 || !strings.Contains(errb.String(), `unknown reason "nosuchreason"`) {
		t.Errorf("bad config: exit %d, stderr %q", code, errb.String())
	}
}

// TestParseWarnsOnNonEmail: an input that is not an email at all gets a
// warning on stderr (exit status 0, output []); a real non-bounce email
// prints [] with no warning.
func TestParseWarnsOnNonEmail(t *testing.T) {
	tests := []struct {
		name, content string
		warn          bool
	}{
		{"x.json", "{\"account\": \"acme\",\n \"kind\": \"sent\"}\n", true},
		{"array.json", "[{\"a\": 1}]", true},
		{"binary", "\x7fELF\x02\x01\x01\x00\x00\x00:\x00\x00", true},
		{"empty", "", true},
		{"prose.txt", "Dear user: your mail could not be delivered.\n", true},
		{"plain.eml", parseTestPlain, false},
		{"crlf.eml", strings.ReplaceAll(parseTestPlain, "\n", "\r\n"), false},
		{"cr.eml", "From MAILER-DAEMON  Sun Sep  7 21:40:07 2008\rReturn-Path: <>\r\rhello\r", false},
		{"bom.eml", "\xef\xbb\xbf" + parseTestPlain, false},
		{"mbox", "From sender@example.org Mon Jan  1 00:00:00 2024\n" + parseTestPlain, false},
	}
	for _, tt := range tests {
		p := writeTemp(t, tt.name, tt.content)
		var stdout, stderr bytes.Buffer
		code := runMain([]string{"parse", p}, &stdout, &stderr)
		want := ""
		if tt.warn {
			want = "repute parse: " + p + ": warning: not an email message (no header fields)\n"
		}
		if code != 0 || strings.TrimSpace(stdout.String()) != "[]" || stderr.String() != want {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want 0, [], stderr %q", tt.name, code, stdout.String(), stderr.String(), want)
		}
	}
}

// TestCorpusLooksLikeEmail: no message of the corpus is taken for a
// non-email.
func TestCorpusLooksLikeEmail(t *testing.T) {
	n := 0
	filepath.WalkDir("../../testdata/bounces", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".json") || strings.HasSuffix(path, ".md") || strings.Contains(path, "LICENSE") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		n++
		if !looksLikeEmail(b) {
			t.Errorf("%s: taken for a non-email", path)
		}
		return nil
	})
	if n < 400 {
		t.Errorf("%d corpus messages read, want the whole corpus", n)
	}
}
