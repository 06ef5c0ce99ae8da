package suppress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
	"unsafe"
)

// The snapshot format (WriteSnapshot, ReadSnapshot), version 1. Integers
// are unsigned varints (uv) or, where fixed, little-endian; a string is
// uv(length) and its bytes:
//
//	magic "RSUPSNAP", version uint32
//	rules: uv(BlocklistDays) uv(SoftThreshold) uv(SoftWindow in ns)
//	accounts: uv(n), n strings (the interned accounts, in order)
//	reasons: uv(n), n strings (the interned reasons, in order)
//	shared table, then own table: uv(n), n entries:
//	    string(key) reason:uint8 flags:uint8 since:uint32 until:uint32
//	    uv(account) [16]byte event id (absent when flags has flagOddID)
//	odd ids: uv(n), n × string(key) string(event id)
//	soft hits: uv(n), n × string(key) uv(hits) hits × (uv(unix) string(event id) string(account) string(reason))
//	lift markers: uv(n), n × string(key) uv(unix)
//	unsubscribe scopes: uv(n), n × string(account) string(sender domain) uv(m)
//	    m × (string(address) active:uint8 uv(since) uv(resub) uv(at, ns) string(reason) string(event id))
//	CRC-32C (Castagnoli) of everything above, uint32
//
// Times are unix seconds as the index keeps them, shifted by one bit with
// the sign in the low bit (zig-zag) where they may be negative.
const (
	snapshotMagic   = "RSUPSNAP"
	snapshotVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrSnapshot is the kind of error ReadSnapshot returns for input that is
// not a whole, intact snapshot of this version: torn, truncated, corrupt,
// another format or another version.
var ErrSnapshot = errors.New("suppress: not a valid snapshot")

func snapshotErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrSnapshot}, args...)...)
}

// snapState is what a snapshot holds, copied from an index under its read
// lock so that encoding it holds no lock.
type snapState struct {
	rules            Rules
	accounts         []string
	reasons          []string
	shared, own      tableCopy
	oddIDs           map[string]string
	soft             map[string][]softHit
	lifted           map[string]int64
	unsubs           map[unsubScope]map[string]unsubEntry
	lockHeld, copied time.Duration
}

// tableCopy is a table's entries and arena as they were: the entries are
// copied; the arena's chunks are shared, since bytes once stored in a
// chunk never change (store only appends; compact makes new chunks).
type tableCopy struct {
	entries []entry
	arena   [][]byte
}

func (c *tableCopy) key(e *entry) []byte {
	ch, p := e.off/chunkSize, e.off%chunkSize
	return c.arena[ch][p : p+uint32(e.n)]
}

// copyTable copies t's entries into buf, which must hold them.
func copyTable(t *table, buf []entry) tableCopy {
	buf = buf[:len(t.entries)]
	copy(buf, t.entries)
	return tableCopy{entries: buf, arena: slices.Clone(t.arena)}
}

// entryBuffer returns room for n entries and a little more, its memory
// touched, so that copying into it under the lock takes no page faults.
func entryBuffer(n int) []entry {
	b := make([]entry, n+n/64+64)
	for i := 0; i < len(b); i += 64 { // a 4 KiB page holds 113 entries
		b[i].flags = 0xff
	}
	return b
}

// capture copies the state under the read lock. The entries' copies are
// allocated (and their pages touched) before it, so that the lock is
// held for a copy of memory only: under 30 ms at 10 million entries
// (BenchmarkSnapshot, lock-ms).
func (x *Index) capture() *snapState {
	for {
		x.mu.RLock()
		ns, no := x.shared.len(), x.own.len()
		x.mu.RUnlock()
		bs, bo := entryBuffer(ns), entryBuffer(no)
		x.mu.RLock()
		if x.shared.len() > len(bs) || x.own.len() > len(bo) {
			x.mu.RUnlock()
			continue // grown meanwhile
		}
		s := x.captureLocked(bs, bo)
		x.mu.RUnlock()
		return s
	}
}

