package correlate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

var (
	keyA = []byte("key-a-0123456789abcdef0123456789abcdef")
	keyB = []byte("key-b-0123456789abcdef0123456789abcdef")
	keyC = []byte("key-c-0123456789abcdef0123456789abcdef")
)

// mustNew returns a Signer for k or stops the test.
func mustNew(t testing.TB, k Keys) *Signer {
	t.Helper()
	s, err := New(k)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// seqRef returns the reference whose bytes are first, first+1, ….
func seqRef(first byte) Ref {
	var r Ref
	for i := range r {
		r[i] = first + byte(i)
	}
	return r
}

func TestNewNoKey(t *testing.T) {
	for _, k := range []Keys{{}, {Verify: [][]byte{keyA}}, {Sign: []byte{}}} {
		if _, err := New(k); !errors.Is(err, ErrNoKey) {
			t.Errorf("New(%+v) error = %v, want ErrNoKey", k, err)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA, Verify: [][]byte{keyA}})
	for _, ref := range []Ref{{}, seqRef(0), seqRef(200), NewRef(), NewRef()} {
		tok := s.Token(ref)
		if len(tok) != TokenLen {
			t.Errorf("Token(%v) = %q: %d characters, want %d", ref, tok, len(tok), TokenLen)
		}
		if tok != strings.ToLower(tok) {
			t.Errorf("Token(%v) = %q: not lower-case", ref, tok)
		}
		if !strings.HasPrefix(tok, ref.String()) {
			t.Errorf("Token(%v) = %q: does not start with the reference %q", ref, tok, ref)
		}
		got, err := s.Parse(tok)
		if err != nil || got != ref {
			t.Errorf("Parse(%q) = %v, %v; want %v, nil", tok, got, err, ref)
		}
	}
}

func TestTokenDeterministic(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	ref := seqRef(0)
	// Computed independently: Python's hmac and base64.b32encode over
	// "repute/correlate/v1\x00" + bytes(range(10)), lower-cased.
	const want = "aaaqeayeaudaocajcaa2ixi3pfffeoz3"
	if got := s.Token(ref); got != want {
		t.Errorf("Token(%v) = %q, want %q (a changed format breaks every token in flight)", ref, got, want)
	}
	if got := ref.String(); got != "aaaqeayeaudaocaj" {
		t.Errorf("Ref.String() = %q, want %q", got, "aaaqeayeaudaocaj")
	}
}

func TestParseCase(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	ref := seqRef(7)
	tok := s.Token(ref)
	mixed := []byte(tok)
	for i := 0; i < len(mixed); i += 2 {
		mixed[i] = bytes.ToUpper(mixed[i : i+1])[0]
	}
	for _, in := range []string{tok, strings.ToUpper(tok), string(mixed), " " + tok + "\r\n", "\t" + strings.ToUpper(tok)} {
		got, err := s.Parse(in)
		if err != nil || got != ref {
			t.Errorf("Parse(%q) = %v, %v; want %v, nil", in, got, err, ref)
		}
	}
}

func TestParseRefused(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	other := mustNew(t, Keys{Sign: keyB})
	ref := seqRef(1)
	tok := s.Token(ref)

	flip := func(i int) string {
		// A different character of the alphabet at position i: a
		// flipped bit of the decoded bytes.
		b := []byte(tok)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"white space", "   ", ErrMalformed},
		{"truncated", tok[:TokenLen-1], ErrMalformed},
		{"reference only", tok[:RefLen], ErrMalformed},
		{"one too many", tok + "a", ErrMalformed},
		{"padding", tok[:TokenLen-1] + "=", ErrMalformed},
		{"not base32 (digit 1)", tok[:5] + "1" + tok[6:], ErrMalformed},
		{"not base32 (digit 8)", tok[:5] + "8" + tok[6:], ErrMalformed},
		{"inner newline", tok[:5] + "\n" + tok[6:], ErrMalformed},
		{"non-ASCII", tok[:TokenLen-2] + "é", ErrMalformed},
		{"other key", other.Token(ref), ErrBadSignature},
		{"reference of another token", s.Token(seqRef(2))[:RefLen] + tok[RefLen:], ErrBadSignature},
		{"flipped reference", flip(0), ErrBadSignature},
		{"flipped reference end", flip(RefLen - 1), ErrBadSignature},
		{"flipped MAC", flip(RefLen), ErrBadSignature},
		{"flipped MAC end", flip(TokenLen - 1), ErrBadSignature},
		{"all a", strings.Repeat("a", TokenLen), ErrBadSignature},
	}
	for _, tt := range tests {
		got, err := s.Parse(tt.in)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Parse(%q) = %v, %v; want error %v", tt.name, tt.in, got, err, tt.want)
			continue
		}
		if !got.IsZero() {
			t.Errorf("%s: Parse(%q) = %v with an error; want the zero Ref", tt.name, tt.in, got)
		}
	}
}

