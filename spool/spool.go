// Package spool is the durable on-disk queue between intake and the store:
// Append returns only once a record is on disk (written and fsync'd), and
// Run drains the records, in order, into a sink that writes them to the
// store. A crash at any point loses nothing that Append acknowledged; after
// a crash between a store write and the cursor save the same records are
// delivered again, which an idempotent store collapses (at-least-once into an
// idempotent store is exactly once).
//
// # On-disk format
//
// A spool is a directory holding:
//
//   - Segment files named by a sequence number, "%020d.seg". Records are
//     appended to the last (active) segment; a new segment is started when
//     the next record would take the active one past Options.SegmentBytes
//     (a segment holds at least one record, so a record larger than
//     SegmentBytes gets a segment of its own).
//   - "cursor": the first undrained position, 20 bytes: segment sequence
//     (uint64), offset in that segment (uint64), CRC-32C of those 16 bytes,
//     all big-endian. It is replaced atomically (write "cursor.tmp", fsync,
//     rename, fsync the directory) after every drained batch. Segments wholly
//     before the cursor are deleted.
//   - "%020d-%020d.quarantine" (segment, offset): corrupt bytes cut out of a
//     segment. One text line "repute spool quarantine: segment=S offset=O
//     length=L reason=R\n" followed by the raw bytes.
//   - "dead/%020d-%020d-%06d.json" (segment, offset, part): a record, or a
//     part of one, that the sink refused for good (see RefusedError and
//     DeadRecord), set aside so that the drain moves on.
//   - "lock": held with flock(2) while the spool is open.
//
// Every record is
//
//	magic   4 bytes  FF 52 53 FE ("\xffRS\xfe"; never valid UTF-8)
//	length  4 bytes  big-endian uint32, length of the payload
//	crc     4 bytes  big-endian CRC-32C (Castagnoli) over length and payload
//	payload length bytes
//
// # Durability and recovery
//
// Append writes the record and fsyncs the segment (concurrent Appends share
// one fsync) and fsyncs the directory when it creates a segment.
//
// When the disk refuses a write or an fsync (full, I/O error), Append
// returns a *DiskError and nothing of the record is acknowledged: a short
// write is cut off at once; after a failed fsync the next Append (or Probe)
// first cuts the segment back to the end of what was made durable, since
// the state of the rest is unknown. Appending resumes by itself once the
// disk takes writes again; Health reports the failure meanwhile. On a full
// disk the drain still saves its cursor (overwritten in place) and deletes
// what it drained, sealing a drained active segment so that it can.
//
// Open verifies only the active segment (so it reads at most about
// SegmentBytes): a torn final record — a short header, a short payload, or a
// bad record with no valid record after it, as a crash in mid-write leaves
// — is cut off with a warning. Older segments are verified as Run reads
// them. A corrupt record with valid records after it (bad checksum or
// magic), wherever it is found, is copied to a quarantine file, logged at
// error level, counted in Stats, and skipped; reading resumes at the next
// marker that starts a valid record. Nothing corrupt is delivered, and
// nothing is dropped without a trace.
//
// A payload that itself contains a complete, valid spool record could be
// mistaken for a record when resynchronising after corruption; JSON cannot
// (the marker is not UTF-8).
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrFull is returned by Append when the record would take the
	// undrained bytes past Options.MaxBytes. Nothing was written; retry
	// after the drain has made room.
	ErrFull = errors.New("spool: full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
)

// Defaults for the zero Options.
const (
	DefaultMaxBytes     = 1 << 30
	DefaultSegmentBytes = 16 << 20
	DefaultBatchRecords = 1024
	DefaultBatchBytes   = 32 << 20
)

// Options configure a Spool; the zero value works.
type Options struct {
	// MaxBytes bounds the undrained bytes (records with their headers).
	// Default 1 GiB.
	MaxBytes int64
	// SegmentBytes is the size at which a new segment file is started.
	// Default 16 MiB.
	SegmentBytes int64
	// BatchRecords and BatchBytes bound one call of the sink in Run.
	// Defaults 1024 records and 32 MiB (a batch holds at least one record,
	// and may pass BatchBytes by its last record).
	BatchRecords int
	BatchBytes   int64
	// Logger receives warnings about repaired tails and errors about
	// quarantined records and failing sinks; nil: silent.
	Logger *slog.Logger
}

