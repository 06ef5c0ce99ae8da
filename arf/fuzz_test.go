package arf

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that Parse never panics and that its results keep their
// promises, whatever the input.
func FuzzParse(f *testing.F) {
	for _, file := range complaintFiles(f) {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("Content-Type: message/feedback-report\n\nFeedback-Type: abuse\n"))
	f.Add([]byte("Subject: abuse report\r\r\rFeedback-Type: abuse\r"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(bytes.NewReader(b))
		if got, want := result(ParseBytes(b)), result(r, err); got != want {
			t.Fatalf("ParseBytes = %s, Parse = %s", got, want)
		}
		if errors.Is(err, ErrNotFeedback) {
			if r != nil {
				t.Fatalf("Parse = %+v with ErrNotFeedback", r)
			}
			return
		}
		if r == nil {
			if err == nil {
				t.Fatal("Parse = nil, nil")
			}
			return
		}
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("Parse = report and %v, want an ErrMalformed error", err)
		}
		if r.FeedbackType == "" {
			t.Error("report without FeedbackType")
		}
		if (len(r.Recipients) > 0) != (r.RecipientRecoveredFrom != "") {
			t.Errorf("Recipients %q recovered from %q", r.Recipients, r.RecipientRecoveredFrom)
		}
		for _, a := range r.Recipients {
			if !strings.Contains(a, "@") {
				t.Errorf("recipient %q is no address", a)
			}
		}
		for _, s := range append([]string{r.FeedbackType, r.UserAgent, r.Original.From, r.Original.To, r.Original.Subject, r.Original.MessageID}, r.Recipients...) {
			if !utf8.ValidString(s) {
				t.Errorf("invalid UTF-8 in %q", s)
			}
		}
		if r.SourcePort < 0 || r.SourcePort > 65535 {
			t.Errorf("SourcePort = %d", r.SourcePort)
		}
	})
}
