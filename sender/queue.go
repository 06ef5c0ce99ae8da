package sender

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The queue on disk.
//
// A directory holds one file per Enqueue call (a batch, "b-<seq>.q") and one
// append-only journal of state changes ("journal"):
//
//   - A batch file is written to a temporary name, fsynced, renamed and the
//     directory fsynced: one pair of fsyncs per batch whatever its size, so a
//     batch of 10,000 recipients costs what a batch of one does. A batch file
//     is never modified; it is removed once every item in it is done.
//   - The journal records, per item (batch seq, index), the attempts made, the
//     next attempt time, the last temporary error, and done. Appends from
//     every worker are group-committed: one write and one fsync for all the
//     records waiting at that moment, and a caller returns only once its
//     record is durable. The last record of an item wins.
//   - Every record of both files is framed as length (4 bytes, little endian),
//     CRC-32C of the payload (4 bytes), payload. A record whose length runs
//     past the end of the file, or the last record of the journal with a bad
//     checksum, is a torn write of a crash and is ignored; a bad record
//     elsewhere is corruption: the file is moved to "corrupt/" with a log line
//     and what could be read before the bad record is kept (a corrupt batch's
//     readable items are written again as a new batch). Nothing is dropped
//     silently; an item whose journal records were lost is delivered again.
//   - The journal is compacted (rewritten with one record per item whose state
//     differs from its batch file, through a temporary file and a rename) when
//     the queue is opened and when it has grown to several times the live
//     state.
//
// The pacer's "not yet" is kept in memory only: an item that waits for a
// pacing slot is asked about again after a restart, which costs nothing and
// saves an fsync per refusal.
//
// Message bodies stay on disk: an item in memory holds where its record is,
// and Data is read back (and its checksum verified) when it is delivered.

const (
	batchPrefix  = "b-"
	batchSuffix  = ".q"
	journalName  = "journal"
	corruptDir   = "corrupt"
	tmpSuffix    = ".tmp"
	recHeaderLen = 8
	// maxRecord bounds a record's length field, so that a corrupt length
	// cannot make the reader allocate gigabytes.
	maxRecord = 256 << 20
	// defaultCompactAt is how many journal records beyond four per live
	// item make the journal be rewritten.
	defaultCompactAt = 100_000
)

var queueCRCTable = crc32.MakeTable(crc32.Castagnoli)

// ErrQueueClosed is returned by the queue's methods after Close.
var ErrQueueClosed = errors.New("sender: queue closed")

// Why an item waits, as GET /v1/queue reports it.
const (
	WhyReady    = "ready"     // due now, waiting for a worker
	WhyRetrying = "retrying"  // a temporary failure; waiting for its next attempt
	WhyPaced    = "paced"     // the pacer had no slot; waiting for the one it named
	WhyInFlight = "in_flight" // being delivered
	// WhyRelayDown: the relay could not be reached; every delivery waits
	// until it is tried again (nothing is recorded against the item).
	WhyRelayDown = "relay_down"
)

// QueueSummary is what GET /v1/queue answers: the items not yet finished,
// counted by why they wait, and grouped by sender domain, recipient
// provider and why.
type QueueSummary struct {
	Total    int `json:"total"`
	Ready    int `json:"ready"`
	Retrying int `json:"retrying"`
	Paced    int `json:"paced"`
	InFlight int `json:"in_flight"`
	// RelayDown counts the items held while the relay is unreachable.
	RelayDown int          `json:"relay_down"`
	Groups    []QueueGroup `json:"groups"`
}

// QueueGroup counts the waiting items of one sender domain and recipient
// provider that wait for one reason.
type QueueGroup struct {
	SenderDomain string    `json:"sender_domain"`
	Provider     string    `json:"provider"`
	Why          string    `json:"why"`
	Count        int       `json:"count"`
	Oldest       time.Time `json:"oldest"`                // the earliest Queued among them
	NextAttempt  time.Time `json:"next_attempt,omitzero"` // the earliest next attempt among them
}