func (x *Index) captureLocked(bs, bo []entry) *snapState {
	start := time.Now()
	s := &snapState{
		rules:    x.rules,
		accounts: x.accounts[:len(x.accounts):len(x.accounts)],
		reasons:  x.reasons[:len(x.reasons):len(x.reasons)],
		shared:   copyTable(x.shared, bs),
		own:      copyTable(x.own, bo),
		oddIDs:   maps.Clone(x.oddIDs),
		lifted:   maps.Clone(x.lifted),
		soft:     make(map[string][]softHit, len(x.soft)),
		unsubs:   make(map[unsubScope]map[string]unsubEntry, len(x.unsubs)),
	}
	for k, hits := range x.soft {
		s.soft[k] = slices.Clone(hits)
	}
	for sc, m := range x.unsubs {
		c := make(map[string]unsubEntry, len(m))
		for a, u := range m {
			c[a] = *u
		}
		s.unsubs[sc] = c
	}
	s.lockHeld = time.Since(start)
	return s
}

// SnapshotStats says what the last WriteSnapshot of an index cost.
type SnapshotStats struct {
	// LockHeld is how long it held the index's read lock, copying the
	// state: the longest a change (and, behind a waiting change, a
	// check) waited for it.
	LockHeld time.Duration
	Entries  int   // blocklist entries written, shared and own
	Bytes    int64 // the snapshot's size
}

// WriteSnapshot writes the whole state of the index to w in a compact,
// versioned binary form that ReadSnapshot reads back: both blocklists
// (entries with their event ids, odd ones included), the soft counts, the
// lift markers, the unsubscribe list with its re-subscriptions, and the
// interned accounts and reasons — what Replay of the log would rebuild, so
// that a snapshot saves replaying the log up to it. It holds the index's
// read lock only to copy the state (the blocklist entries, 36 bytes each;
// not the addresses, which never move), and encodes outside it; w is
// written once the copy is made. A checksum (CRC-32C) ends the snapshot,
// so a torn or corrupt one is refused.
func (x *Index) WriteSnapshot(w io.Writer) error {
	_, err := x.WriteSnapshotStats(w)
	return err
}

// WriteSnapshotStats is WriteSnapshot, returning what it cost.
func (x *Index) WriteSnapshotStats(w io.Writer) (SnapshotStats, error) {
	s := x.capture()
	e := &encoder{w: w, buf: make([]byte, 0, 1<<16)}
	e.encode(s)
	err := e.finish()
	return SnapshotStats{LockHeld: s.lockHeld, Entries: len(s.shared.entries) + len(s.own.entries), Bytes: e.n}, err
}

type encoder struct {
	w   io.Writer
	buf []byte
	crc uint32
	n   int64
	err error
}

func (e *encoder) flush() {
	if e.err != nil || len(e.buf) == 0 {
		e.buf = e.buf[:0]
		return
	}
	e.crc = crc32.Update(e.crc, castagnoli, e.buf)
	var n int
	n, e.err = e.w.Write(e.buf)
	e.n += int64(n)
	e.buf = e.buf[:0]
}

func (e *encoder) room() {
	if len(e.buf) > 1<<16-1024 {
		e.flush()
	}
}

func (e *encoder) uv(v uint64) { e.buf = binary.AppendUvarint(e.buf, v) }

func (e *encoder) str(s string) {
	e.uv(uint64(len(s)))
	e.buf = append(e.buf, s...)
	e.room()
}

// zz encodes a signed number.
func (e *encoder) zz(v int64) { e.buf = binary.AppendVarint(e.buf, v) }

