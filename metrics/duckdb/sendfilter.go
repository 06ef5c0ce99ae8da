package duckdb

import (
	"context"
	"database/sql"
	"hash/maphash"
	"path/filepath"
	"sync"
)

// sendFilter is a Bloom filter over the keys of the sends table (each
// send's ref and msg_key), held in memory so that a report about no send
// of ours — backscatter, a forwarded bounce, mail sent by another system —
// costs no query: a DuckDB point query costs about half a millisecond, a
// filter test a few nanoseconds. A key the filter does not hold is
// certainly not in sends; one it holds is looked up. Keys are added before
// the transaction that stores them commits, so a committed send is never
// missed; a rolled-back one is only a false positive.
//
// It is scalable (Almeida et al., 2007): layers of 10 bits and 7 probes a
// key (about 1% false positives each when full, Bloom 1970), a new layer
// of twice the capacity once the last is full, so it grows without a
// rebuild that could miss a key added meanwhile. One filter serves every
// Store open on a file in the process (filterFor), so a send appended
// through one is seen by the lookups of another.
type sendFilter struct {
	mu     sync.RWMutex
	seed   maphash.Seed
	layers []*filterLayer
}

type filterLayer struct {
	bits     []uint64
	n, limit int // keys added; the count it was sized for
}

const (
	filterBitsPerKey = 10
	filterProbes     = 7
	filterMinKeys    = 1 << 16
)

func newLayer(capacity int) *filterLayer {
	capacity = max(capacity, filterMinKeys)
	return &filterLayer{bits: make([]uint64, (capacity*filterBitsPerKey+63)/64), limit: capacity}
}

// The two kinds of key, kept apart.
func refKey(ref string) string    { return "r\x00" + ref }
func msgKeyKey(key string) string { return "m\x00" + key }

// probe calls fn with each of key's bits in l until fn returns false.
func (f *sendFilter) probe(l *filterLayer, h uint64, fn func(word *uint64, bit uint64) bool) bool {
	h1, h2 := uint32(h), uint32(h>>32)|1 // double hashing (Kirsch–Mitzenmacher)
	m := uint32(len(l.bits) * 64)
	for i := range uint32(filterProbes) {
		b := (h1 + i*h2) % m
		if !fn(&l.bits[b/64], 1<<(b%64)) {
			return false
		}
	}
	return true
}

// mayHold reports whether key may be in the table.
func (f *sendFilter) mayHold(key string) bool {
	h := maphash.String(f.seed, key)
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, l := range f.layers {
		if f.probe(l, h, func(w *uint64, bit uint64) bool { return *w&bit != 0 }) {
			return true
		}
	}
	return false
}

// add records keys.
func (f *sendFilter) add(keys ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range keys {
		l := f.layers[len(f.layers)-1]
		if l.n >= l.limit {
			l = newLayer(2 * l.limit)
			f.layers = append(f.layers, l)
		}
		f.probe(l, maphash.String(f.seed, k), func(w *uint64, bit uint64) bool { *w |= bit; return true })
		l.n++
	}
}

// filters holds the filter of each database file open in the process.
var filters = struct {
	sync.Mutex
	byPath map[string]*sharedFilter
}{byPath: map[string]*sharedFilter{}}

type sharedFilter struct {
	f    *sendFilter
	refs int
}

// filterFor returns the filter of the file at path, loading it from the
// sends table when no Store has the file open; releaseFilter gives it back.
func filterFor(ctx context.Context, path string, db *sql.DB) (*sendFilter, error) {
	key, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	filters.Lock()
	defer filters.Unlock()
	if sf := filters.byPath[key]; sf != nil {
		sf.refs++
		return sf.f, nil
	}
	f, err := loadSendFilter(ctx, db)
	if err != nil {
		return nil, err
	}
	filters.byPath[key] = &sharedFilter{f: f, refs: 1}
	return f, nil
}

func releaseFilter(path string) {
	key, err := filepath.Abs(path)
	if err != nil {
		return
	}
	filters.Lock()
	defer filters.Unlock()
	if sf := filters.byPath[key]; sf != nil {
		if sf.refs--; sf.refs == 0 {
			delete(filters.byPath, key)
		}
	}
}

// loadSendFilter builds a filter from the sends table, its first layer
// sized for twice the keys it holds.
func loadSendFilter(ctx context.Context, db *sql.DB) (*sendFilter, error) {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sends").Scan(&n); err != nil {
		return nil, err
	}
	f := &sendFilter{seed: maphash.MakeSeed(), layers: []*filterLayer{newLayer(4 * n)}} // two keys a send
	rows, err := db.QueryContext(ctx, "SELECT ref, msg_key FROM sends")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var ref, key string
		if err := rows.Scan(&ref, &key); err != nil {
			return nil, err
		}
		f.add(refKey(ref), msgKeyKey(key))
	}
	return f, rows.Err()
}
