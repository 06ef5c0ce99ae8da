package spool

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// batch is what one read of the spool yields: the payloads of the valid
// records in [from, next), and the bytes that span (quarantined ones too).
type batch struct {
	payloads [][]byte
	offsets  []int64 // of each payload's record, in segment from.seq
	from     pos
	next     pos
	bytes    int64
}

// Run drains the spool into sink until ctx is done or the spool is closed,
// then returns nil. It passes sink the payloads of the next undrained
// records, in order, at most Options.BatchRecords and about
// Options.BatchBytes at a time. When sink returns nil the records are
// drained: the cursor moves past them and is saved, and segments wholly
// drained are deleted. When sink fails, the error is logged and the same
// records, followed by any appended meanwhile (up to the batch limits), are
// passed again after a backoff (100 ms doubling to 5 s), for as long as it
// takes. Run wakes up on every Append, so a record reaches
// the sink promptly.
//
// sink should fail only for what may pass later (the store is down or
// slow). What it can never deliver it reports with a *RefusedError: Run
// writes each refused part to a dead-letter file (see DeadRecord), logs it
// and counts it in Stats.Dead, and moves on as if sink had returned nil.
// When writing a dead-letter file fails, the batch is passed again.
//
// A crash after sink returned and before the cursor was saved delivers the
// same records again when the spool is reopened; sink must be idempotent.
// The payloads belong to sink once passed (they are not reused), but when
// sink fails they are passed again.
//
// Only one Run may be running at a time.
func (s *Spool) Run(ctx context.Context, sink func(ctx context.Context, payloads [][]byte) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if s.running {
		s.mu.Unlock()
		return errors.New("spool: Run is already running")
	}
	s.running = true
	runDone := make(chan struct{})
	s.runDone = runDone
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.runDone = nil
		s.mu.Unlock()
		close(runDone)
	}()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	r := &reader{s: s}
	defer r.close()
	var (
		b         *batch
		delivered bool
		backoff   time.Duration
	)
	retry := func(msg string, err error) {
		backoff = min(max(2*backoff, s.backoffMin), s.backoffMax)
		s.log.Error(msg, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	for ctx.Err() == nil {
		if b == nil {
			next, err := r.read()
			if err != nil {
				retry("spool: read failed", err)
				continue
			}
			if next.next == next.from {
				select {
				case <-s.notify:
				case <-ctx.Done():
				}
				continue
			}
			b, delivered = next, false
		}
		if !delivered && len(b.payloads) > 0 {
			if err := sink(ctx, b.payloads); err != nil {
				var refused *RefusedError
				if !errors.As(err, &refused) {
					if ctx.Err() != nil {
						break
					}
					retry("spool: sink failed, keeping the records", err)
					// Read again: the next try also gets what was
					// appended meanwhile, so a sink that must see a
					// write succeed to judge a failure can.
					b = nil
					continue
				}
				if err := s.deadLetter(b, refused.Refused); err != nil {
					retry("spool: writing a dead-letter file failed, keeping the records", err)
					continue
				}
			}
		}
		delivered = true
		if err := s.advance(b); err != nil {
			retry("spool: saving the cursor failed", err)
			continue
		}
		b, backoff = nil, 0
	}
	return nil
}

// advance saves b.next as the cursor and deletes the segments before it.
func (s *Spool) advance(b *batch) error {
	if err := writeCursor(s.dir, b.next); err != nil {
		return err
	}
	s.mu.Lock()
	s.cursor = b.next
	s.bytes -= b.bytes
	if b.from.seq >= s.countedFrom {
		s.records = max(s.records-int64(len(b.payloads)), 0)
	}
	if s.bytes == 0 {
		s.records = 0 // records cut out as corrupt were counted too
	}
	var drop []uint64
	for len(s.segs) > 1 && s.segs[0].seq < s.cursor.seq {
		drop = append(drop, s.segs[0].seq)
		s.segs = s.segs[1:]
	}
	close(s.advanced)
	s.advanced = make(chan struct{})
	s.mu.Unlock()
	for _, seq := range drop {
		if err := os.Remove(s.segPath(seq)); err != nil {
			s.log.Warn("spool: removing a drained segment failed", "segment", seq, "err", err)
		}
	}
	return nil
}

// Flush blocks until every record appended before it was called has been
// drained by Run, or ctx is done, or the spool is closed. Stop intake
// first; without a running Run it waits until ctx is done.
func (s *Spool) Flush(ctx context.Context) error {
	s.mu.Lock()
	target := pos{seq: s.active(), off: s.size}
	for s.cursor.less(target) {
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		advanced := s.advanced
		s.mu.Unlock()
		select {
		case <-advanced:
		case <-ctx.Done():
			return fmt.Errorf("spool: flush: %w", ctx.Err())
		case <-s.done:
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	return nil
}

// reader reads batches from the cursor on; only Run uses it.
type reader struct {
	s   *Spool
	f   *os.File
	seq uint64
	br  *bufio.Reader
}

func (r *reader) close() {
	if r.f != nil {
		r.f.Close()
		r.f = nil
	}
}

// read returns the records after the cursor, up to the batch limits and
// never across a segment boundary. Corrupt bytes on the way are
// quarantined and skipped. Nothing was read when next == from.
func (r *reader) read() (*batch, error) {
	s := r.s
	s.mu.Lock()
	from := s.cursor
	sealed := from.seq < s.active()
	end := s.syncedTo.off // durable part of the active segment
	var nextSeq uint64
	if sealed {
		// segs starts at the cursor's segment.
		end, nextSeq = s.segs[0].size, s.segs[1].seq
	}
	s.mu.Unlock()

	if r.f == nil || r.seq != from.seq {
		r.close()
		f, err := os.Open(s.segPath(from.seq))
		if err != nil {
			return nil, fmt.Errorf("spool: %w", err)
		}
		r.f, r.seq = f, from.seq
	}

	b := &batch{from: from}
	start := min(from.off, end)
	off := start
	if r.br == nil {
		r.br = bufio.NewReaderSize(nil, 1<<20)
	}
	r.br.Reset(io.NewSectionReader(r.f, off, end-off))
	var size int64
	for off < end && len(b.payloads) < s.batchRecords && size < s.batchBytes {
		payload, reason, err := readRecord(r.br, end-off, nil)
		if err != nil {
			return nil, fmt.Errorf("spool: %s: %w", s.segPath(from.seq), err)
		}
		if reason == "" {
			b.payloads = append(b.payloads, payload)
			b.offsets = append(b.offsets, off)
			n := int64(headerSize + len(payload))
			off += n
			size += n
			continue
		}
		next, err := resync(r.f, off+1, end)
		if err != nil {
			return nil, fmt.Errorf("spool: %s: %w", s.segPath(from.seq), err)
		}
		if next < 0 {
			next = end
		}
		if err := s.quarantine(r.f, from.seq, off, next, reason); err != nil {
			return nil, err
		}
		off = next
		r.br.Reset(io.NewSectionReader(r.f, off, end-off))
	}
	b.next = pos{seq: from.seq, off: off}
	if sealed && off >= end {
		b.next = pos{seq: nextSeq}
	}
	b.bytes = off - start
	return b, nil
}

// readRecord reads one record of at most avail bytes, into buf if it is
// large enough. A record that is not valid is reported by reason, with a
// nil error; err is for I/O errors.
func readRecord(br *bufio.Reader, avail int64, buf []byte) (payload []byte, reason string, err error) {
	hdr, err := br.Peek(headerSize) // valid until the next read from br
	if len(hdr) < headerSize {
		if err == io.EOF {
			return nil, "short header", nil
		}
		return nil, "", err
	}
	length, ok := checkHeader(hdr, avail)
	if !ok {
		if string(hdr[:4]) != magic {
			return nil, "bad magic", nil
		}
		return nil, "length past the end", nil
	}
	crc := crc32.Update(0, castagnoli, hdr[4:8])
	want := binary.BigEndian.Uint32(hdr[8:12])
	br.Discard(headerSize)
	if int64(cap(buf)) >= length {
		payload = buf[:length]
	} else {
		payload = make([]byte, length)
	}
	if _, err := io.ReadFull(br, payload); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil, "short payload", nil
		}
		return nil, "", err
	}
	if crc32.Update(crc, castagnoli, payload) != want {
		return nil, "bad checksum", nil
	}
	return payload, "", nil
}

// quarantine copies the corrupt bytes [from, to) of segment seq to a
// quarantine file and reports them. A file left by an earlier run for the
// same bytes (a crash before the cursor passed them) is kept.
func (s *Spool) quarantine(f *os.File, seq uint64, from, to int64, reason string) error {
	path := filepath.Join(s.dir, fmt.Sprintf("%020d-%020d.quarantine", seq, from))
	attrs := []any{"segment", seq, "offset", from, "bytes", to - from, "reason", reason, "file", path}
	if _, err := os.Stat(path); err == nil {
		s.log.Error("spool: skipping corrupt bytes quarantined before", attrs...)
		return nil
	}
	tmp := path + ".tmp"
	q, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("spool: quarantine: %w", err)
	}
	_, err = fmt.Fprintf(q, "repute spool quarantine: segment=%d offset=%d length=%d reason=%s\n", seq, from, to-from, reason)
	if err == nil {
		_, err = io.Copy(q, io.NewSectionReader(f, from, to-from))
	}
	if err == nil {
		err = q.Sync()
	}
	if cerr := q.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("spool: quarantine: %w", err)
	}
	s.mu.Lock()
	s.quarantined++
	s.mu.Unlock()
	s.log.Error("spool: corrupt record quarantined", attrs...)
	return nil
}

