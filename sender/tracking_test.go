package sender

import (
	"errors"
	"strings"
	"testing"

	"repute/correlate"
)

func newTestTracking(t testing.TB, k correlate.Keys) *TrackingSigner {
	t.Helper()
	s, err := NewTrackingSigner(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTrackingRoundTrip(t *testing.T) {
	s := newTestTracking(t, testKeys)
	ref := refOf(7)
	if r, err := s.ParseOpenToken(s.OpenToken(ref)); err != nil || r != ref {
		t.Errorf("open: %v, %v", r, err)
	}
	if r, err := s.ParseUnsubscribeToken(strings.ToUpper(s.UnsubscribeToken(ref))); err != nil || r != ref {
		t.Errorf("unsubscribe (upper case): %v, %v", r, err)
	}
	u := "https://acme.example/a?b=c&d=é#f"
	if r, got, err := s.ParseClickToken(s.ClickToken(ref, u)); err != nil || r != ref || got != u {
		t.Errorf("click: %v, %q, %v", r, got, err)
	}
	// the kinds do not stand in for each other, nor for a correlation token
	cs, _ := correlate.New(testKeys)
	if _, err := s.ParseOpenToken(s.UnsubscribeToken(ref)); !errors.Is(err, ErrTokenSignature) {
		t.Errorf("unsubscribe token as open token: %v", err)
	}
	if _, err := s.ParseUnsubscribeToken(cs.Token(ref)); !errors.Is(err, ErrTokenSignature) {
		t.Errorf("correlation token as unsubscribe token: %v", err)
	}
	if _, err := cs.Parse(s.OpenToken(ref)); err == nil {
		t.Error("open token accepted as a correlation token")
	}
}

func TestTrackingKeyRotation(t *testing.T) {
	old := newTestTracking(t, correlate.Keys{Sign: []byte("old-key-old-key-old-key-old-key!")})
	cur := newTestTracking(t, correlate.Keys{Sign: []byte("new-key-new-key-new-key-new-key!"), Verify: [][]byte{[]byte("old-key-old-key-old-key-old-key!")}})
	other := newTestTracking(t, correlate.Keys{Sign: []byte("new-key-new-key-new-key-new-key!")})
	tok := old.ClickToken(refOf(3), "https://a.example")
	if _, _, err := cur.ParseClickToken(tok); err != nil {
		t.Errorf("token of a verify key refused: %v", err)
	}
	if _, _, err := other.ParseClickToken(tok); !errors.Is(err, ErrTokenSignature) {
		t.Errorf("token of an unknown key: %v", err)
	}
	if _, err := NewTrackingSigner(correlate.Keys{}); !errors.Is(err, correlate.ErrNoKey) {
		t.Errorf("no signing key: %v", err)
	}
}

// TestTrackingAlteredByte changes every byte of every kind of token to
// every other character of its alphabet: all must fail (base32 ones but
// for a change of case, which the parsers accept).
func TestTrackingAlteredByte(t *testing.T) {
	s := newTestTracking(t, testKeys)
	ref := refOf(9)
	const b32Alpha = "abcdefghijklmnopqrstuvwxyz234567"
	const b64Alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	check := func(kind, tok, alpha string, parse func(string) error) {
		for i := 0; i < len(tok); i++ {
			for _, c := range []byte(alpha + "=+/ \n\x00") {
				if c == tok[i] || (alpha == b32Alpha && c == tok[i]-('a'-'A')) {
					continue
				}
				alt := tok[:i] + string(c) + tok[i+1:]
				if err := parse(alt); err == nil {
					t.Fatalf("%s token with byte %d changed to %q accepted: %q", kind, i, c, alt)
				}
			}
		}
		if err := parse(tok[:len(tok)-1]); err == nil {
			t.Errorf("%s token shortened accepted", kind)
		}
		if err := parse(tok + alpha[:1]); err == nil {
			t.Errorf("%s token lengthened accepted", kind)
		}
	}
	check("open", s.OpenToken(ref), b32Alpha, func(x string) error { _, err := s.ParseOpenToken(x); return err })
	check("unsubscribe", s.UnsubscribeToken(ref), b32Alpha, func(x string) error { _, err := s.ParseUnsubscribeToken(x); return err })
	check("click", s.ClickToken(ref, "https://acme.example/x"), b64Alpha, func(x string) error { _, _, err := s.ParseClickToken(x); return err })
}

func FuzzParseClickToken(f *testing.F) {
	s := newTestTracking(f, testKeys)
	f.Add(s.ClickToken(refOf(1), "https://acme.example/x"))
	f.Add("")
	f.Add(strings.Repeat("A", 40))
	f.Fuzz(func(t *testing.T, tok string) {
		ref, u, err := s.ParseClickToken(tok)
		if err != nil {
			if !errors.Is(err, ErrTokenMalformed) && !errors.Is(err, ErrTokenSignature) {
				t.Fatalf("error of no kind: %v", err)
			}
			if !ref.IsZero() || u != "" {
				t.Fatal("results with an error")
			}
			return
		}
		if s.ClickToken(ref, u) != tok {
			t.Fatalf("accepted %q, which is not the token of %v, %q", tok, ref, u)
		}
	})
}

func FuzzParseOpenToken(f *testing.F) {
	s := newTestTracking(f, testKeys)
	f.Add(s.OpenToken(refOf(1)))
	f.Add(s.UnsubscribeToken(refOf(1)))
	f.Add("")
	f.Fuzz(func(t *testing.T, tok string) {
		for _, parse := range []func(string) (correlate.Ref, error){s.ParseOpenToken, s.ParseUnsubscribeToken} {
			ref, err := parse(tok)
			if err != nil {
				if !ref.IsZero() || (!errors.Is(err, ErrTokenMalformed) && !errors.Is(err, ErrTokenSignature)) {
					t.Fatalf("bad error result: %v, %v", ref, err)
				}
				continue
			}
			if s.OpenToken(ref) != strings.ToLower(tok) && s.UnsubscribeToken(ref) != strings.ToLower(tok) {
				t.Fatalf("accepted %q, no token of %v", tok, ref)
			}
		}
	})
}