// Queue is the sender's durable queue of Items. It is safe for concurrent
// use.
type Queue struct {
	dir string
	log *slog.Logger

	mu       sync.Mutex
	closed   bool
	nextSeq  uint64
	batches  map[uint64]*batch
	ready    entryHeap
	lastRead *batch        // whose file readData keeps open
	changed  chan struct{} // closed and replaced whenever an item becomes due

	// The journal and its group commit.
	jmu       sync.Mutex
	jcond     *sync.Cond
	jfile     *os.File
	jerr      error  // sticky: after a failed write or fsync nothing is trusted
	pending   []byte // records not yet written
	pendRecs  int    // how many
	pendGen   uint64 // the generation pending belongs to
	doneGen   uint64 // every generation below it is durable
	flushing  bool
	jrecs     int // records in the journal file
	compactAt int // see defaultCompactAt
}

type batch struct {
	seq     uint64
	path    string
	entries []*entry
	live    int // entries not done

	f    *os.File // open for reading Data (see readData), or nil
	refs int      // reads of f under way

	corrupt bool     // moved aside at open; its readable items are rewritten
	rescue  [][]byte // their Data, while a corrupt batch is being rewritten
}

// entry is one item in memory. item.Data is nil: the bytes stay in the
// batch file, at off, in a record of n bytes.
type entry struct {
	b    *batch
	idx  int
	off  int64
	n    int64
	item Item

	done     bool
	inFlight bool
	why      string
	heapIdx  int // -1 when not in the heap

	// journaled says a journal record exists for the entry (written under
	// jmu, read by compaction); jstate is the state that record holds.
	journaled bool
	jstate    jstate
}

// jstate is the durable state of an item, as one journal record holds it.
type jstate struct {
	done        bool
	attempts    int
	nextAttempt time.Time
	lastError   string
}

// OpenQueue opens (creating it when needed) the queue in dir, recovering
// what a crash left: torn records are ignored, corrupt files moved to
// dir/corrupt with a log line on slog.Default.
func OpenQueue(dir string) (*Queue, error) {
	return OpenQueueLogger(dir, slog.Default())
}

// OpenQueueLogger is OpenQueue with the logger that reports recovery (nil:
// silent).
func OpenQueueLogger(dir string, log *slog.Logger) (*Queue, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sender: queue directory: %w", err)
	}
	q := &Queue{dir: dir, log: log, batches: map[uint64]*batch{}, changed: make(chan struct{}), compactAt: defaultCompactAt}
	q.jcond = sync.NewCond(&q.jmu)
	if err := q.recover(); err != nil {
		return nil, err
	}
	return q, nil
}

// recover loads the batch files and replays the journal, then compacts it.
func (q *Queue) recover() error {
	names, err := os.ReadDir(q.dir)
	if err != nil {
		return fmt.Errorf("sender: queue directory: %w", err)
	}
	var rescued []Item // readable items of corrupt batch files
	for _, de := range names {
		name := de.Name()
		if strings.HasSuffix(name, tmpSuffix) {
			// Never renamed into place: never acknowledged to anyone.
			os.Remove(filepath.Join(q.dir, name))
			continue
		}
		if !strings.HasPrefix(name, batchPrefix) || !strings.HasSuffix(name, batchSuffix) {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, batchPrefix), batchSuffix), 16, 64)
		if err != nil {
			continue
		}
		q.nextSeq = max(q.nextSeq, seq+1)
		b, bad := q.loadBatch(seq, filepath.Join(q.dir, name))
		if bad != nil {
			q.quarantine(name, bad, len(b.rescue))
			b.corrupt = true
		}
		q.batches[seq] = b
	}
	if err := q.replayJournal(); err != nil {
		return err
	}
	for seq, b := range q.batches {
		for _, e := range b.entries {
			if e != nil && e.journaled {
				e.item.Attempts = e.jstate.attempts
				e.item.NextAttempt = e.jstate.nextAttempt
				e.item.LastError = e.jstate.lastError
				e.done = e.jstate.done
			}
		}
		if b.corrupt {
			// The readable items of a corrupt batch, with the state the
			// journal gave them, go into a new batch.
			for i, e := range b.entries {
				if e != nil && !e.done {
					it := e.item
					it.Data = b.rescue[i]
					rescued = append(rescued, it)
				}
			}
			delete(q.batches, seq)
		}
	}
	for seq, b := range q.batches {
		b.live = 0
		for _, e := range b.entries {
			if !e.done {
				b.live++
			}
		}
		if b.live == 0 {
			os.Remove(b.path)
			delete(q.batches, seq)
		}
	}
	if err := q.compact(); err != nil {
		return err
	}
	for _, b := range q.batches {
		for _, e := range b.entries {
			if !e.done {
				e.why = whyOf(&e.item)
				heap.Push(&q.ready, e)
			}
		}
	}
	if len(rescued) > 0 {
		if err := q.Enqueue(itemPtrs(rescued)); err != nil {
			return fmt.Errorf("sender: queue: rewriting the readable items of a corrupt batch: %w", err)
		}
	}
	return nil
}

