package sender

// Tracking tokens: what the pixel, click and unsubscribe URLs the composer
// writes carry, and what the public tracking endpoints (/t/o, /t/c, /t/u)
// will check before they record an event or redirect.
//
// # Formats
//
// All three are built like the correlation token of package correlate
// (see its documentation): the send reference, then the first MACSize (10)
// bytes of HMAC-SHA256 (RFC 2104) under the signing key set over a label of
// the token's kind and the signed fields. The labels keep one kind of token
// from being accepted as another, and a correlation token from being
// accepted as any of them:
//
//	open         "repute/track/open/v1\x00"        ‖ ref
//	unsubscribe  "repute/track/unsubscribe/v1\x00" ‖ ref
//	click        "repute/track/click/v1\x00"       ‖ ref ‖ URL
//
// An open or unsubscribe token is ref ‖ MAC, 20 bytes written as 32
// characters of lower-case base32 (RFC 4648 §6 alphabet, no padding), the
// correlation token's shape; its parser accepts any case, since nothing in a
// URL path is guaranteed to keep it. The URLs are
//
//	{tracking_url}/t/o/TOKEN.gif   the pixel (the endpoint strips ".gif")
//	{tracking_url}/t/u/TOKEN       RFC 8058 one-click unsubscribe
//
// A click token carries the original URL so that the redirect endpoint needs
// no state and redirects only to a URL that was in the message: it is
// ref ‖ MAC ‖ URL written in base64url (RFC 4648 §5, no padding), which is
// case-sensitive and about a third longer than the URL:
//
//	{tracking_url}/t/c/TOKEN
//
// The ref has a fixed length, so ref ‖ URL is unambiguous under the MAC.
// URLs longer than MaxClickURL bytes are not tracked (the link is left as
// it is): a mail client or proxy may refuse a very long URL, and a broken
// link is worse than a missing click.
//
// # Keys
//
// The key set is correlate.Keys, with the same semantics: the first key
// signs, every key verifies. One key set signs every kind of token; the
// labels separate them.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"sync"

	"repute/correlate"
)

// Token labels; see the file's documentation.
const (
	openLabel  = "repute/track/open/v1\x00"
	unsubLabel = "repute/track/unsubscribe/v1\x00"
	clickLabel = "repute/track/click/v1\x00"
)

// MaxClickURL is the longest URL, in bytes, that click tracking rewrites.
const MaxClickURL = 2048

// Errors of the token parsers. They are wrapped with the detail; test them
// with errors.Is.
var (
	// ErrTokenMalformed means the text is not a token of the expected kind
	// at all: wrong length or characters.
	ErrTokenMalformed = errors.New("sender: malformed tracking token")
	// ErrTokenSignature means the text has the shape of a token but no key
	// of the set signed it: forged, altered, of another kind, or signed
	// with a key no longer in the set.
	ErrTokenSignature = errors.New("sender: bad tracking token signature")
)

var (
	b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)
	b64 = base64.RawURLEncoding.Strict() // one text per token: no slack in the last character
)

const (
	refMACSize = correlate.RefSize + correlate.MACSize
	// refTokenLen is the length of an open or unsubscribe token.
	refTokenLen = refMACSize * 8 / 5
)

// TrackingSigner makes and checks the open, click and unsubscribe tokens.
// It is safe for concurrent use.
type TrackingSigner struct {
	sign   *hmacKey
	verify []*hmacKey // sign first
}

type hmacKey struct {
	pool sync.Pool // of hash.Hash, HMAC-SHA256 under this key
}

func newHMACKey(k []byte) *hmacKey {
	k = append([]byte(nil), k...)
	return &hmacKey{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}
}

// mac writes the first MACSize bytes of HMAC(label ‖ ref ‖ extra) to dst.
func (k *hmacKey) mac(dst []byte, label string, ref correlate.Ref, extra string) {
	h := k.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(label))
	h.Write(ref[:])
	h.Write([]byte(extra))
	var sum [sha256.Size]byte
	copy(dst[:correlate.MACSize], h.Sum(sum[:0]))
	k.pool.Put(h)
}

// NewTrackingSigner returns a TrackingSigner for k. It copies the keys;
// k.Sign must not be empty (correlate.ErrNoKey).
func NewTrackingSigner(k correlate.Keys) (*TrackingSigner, error) {
	if len(k.Sign) == 0 {
		return nil, correlate.ErrNoKey
	}
	s := &TrackingSigner{sign: newHMACKey(k.Sign)}
	s.verify = append(s.verify, s.sign)
	for _, v := range k.Verify {
		if len(v) == 0 || hmac.Equal(v, k.Sign) {
			continue
		}
		s.verify = append(s.verify, newHMACKey(v))
	}
	return s, nil
}