// TestParseEveryBit flips each bit of a token's bytes: every change is
// refused.
func TestParseEveryBit(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	ref := seqRef(9)
	var b [RefSize + MACSize]byte
	if err := decode(b[:], s.Token(ref)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(b)*8; i++ {
		c := b
		c[i/8] ^= 1 << (i % 8)
		in := encoding.EncodeToString(c[:])
		if _, err := s.Parse(in); !errors.Is(err, ErrBadSignature) {
			t.Errorf("bit %d flipped: Parse(%q) error = %v, want ErrBadSignature", i, in, err)
		}
	}
}

func TestKeyRotation(t *testing.T) {
	ref := seqRef(3)
	old := mustNew(t, Keys{Sign: keyA, Verify: [][]byte{keyA}})
	oldTok := old.Token(ref)

	// Step 1: the new key in front, the old one still verifying.
	rotated := mustNew(t, Keys{Sign: keyB, Verify: [][]byte{keyB, keyA}})
	newTok := rotated.Token(ref)
	if newTok == oldTok {
		t.Fatalf("tokens under two keys are equal: %q", newTok)
	}
	for _, tok := range []string{oldTok, newTok} {
		if got, err := rotated.Parse(tok); err != nil || got != ref {
			t.Errorf("rotated: Parse(%q) = %v, %v; want %v, nil", tok, got, err, ref)
		}
	}
	// The old set does not know the new key.
	if _, err := old.Parse(newTok); !errors.Is(err, ErrBadSignature) {
		t.Errorf("old set: Parse(new token) error = %v, want ErrBadSignature", err)
	}
	// Step 2: the old key dropped.
	dropped := mustNew(t, Keys{Sign: keyB, Verify: [][]byte{keyB}})
	if _, err := dropped.Parse(oldTok); !errors.Is(err, ErrBadSignature) {
		t.Errorf("old key dropped: Parse(old token) error = %v, want ErrBadSignature", err)
	}
	if got, err := dropped.Parse(newTok); err != nil || got != ref {
		t.Errorf("old key dropped: Parse(new token) = %v, %v; want %v, nil", got, err, ref)
	}
	// Sign verifies even when Verify leaves it out; empty keys are skipped.
	odd := mustNew(t, Keys{Sign: keyC, Verify: [][]byte{nil, keyA}})
	for _, tok := range []string{odd.Token(ref), oldTok} {
		if got, err := odd.Parse(tok); err != nil || got != ref {
			t.Errorf("Sign outside Verify: Parse(%q) = %v, %v; want %v, nil", tok, got, err, ref)
		}
	}
}

// TestNewCopiesKeys: changing the caller's key slices after New changes
// nothing.
func TestNewCopiesKeys(t *testing.T) {
	sign, verify := bytes.Clone(keyA), bytes.Clone(keyB)
	s := mustNew(t, Keys{Sign: sign, Verify: [][]byte{verify}})
	before := s.Token(seqRef(0))
	sign[0], verify[0] = 'x', 'x'
	if after := s.Token(seqRef(0)); after != before {
		t.Errorf("Token changed from %q to %q when the caller's key changed", before, after)
	}
	if _, err := s.Parse(mustNew(t, Keys{Sign: keyB}).Token(seqRef(0))); err != nil {
		t.Errorf("Parse of a Verify key's token after the caller's copy changed: %v", err)
	}
}

// TestLabel: the MAC covers the label, so an HMAC of the bare reference
// under the same key (another kind of token) is refused.
func TestLabel(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA})
	ref := seqRef(4)
	var b [RefSize + MACSize]byte
	copy(b[:], ref[:])
	bare := hmacSHA256(keyA, ref[:])
	copy(b[RefSize:], bare)
	in := encoding.EncodeToString(b[:])
	if _, err := s.Parse(in); !errors.Is(err, ErrBadSignature) {
		t.Errorf("Parse(token with an unlabelled MAC %q) error = %v, want ErrBadSignature", in, err)
	}
}

