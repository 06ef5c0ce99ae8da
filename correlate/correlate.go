package correlate

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"
	"sync"
)

// Errors returned by this package. Parse and ParseRef wrap ErrMalformed
// and ErrBadSignature with the detail; test them with errors.Is.
var (
	// ErrMalformed means the text is not a token (or a reference) at
	// all: wrong length or a character outside the base32 alphabet.
	ErrMalformed = errors.New("correlate: malformed token")
	// ErrBadSignature means the text has the shape of a token but no key
	// of the set signed it: forged, altered, or signed with a key no
	// longer in the set.
	ErrBadSignature = errors.New("correlate: bad signature")
	// ErrNoKey means a Keys without a signing key was given to New.
	ErrNoKey = errors.New("correlate: no signing key")
	// ErrPrefix means VERPAddress was given a prefix (or an empty domain)
	// it cannot use.
	ErrPrefix = errors.New("correlate: bad VERP prefix")
)

// Sizes of references and tokens, in bytes and in characters of their
// text.
const (
	// RefSize is the number of random bytes in a reference.
	RefSize = 10
	// MACSize is the number of bytes of HMAC-SHA256 kept in a token (80
	// bits, the least RFC 2104 §5 allows).
	MACSize = 10
	// RefLen is the length of a reference's text.
	RefLen = RefSize * 8 / 5
	// TokenLen is the length of a token's text.
	TokenLen = (RefSize + MACSize) * 8 / 5
	// MaxLocalPart is the longest local part, in octets (RFC 5321
	// §4.5.3.1.1).
	MaxLocalPart = 64
	// MaxPrefixLen is the longest VERP prefix for which
	// <prefix>+<token> fits in MaxLocalPart.
	MaxPrefixLen = MaxLocalPart - 1 - TokenLen
)

// label is what the MAC signs before the reference, so that a token of
// another kind signed with the same keys is not a correlation token.
const label = "repute/correlate/v1\x00"

// encoding is base32 with the RFC 4648 §6 alphabet in lower case and no
// padding (RefSize and RefSize+MACSize are multiples of 5 bytes, so no
// character carries unused bits and every text decodes to one value).
var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Ref is a send reference: a short random name of one sent message to one
// recipient. The zero Ref is no reference.
type Ref [RefSize]byte

// NewRef returns a new random reference from crypto/rand.
func NewRef() Ref {
	var r Ref
	rand.Read(r[:]) // never returns an error (crypto/rand, Go 1.24)
	return r
}

// ReadRef returns a reference made of the next RefSize bytes of rnd: tests
// pass a deterministic reader.
func ReadRef(rnd io.Reader) (Ref, error) {
	var r Ref
	if _, err := io.ReadFull(rnd, r[:]); err != nil {
		return Ref{}, fmt.Errorf("correlate: reading a reference: %w", err)
	}
	return r, nil
}

// ParseRef parses the text of a reference, in any case.
func ParseRef(s string) (Ref, error) {
	var r Ref
	if len(s) != RefLen {
		return Ref{}, fmt.Errorf("%w: reference %q is %d characters long, want %d", ErrMalformed, abbrev(s), len(s), RefLen)
	}
	if err := decode(r[:], s); err != nil {
		return Ref{}, fmt.Errorf("%w: reference %q: %v", ErrMalformed, s, err)
	}
	return r, nil
}

// String returns the reference's text: RefLen lower-case base32
// characters.
func (r Ref) String() string { return encoding.EncodeToString(r[:]) }

// IsZero reports whether r is the zero Ref (no reference).
func (r Ref) IsZero() bool { return r == Ref{} }

// MarshalText implements encoding.TextMarshaler.
func (r Ref) MarshalText() ([]byte, error) { return encoding.AppendEncode(nil, r[:]), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Ref) UnmarshalText(b []byte) error {
	v, err := ParseRef(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Keys is the signing key set: Sign signs new tokens, and a token is
// accepted when Sign or any key of Verify signed it. It has the shape of
// repute serve's key set, so that set converts to it directly.
type Keys struct {
	Sign   []byte
	Verify [][]byte
}

// Signer makes and checks tokens with one key set. It is safe for
// concurrent use.
type Signer struct {
	sign   *key
	verify []*key // sign first, then the other keys of Keys.Verify
}

// key is one key with its HMAC states ready for reuse: hmac.New costs more
// than the MAC of a short message.
type key struct {
	pool sync.Pool // of hash.Hash, HMAC-SHA256 under this key
}

func newKey(k []byte) *key {
	k = clone(k)
	return &key{pool: sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}}
}

// mac writes the first len(dst) bytes of HMAC-SHA256(key, label || ref)
// to dst.
func (k *key) mac(dst []byte, ref Ref) {
	h := k.pool.Get().(hash.Hash)
	h.Reset()
	h.Write([]byte(label))
	h.Write(ref[:])
	var sum [sha256.Size]byte
	copy(dst, h.Sum(sum[:0]))
	k.pool.Put(h)
}

// New returns a Signer for k. It copies the keys; k.Sign must not be
// empty (ErrNoKey). Choosing keys of enough length and randomness is the
// caller's job (repute serve wants at least 32 characters).
func New(k Keys) (*Signer, error) {
	if len(k.Sign) == 0 {
		return nil, ErrNoKey
	}
	s := &Signer{sign: newKey(k.Sign)}
	s.verify = append(s.verify, s.sign)
	for _, v := range k.Verify {
		if len(v) == 0 || hmac.Equal(v, k.Sign) {
			continue
		}
		s.verify = append(s.verify, newKey(v))
	}
	return s, nil
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// Token returns the token of ref, signed with the signing key: TokenLen
// lower-case base32 characters, for the correlation header and the VERP
// return path.
func (s *Signer) Token(ref Ref) string {
	var b [RefSize + MACSize]byte
	copy(b[:], ref[:])
	s.sign.mac(b[RefSize:], ref)
	return encoding.EncodeToString(b[:])
}

// Parse returns the reference of a token when a key of the set signed it.
// It accepts any case and ignores white space around the token (a header
// value may keep some). The error wraps ErrMalformed or ErrBadSignature;
// with an error the Ref is zero.
func (s *Signer) Parse(token string) (Ref, error) {
	t := strings.TrimSpace(token)
	if len(t) != TokenLen {
		return Ref{}, fmt.Errorf("%w: %q is %d characters long, want %d", ErrMalformed, abbrev(t), len(t), TokenLen)
	}
	var b [RefSize + MACSize]byte
	if err := decode(b[:], t); err != nil {
		return Ref{}, fmt.Errorf("%w: %q: %v", ErrMalformed, t, err)
	}
	ref := Ref(b[:RefSize])
	var want [MACSize]byte
	for _, k := range s.verify {
		k.mac(want[:], ref)
		if hmac.Equal(want[:], b[RefSize:]) {
			return ref, nil
		}
	}
	return Ref{}, fmt.Errorf("%w: token %q", ErrBadSignature, t)
}

// decode decodes s, of exactly the length of dst's text, into dst; upper
// case is folded to lower case.
func decode(dst []byte, s string) error {
	var buf [TokenLen]byte
	if len(s) > len(buf) {
		return errors.New("too long")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	n, err := encoding.Decode(dst, buf[:len(s)])
	if err != nil {
		return fmt.Errorf("not lower-case base32 (a-z, 2-7): %v", err)
	}
	if n != len(dst) {
		return fmt.Errorf("decodes to %d bytes, want %d", n, len(dst))
	}
	return nil
}

// abbrev shortens s for an error message.
func abbrev(s string) string {
	const max = 80
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
