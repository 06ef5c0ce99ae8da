package corpustest

import (
	"strings"
	"testing"

	"repute/ingest"
)

func TestVariants(t *testing.T) {
	_, raws := Files(t)
	n := len(raws) + 3
	vs := Variants(t, n)
	if len(vs) != n {
		t.Fatalf("%d variants, want %d", len(vs), n)
	}
	recipients := map[string]int{}
	for i, v := range vs {
		orig, _ := ingest.ParseBytes(raws[i%len(raws)])
		got, _ := ingest.ParseBytes(v)
		if len(got) != len(orig) {
			t.Errorf("variant %d: %d results, the original %d", i, len(got), len(orig))
		}
		for _, r := range got {
			if r.Recipient != "" {
				recipients[r.Recipient]++
			}
		}
		if !strings.Contains(string(v), "<corpus-copy-") {
			t.Errorf("variant %d has no Message-ID of its own", i)
		}
	}
	shared := 0
	for _, c := range recipients {
		if c > 1 {
			shared++
		}
	}
	// Recipients written only in an encoded form cannot be rewritten; they
	// must stay rare.
	if shared*20 > len(recipients) {
		t.Errorf("%d of %d recipients shared between copies", shared, len(recipients))
	}
}
