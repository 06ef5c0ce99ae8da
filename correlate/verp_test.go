package correlate

import (
	"errors"
	"strings"
	"testing"
)

func TestVERPAddress(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	tok := s.Token(seqRef(0))
	tests := []struct {
		prefix, domain string
		want           string
	}{
		{"bounces", "bounces.acme.example", "bounces+" + tok + "@bounces.acme.example"},
		{"unsubscribe", "b.example", "unsubscribe+" + tok + "@b.example"},
		{"Bounce.Handler_1", "b.example", "Bounce.Handler_1+" + tok + "@b.example"},
		{strings.Repeat("p", MaxPrefixLen), "b.example", strings.Repeat("p", MaxPrefixLen) + "+" + tok + "@b.example"},
	}
	for _, tt := range tests {
		got, err := VERPAddress(tt.prefix, tok, tt.domain)
		if err != nil || got != tt.want {
			t.Errorf("VERPAddress(%q, %q, %q) = %q, %v; want %q, nil", tt.prefix, tok, tt.domain, got, err, tt.want)
		}
	}
}

func TestVERPAddressRefused(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	tok := s.Token(seqRef(0))
	tests := []struct {
		prefix, token, domain string
		want                  error
	}{
		{"", tok, "b.example", ErrPrefix},
		{strings.Repeat("p", MaxPrefixLen+1), tok, "b.example", ErrPrefix},
		{"bounces+x", tok, "b.example", ErrPrefix},
		{"bounces-x", tok, "b.example", ErrPrefix},
		{"bounces=x", tok, "b.example", ErrPrefix},
		{"bou nces", tok, "b.example", ErrPrefix},
		{"bou@nces", tok, "b.example", ErrPrefix},
		{`"bounces"`, tok, "b.example", ErrPrefix},
		{".bounces", tok, "b.example", ErrPrefix},
		{"bounces.", tok, "b.example", ErrPrefix},
		{"bou..nces", tok, "b.example", ErrPrefix},
		{"boünces", tok, "b.example", ErrPrefix},
		{"bounces", tok, "", ErrPrefix},
		{"bounces", strings.ToUpper(tok), "b.example", ErrMalformed},
		{"bounces", tok[:TokenLen-1], "b.example", ErrMalformed},
		{"bounces", "", "b.example", ErrMalformed},
		{"bounces", tok[:TokenLen-1] + "1", "b.example", ErrMalformed},
	}
	for _, tt := range tests {
		got, err := VERPAddress(tt.prefix, tt.token, tt.domain)
		if !errors.Is(err, tt.want) {
			t.Errorf("VERPAddress(%q, %q, %q) = %q, %v; want error %v", tt.prefix, tt.token, tt.domain, got, err, tt.want)
		}
	}
}

// TestVERPLocalPartBudget: for every accepted prefix length the local part
// stays within RFC 5321 §4.5.3.1.1's 64 octets, and a longer prefix is
// refused.
func TestVERPLocalPartBudget(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	tok := s.Token(NewRef())
	for n := 1; n <= MaxLocalPart; n++ {
		prefix := strings.Repeat("b", n)
		addr, err := VERPAddress(prefix, tok, "bounces.acme.example")
		if n > MaxPrefixLen {
			if !errors.Is(err, ErrPrefix) {
				t.Errorf("prefix of %d octets: VERPAddress = %q, %v; want ErrPrefix", n, addr, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("prefix of %d octets: VERPAddress error %v", n, err)
			continue
		}
		local, _, _ := strings.Cut(addr, "@")
		if len(local) > MaxLocalPart {
			t.Errorf("prefix of %d octets: local part %q is %d octets, over %d", n, local, len(local), MaxLocalPart)
		}
		if got, ok := VERPToken(addr); !ok || got != tok {
			t.Errorf("VERPToken(%q) = %q, %v; want %q, true", addr, got, ok, tok)
		}
	}
	if n := len("bounces+") + TokenLen; n != 40 {
		t.Errorf("bounces+<token> is %d octets; the documentation says 40", n)
	}
}

func TestVERPToken(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	tok := s.Token(seqRef(0))
	up := strings.ToUpper(tok)
	tests := []struct {
		addr string
		want string // "" for no token
	}{
		{"bounces+" + tok + "@b.example", tok},
		{"<bounces+" + tok + "@b.example>", tok},
		{" < bounces+" + tok + "@b.example >\r\n", tok},
		{"BOUNCES+" + up + "@B.EXAMPLE", tok},
		{"Bounces+" + tok[:10] + up[10:] + "@b.example", tok},
		{"bounces-" + tok + "@b.example", tok},
		{"bounces=" + tok + "@b.example", tok},
		{"bounce+news+" + tok + "@b.example", tok},
		{"bounce-news+" + tok + "@b.example", tok},
		{"x+" + tok + "@b", tok},
		{"unsubscribe+" + tok + "@b.example", tok},
		{"bounces+" + tok + "@sub@b.example", ""}, // the local part ends at the last @
		{"+" + tok + "@b.example", ""},            // no prefix
		{tok + "@b.example", ""},                  // no separator
		{"bounces+" + tok, ""},                    // no domain
		{"bounces+" + tok + "@", ""},
		{"bounces_" + tok + "@b.example", ""},
		{"bounces+" + tok[1:] + "@b.example", ""},
		{"bounces+a" + tok + "@b.example", ""}, // 33 characters: the token must follow the separator
		{"bounces+" + tok[:31] + "1@b.example", ""},
		{"bounces@b.example", ""},
		{"", ""},
		{"<>", ""},
		{"@", ""},
	}
	for _, tt := range tests {
		got, ok := VERPToken(tt.addr)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("VERPToken(%q) = %q, %v; want %q, %v", tt.addr, got, ok, tt.want, tt.want != "")
		}
	}
}

// TestVERPEndToEnd: the sender writes the address, an MTA upper-cases it,
// ingestion finds the reference.
func TestVERPEndToEnd(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	ref := NewRef()
	addr, err := VERPAddress("bounces", s.Token(ref), "bounces.acme.example")
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := VERPToken(strings.ToUpper(addr))
	if !ok {
		t.Fatalf("VERPToken(%q) found no token", strings.ToUpper(addr))
	}
	if got, err := s.Parse(tok); err != nil || got != ref {
		t.Errorf("Parse(%q) = %v, %v; want %v, nil", tok, got, err, ref)
	}
}