func itemPtrs(items []Item) []*Item {
	out := make([]*Item, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

func whyOf(it *Item) string {
	if it.Attempts > 0 {
		return WhyRetrying
	}
	return WhyReady
}

// quarantine moves a corrupt file to dir/corrupt and says so.
func (q *Queue) quarantine(name string, cause error, kept int) {
	cdir := filepath.Join(q.dir, corruptDir)
	dst := filepath.Join(cdir, fmt.Sprintf("%s.%d", name, time.Now().UnixNano()))
	err := os.MkdirAll(cdir, 0o700)
	if err == nil {
		err = os.Rename(filepath.Join(q.dir, name), dst)
	}
	if err != nil {
		q.log.Error("sender queue: corrupt file could not be moved aside", "file", name, "cause", cause, "err", err)
		return
	}
	q.log.Error("sender queue: corrupt file moved aside; what was readable before the damage is kept",
		"file", name, "moved_to", dst, "cause", cause, "records_kept", kept)
}

// loadBatch reads a batch file. bad is non-nil when records are damaged;
// b then holds the readable ones with their Data (b.rescue) and nil in the
// place of the damaged ones. A record whose checksum fails but whose length
// is sound is skipped and reading goes on after it; a record whose length
// runs past the end ends the reading.
func (q *Queue) loadBatch(seq uint64, path string) (b *batch, bad error) {
	b = &batch{seq: seq, path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		return b, err
	}
	var damaged []string
	off := 0
	for off < len(data) {
		payload, n, err := readRecord(data[off:])
		if err == nil {
			var it Item
			if err = decodeItem(payload, &it); err == nil {
				b.rescue = append(b.rescue, it.Data)
				it.Data = nil
				b.entries = append(b.entries, &entry{b: b, idx: len(b.entries), off: int64(off), n: int64(n), item: it, heapIdx: -1})
				off += n
				continue
			}
		}
		damaged = append(damaged, fmt.Sprintf("record %d at offset %d: %v", len(b.entries), off, err))
		if n == 0 {
			break
		}
		b.rescue = append(b.rescue, nil)
		b.entries = append(b.entries, nil)
		off += n
	}
	if damaged != nil {
		return b, errors.New(strings.Join(damaged, "; "))
	}
	b.rescue = nil
	return b, nil
}

var errTorn = errors.New("record runs past the end of the file")

// readRecord reads one framed record from the start of buf, returning its
// payload and its length with the frame (also when only the checksum
// fails, so that a reader can step over it).
func readRecord(buf []byte) (payload []byte, n int, err error) {
	if len(buf) < recHeaderLen {
		return nil, 0, errTorn
	}
	l := binary.LittleEndian.Uint32(buf)
	if l > maxRecord {
		return nil, 0, fmt.Errorf("record length %d over the limit", l)
	}
	if int(l) > len(buf)-recHeaderLen {
		return nil, 0, errTorn
	}
	payload = buf[recHeaderLen : recHeaderLen+int(l)]
	if crc32.Checksum(payload, queueCRCTable) != binary.LittleEndian.Uint32(buf[4:]) {
		return nil, recHeaderLen + int(l), errors.New("checksum mismatch")
	}
	return payload, recHeaderLen + int(l), nil
}

func appendRecord(dst, payload []byte) []byte {
	var hdr [recHeaderLen]byte
	binary.LittleEndian.PutUint32(hdr[:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(hdr[4:], crc32.Checksum(payload, queueCRCTable))
	return append(append(dst, hdr[:]...), payload...)
}

// An item record is the item without Data in JSON, length-prefixed, then
// Data.
func encodeItem(dst []byte, it *Item) ([]byte, error) {
	meta := *it
	meta.Data = nil
	js, err := json.Marshal(&meta)
	if err != nil {
		return nil, err
	}
	dst = binary.AppendUvarint(dst, uint64(len(js)))
	dst = append(dst, js...)
	return append(dst, it.Data...), nil
}

func decodeItem(payload []byte, it *Item) error {
	l, k := binary.Uvarint(payload)
	if k <= 0 || l > uint64(len(payload)-k) {
		return errors.New("bad item header")
	}
	if err := json.Unmarshal(payload[k:k+int(l)], it); err != nil {
		return fmt.Errorf("item: %w", err)
	}
	it.Data = payload[k+int(l):]
	return nil
}

// A journal record: batch seq, index, flags (1 = done), attempts, next
// attempt (Unix nanoseconds, 0 = none), the last error.
func encodeJournal(dst []byte, seq uint64, idx int, s jstate) []byte {
	p := make([]byte, 0, 32+len(s.lastError))
	p = binary.AppendUvarint(p, seq)
	p = binary.AppendUvarint(p, uint64(idx))
	var flags byte
	if s.done {
		flags = 1
	}
	p = append(p, flags)
	p = binary.AppendUvarint(p, uint64(s.attempts))
	var ns int64
	if !s.nextAttempt.IsZero() {
		ns = s.nextAttempt.UnixNano()
	}
	p = binary.AppendVarint(p, ns)
	p = binary.AppendUvarint(p, uint64(len(s.lastError)))
	p = append(p, s.lastError...)
	return appendRecord(dst, p)
}

func decodeJournal(p []byte) (seq uint64, idx int, s jstate, err error) {
	r := bytes.NewReader(p)
	seq, err = binary.ReadUvarint(r)
	if err != nil {
		return
	}
	i, err := binary.ReadUvarint(r)
	if err != nil {
		return
	}
	idx = int(i)
	flags, err := r.ReadByte()
	if err != nil {
		return
	}
	s.done = flags&1 != 0
	a, err := binary.ReadUvarint(r)
	if err != nil {
		return
	}
	s.attempts = int(a)
	ns, err := binary.ReadVarint(r)
	if err != nil {
		return
	}
	if ns != 0 {
		s.nextAttempt = time.Unix(0, ns)
	}
	l, err := binary.ReadUvarint(r)
	if err != nil {
		return
	}
	if l > uint64(r.Len()) {
		err = io.ErrUnexpectedEOF
		return
	}
	msg := make([]byte, l)
	io.ReadFull(r, msg)
	s.lastError = string(msg)
	return
}

func (q *Queue) replayJournal() error {
	path := filepath.Join(q.dir, journalName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sender: queue journal: %w", err)
	}
	off := 0
	for off < len(data) {
		payload, n, err := readRecord(data[off:])
		if err == nil {
			var seq uint64
			var idx int
			var s jstate
			seq, idx, s, err = decodeJournal(payload)
			if err == nil {
				q.nextSeq = max(q.nextSeq, seq+1)
				if b := q.batches[seq]; b != nil && idx < len(b.entries) && b.entries[idx] != nil {
					e := b.entries[idx]
					e.journaled, e.jstate = true, s
				}
				off += n
				continue
			}
		}
		if errors.Is(err, errTorn) || isLastRecord(data[off:]) {
			q.log.Warn("sender queue: torn journal tail ignored", "offset", off, "bytes", len(data)-off)
			return nil // compaction rewrites the journal without it
		}
		q.quarantine(journalName, fmt.Errorf("record at offset %d: %w", off, err), off)
		return nil
	}
	return nil
}

// isLastRecord says whether the damaged record at the start of buf is the
// file's last one (its frame ends exactly at the end): a torn final write.
func isLastRecord(buf []byte) bool {
	if len(buf) < recHeaderLen {
		return true
	}
	l := binary.LittleEndian.Uint32(buf)
	return int64(l)+recHeaderLen == int64(len(buf))
}

// compact rewrites the journal with one record per live item whose state
// differs from its batch file, and opens it for appending. Called with the
// journal idle (at open, or under jmu with no flush running).
func (q *Queue) compact() error {
	var buf []byte
	recs := 0
	q.mu.Lock()
	seqs := make([]uint64, 0, len(q.batches))
	for seq := range q.batches {
		seqs = append(seqs, seq)
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	for _, seq := range seqs {
		for _, e := range q.batches[seq].entries {
			if e.journaled {
				buf = encodeJournal(buf, seq, e.idx, e.jstate)
				recs++
			}
		}
	}
	q.mu.Unlock()
	path := filepath.Join(q.dir, journalName)
	if err := writeFileSync(path, buf); err != nil {
		return fmt.Errorf("sender: queue journal compaction: %w", err)
	}
	if err := syncDir(q.dir); err != nil {
		return fmt.Errorf("sender: queue journal compaction: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("sender: queue journal: %w", err)
	}
	if q.jfile != nil {
		q.jfile.Close()
	}
	q.jfile, q.jrecs = f, recs
	return nil
}

// writeFileSync writes path atomically: a temporary file, fsync, rename.
// The caller fsyncs the directory.
func writeFileSync(path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// Enqueue adds items to the queue and returns once they are durable: one
// file written, fsynced, renamed into place and the directory fsynced, for
// the whole batch. An item's NextAttempt (zero: now) says when it is due;
// an item without Queued is stamped with the wall clock (Sender.Enqueue
// stamps its own clock's time first). The items are copied; the caller may
// reuse them.
func (q *Queue) Enqueue(items []*Item) error {
	if len(items) == 0 {
		return nil
	}
	var now time.Time
	for _, it := range items {
		if it.Queued.IsZero() {
			if now.IsZero() {
				now = time.Now()
			}
			it.Queued = now
		}
	}
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrQueueClosed
	}
	seq := q.nextSeq
	q.nextSeq++
	q.mu.Unlock()

	b := &batch{seq: seq, path: filepath.Join(q.dir, fmt.Sprintf("%s%016x%s", batchPrefix, seq, batchSuffix))}
	size := 0
	for _, it := range items {
		size += len(it.Data) + 512
	}
	buf := make([]byte, 0, size)
	var scratch []byte
	for i, it := range items {
		var err error
		scratch, err = encodeItem(scratch[:0], it)
		if err != nil {
			return fmt.Errorf("sender: queue: item %d (%s): %w", i, it.Recipient, err)
		}
		off := len(buf)
		buf = appendRecord(buf, scratch)
		meta := *it
		meta.Data = nil
		b.entries = append(b.entries, &entry{b: b, idx: i, off: int64(off), n: int64(len(buf) - off), item: meta, heapIdx: -1, why: whyOf(&meta)})
	}
	b.live = len(b.entries)
	if err := writeFileSync(b.path, buf); err != nil {
		return fmt.Errorf("sender: queue: writing batch: %w", err)
	}
	if err := syncDir(q.dir); err != nil {
		return fmt.Errorf("sender: queue: writing batch: %w", err)
	}

	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrQueueClosed
	}
	q.batches[seq] = b
	for _, e := range b.entries {
		heap.Push(&q.ready, e)
	}
	q.notifyLocked()
	return nil
}

func (q *Queue) notifyLocked() {
	close(q.changed)
	q.changed = make(chan struct{})
}

// Len returns the number of items not yet done.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, b := range q.batches {
		n += b.live
	}
	return n
}

// Summary counts the items not yet done by sender domain, recipient
// provider (provider maps a recipient domain to its mailbox provider; nil
// or "" means the domain itself) and why they wait, as of now.
func (q *Queue) Summary(provider func(domain string) string, now time.Time) QueueSummary {
	return q.AccountSummary("", provider, now)
}

// AccountSummary is Summary for the items of one account ("": every
// account), for GET /v1/queue with an account's key.
func (q *Queue) AccountSummary(account string, provider func(domain string) string, now time.Time) QueueSummary {
	type key struct{ sd, p, why string }
	groups := map[key]*QueueGroup{}
	var s QueueSummary
	q.mu.Lock()
	for _, b := range q.batches {
		for _, e := range b.entries {
			if e.done || (account != "" && e.item.Account != account) {
				continue
			}
			why := e.why
			switch {
			case e.inFlight:
				why = WhyInFlight
			case !e.item.NextAttempt.After(now):
				why = WhyReady
			}
			switch why {
			case WhyReady:
				s.Ready++
			case WhyRetrying:
				s.Retrying++
			case WhyPaced:
				s.Paced++
			case WhyInFlight:
				s.InFlight++
			case WhyRelayDown:
				s.RelayDown++
			}
			s.Total++
			k := key{e.item.SenderDomain, providerOf(provider, e.item.Recipient), why}
			g := groups[k]
			if g == nil {
				g = &QueueGroup{SenderDomain: k.sd, Provider: k.p, Why: why, Oldest: e.item.Queued}
				groups[k] = g
			}
			g.Count++
			if e.item.Queued.Before(g.Oldest) {
				g.Oldest = e.item.Queued
			}
			if why == WhyRetrying || why == WhyPaced || why == WhyRelayDown {
				if g.NextAttempt.IsZero() || e.item.NextAttempt.Before(g.NextAttempt) {
					g.NextAttempt = e.item.NextAttempt
				}
			}
		}
	}
	q.mu.Unlock()
	s.Groups = make([]QueueGroup, 0, len(groups))
	for _, g := range groups {
		s.Groups = append(s.Groups, *g)
	}
	sort.Slice(s.Groups, func(i, j int) bool {
		a, b := s.Groups[i], s.Groups[j]
		if a.SenderDomain != b.SenderDomain {
			return a.SenderDomain < b.SenderDomain
		}
		if a.Provider != b.Provider {
			return a.Provider < b.Provider
		}
		return a.Why < b.Why
	})
	return s
}

func rcptDomain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

func providerOf(provider func(string) string, recipient string) string {
	d := rcptDomain(recipient)
	if provider != nil {
		if p := provider(d); p != "" {
			return p
		}
	}
	return d
}

// take hands out the earliest due item (marking it in flight, its Data read
// back from disk), or nil with the time the next one is due (zero: none)
// and a channel closed when that may change.
func (q *Queue) take(now time.Time) (*entry, *Item, time.Time, <-chan struct{}, error) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil, nil, time.Time{}, nil, ErrQueueClosed
	}
	changed := q.changed
	if len(q.ready) == 0 {
		q.mu.Unlock()
		return nil, nil, time.Time{}, changed, nil
	}
	e := q.ready[0]
	if next := e.item.NextAttempt; next.After(now) {
		q.mu.Unlock()
		return nil, nil, next, changed, nil
	}
	heap.Pop(&q.ready)
	e.inFlight = true
	it := e.item
	q.mu.Unlock()

	data, err := q.readData(e)
	if err != nil {
		// The bytes are on disk but unreadable now: the item stays queued
		// (never dropped) and is tried again a minute later.
		q.release(e, now.Add(time.Minute), WhyRetrying)
		return nil, nil, time.Time{}, changed, fmt.Errorf("sender: queue: reading %s item %d: %w", filepath.Base(e.b.path), e.idx, err)
	}
	it.Data = data
	return e, &it, time.Time{}, nil, nil
}

// readData reads e's record back from its batch file and returns its Data,
// the checksum verified. The file of the batch read last stays open (a
// large batch is read item after item); another is closed once no read of
// it is under way, so at most Connections+1 files are open.
func (q *Queue) readData(e *entry) ([]byte, error) {
	b := e.b
	q.mu.Lock()
	if b.f == nil {
		f, err := os.Open(b.path)
		if err != nil {
			q.mu.Unlock()
			return nil, err
		}
		b.f = f
	}
	b.refs++
	if old := q.lastRead; old != b {
		q.lastRead = b
		if old != nil && old.refs == 0 && old.f != nil {
			old.f.Close()
			old.f = nil
		}
	}
	f := b.f
	q.mu.Unlock()

	buf := make([]byte, e.n)
	_, err := f.ReadAt(buf, e.off)

	q.mu.Lock()
	b.refs--
	if b.refs == 0 && q.lastRead != b && b.f != nil {
		b.f.Close()
		b.f = nil
	}
	q.mu.Unlock()
	if err != nil {
		return nil, err
	}
	payload, _, err := readRecord(buf)
	if err != nil {
		return nil, err
	}
	l, k := binary.Uvarint(payload)
	if k <= 0 || l > uint64(len(payload)-k) {
		return nil, errors.New("bad item header")
	}
	return payload[k+int(l):], nil
}

// release puts an in-flight item back, due at until, without writing
// anything: used for the pacer's "not yet" and at shutdown.
func (q *Queue) release(e *entry, until time.Time, why string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	e.inFlight = false
	if e.done || q.closed {
		return
	}
	if until.After(e.item.NextAttempt) || why == WhyPaced {
		e.item.NextAttempt = until
	}
	e.why = why
	heap.Push(&q.ready, e)
	q.notifyLocked()
}

// repace makes every item waiting for the pacer due at now: the pacer's
// limits changed (a pause lifted, a slow-down ended), so the times it
// named no longer hold. An item the pacer still refuses is put back with
// a new time at its next Take.
func (q *Queue) repace(now time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, e := range q.ready {
		if e.why == WhyPaced && e.item.NextAttempt.After(now) {
			e.item.NextAttempt = now
			n++
		}
	}
	if n > 0 {
		heap.Init(&q.ready)
		q.notifyLocked()
	}
	return n
}

// retry records a temporary failure durably, then schedules the item at
// next.
func (q *Queue) retry(e *entry, attempts int, next time.Time, lastError string) error {
	s := jstate{attempts: attempts, nextAttempt: next, lastError: lastError}
	if err := q.journal(e, s); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e.inFlight = false
	e.item.Attempts, e.item.NextAttempt, e.item.LastError = attempts, next, lastError
	e.why = WhyRetrying
	if !q.closed {
		heap.Push(&q.ready, e)
		q.notifyLocked()
	}
	return nil
}

// finish records durably that the item is done (delivered, bounced or
// expired); the batch file goes when its last item is done.
func (q *Queue) finish(e *entry, attempts int) error {
	s := jstate{done: true, attempts: attempts}
	if err := q.journal(e, s); err != nil {
		return err
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	e.inFlight, e.done = false, true
	e.b.live--
	if e.b.live == 0 {
		// Unlinking needs no fsync: if it is lost, the journal says every
		// item is done and the file is removed at the next open.
		os.Remove(e.b.path)
		delete(q.batches, e.b.seq)
		if q.lastRead == e.b {
			q.lastRead = nil
		}
		if e.b.refs == 0 && e.b.f != nil {
			e.b.f.Close()
			e.b.f = nil
		}
	}
	return nil
}

// journal appends e's new state and returns once it is durable, sharing
// the write and the fsync with every record submitted meanwhile.
func (q *Queue) journal(e *entry, s jstate) error {
	q.jmu.Lock()
	defer q.jmu.Unlock()
	if q.jerr != nil {
		return q.jerr
	}
	if q.jfile == nil {
		return ErrQueueClosed
	}
	q.pending = encodeJournal(q.pending, e.b.seq, e.idx, s)
	q.pendRecs++
	e.journaled, e.jstate = true, s
	mine := q.pendGen
	for q.doneGen <= mine && q.jerr == nil {
		if q.flushing {
			q.jcond.Wait()
			continue
		}
		q.flushing = true
		buf, gen, recs := q.pending, q.pendGen, q.pendRecs
		q.pending, q.pendRecs = nil, 0
		q.pendGen++
		f := q.jfile
		q.jmu.Unlock()
		_, err := f.Write(buf)
		if err == nil {
			err = f.Sync()
		}
		q.jmu.Lock()
		q.flushing = false
		if err != nil {
			q.jerr = fmt.Errorf("sender: queue journal: %w", err)
		} else {
			q.doneGen = gen + 1
			q.jrecs += recs
			if q.jrecs > q.compactAt+4*q.Len() {
				// Still under jmu, so no flush runs meanwhile; records
				// pending now are in the rewrite already (their state is
				// set) and are written once more after it, harmlessly.
				if err := q.compact(); err != nil {
					q.jerr = err
				}
			}
		}
		q.jcond.Broadcast()
	}
	if q.jerr != nil {
		return q.jerr
	}
	return nil
}

// Close closes the queue; what is not done stays on disk for the next
// OpenQueue. An outcome recorded after Close fails with ErrQueueClosed: that
// item is delivered again after the restart.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return nil
	}
	q.closed = true
	q.notifyLocked()
	if b := q.lastRead; b != nil && b.refs == 0 && b.f != nil {
		b.f.Close()
		b.f = nil
	}
	q.mu.Unlock()
	q.jmu.Lock()
	defer q.jmu.Unlock()
	for q.flushing {
		q.jcond.Wait()
	}
	var err error
	if q.jfile != nil {
		err = q.jfile.Close()
		q.jfile = nil
	}
	return err
}

// entryHeap orders items by when they are due, then by batch and index
// (first queued, first sent).
type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if !a.item.NextAttempt.Equal(b.item.NextAttempt) {
		return a.item.NextAttempt.Before(b.item.NextAttempt)
	}
	if a.b.seq != b.b.seq {
		return a.b.seq < b.b.seq
	}
	return a.idx < b.idx
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx, h[j].heapIdx = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}