func TestRefText(t *testing.T) {
	ref := seqRef(5)
	for _, in := range []string{ref.String(), strings.ToUpper(ref.String())} {
		got, err := ParseRef(in)
		if err != nil || got != ref {
			t.Errorf("ParseRef(%q) = %v, %v; want %v, nil", in, got, err, ref)
		}
	}
	for _, in := range []string{"", "aaaa", ref.String() + "a", ref.String()[:RefLen-1] + "1", strings.Repeat("x", 1000)} {
		if got, err := ParseRef(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseRef(%q) = %v, %v; want ErrMalformed", in, got, err)
		}
	}
	b, err := json.Marshal(struct{ Ref Ref }{ref})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"Ref":"` + ref.String() + `"}`; string(b) != want {
		t.Errorf("json.Marshal = %s, want %s", b, want)
	}
	var back struct{ Ref Ref }
	if err := json.Unmarshal(b, &back); err != nil || back.Ref != ref {
		t.Errorf("json.Unmarshal(%s) = %v, %v; want %v", b, back.Ref, err, ref)
	}
	if err := json.Unmarshal([]byte(`{"Ref":"nope"}`), &back); !errors.Is(err, ErrMalformed) {
		t.Errorf("json.Unmarshal of a bad reference: error = %v, want ErrMalformed", err)
	}
}

func TestReadRef(t *testing.T) {
	a, b := seqRef(0), seqRef(100)
	src := bytes.NewReader(append(a[:], b[:]...))
	for _, want := range []Ref{seqRef(0), seqRef(100)} {
		if got, err := ReadRef(src); err != nil || got != want {
			t.Errorf("ReadRef = %v, %v; want %v, nil", got, err, want)
		}
	}
	if got, err := ReadRef(src); err == nil {
		t.Errorf("ReadRef of an exhausted reader = %v, nil; want an error", got)
	}
}

func TestNewRef(t *testing.T) {
	seen := make(map[Ref]bool)
	for range 1000 {
		r := NewRef()
		if r.IsZero() || seen[r] {
			t.Fatalf("NewRef returned %v twice or zero", r)
		}
		seen[r] = true
	}
}

func TestSizes(t *testing.T) {
	// No character of a reference or a token may carry unused bits, or
	// two texts would decode to one value.
	if RefSize%5 != 0 || (RefSize+MACSize)%5 != 0 {
		t.Errorf("RefSize %d and RefSize+MACSize %d must be multiples of 5 bytes", RefSize, RefSize+MACSize)
	}
	if MACSize*8 < 80 {
		t.Errorf("MACSize is %d bits, RFC 2104 §5 wants at least 80", MACSize*8)
	}
	if RefLen != 16 || TokenLen != 32 || MaxPrefixLen != 31 {
		t.Errorf("RefLen, TokenLen, MaxPrefixLen = %d, %d, %d; the documentation says 16, 32, 31", RefLen, TokenLen, MaxPrefixLen)
	}
}

// TestConcurrent: one Signer used from many goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	s := mustNew(t, Keys{Sign: keyA, Verify: [][]byte{keyB}})
	old := mustNew(t, Keys{Sign: keyB})
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 200 {
				ref := seqRef(byte(g*31 + i))
				for _, tok := range []string{s.Token(ref), old.Token(ref)} {
					if got, err := s.Parse(tok); err != nil || got != ref {
						done <- fmt.Errorf("Parse(%q) = %v, %v; want %v, nil", tok, got, err, ref)
						return
					}
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
