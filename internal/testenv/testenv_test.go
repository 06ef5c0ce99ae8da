package testenv

import (
	"testing"
)

// recorder captures what lookup does to a test without ending this one.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = true
	r.msg = format
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = format
}

func TestLookup(t *testing.T) {
	t.Setenv("REPUTE_TEST_X", "127.0.0.1:1")
	if got := lookup(&recorder{TB: t}, "REPUTE_TEST_X", "X"); got != "127.0.0.1:1" {
		t.Errorf("lookup = %q, want 127.0.0.1:1", got)
	}

	t.Setenv("REPUTE_TEST_X", "")
	t.Setenv(RequireServicesVar, "")
	r := &recorder{TB: t}
	lookup(r, "REPUTE_TEST_X", "X")
	if !r.skipped || r.failed {
		t.Errorf("without the service: skipped=%v failed=%v, want a skip", r.skipped, r.failed)
	}

	t.Setenv(RequireServicesVar, "1")
	r = &recorder{TB: t}
	lookup(r, "REPUTE_TEST_X", "X")
	if !r.failed {
		t.Errorf("without the service under make test: failed=%v, want a failure", r.failed)
	}
}
