package correlate

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics, refuses with one of its two errors, and
// accepts only what Token would write for the reference it returns (up to
// case and surrounding white space).
func FuzzParse(f *testing.F) {
	s := mustNew(f, Keys{Sign: keyA, Verify: [][]byte{keyB}})
	old := mustNew(f, Keys{Sign: keyB})
	tok := s.Token(seqRef(0))
	for _, seed := range []string{
		tok, strings.ToUpper(tok), " " + tok + "\n", old.Token(seqRef(1)), tok[:RefLen], tok + "=",
		tok[:TokenLen-1] + "1", strings.Repeat("a", TokenLen), strings.Repeat("7", TokenLen), "", "\x00",
		tok[:8] + "\r\n" + tok[10:], tok[:TokenLen-2] + "é",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ref, err := s.Parse(in)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
				t.Fatalf("Parse(%q) error %v is neither ErrMalformed nor ErrBadSignature", in, err)
			}
			if !ref.IsZero() {
				t.Fatalf("Parse(%q) = %v with error %v; want the zero Ref", in, ref, err)
			}
			return
		}
		norm := strings.ToLower(strings.TrimSpace(in))
		if s.Token(ref) != norm && old.Token(ref) != norm {
			t.Fatalf("Parse(%q) accepted %v, whose tokens are %q and %q", in, ref, s.Token(ref), old.Token(ref))
		}
	})
}

// FuzzVERPToken: VERPToken never panics and returns only lower-case tokens
// of TokenLen characters that end the address's local part.
func FuzzVERPToken(f *testing.F) {
	s := mustNew(f, Keys{Sign: keyA})
	tok := s.Token(seqRef(0))
	for _, seed := range []string{
		"bounces+" + tok + "@b.example", "<BOUNCES+" + strings.ToUpper(tok) + "@B>", "bounces=" + tok + "@",
		"+" + tok + "@b", "@", "<>", "", "a@b@c", "bounces+" + tok + "@x@y",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		got, ok := VERPToken(addr)
		if !ok {
			if got != "" {
				t.Fatalf("VERPToken(%q) = %q, false; want \"\" with false", addr, got)
			}
			return
		}
		if len(got) != TokenLen || !isToken(got) || strings.ToLower(got) != got {
			t.Fatalf("VERPToken(%q) = %q: not %d lower-case base32 characters", addr, got, TokenLen)
		}
		local := addr[:strings.LastIndexByte(addr, '@')]
		if !strings.HasSuffix(strings.ToLower(local), got) {
			t.Fatalf("VERPToken(%q) = %q: not the end of the local part %q", addr, got, local)
		}
	})
}
