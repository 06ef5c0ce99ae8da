package metrics

import (
	"testing"
)

// One report gives one event per (recipient, kind), whatever the place it
// was read from, the account it was attributed to or how it was correlated.
func TestDerivedID(t *testing.T) {
	raw := []byte("From: MAILER-DAEMON@mx.example\r\nSubject: Undelivered Mail\r\n\r\nUser unknown\r\n")
	lf := []byte("From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail\n\nUser unknown\n")
	withMID := ReportIdentity("<20261125.1@mx.example>", raw)
	noMID := ReportIdentity("", raw)

	// What a source knows of a report besides the report: none of it
	// enters DerivedID, which is the point; these readings must agree.
	type reading struct {
		reportID, recipient string
		kind                Kind
		sourceRef, account  string
		correlation         string
	}
	derive := func(r reading) string {
		e := Event{EventID: DerivedID(r.reportID, r.recipient, r.kind), SourceRef: r.sourceRef,
			Account: r.account, Correlation: r.correlation}
		return e.EventID
	}
	tests := []struct {
		name string
		a, b reading
		same bool
	}{
		{"read twice from one mailbox",
			reading{withMID, "kijitora@gmail.com", KindBounced, "imap:INBOX/17", "acme", "header"},
			reading{withMID, "kijitora@gmail.com", KindBounced, "imap:INBOX/17", "acme", "header"}, true},
		{"read from two places",
			reading{withMID, "kijitora@gmail.com", KindBounced, "imap:INBOX/17", "acme", "header"},
			reading{withMID, "kijitora@gmail.com", KindBounced, "kafka:bounces/3@1200", "acme", "header"}, true},
		{"attributed to another account",
			reading{withMID, "kijitora@gmail.com", KindBounced, "imap:INBOX/17", "acme", "verp"},
			reading{withMID, "kijitora@gmail.com", KindBounced, "imap:INBOX/17", "globex", "verp"}, true},
		{"re-correlated later",
			reading{noMID, "kijitora@gmail.com", KindBounced, "upload:1", "acme", "none"},
			reading{noMID, "kijitora@gmail.com", KindBounced, "upload:2", "acme", "message_id"}, true},
		{"recipient in other case and spaces",
			reading{withMID, "Kijitora@Gmail.COM ", KindComplained, "a", "acme", ""},
			reading{withMID, "kijitora@gmail.com", KindComplained, "b", "acme", ""}, true},
		{"Message-ID with and without brackets",
			reading{ReportIdentity(" <20261125.1@mx.example> ", nil), "a@b.example", KindDelivered, "", "", ""},
			reading{ReportIdentity("20261125.1@mx.example", []byte("other bytes")), "a@b.example", KindDelivered, "", "", ""}, true},
		{"no Message-ID: CRLF and LF copies",
			reading{ReportIdentity("", raw), "a@b.example", KindBounced, "imap", "", ""},
			reading{ReportIdentity("", lf), "a@b.example", KindBounced, "file", "", ""}, true},
		{"another recipient of the same report",
			reading{withMID, "kijitora@gmail.com", KindBounced, "", "acme", ""},
			reading{withMID, "mike@gmail.com", KindBounced, "", "acme", ""}, false},
		{"another kind from the same report",
			reading{withMID, "kijitora@gmail.com", KindBounced, "", "acme", ""},
			reading{withMID, "kijitora@gmail.com", KindDeferred, "", "acme", ""}, false},
		{"another report",
			reading{withMID, "kijitora@gmail.com", KindBounced, "", "acme", ""},
			reading{ReportIdentity("<20261125.2@mx.example>", raw), "kijitora@gmail.com", KindBounced, "", "acme", ""}, false},
		{"Message-ID or bytes",
			reading{withMID, "kijitora@gmail.com", KindBounced, "", "", ""},
			reading{noMID, "kijitora@gmail.com", KindBounced, "", "", ""}, false},
		{"other bytes, no Message-ID",
			reading{noMID, "kijitora@gmail.com", KindBounced, "", "", ""},
			reading{ReportIdentity("", append(append([]byte{}, raw...), 'x')), "kijitora@gmail.com", KindBounced, "", "", ""}, false},
	}
	for _, tt := range tests {
		a, b := derive(tt.a), derive(tt.b)
		if (a == b) != tt.same {
			t.Errorf("%s: ids %s and %s, want same=%t", tt.name, a, b, tt.same)
		}
		if len(a) != 32 {
			t.Errorf("%s: id %q, want 32 hex digits", tt.name, a)
		}
	}
	// Length prefixes keep the parts apart.
	if DerivedID("mid:a", "b@c", KindSent) == DerivedID("mid:ab", "@c", KindSent) {
		t.Error("shifted boundaries gave the same id")
	}
}

func TestReportIdentity(t *testing.T) {
	for _, c := range []struct {
		mid  string
		raw  string
		want string
	}{
		{"<x@y>", "", "mid:x@y"},
		{" x@y\t", "", "mid:x@y"},
		{"<>", "abc", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"", "abc", "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"", "a\r\nb\rc\n", ReportIdentity("", []byte("a\nb\nc\n"))},
	} {
		if got := ReportIdentity(c.mid, []byte(c.raw)); got != c.want {
			t.Errorf("ReportIdentity(%q, %q) = %q, want %q", c.mid, c.raw, got, c.want)
		}
	}
}