// Stats describe the undrained part of a spool.
type Stats struct {
	// Records undrained; approximate. After Open, records in segments
	// older than the active one are not counted (that would mean reading
	// them all at Open): Records is then a lower bound until they are
	// drained. Records later found corrupt stay counted until the spool is
	// empty.
	Records int64
	// Bytes undrained, headers included; exact.
	Bytes int64
	// Quarantined is the number of quarantine files in the directory.
	Quarantined int64
	// Dead is the number of dead-letter files (see RefusedError).
	Dead int64
}

// pos is a position in the spool: a segment and an offset in it.
type pos struct {
	seq uint64
	off int64
}

func (p pos) less(q pos) bool {
	return p.seq < q.seq || p.seq == q.seq && p.off < q.off
}

// segmentFile is what Append needs of the active segment; an *os.File,
// or a wrapper that injects failures in tests.
type segmentFile interface {
	WriteAt(b []byte, off int64) (int, error)
	Truncate(size int64) error
	Sync() error
	Close() error
}

// waiter is an Append waiting for its record, which ends at end, to be
// durable; repair sets cut when it cuts the record off.
type waiter struct {
	end pos
	cut error
}

type segment struct {
	seq  uint64
	size int64 // final for sealed segments; the active one's is Spool.size
}

// Spool is an on-disk queue. Its methods are safe for concurrent use; Run
// may be running only once at a time.
type Spool struct {
	dir          string
	log          *slog.Logger
	maxBytes     int64
	segmentBytes int64
	batchRecords int
	batchBytes   int64
	backoffMin   time.Duration
	backoffMax   time.Duration
	lock         *os.File

	notify chan struct{} // a token after each durable append
	done   chan struct{} // closed by Close

	mu       sync.Mutex
	synced   *sync.Cond  // broadcast when syncedTo, syncing or err change
	segs     []segment   // undrained segments, oldest first; the last is active
	f        segmentFile // active segment
	size     int64       // bytes in the active segment
	syncedTo pos         // everything before it is durable
	syncing  bool        // an Append is fsyncing f without holding mu
	// err is set by a failed fsync (or a failed write that could not be
	// undone): the active segment's bytes after syncedTo are in an
	// unknown state, and the next Append repairs it before writing.
	err           error
	waiters       map[*waiter]struct{} // Appends waiting for their fsync
	written       int64                // records written to the active segment
	syncedWritten int64                // of which durable (before syncedTo)
	// failure is the last disk failure, nil once a write or a Probe
	// succeeded since (Health); probed is when Probe last tried;
	// failedBytes is the size of the last record the disk refused.
	failure     error
	probed      time.Time
	failedBytes int64
	closed      bool
	cursor      pos           // first undrained position
	advanced    chan struct{} // closed and replaced when the cursor moves
	bytes       int64
	records     int64
	countedFrom uint64 // records in segments before it are not in records
	quarantined int64
	dead        int64
	running     bool
	runDone     chan struct{}
}

