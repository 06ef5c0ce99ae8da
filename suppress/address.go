package suppress

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// ErrMalformed is the kind of error NormalizeAddress returns for what is not
// an address; AddressError names the address and the problem.
var ErrMalformed = errors.New("not an address")

// AddressError says which address was refused and why.
type AddressError struct {
	Address string // as given, shortened
	Problem string // in the user's words
}

func (e *AddressError) Error() string {
	return fmt.Sprintf("suppress: %q: not an address: %s", e.Address, e.Problem)
}

func (e *AddressError) Unwrap() error { return ErrMalformed }

// maxAddress is the longest address accepted, the bound of an event's
// recipient (docs/events.md).
const maxAddress = 510

// NormalizeAddress returns the one form of an address every list and every
// lookup uses: white space around it trimmed, lower-cased, and an
// internationalised domain converted to its A-label (xn--…) form with the
// IDNA Lookup profile (RFC 5891 §5), so that "ü.example" and
// "xn--tda.example" are one domain. A trailing root dot is dropped.
//
// The local part is lower-cased, as the event's recipient is (RFC 5321
// §2.4 leaves its case to the receiving host, and every large provider
// ignores it). Plus-addressing is kept as given: whether "+tag" marks a
// sub-address of "user" is the receiving domain's private rule (RFC 5233
// §1: the separator and its meaning are local policy), so "a+x@d" may be
// another mailbox than "a@d"; stripping the tag could suppress a mailbox
// that never bounced or complained.
//
// What is not an address — no @, an empty local part or domain, white space
// or control characters inside, more than one @, a domain IDNA refuses — is
// an *AddressError (errors.Is ErrMalformed) naming it.
func NormalizeAddress(s string) (string, error) {
	a := strings.TrimSpace(s)
	fail := func(problem string) (string, error) {
		return "", &AddressError{Address: shorten(s), Problem: problem}
	}
	switch {
	case a == "":
		return fail("empty")
	case len(a) > maxAddress:
		return fail(fmt.Sprintf("longer than %d bytes", maxAddress))
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 {
		return fail("no @: want local@domain")
	}
	local, domain := a[:at], a[at+1:]
	switch {
	case local == "":
		return fail("empty local part: want local@domain")
	case domain == "":
		return fail("empty domain: want local@domain")
	case strings.IndexByte(local, '@') >= 0:
		return fail("more than one @")
	}
	if !utf8.ValidString(a) {
		return fail("invalid UTF-8")
	}
	for _, r := range a {
		if r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0xa0 || r == 0x2028 || r == 0x2029 {
			return fail("white space or a control character inside")
		}
	}
	d, err := normalizeDomain(domain)
	if err != nil {
		return fail(err.Error())
	}
	local = strings.ToLower(local)
	if len(local) == at && d == domain && local == a[:at] {
		return a, nil // already normal: no allocation
	}
	return local + "@" + d, nil
}

// NormalizeDomain returns a domain (a sender domain, say) in the form
// NormalizeAddress gives the domain of an address: trimmed, lower-cased,
// A-labels, no trailing dot.
func NormalizeDomain(s string) (string, error) {
	d, err := normalizeDomain(strings.TrimSpace(s))
	if err != nil {
		return "", fmt.Errorf("suppress: domain %q: %s", shorten(s), err)
	}
	return d, nil
}

func normalizeDomain(d string) (string, error) {
	if d == "" {
		return "", errors.New("empty domain")
	}
	if d[0] == '[' { // an address literal, RFC 5321 §4.1.3
		if d[len(d)-1] != ']' || len(d) < 3 {
			return "", errors.New("unterminated address literal")
		}
		return strings.ToLower(d), nil
	}
	if d[len(d)-1] == '.' {
		d = d[:len(d)-1]
	}
	if plainDomain(d) {
		return d, nil
	}
	a, err := idna.Lookup.ToASCII(d)
	if err != nil {
		return "", fmt.Errorf("bad domain: %v", err)
	}
	// The Lookup profile does not check lengths (RFC 1035 §2.3.4).
	if len(a) > 253 {
		return "", errors.New("bad domain: longer than 253 bytes")
	}
	for label := range strings.SplitSeq(a, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("bad domain: a label is empty or longer than 63 bytes")
		}
	}
	return a, nil
}

// plainDomain reports whether d is already in normal form and needs no
// IDNA: lower-case LDH labels (RFC 5890 §2.3.1), none empty, none
// longer than 63, none starting or ending with a hyphen, none an A-label
// (which IDNA must validate).
func plainDomain(d string) bool {
	label := 0
	for i := 0; i < len(d); i++ {
		c := d[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			label++
		case c == '-':
			if label == 0 || i+1 == len(d) || d[i+1] == '.' {
				return false
			}
			if label == 2 && i+1 < len(d) && d[i+1] == '-' {
				return false // "xn--" and other "??--" labels: let IDNA check them
			}
			label++
		case c == '.':
			if label == 0 {
				return false
			}
			label = 0
		default:
			return false
		}
		if label > 63 {
			return false
		}
	}
	return label > 0
}

func shorten(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