func (e *encoder) encode(s *snapState) {
	e.buf = append(e.buf, snapshotMagic...)
	e.buf = binary.LittleEndian.AppendUint32(e.buf, snapshotVersion)
	e.uv(uint64(s.rules.BlocklistDays))
	e.uv(uint64(s.rules.SoftThreshold))
	e.uv(uint64(s.rules.SoftWindow))
	for _, list := range [][]string{s.accounts, s.reasons} {
		e.uv(uint64(len(list)))
		for _, v := range list {
			e.str(v)
		}
	}
	for _, t := range []*tableCopy{&s.shared, &s.own} {
		e.uv(uint64(len(t.entries)))
		for i := range t.entries {
			en := &t.entries[i]
			k := t.key(en)
			e.uv(uint64(len(k)))
			e.buf = append(e.buf, k...)
			e.buf = append(e.buf, en.reason, en.flags)
			e.buf = binary.LittleEndian.AppendUint32(e.buf, en.since)
			e.buf = binary.LittleEndian.AppendUint32(e.buf, en.until)
			e.uv(uint64(en.account))
			if en.flags&flagOddID == 0 {
				e.buf = append(e.buf, en.id[:]...)
			}
			e.room()
		}
	}
	e.uv(uint64(len(s.oddIDs)))
	for _, k := range slices.Sorted(maps.Keys(s.oddIDs)) {
		e.str(k)
		e.str(s.oddIDs[k])
	}
	e.uv(uint64(len(s.soft)))
	for _, k := range slices.Sorted(maps.Keys(s.soft)) {
		e.str(k)
		hits := s.soft[k]
		e.uv(uint64(len(hits)))
		for _, h := range hits {
			e.zz(h.at)
			e.str(h.eventID)
			e.str(h.account)
			e.str(h.reason)
		}
	}
	e.uv(uint64(len(s.lifted)))
	for _, k := range slices.Sorted(maps.Keys(s.lifted)) {
		e.str(k)
		e.zz(s.lifted[k])
	}
	e.uv(uint64(len(s.unsubs)))
	scopes := slices.SortedFunc(maps.Keys(s.unsubs), func(a, b unsubScope) int {
		return strings.Compare(a.account+"\x00"+a.senderDomain, b.account+"\x00"+b.senderDomain)
	})
	for _, sc := range scopes {
		m := s.unsubs[sc]
		e.str(sc.account)
		e.str(sc.senderDomain)
		e.uv(uint64(len(m)))
		for _, a := range slices.Sorted(maps.Keys(m)) {
			u := m[a]
			e.str(a)
			active := byte(0)
			if u.active {
				active = 1
			}
			e.buf = append(e.buf, active)
			e.zz(u.since)
			e.zz(u.resub)
			e.zz(u.at)
			e.str(u.reason)
			e.str(u.eventID)
		}
	}
}

func (e *encoder) finish() error {
	e.flush()
	if e.err != nil {
		return fmt.Errorf("suppress: writing the snapshot: %w", e.err)
	}
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], e.crc)
	n, err := e.w.Write(sum[:])
	e.n += int64(n)
	if err != nil {
		return fmt.Errorf("suppress: writing the snapshot: %w", err)
	}
	return nil
}

// Bounds on what a snapshot may claim, so that a corrupt count fails
// before the checksum is reached instead of allocating without end.
const (
	maxSnapString = 1 << 16
	maxPrealloc   = 1 << 20
)

// ReadSnapshot reads an index that WriteSnapshot wrote, to the end of r,
// with opts (its clock and its rules). The snapshot records the rules of
// the index that wrote it but does not impose them: an entry carries its
// own expiry, and the rules only decide what future events do — as for
// Replay, which rebuilds the same state from the log whatever the rules.
// Snapshot and log therefore agree, and a change of blocklist_days takes
// effect for new events in both cases. opts.SizeHint is ignored: the
// snapshot says how many entries there are.
//
// Anything but a whole, intact snapshot of this version — another
// format, another version, a truncated or torn file, a flipped byte
// (the CRC-32C), bytes after its end, an entry that does not fit the
// index — is an error (errors.Is ErrSnapshot) and no index.
func ReadSnapshot(r io.Reader, opts Options) (*Index, error) {
	opts.SizeHint = 0
	x, err := New(opts)
	if err != nil {
		return nil, err
	}
	d := &decoder{r: r, buf: make([]byte, 1<<16)}
	if err := d.decode(x); err != nil {
		return nil, err
	}
	return x, nil
}

