package sender

import (
	"math/rand/v2"
	"testing"
	"time"

	"repute/correlate"
)

var testKeys = correlate.Keys{Sign: []byte("0123456789abcdef0123456789abcdef")}

// testNow is the composer's clock in tests.
var testNow = time.Date(2026, 3, 14, 9, 26, 53, 0, time.UTC)

func newTestComposer(t testing.TB, bounce string, keys ...DKIMKey) *Composer {
	t.Helper()
	cs, err := correlate.New(testKeys)
	if err != nil {
		t.Fatal(err)
	}
	ts, err := NewTrackingSigner(testKeys)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewComposer(ComposerOptions{
		Correlate:    cs,
		Tracking:     ts,
		TrackingURL:  "https://t.acme.example/",
		BounceDomain: bounce,
		DKIM:         keys,
		Rand:         rand.NewChaCha8([32]byte{1, 2, 3}),
		Now:          func() time.Time { return testNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustPrepare(t testing.TB, m *Message) *Prepared {
	t.Helper()
	p, bad, err := Prepare(m)
	if err != nil || len(bad) > 0 {
		t.Fatalf("Prepare: %v %v", bad, err)
	}
	return p
}

// refOf returns a reference of ten bytes b.
func refOf(b byte) correlate.Ref {
	var r correlate.Ref
	for i := range r {
		r[i] = b
	}
	return r
}
