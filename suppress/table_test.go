package suppress

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"testing"
)

// checkTable verifies the table's invariants: every entry is found by its
// key in the slot it occupies, and the slots hold exactly the entries.
func checkTable(t *testing.T, tb *table) {
	t.Helper()
	used := 0
	for _, s := range tb.slots {
		if s != 0 {
			used++
		}
	}
	if used != tb.len() {
		t.Fatalf("%d slots used for %d entries", used, tb.len())
	}
	for j := range tb.entries {
		k := string(tb.key(&tb.entries[j]))
		if _, idx, ok := tb.find(k, tb.hashString(k)); !ok || idx != j {
			t.Fatalf("entry %d (%q) found at %d, %v", j, k, idx, ok)
		}
	}
}

// The table against a map, under random inserts and removals, through
// growth and arena compaction.
func TestTableAgainstMap(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tb := newTable(maphash.MakeSeed(), 0)
	want := map[string]uint32{}
	for i := range 200000 {
		k := fmt.Sprintf("user%d@d%d.example", r.IntN(20000), r.IntN(3))
		_, idx, ok := tb.find(k, tb.hashString(k))
		if _, in := want[k]; in != ok {
			t.Fatalf("step %d: find(%q) = %v, want %v", i, k, ok, in)
		}
		if ok && tb.entries[idx].until != want[k] {
			t.Fatalf("step %d: %q until %d, want %d", i, k, tb.entries[idx].until, want[k])
		}
		switch {
		case !ok:
			tb.insert(k, tb.hashString(k), entry{until: uint32(i)})
			want[k] = uint32(i)
		case r.IntN(2) == 0:
			slot, _, _ := tb.find(k, tb.hashString(k))
			tb.remove(slot)
			delete(want, k)
		}
	}
	if tb.len() != len(want) {
		t.Fatalf("%d entries, want %d", tb.len(), len(want))
	}
	checkTable(t, tb)
	tb.compact()
	checkTable(t, tb)
	live := 0
	for k := range want {
		live += len(k)
	}
	if tb.garbage != 0 || tb.size != live {
		t.Fatalf("after compaction %d garbage, %d bytes; want 0, %d", tb.garbage, tb.size, live)
	}
	for k := range want {
		slot, _, _ := tb.find(k, tb.hashString(k))
		tb.remove(slot)
	}
	if tb.len() != 0 || tb.garbage > tb.size {
		t.Fatalf("after removing all: %d entries, %d garbage of %d", tb.len(), tb.garbage, tb.size)
	}
	checkTable(t, tb)
}
