package webhook

import (
	"errors"
	"strconv"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	secret, body := []byte("s3cret"), []byte(`{"id":"x"}`)
	now := time.Unix(1_700_000_000, 0)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := Sign(secret, now.Unix(), body)
	// HMAC-SHA256("s3cret", "1700000000.{\"id\":\"x\"}"), computed independently:
	// printf '%s' '1700000000.{"id":"x"}' | openssl dgst -sha256 -hmac s3cret
	if want := "sha256=2382c1d0968a5e57238c68de957f44d87e83d3049a5588ec251442ca372b8aec"; sig != want {
		t.Errorf("Sign = %s, want %s", sig, want)
	}
	if err := Verify(secret, ts, sig, body, now, 5*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := Verify([]byte("other"), ts, sig, body, now, 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("wrong secret: %v", err)
	}
	if err := Verify(secret, ts, sig, []byte(`{"id":"y"}`), now, 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("altered body: %v", err)
	}
	if err := Verify(secret, "1700000001", sig, body, now, 0); !errors.Is(err, ErrBadSignature) {
		t.Errorf("altered timestamp: %v", err)
	}
	if err := Verify(secret, ts, sig, body, now.Add(time.Hour), 5*time.Minute); !errors.Is(err, ErrStale) {
		t.Errorf("replayed an hour later: %v", err)
	}
}
