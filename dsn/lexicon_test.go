package dsn

import (
	"strings"
	"testing"
)

func TestParseLexiconErrors(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"no group\n", `t:1: phrase "no group" before any [reason] group`},
		{"[nosuch]\nabc\n", `unknown reason "nosuch"`},
		{"[userunknown\nabc\n", "lacks ]"},
		{"[userunknown] loud\nabc\n", `unknown group option "loud"`},
		{"[userunknown] final weak\nabc\n", `unknown group option "final weak"`},
		{"[userunknown]\nab\n", "shorter than 3 bytes"},
		{"[userunknown]\n/(unclosed/\n", "pattern /(unclosed/"},
	} {
		_, err := ParseLexicon("t", strings.NewReader(tt.in))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseLexicon(%q) error = %v, want it to say %q", tt.in, err, tt.want)
		}
	}
}

func TestLexiconMatching(t *testing.T) {
	lex, err := ParseLexicon("t", strings.NewReader(`
[suspend] final
account is disabled
[spamdetected]
ube
throttl*
[blocked]
ip is
/listed (on|in) \S+bl/
[userunknown]
no  SUCH   User
ユーザーが存在しません
[userunknown] weak
mailbox unavailable
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text   string
		reason Reason
		phrase string
	}{
		{"550 this is ube", SpamDetected, "ube"},
		{"see youtube.com", "", ""},                   // not inside a word
		{"our relationship is over", "", ""},          // nor at a word's end
		{"your ip is listed", Blocked, "ip is"},       // on boundaries
		{"we throttled you", SpamDetected, "throttl"}, // a prefix phrase
		{"550 no such user here", UserUnknown, "no such user"},
		{"550 no such users", UserUnknown, "no such user"}, // a plural
		{"550 no such userspace", "", ""},
		{"550 宛先 ユーザーが存在しません。", UserUnknown, "ユーザーが存在しません"},
		{"host listed in bl.example-dnsbl today", Blocked, `/listed (on|in) \S+bl/`},
		// The first group in file order wins, wherever its phrase is.
		{"no such user; account is disabled", Suspend, "account is disabled"},
		{"ip is blocked: ube", SpamDetected, "ube"},
	}
	for _, tt := range tests {
		m, ok := lex.match(tt.text, tierFinal)
		if !ok {
			m, ok = lex.match(tt.text, tierNormal)
		}
		if ok != (tt.reason != "") || m.reason != tt.reason || m.phrase != tt.phrase {
			t.Errorf("match(%q) = %q %q %v, want %q %q", tt.text, m.reason, m.phrase, ok, tt.reason, tt.phrase)
		}
	}
	if m, ok := lex.match("no such user", tierFinal); ok {
		t.Errorf("final tier found %+v in a normal group", m)
	}
	if m, ok := lex.match("550 mailbox unavailable", tierNormal); ok {
		t.Errorf("normal tier found %+v in a weak group", m)
	}
	if m, ok := lex.match("550 mailbox unavailable", tierWeak); !ok || m.reason != UserUnknown {
		t.Errorf("weak tier: got %+v %v", m, ok)
	}
}

func TestLexiconExtend(t *testing.T) {
	front, err := NewLexicon("config", []LexiconGroup{
		{Reason: Suspend, Phrases: []string{"No Such User"}},
		{Reason: Filtered, Final: true, Phrases: []string{"refused by the recipient"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	lex := DefaultLexicon().Extend(front)
	if m, _ := lex.match("550 no such user", tierNormal); m.reason != Suspend || m.entry != "config" {
		t.Errorf("operator phrase: got %+v, want suspend from config", m)
	}
	if m, _ := DefaultLexicon().match("550 no such user", tierNormal); m.reason != UserUnknown {
		t.Errorf("Extend changed the default lexicon: %+v", m)
	}
	if m, ok := lex.match("refused by the recipient", tierFinal); !ok || m.reason != Filtered {
		t.Errorf("operator final group: got %+v %v", m, ok)
	}
	if DefaultLexicon().Extend(nil) != DefaultLexicon() {
		t.Error("Extend(nil) should return the lexicon itself")
	}
}

// TestBuiltinLexicon checks that every entry of the built-in lexicon says
// where it is written, so that --explain can point at it.
func TestBuiltinLexicon(t *testing.T) {
	l := DefaultLexicon()
	if len(l.entries) < 100 {
		t.Fatalf("built-in lexicon has %d entries", len(l.entries))
	}
	for _, e := range l.entries {
		if !strings.HasPrefix(e.entry, BuiltinLexiconName+":") {
			t.Errorf("entry %q of %s has source %q", e.text, e.reason, e.entry)
		}
	}
}

// TestAddressesDecideNothing checks that a mailbox's name is never read as
// the reason mail to it failed, and that a phrase that names no mailbox is
// about the domain before it.
func TestAddressesDecideNothing(t *testing.T) {
	for _, tt := range []struct {
		text   string
		reason Reason
	}{
		{"550 5.0.0 <spam-reports@example.com>... Requested action not taken", OnHold},
		{"550 <blocked-user@example.com> quota exceeded", MailboxFull},
		{"550 mailbox-full@example.com: no such user here", UserUnknown},
		{"553 neko.example.com doesn't exist", HostUnknown},
		{"553 neko.example.com does not exist", HostUnknown},
		{"550 a@neko.example.com does not exist", UserUnknown},
	} {
		if got, _ := ClassifyReply(0, "", tt.text, PhaseRcpt); got != tt.reason {
			t.Errorf("ClassifyReply(0, \"\", %q, rcpt) = %q, want %q", tt.text, got, tt.reason)
		}
	}
}

func TestMaskAddresses(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"no address here", "no address here"},
		{"550 <expired@example.com> unknown", "550 <___________________> unknown"},
		{"a@b.example and c@d.example", "___________ and ___________"},
		{"0@.undeliverable@.0", "___________________"}, // overlapping candidates (a fuzz find)
		{"x@a.b@c.d", "_________"},
	} {
		var a arena
		a.init()
		if got := a.maskAddresses(tt.in); got != tt.want || len(got) != len(tt.in) {
			t.Errorf("maskAddresses(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