type decoder struct {
	r        io.Reader
	buf      []byte
	pos, end int
	crc      uint32 // of buf[:0] and everything before it
	eof      bool
	err      error
	key      []byte // scratch
}

var errTruncated = snapshotErr("truncated: it ends before its checksum")

// fill makes up to n bytes available; fewer only at the end of r.
func (d *decoder) fill(n int) int {
	if d.end-d.pos >= n || d.eof {
		return d.end - d.pos
	}
	d.crc = crc32.Update(d.crc, castagnoli, d.buf[:d.pos])
	copy(d.buf, d.buf[d.pos:d.end])
	d.end -= d.pos
	d.pos = 0
	if n > len(d.buf) {
		d.buf = slices.Grow(d.buf[:d.end], n)[:n]
	}
	for d.end < n && !d.eof {
		m, err := d.r.Read(d.buf[d.end:])
		d.end += m
		if err == io.EOF {
			d.eof = true
		} else if err != nil {
			d.eof = true
			if d.err == nil {
				d.err = fmt.Errorf("suppress: reading the snapshot: %w", err)
			}
		}
	}
	return d.end - d.pos
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return nil
	}
	if d.fill(n) < n {
		d.fail(errTruncated)
		return nil
	}
	b := d.buf[d.pos : d.pos+n]
	d.pos += n
	return b
}

func (d *decoder) uv() uint64 {
	if d.err != nil {
		return 0
	}
	avail := d.fill(binary.MaxVarintLen64)
	v, n := binary.Uvarint(d.buf[d.pos : d.pos+avail])
	switch {
	case n == 0:
		d.fail(errTruncated)
		return 0
	case n < 0:
		d.fail(snapshotErr("a number overflows"))
		return 0
	}
	d.pos += n
	return v
}

// zz reads a signed varint: binary.Varint's zig-zag form of a Uvarint.
func (d *decoder) zz() int64 {
	u := d.uv()
	return int64(u>>1) ^ -int64(u&1)
}

// count reads a number of items.
func (d *decoder) count(what string) int {
	n := d.uv()
	if n > 1<<40 {
		d.fail(snapshotErr("%d %s: impossible", n, what))
		return 0
	}
	return int(n)
}

func (d *decoder) str() string {
	n := d.uv()
	if n > maxSnapString {
		d.fail(snapshotErr("a string of %d bytes: longer than any the index keeps", n))
		return ""
	}
	return string(d.bytes(int(n)))
}