// Open opens the spool in dir, creating the directory if needed, and
// repairs a torn tail left by a crash. It reads at most the active segment.
func Open(dir string, opts Options) (*Spool, error) {
	s := &Spool{
		dir:          dir,
		log:          opts.Logger,
		maxBytes:     opts.MaxBytes,
		segmentBytes: opts.SegmentBytes,
		batchRecords: opts.BatchRecords,
		batchBytes:   opts.BatchBytes,
		backoffMin:   100 * time.Millisecond,
		backoffMax:   5 * time.Second,
		notify:       make(chan struct{}, 1),
		done:         make(chan struct{}),
		advanced:     make(chan struct{}),
		waiters:      map[*waiter]struct{}{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxBytes
	}
	if s.segmentBytes <= 0 {
		s.segmentBytes = DefaultSegmentBytes
	}
	if s.batchRecords <= 0 {
		s.batchRecords = DefaultBatchRecords
	}
	if s.batchBytes <= 0 {
		s.batchBytes = DefaultBatchBytes
	}
	s.synced = sync.NewCond(&s.mu)

	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		if err := syncDir(filepath.Dir(dir)); err != nil {
			return nil, err
		}
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s.lock = lock
	if err := s.load(); err != nil {
		unlockDir(s.lock)
		if s.f != nil {
			s.f.Close()
		}
		return nil, err
	}
	return s, nil
}

// load reads the directory: cursor, segments, quarantine files, and repairs
// the active segment's tail.
func (s *Spool) load() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	var seqs []uint64
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".seg"):
			seq, err := strconv.ParseUint(strings.TrimSuffix(name, ".seg"), 10, 64)
			if err != nil {
				continue
			}
			seqs = append(seqs, seq)
		case strings.HasSuffix(name, ".quarantine"):
			s.quarantined++
		case strings.HasSuffix(name, ".tmp"):
			// A cursor or quarantine file never renamed into place.
			os.Remove(filepath.Join(s.dir, name))
		}
	}
	if s.dead, err = countDead(s.dir); err != nil {
		return err
	}
	slices.Sort(seqs)
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			s.log.Error("spool: segments missing", "after", seqs[i-1], "before", seqs[i])
		}
	}

	cur, found, err := readCursor(s.dir)
	if err != nil {
		// Replaying drained records is harmless; skipping undrained
		// ones is not.
		s.log.Error("spool: unreadable cursor, replaying from the oldest segment", "err", err)
	}
	if !found && len(seqs) > 0 {
		cur = pos{seq: seqs[0]}
	}
	if !found {
		// Written now so that it exists to be overwritten in place on
		// a full disk (writeCursor), where creating a file may fail.
		if err := writeCursor(s.dir, pos{seq: max(cur.seq, 1), off: cur.off}); err != nil {
			s.log.Warn("spool: writing the initial cursor failed", "err", err)
		}
	}
	for len(seqs) > 0 && seqs[0] < cur.seq {
		if err := os.Remove(s.segPath(seqs[0])); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		seqs = seqs[1:]
	}
	if len(seqs) > 0 && seqs[0] > cur.seq {
		s.log.Error("spool: segment at cursor missing, continuing with the next", "cursor_segment", cur.seq, "next_segment", seqs[0])
		cur = pos{seq: seqs[0]}
	}
	if len(seqs) == 0 {
		cur = pos{seq: max(cur.seq, 1)}
		f, err := s.createSegment(cur.seq)
		if err != nil {
			return err
		}
		f.Close()
		seqs = []uint64{cur.seq}
	}
	for _, seq := range seqs[:len(seqs)-1] {
		fi, err := os.Stat(s.segPath(seq))
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		s.segs = append(s.segs, segment{seq: seq, size: fi.Size()})
		s.bytes += fi.Size()
	}
	active := seqs[len(seqs)-1]
	s.segs = append(s.segs, segment{seq: active})
	if len(s.segs) > 1 {
		s.bytes -= min(cur.off, s.segs[0].size)
	}

	f, err := os.OpenFile(s.segPath(active), os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	s.f = f
	from := int64(0)
	if cur.seq == active {
		from = cur.off
	}
	end, records, err := s.repairTail(f, active, from)
	if err != nil {
		return err
	}
	if from > end {
		s.log.Error("spool: cursor past the end of the active segment", "segment", active, "cursor", cur.off, "end", end)
		from, cur.off = end, end
	}
	s.size = end
	s.bytes += end - from
	s.records = records
	s.countedFrom = active
	s.cursor = cur
	s.syncedTo = pos{seq: active, off: end}
	return nil
}