// Undrained calls fn with the payload of each record not yet drained when
// it is called, in order, without moving the cursor: to index what a crash
// left in the spool. Corrupt bytes are skipped (Run quarantines them when
// it gets there). The payload is valid only during the call of fn; an
// error of fn stops the scan and is returned.
func (s *Spool) Undrained(fn func(payload []byte) error) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	from := s.cursor
	segs := slices.Clone(s.segs)
	segs[len(segs)-1].size = s.syncedTo.off // the durable part of the active one
	s.mu.Unlock()

	var buf []byte
	for _, seg := range segs {
		if seg.seq < from.seq {
			continue
		}
		start := int64(0)
		if seg.seq == from.seq {
			start = from.off
		}
		f, err := os.Open(s.segPath(seg.seq))
		if errors.Is(err, os.ErrNotExist) {
			continue // drained meanwhile
		}
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		buf, err = scanSegment(f, start, seg.size, buf, fn)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// scanSegment calls fn with the payload of each valid record of f in
// [off, end), skipping corrupt bytes.
func scanSegment(f *os.File, off, end int64, buf []byte, fn func([]byte) error) ([]byte, error) {
	br := bufio.NewReaderSize(io.NewSectionReader(f, off, max(end-off, 0)), 1<<20)
	for off < end {
		payload, reason, err := readRecord(br, end-off, buf)
		if err != nil {
			return buf, fmt.Errorf("spool: %s: %w", f.Name(), err)
		}
		if reason == "" {
			buf = payload[:0]
			if err := fn(payload); err != nil {
				return buf, err
			}
			off += int64(headerSize + len(payload))
			continue
		}
		next, err := resync(f, off+1, end)
		if err != nil {
			return buf, fmt.Errorf("spool: %s: %w", f.Name(), err)
		}
		if next < 0 {
			break
		}
		off = next
		br.Reset(io.NewSectionReader(f, off, end-off))
	}
	return buf, nil
}