func (d *decoder) decode(x *Index) error {
	if m := d.bytes(len(snapshotMagic)); d.err == nil && string(m) != snapshotMagic {
		return snapshotErr("it does not start with %q", snapshotMagic)
	}
	if v := d.bytes(4); d.err == nil && binary.LittleEndian.Uint32(v) != snapshotVersion {
		return snapshotErr("version %d, this repute reads version %d", binary.LittleEndian.Uint32(v), snapshotVersion)
	}
	d.uv() // the writer's rules: see ReadSnapshot
	d.uv()
	d.uv()
	n := d.count("accounts")
	for range n {
		if d.err != nil {
			break
		}
		a := d.str()
		if _, dup := x.accountIx[a]; dup {
			d.fail(snapshotErr("account %q twice", a))
		}
		x.account(a)
	}
	n = d.count("reasons")
	if n > 255 {
		d.fail(snapshotErr("%d reasons: at most 255", n))
	}
	for range n {
		if d.err != nil {
			break
		}
		r := d.str()
		if _, dup := x.reasonIx[r]; dup {
			d.fail(snapshotErr("reason %q twice", r))
		}
		x.reason(r)
	}
	seed := x.shared.seed
	for i, own := range []bool{false, true} {
		n := d.count("entries")
		if d.err != nil {
			break
		}
		t := newTable(seed, min(n, maxPrealloc*16))
		for range n {
			if d.err != nil {
				break
			}
			d.readEntry(x, t, own)
		}
		if i == 0 {
			x.shared = t
		} else {
			x.own = t
		}
	}
	n = d.count("odd ids")
	for range n {
		if d.err != nil {
			break
		}
		k, id := d.str(), d.str()
		x.oddIDs[k] = id
	}
	n = d.count("soft counts")
	for range n {
		if d.err != nil {
			break
		}
		k := d.str()
		m := d.count("soft hits")
		hits := make([]softHit, 0, min(m, 64))
		for range m {
			if d.err != nil {
				break
			}
			hits = append(hits, softHit{at: d.zz(), eventID: d.str(), account: d.str(), reason: d.str()})
		}
		x.soft[k] = hits
	}
	n = d.count("lift markers")
	for range n {
		if d.err != nil {
			break
		}
		k := d.str()
		x.lifted[k] = d.zz()
	}
	n = d.count("unsubscribe scopes")
	for range n {
		if d.err != nil {
			break
		}
		sc := unsubScope{account: d.str(), senderDomain: d.str()}
		m := d.count("unsubscribe entries")
		entries := make(map[string]*unsubEntry, min(m, maxPrealloc))
		for range m {
			if d.err != nil {
				break
			}
			a := d.str()
			var active byte
			if b := d.bytes(1); b != nil {
				active = b[0]
			}
			if active > 1 {
				d.fail(snapshotErr("unsubscribe entry %s: bad flag %d", a, active))
			}
			u := &unsubEntry{active: active == 1, since: d.zz(), resub: d.zz(), at: d.zz(), reason: d.str(), eventID: d.str()}
			entries[a] = u
		}
		x.unsubs[sc] = entries
	}
	if d.err != nil {
		return d.err
	}
	// The checksum covers everything read so far.
	d.fill(4)
	d.crc = crc32.Update(d.crc, castagnoli, d.buf[:d.pos])
	want := d.crc
	sum := d.buf[d.pos:min(d.pos+4, d.end)]
	if len(sum) < 4 {
		return errTruncated
	}
	if got := binary.LittleEndian.Uint32(sum); got != want {
		return snapshotErr("checksum %08x, the content's is %08x: the file is corrupt", got, want)
	}
	d.pos += 4
	if d.fill(1) > 0 {
		return snapshotErr("bytes after its end")
	}
	if d.err != nil {
		return d.err
	}
	return nil
}

// readEntry reads one blocklist entry into t.
func (d *decoder) readEntry(x *Index, t *table, own bool) {
	kn := d.uv()
	if kn == 0 || kn > 1<<16-1 {
		d.fail(snapshotErr("a blocklist key of %d bytes", kn))
		return
	}
	// What bytes returns is valid until the next read: copy.
	d.key = append(d.key[:0], d.bytes(int(kn))...)
	key := d.key
	var en entry
	if fixed := d.bytes(10); fixed != nil {
		en = entry{reason: fixed[0], flags: fixed[1], since: binary.LittleEndian.Uint32(fixed[2:]),
			until: binary.LittleEndian.Uint32(fixed[6:])}
	}
	account := d.uv()
	if d.err != nil {
		return
	}
	if en.flags&^flagOddID != 0 || int(en.reason) >= len(x.reasons) || account >= uint64(len(x.accounts)) {
		d.fail(snapshotErr("blocklist entry %q: reason, flags or account out of range", key))
		return
	}
	en.account = uint32(account)
	if en.flags&flagOddID == 0 {
		id := d.bytes(16)
		if d.err != nil {
			return
		}
		copy(en.id[:], id)
	}
	var ownAccount uint32
	if own {
		i := strings.IndexByte(string(key), 0)
		a, ok := x.accountIx[string(key[:max(i, 0)])]
		if i < 0 || !ok {
			d.fail(snapshotErr("own blocklist entry %q: no account in its key", key))
			return
		}
		ownAccount = a
	}
	// The key's bytes are copied into the arena by insert; the string
	// only lives for the two calls.
	k := unsafe.String(&key[0], len(key))
	h := t.hashString(k)
	if _, _, found := t.find(k, h); found {
		d.fail(snapshotErr("blocklist entry %q twice", key))
		return
	}
	t.insert(k, h, en)
	if own {
		x.ownCount[ownAccount]++
	}
}