// OpenToken returns the token of the pixel URL of ref.
func (s *TrackingSigner) OpenToken(ref correlate.Ref) string {
	return s.refToken(openLabel, ref)
}

// UnsubscribeToken returns the token of the one-click unsubscribe URL of
// ref.
func (s *TrackingSigner) UnsubscribeToken(ref correlate.Ref) string {
	return s.refToken(unsubLabel, ref)
}

// ClickToken returns the token of the redirect URL of ref to url.
func (s *TrackingSigner) ClickToken(ref correlate.Ref, url string) string {
	b := make([]byte, refMACSize+len(url))
	copy(b, ref[:])
	s.sign.mac(b[correlate.RefSize:], clickLabel, ref, url)
	copy(b[refMACSize:], url)
	return b64.EncodeToString(b)
}

func (s *TrackingSigner) refToken(label string, ref correlate.Ref) string {
	var b [refMACSize]byte
	copy(b[:], ref[:])
	s.sign.mac(b[correlate.RefSize:], label, ref, "")
	return b32.EncodeToString(b[:])
}

// ParseOpenToken returns the reference of a pixel token when a key of the
// set signed it. The error wraps ErrTokenMalformed or ErrTokenSignature;
// with an error the Ref is zero.
func (s *TrackingSigner) ParseOpenToken(token string) (correlate.Ref, error) {
	return s.parseRefToken("open", openLabel, token)
}

// ParseUnsubscribeToken returns the reference of an unsubscribe token when
// a key of the set signed it. The error wraps ErrTokenMalformed or
// ErrTokenSignature; with an error the Ref is zero.
func (s *TrackingSigner) ParseUnsubscribeToken(token string) (correlate.Ref, error) {
	return s.parseRefToken("unsubscribe", unsubLabel, token)
}

func (s *TrackingSigner) parseRefToken(kind, label, token string) (correlate.Ref, error) {
	if len(token) != refTokenLen {
		return correlate.Ref{}, fmt.Errorf("%w: %s token %q is %d characters long, want %d", ErrTokenMalformed, kind, abbrev(token), len(token), refTokenLen)
	}
	if strings.ContainsAny(token, "\r\n") {
		return correlate.Ref{}, fmt.Errorf("%w: %s token contains a line break", ErrTokenMalformed, kind)
	}
	var b [refMACSize]byte
	if n, err := b32.Decode(b[:], []byte(strings.ToLower(token))); err != nil || n != refMACSize {
		return correlate.Ref{}, fmt.Errorf("%w: %s token %q is not base32 (a-z, 2-7)", ErrTokenMalformed, kind, token)
	}
	ref := correlate.Ref(b[:correlate.RefSize])
	if !s.verifyMAC(b[correlate.RefSize:], label, ref, "") {
		return correlate.Ref{}, fmt.Errorf("%w: %s token %q", ErrTokenSignature, kind, token)
	}
	return ref, nil
}

// ParseClickToken returns the reference and the original URL of a click
// token when a key of the set signed both. The error wraps
// ErrTokenMalformed or ErrTokenSignature; with an error both results are
// zero.
func (s *TrackingSigner) ParseClickToken(token string) (correlate.Ref, string, error) {
	if len(token) > b64.EncodedLen(refMACSize+MaxClickURL) {
		return correlate.Ref{}, "", fmt.Errorf("%w: click token of %d characters is longer than any we write", ErrTokenMalformed, len(token))
	}
	// The decoder skips CR and LF, which would give one token several
	// texts.
	if strings.ContainsAny(token, "\r\n") {
		return correlate.Ref{}, "", fmt.Errorf("%w: click token contains a line break", ErrTokenMalformed)
	}
	b, err := b64.DecodeString(token)
	if err != nil || len(b) <= refMACSize {
		return correlate.Ref{}, "", fmt.Errorf("%w: click token %q is not base64url of a reference, a MAC and a URL", ErrTokenMalformed, abbrev(token))
	}
	ref := correlate.Ref(b[:correlate.RefSize])
	url := string(b[refMACSize:])
	if !s.verifyMAC(b[correlate.RefSize:refMACSize], clickLabel, ref, url) {
		return correlate.Ref{}, "", fmt.Errorf("%w: click token %q", ErrTokenSignature, abbrev(token))
	}
	return ref, url, nil
}

func (s *TrackingSigner) verifyMAC(got []byte, label string, ref correlate.Ref, extra string) bool {
	var want [correlate.MACSize]byte
	for _, k := range s.verify {
		k.mac(want[:], label, ref, extra)
		if hmac.Equal(want[:], got) {
			return true
		}
	}
	return false
}

func abbrev(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
