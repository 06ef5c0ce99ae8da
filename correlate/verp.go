package correlate

import (
	"fmt"
	"strings"
)

// Separator is what VERPAddress writes between the prefix and the token:
// the subaddress separator of RFC 5233 (Sieve) and the default of Postfix
// (recipient_delimiter), Sendmail, Exim, Gmail and Microsoft 365. The
// mailbox that receives <prefix>@<domain> must be set up to receive
// <prefix>+<anything>@<domain> too.
const Separator = '+'

// separators are those VERPToken accepts before a token.
const separators = "+-="

// VERPAddress returns the VERP return path <prefix>+<token>@<domain> for
// the envelope sender (MAIL FROM, RFC 5321 §4.1.1.2). prefix must be a
// dot-atom (RFC 5322 §3.2.3) of at most MaxPrefixLen octets without the
// separators VERPToken accepts, so that the local part stays within the
// 64 octets of RFC 5321 §4.5.3.1.1; token is what Signer.Token returned.
// The error wraps ErrPrefix, or ErrMalformed for a token of the wrong
// shape. domain is used as given.
func VERPAddress(prefix, token, domain string) (string, error) {
	if err := checkPrefix(prefix); err != nil {
		return "", err
	}
	if len(token) != TokenLen || !isToken(token) || strings.ToLower(token) != token {
		return "", fmt.Errorf("%w: %q: want %d lower-case base32 characters", ErrMalformed, abbrev(token), TokenLen)
	}
	if domain == "" {
		return "", fmt.Errorf("%w: no domain", ErrPrefix)
	}
	return prefix + string(Separator) + token + "@" + domain, nil
}

// checkPrefix reports why prefix cannot start a VERP local part.
func checkPrefix(prefix string) error {
	switch {
	case prefix == "":
		return fmt.Errorf("%w: empty", ErrPrefix)
	case len(prefix) > MaxPrefixLen:
		return fmt.Errorf("%w: %q is %d octets long: at most %d leave room for the separator and the %d-character token in a 64-octet local part (RFC 5321 §4.5.3.1.1)",
			ErrPrefix, abbrev(prefix), len(prefix), MaxPrefixLen, TokenLen)
	case prefix[0] == '.' || prefix[len(prefix)-1] == '.' || strings.Contains(prefix, ".."):
		return fmt.Errorf("%w: %q: not a dot-atom (RFC 5322 §3.2.3: no leading, trailing or double dot)", ErrPrefix, prefix)
	}
	for i := 0; i < len(prefix); i++ {
		c := prefix[i]
		if strings.IndexByte(separators, c) >= 0 {
			return fmt.Errorf("%w: %q contains %q, which separates the token", ErrPrefix, prefix, c)
		}
		if !isAtext(c) && c != '.' {
			return fmt.Errorf("%w: %q contains %q: want letters, digits and !#$%%&'*/?^_`{|}~ (RFC 5322 §3.2.3 atext)", ErrPrefix, prefix, c)
		}
	}
	return nil
}

// isAtext reports whether c is an atext character (RFC 5322 §3.2.3).
func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// isToken reports whether s consists of base32 characters, in any case.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '2' <= c && c <= '7':
		default:
			return false
		}
	}
	return true
}

// VERPToken returns the token of a VERP address <prefix>+<token>@<domain>,
// lower-cased, and whether addr has that shape: a non-empty prefix, a
// separator, then TokenLen base32 characters in any case, ending the local
// part. Angle brackets and white space around addr (a Return-Path or
// Delivered-To value) are ignored. It does not check the signature: pass
// the token to Signer.Parse.
//
// Since the token has a fixed length it is found from the end of the local
// part, so the separator may be '+' (RFC 5233, what VERPAddress writes) or
// '-' or '=' (QUIRK: qmail and Courier deliver <user>-<ext> and some
// bounce handlers are set up with '='; an operator may have configured the
// bounce mailbox that way and rewritten our addresses to match), and the
// prefix may contain any of them.
func VERPToken(addr string) (string, bool) {
	a := strings.TrimSpace(addr)
	if len(a) >= 2 && a[0] == '<' && a[len(a)-1] == '>' {
		a = strings.TrimSpace(a[1 : len(a)-1])
	}
	at := strings.LastIndexByte(a, '@')
	if at < 0 || at == len(a)-1 {
		return "", false
	}
	local := a[:at]
	if len(local) < TokenLen+2 {
		return "", false
	}
	tok := local[len(local)-TokenLen:]
	if strings.IndexByte(separators, local[len(local)-TokenLen-1]) < 0 || !isToken(tok) {
		return "", false
	}
	return strings.ToLower(tok), true
}
