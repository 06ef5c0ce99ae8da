package suppress

import (
	"hash/maphash"
	"math/bits"
)

// entry is one blocklist entry in its compact form: 36 bytes. Its key (the
// address, or for an account's own entry the account, a NUL and the
// address) lives in the table's arena.
type entry struct {
	off     uint32   // the key's offset in the arena
	n       uint16   // the key's length (≤ 255 + 1 + maxAddress)
	reason  uint8    // index into Index.reasons
	flags   uint8    // flagOddID
	since   uint32   // unix seconds: the event that put the address on the list
	until   uint32   // unix seconds: blocks while now < until
	account uint32   // index into Index.accounts: whose send caused the entry
	id      [16]byte // the event id, decoded from 32 lower-case hex digits
}

// flagOddID: the event id is not 32 lower-case hex digits; it is kept as
// given in Index.oddIDs, by key.
const flagOddID = 1

// table maps keys to entries with open addressing (linear probing) over
// 8-byte slots: the high 32 bits are the low 32 bits of the key's hash (a
// tag that rules out almost every other key without reading it), the low
// 32 bits the entry's index + 1 (0 is an empty slot). The home slot is
// taken from the hash's high bits, so tag and position are independent.
// Keys are confirmed against the arena. Removal shifts the cluster back
// (no tombstones) and moves the last entry into the hole, so entries stay
// dense; the arena is compacted when half of it is garbage.
//
// At 10 million entries: 2^24 slots (8 B each, 13.4 B/entry), 36 B of
// entry, the key's bytes, plus slice growth. Not safe for concurrent use:
// Index locks around it.
type table struct {
	seed    maphash.Seed
	slots   []uint64
	shift   uint // 64 - log2(len(slots))
	entries []entry
	// arena holds the keys in chunks of chunkSize bytes, so that growing
	// it copies nothing; a key never spans two chunks. An offset is the
	// chunk's number times chunkSize plus the position in it: 4 GiB of
	// keys in all.
	arena   [][]byte
	size    int // bytes used in arena, garbage included
	garbage int // arena bytes no entry refers to
}

const chunkSize = 1 << 20

const minSlots = 16

func newTable(seed maphash.Seed, sizeHint int) *table {
	t := &table{seed: seed}
	n := minSlots
	for n*3/4 < sizeHint {
		n *= 2
	}
	t.resize(n)
	if sizeHint > 0 {
		t.entries = make([]entry, 0, sizeHint)
	}
	return t
}

func (t *table) len() int { return len(t.entries) }

func (t *table) hash(key []byte) uint64 { return maphash.Bytes(t.seed, key) }

func (t *table) hashString(key string) uint64 { return maphash.String(t.seed, key) }

func (t *table) key(e *entry) []byte {
	c, p := e.off/chunkSize, e.off%chunkSize
	return t.arena[c][p : p+uint32(e.n)]
}

// store appends key to t's arena and returns its offset.
func store[K string | []byte](t *table, key K) uint32 {
	if len(t.arena) == 0 || len(t.arena[len(t.arena)-1])+len(key) > chunkSize {
		t.arena = append(t.arena, make([]byte, 0, chunkSize))
	}
	c := len(t.arena) - 1
	off := uint32(c*chunkSize + len(t.arena[c]))
	t.arena[c] = append(t.arena[c], key...)
	t.size += len(key)
	return off
}

// find returns the slot and entry index of key, whose hash is h, or
// ok false.
func (t *table) find(key string, h uint64) (slot, idx int, ok bool) {
	mask := len(t.slots) - 1
	tag := uint64(uint32(h)) << 32
	for i := int(h >> t.shift); ; i = (i + 1) & mask {
		s := t.slots[i]
		if s == 0 {
			return i, -1, false
		}
		if s&^0xffffffff == tag {
			j := int(uint32(s)) - 1
			if string(t.key(&t.entries[j])) == key {
				return i, j, true
			}
		}
	}
}

// insert adds an entry for key, which must not be in the table, and
// returns its index.
func (t *table) insert(key string, h uint64, e entry) int {
	if (len(t.entries)+1)*4 > len(t.slots)*3 {
		t.resize(len(t.slots) * 2)
	}
	if len(t.arena) >= 1<<32/chunkSize-1 && t.garbage > 0 {
		t.compact()
	}
	e.off, e.n = store(t, key), uint16(len(key))
	t.entries = append(t.entries, e)
	t.place(h, len(t.entries)-1)
	return len(t.entries) - 1
}

func (t *table) place(h uint64, idx int) {
	mask := len(t.slots) - 1
	i := int(h >> t.shift)
	for t.slots[i] != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = uint64(uint32(h))<<32 | uint64(idx+1)
}

func (t *table) resize(n int) {
	t.slots = make([]uint64, n)
	t.shift = uint(64 - bits.TrailingZeros(uint(n)))
	for j := range t.entries {
		t.place(t.hash(t.key(&t.entries[j])), j)
	}
}

// remove deletes the entry in slot.
func (t *table) remove(slot int) {
	mask := len(t.slots) - 1
	idx := int(uint32(t.slots[slot])) - 1
	// Shift back the rest of the cluster (Knuth 6.4, algorithm R).
	i := slot
	for j := (i + 1) & mask; t.slots[j] != 0; j = (j + 1) & mask {
		home := int(t.hash(t.key(&t.entries[int(uint32(t.slots[j]))-1])) >> t.shift)
		// Move j into i unless its home lies cyclically in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = 0
	t.garbage += int(t.entries[idx].n)
	// Move the last entry into the hole.
	last := len(t.entries) - 1
	if idx != last {
		e := t.entries[last]
		s, _, _ := t.findIndex(t.key(&e), last)
		t.slots[s] = t.slots[s]&^0xffffffff | uint64(idx+1)
		t.entries[idx] = e
	}
	t.entries = t.entries[:last]
	if t.garbage > chunkSize && t.garbage > t.size/2 {
		t.compact()
	}
}

// findIndex returns the slot holding entry idx, whose key is key.
func (t *table) findIndex(key []byte, idx int) (slot int, h uint64, ok bool) {
	h = t.hash(key)
	mask := len(t.slots) - 1
	for i := int(h >> t.shift); t.slots[i] != 0; i = (i + 1) & mask {
		if int(uint32(t.slots[i]))-1 == idx {
			return i, h, true
		}
	}
	panic("suppress: table entry not in its slots")
}

// compact rewrites the arena without garbage.
func (t *table) compact() {
	old := t.arena
	t.arena, t.size, t.garbage = nil, 0, 0
	for j := range t.entries {
		e := &t.entries[j]
		c, p := e.off/chunkSize, e.off%chunkSize
		e.off = store(t, old[c][p:p+uint32(e.n)])
	}
}