// repairTail finds the end of the valid records of the active segment,
// reading from the record boundary from, and truncates a torn tail. It
// returns the end and the number of valid records in [from, end).
func (s *Spool) repairTail(f *os.File, seq uint64, from int64) (end, records int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, fmt.Errorf("spool: %w", err)
	}
	size := fi.Size()
	off := min(from, size)
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, size-off), 1<<20)
	var buf []byte
	for off < size {
		payload, reason, err := readRecord(br, size-off, buf)
		if err != nil {
			return 0, 0, fmt.Errorf("spool: %s: %w", s.segPath(seq), err)
		}
		if reason == "" {
			buf = payload[:0]
			off += int64(headerSize + len(payload))
			records++
			continue
		}
		next, err := resync(f, off+1, size)
		if err != nil {
			return 0, 0, fmt.Errorf("spool: %s: %w", s.segPath(seq), err)
		}
		if next < 0 {
			break
		}
		// Corruption with valid records after it: Run quarantines it
		// when it gets there.
		off = next
		br.Reset(io.NewSectionReader(f, off, size-off))
	}
	if off < size {
		s.log.Warn("spool: cutting off a torn record at the end of the active segment",
			"segment", seq, "offset", off, "bytes", size-off)
		if err := f.Truncate(off); err != nil {
			return 0, 0, fmt.Errorf("spool: %w", err)
		}
		if err := f.Sync(); err != nil {
			return 0, 0, fmt.Errorf("spool: %w", err)
		}
	}
	return off, records, nil
}

func (s *Spool) segPath(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d.seg", seq))
}

// createSegment creates an empty segment and makes its name durable.
func (s *Spool) createSegment(seq uint64) (*os.File, error) {
	f, err := os.OpenFile(s.segPath(seq), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return nil, s.diskError("create", s.segPath(seq), err)
	}
	if err := syncDir(s.dir); err != nil {
		f.Close()
		os.Remove(s.segPath(seq))
		return nil, s.diskError("sync directory", s.dir, err)
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	err = d.Sync()
	d.Close()
	if err != nil {
		return fmt.Errorf("spool: sync directory: %w", err)
	}
	return nil
}

// Append writes payload as one record and returns once it is durable. It
// returns ErrFull, without writing, when the undrained bytes would pass
// Options.MaxBytes, and a *DiskError (matching ErrDisk) when the disk fails
// it (full, I/O error): the record was then not acknowledged, and the next
// Append first cuts the active segment back to its durable end (see
// repair), so that appending resumes by itself once the disk takes writes
// again.
func (s *Spool) Append(payload []byte) error {
	n := int64(headerSize + len(payload))
	if int64(len(payload)) > maxPayload || n > s.maxBytes {
		return fmt.Errorf("spool: record of %d bytes exceeds the bound of %d bytes", n, s.maxBytes)
	}
	rec := encodeRecord(payload)

	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.closed {
			return ErrClosed
		}
		if s.err != nil {
			if s.syncing {
				s.synced.Wait()
				continue
			}
			if err := s.repair(); err != nil {
				return err
			}
		}
		if s.bytes+n > s.maxBytes {
			return ErrFull
		}
		if s.size == 0 || s.size+n <= s.segmentBytes {
			break
		}
		if s.syncing {
			s.synced.Wait()
			continue
		}
		if err := s.rotate(); err != nil {
			return err
		}
	}

	off := s.size
	if _, err := s.f.WriteAt(rec, off); err != nil {
		derr := s.diskError("write", s.segPath(s.active()), err)
		s.failedBytes = n
		// Unwritten (e.g. disk full): cut the partial record so the
		// segment stays valid for the records after it. Should that
		// fail too, the next Append repairs the segment first.
		if terr := s.f.Truncate(off); terr != nil {
			s.err = derr
			s.synced.Broadcast()
		} else if isNoSpace(err) {
			s.sealDrained()
		}
		s.fail(derr)
		return derr
	}
	s.size += n
	s.bytes += n
	s.records++
	s.written++
	w := &waiter{end: pos{seq: s.active(), off: s.size}}
	s.waiters[w] = struct{}{}
	defer delete(s.waiters, w) // before the deferred Unlock

	// Group commit: one Append fsyncs for everyone who wrote before it
	// started; the others wait.
	for s.syncedTo.less(w.end) || w.cut != nil {
		if w.cut != nil {
			// repair cut this record off after the fsync that was to
			// make it durable failed (a later record may since have
			// taken its place and been synced).
			return w.cut
		}
		if s.err != nil {
			return s.err
		}
		if s.syncing {
			s.synced.Wait()
			continue
		}
		s.syncing = true
		f, target, written := s.f, pos{seq: s.active(), off: s.size}, s.written
		s.mu.Unlock()
		err := f.Sync()
		s.mu.Lock()
		s.syncing = false
		if err != nil {
			s.err = s.diskError("sync", s.segPath(target.seq), err)
			s.fail(s.err)
		} else if s.syncedTo.less(target) {
			s.syncedTo, s.syncedWritten = target, written
		}
		s.synced.Broadcast()
	}
	s.recovered()
	s.wake()
	return nil
}

