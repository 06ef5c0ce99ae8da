package duckdb

import (
	"fmt"
	"hash/maphash"
	"testing"
)

// TestSendFilter: every key added is held, across layers; keys never
// added are rarely held.
func TestSendFilter(t *testing.T) {
	f := &sendFilter{seed: maphash.MakeSeed(), layers: []*filterLayer{newLayer(0)}}
	const n = 3 * filterMinKeys // past the first layer and the second
	for i := range n {
		f.add(msgKeyKey(fmt.Sprintf("%d@acme.example", i)))
	}
	if len(f.layers) < 2 {
		t.Errorf("%d layers after %d keys, want more than one", len(f.layers), n)
	}
	for i := range n {
		if k := msgKeyKey(fmt.Sprintf("%d@acme.example", i)); !f.mayHold(k) {
			t.Fatalf("key %q added but not held", k)
		}
	}
	fp := 0
	const probes = 100_000
	for i := range probes {
		if f.mayHold(msgKeyKey(fmt.Sprintf("%d@other.example", i))) {
			fp++
		}
	}
	if rate := float64(fp) / probes; rate > 0.03 {
		t.Errorf("false positive rate %.4f, want under 0.03", rate)
	}
}
