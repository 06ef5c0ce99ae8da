package suppress

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"a@example.com", "a@example.com"},
		{"  A@Example.COM\t", "a@example.com"},
		{"John.Doe@EXAMPLE.com", "john.doe@example.com"},
		{"user+tag@example.com", "user+tag@example.com"}, // plus kept: RFC 5233, the domain's rule
		{"User+Tag@example.com", "user+tag@example.com"},
		{"a@münchen.example", "a@xn--mnchen-3ya.example"},
		{"a@MÜNCHEN.example", "a@xn--mnchen-3ya.example"},
		{"a@xn--mnchen-3ya.example", "a@xn--mnchen-3ya.example"},
		{"a@bücher.de", "a@xn--bcher-kva.de"},
		{"a@example.com.", "a@example.com"},
		{"a@[192.0.2.1]", "a@[192.0.2.1]"},
		{"ü@example.com", "ü@example.com"}, // an SMTPUTF8 local part (RFC 6531) is kept
	} {
		got, err := NormalizeAddress(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestNormalizeAddressMalformed(t *testing.T) {
	for _, tc := range []struct{ in, problem string }{
		{"", "empty"},
		{"   ", "empty"},
		{"no-at.example.com", "no @"},
		{"@example.com", "empty local part"},
		{"a@", "empty domain"},
		{"a b@example.com", "white space"},
		{"a@exa mple.com", "white space"},
		{"a@b@example.com", "more than one @"},
		{"a@-bad-.example", "bad domain"},
		{"a@exa..mple", "bad domain"},
		{"a@" + strings.Repeat("x", 64) + ".example", "bad domain"},
		{"a@exa_mple.com", "bad domain"},
		{"a@xn--zz.example", "bad domain"},
		{"a\x00@example.com", "control character"},
		{"a@example.com\xff", "invalid UTF-8"},
	} {
		got, err := NormalizeAddress(tc.in)
		if err == nil {
			t.Errorf("NormalizeAddress(%q) = %q, nil; want an error saying %q", tc.in, got, tc.problem)
			continue
		}
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.problem) {
			t.Errorf("NormalizeAddress(%q) error %q; want ErrMalformed saying %q", tc.in, err, tc.problem)
		}
		if strings.TrimSpace(tc.in) != "" && !strings.Contains(err.Error(), "suppress: \"") {
			t.Errorf("NormalizeAddress(%q) error %q does not name the address", tc.in, err)
		}
	}
}

// An address already in normal form costs no allocation: Check calls this
// for every recipient.
func TestNormalizeAddressNoAllocation(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { NormalizeAddress("someone+x@mail.example.com") }); n != 0 {
		t.Errorf("NormalizeAddress of a normal address allocates %v times; want 0", n)
	}
}

func FuzzNormalizeAddress(f *testing.F) {
	for _, s := range []string{"a@example.com", " A@MÜNCHEN.example ", "a@b@c", "a@xn--tda.example", "a@[1.2.3.4]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := NormalizeAddress(s)
		if err != nil {
			return
		}
		again, err := NormalizeAddress(got)
		if err != nil || again != got {
			t.Fatalf("NormalizeAddress(%q) = %q, which normalises to %q, %v: not idempotent", s, got, again, err)
		}
	})
}