// wake tells Run that there is something to read.
func (s *Spool) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

func (s *Spool) active() uint64 { return s.segs[len(s.segs)-1].seq }

// rotate seals the active segment and starts the next one. It is called
// with mu held, no fsync in flight and no repair pending.
func (s *Spool) rotate() error {
	if err := s.f.Sync(); err != nil {
		s.err = s.diskError("sync", s.segPath(s.active()), err)
		s.fail(s.err)
		s.synced.Broadcast()
		return s.err
	}
	seq := s.active() + 1
	f, err := s.createSegment(seq)
	if err != nil {
		s.fail(err)
		return err
	}
	s.f.Close()
	s.segs[len(s.segs)-1].size = s.size
	s.segs = append(s.segs, segment{seq: seq})
	s.f = f
	s.size = 0
	s.written, s.syncedWritten = 0, 0
	s.syncedTo = pos{seq: seq}
	s.synced.Broadcast()
	return nil
}

// Stats returns the undrained records and bytes and the quarantine and
// dead-letter counts.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Records: s.records, Bytes: s.bytes, Quarantined: s.quarantined, Dead: s.dead}
}

// Close stops a running Run (its sink sees its context cancelled) and
// waits for it to return, then syncs and closes the spool. Appends waiting
// for their fsync complete first; later calls return ErrClosed.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	for s.syncing {
		s.synced.Wait()
	}
	err := s.err
	if err == nil {
		if serr := s.f.Sync(); serr != nil {
			err = fmt.Errorf("spool: sync: %w", serr)
			s.err = err
		} else {
			s.syncedTo = pos{seq: s.active(), off: s.size}
		}
	}
	s.synced.Broadcast()
	if cerr := s.f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("spool: %w", cerr)
	}
	runDone := s.runDone
	s.mu.Unlock()
	if runDone != nil {
		<-runDone
	}
	unlockDir(s.lock)
	return err
}

const cursorFile = "cursor"

// readCursor reads the cursor file; found is false when there is none.
func readCursor(dir string) (p pos, found bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, cursorFile))
	if errors.Is(err, os.ErrNotExist) {
		return pos{}, false, nil
	}
	if err != nil {
		return pos{}, false, fmt.Errorf("spool: %w", err)
	}
	if len(b) != 20 || crc32.Checksum(b[:16], castagnoli) != binary.BigEndian.Uint32(b[16:]) {
		return pos{}, false, fmt.Errorf("spool: corrupt cursor file (%d bytes)", len(b))
	}
	off := binary.BigEndian.Uint64(b[8:16])
	if off > 1<<62 {
		return pos{}, false, fmt.Errorf("spool: cursor offset %d out of range", off)
	}
	return pos{seq: binary.BigEndian.Uint64(b[:8]), off: int64(off)}, true, nil
}

// writeCursor replaces the cursor file atomically.
func writeCursor(dir string, p pos) error {
	var b [20]byte
	binary.BigEndian.PutUint64(b[:8], p.seq)
	binary.BigEndian.PutUint64(b[8:16], uint64(p.off))
	binary.BigEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	tmp := filepath.Join(dir, cursorFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	_, err = f.Write(b[:])
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, cursorFile))
	}
	if err != nil && isNoSpace(err) {
		os.Remove(tmp)
		// A full disk must not stop the drain, which is what frees
		// it (drained segments are deleted once the cursor is saved):
		// overwrite the cursor in place, which takes no new block. A
		// write torn by a crash fails the checksum, and Open then
		// replays from the oldest segment: duplicates the store
		// collapses, nothing lost.
		if ierr := overwriteCursor(filepath.Join(dir, cursorFile), b[:]); ierr == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("spool: save cursor: %w", err)
	}
	return syncDir(dir)
}

// overwriteCursor writes b over the existing cursor file at path and
// fsyncs it.
func overwriteCursor(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(b, 0)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

var _ io.Closer = (*Spool)(nil)
