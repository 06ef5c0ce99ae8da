package spool

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// payloadFor is the deterministic payload of record i: its number and a
// body of varying length, so that a record is recognisable and checkable.
func payloadFor(i int) []byte {
	return fmt.Appendf(nil, "{\"n\":%d,\"pad\":%q}", i, bytes.Repeat([]byte{'a' + byte(i%26)}, i%97))
}

func openT(t *testing.T, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	s.backoffMin = time.Millisecond
	s.backoffMax = 10 * time.Millisecond
	return s
}

func appendN(t *testing.T, s *Spool, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		if err := s.Append(payloadFor(i)); err != nil {
			t.Fatalf("Append(%d): %v", i, err)
		}
	}
}

// collector is a sink that records every payload and every call.
type collector struct {
	mu       sync.Mutex
	payloads [][]byte
	calls    int
	failN    int // fail the first failN calls
}

func (c *collector) sink(ctx context.Context, payloads [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls <= c.failN {
		return fmt.Errorf("store down (call %d)", c.calls)
	}
	c.payloads = append(c.payloads, payloads...)
	return nil
}

func (c *collector) got() [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.payloads)
}

// drain runs s until everything appended so far is in c, then stops Run.
func drain(t *testing.T, s *Spool, c *collector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx, c.sink) }()
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// wantRecords checks that got holds exactly the records from..to-1, in order.
func wantRecords(t *testing.T, got [][]byte, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Errorf("got %d records, want %d (records %d..%d)", len(got), to-from, from, to-1)
	}
	for i, p := range got {
		if want := payloadFor(from + i); !bytes.Equal(p, want) {
			t.Fatalf("record %d = %.40q, want %.40q", i, p, want)
		}
	}
}

func segmentFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTripAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentBytes: 1000, BatchRecords: 7})
	defer s.Close()
	appendN(t, s, 0, 300)
	if n := len(segmentFiles(t, dir)); n < 10 {
		t.Fatalf("%d segment files, want rotation into many", n)
	}
	if st := s.Stats(); st.Records != 300 || st.Bytes <= 0 {
		t.Errorf("Stats before drain = %+v, want 300 records", st)
	}
	var c collector
	drain(t, s, &c)
	wantRecords(t, c.got(), 0, 300)
	if st := s.Stats(); st.Records != 0 || st.Bytes != 0 || st.Quarantined != 0 {
		t.Errorf("Stats after drain = %+v, want zero", st)
	}
	if n := len(segmentFiles(t, dir)); n != 1 {
		t.Errorf("%d segment files after drain, want only the active one", n)
	}
}

func TestReopenReplaysOnlyUndrained(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentBytes: 2000})
	appendN(t, s, 0, 50)
	var c collector
	drain(t, s, &c)
	wantRecords(t, c.got(), 0, 50)
	appendN(t, s, 50, 80)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openT(t, dir, Options{SegmentBytes: 2000})
	defer s.Close()
	var c2 collector
	drain(t, s, &c2)
	wantRecords(t, c2.got(), 50, 80)
}

// TestCrashWithoutDrain leaves the spool without Close, as a crash would
// (the data is in the page cache; kill -9 is tested by TestKill9).
func TestCrashWithoutDrain(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentBytes: 3000})
	appendN(t, s, 0, 120)
	// Simulate the crash: drop the file handles and the lock without
	// syncing or saving anything.
	s.f.Close()
	unlockDir(s.lock)

	s2 := openT(t, dir, Options{SegmentBytes: 3000})
	defer s2.Close()
	var c collector
	drain(t, s2, &c)
	wantRecords(t, c.got(), 0, 120)
}

func TestFull(t *testing.T) {
	dir := t.TempDir()
	rec := int64(headerSize + len(payloadFor(5)))
	s := openT(t, dir, Options{MaxBytes: 10 * rec, SegmentBytes: 3 * rec})
	defer s.Close()
	for i := range 10 {
		if err := s.Append(payloadFor(5)); err != nil {
			t.Fatalf("Append %d: %v", i, err)
		}
	}
	if err := s.Append(payloadFor(5)); !errors.Is(err, ErrFull) {
		t.Fatalf("Append past the bound = %v, want ErrFull", err)
	}
	if st := s.Stats(); st.Bytes != 10*rec {
		t.Errorf("Stats.Bytes = %d, want %d", st.Bytes, 10*rec)
	}
	var c collector
	drain(t, s, &c)
	if len(c.got()) != 10 {
		t.Fatalf("drained %d records, want 10", len(c.got()))
	}
	if err := s.Append(payloadFor(5)); err != nil {
		t.Fatalf("Append after the drain: %v", err)
	}
}

func TestTooLarge(t *testing.T) {
	s := openT(t, t.TempDir(), Options{MaxBytes: 100})
	defer s.Close()
	err := s.Append(make([]byte, 100))
	if err == nil || errors.Is(err, ErrFull) {
		t.Fatalf("Append over MaxBytes = %v, want a too-large error", err)
	}
}

func TestSinkFailsThenRecovers(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentBytes: 1500, BatchRecords: 10})
	defer s.Close()
	appendN(t, s, 0, 100)
	c := collector{failN: 5}
	drain(t, s, &c)
	wantRecords(t, c.got(), 0, 100)
	if c.calls < 5+10 {
		t.Errorf("sink called %d times, want 5 failures and at least 10 batches", c.calls)
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append([]byte("x")); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v, want ErrClosed", err)
	}
	if err := s.Run(context.Background(), (&collector{}).sink); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	defer s.Close()
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
}

// TestLostCursor removes or damages the cursor: the spool replays from
// the oldest segment it has (records drained before come again, which the
// idempotent store absorbs) and loses nothing undrained.
func TestLostCursor(t *testing.T) {
	for _, damage := range []string{"missing", "garbage", "empty"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			opts := Options{SegmentBytes: 1000}
			s := openT(t, dir, opts)
			appendN(t, s, 0, 30)
			drain(t, s, &collector{})
			appendN(t, s, 30, 60)
			s.Close()
			cursor := filepath.Join(dir, cursorFile)
			switch damage {
			case "missing":
				os.Remove(cursor)
			case "garbage":
				os.WriteFile(cursor, []byte("0123456789abcdefghij"), 0o640)
			case "empty":
				os.WriteFile(cursor, nil, 0o640)
			}

			s = openT(t, dir, opts)
			defer s.Close()
			var c collector
			drain(t, s, &c)
			got := c.got()
			if len(got) < 30 || len(got) > 60 {
				t.Fatalf("got %d records, want the 30 undrained ones and at most the 30 before", len(got))
			}
			wantRecords(t, got, 60-len(got), 60)
		})
	}
}

// TestMissingSegment deletes a sealed segment behind Run's back: the
// records of the others still arrive, and Run does not get stuck.
func TestMissingSegment(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1000}
	s := openT(t, dir, opts)
	appendN(t, s, 0, 60)
	s.Close()
	segs := segmentFiles(t, dir)
	lost := len(recordOffsets(t, segs[1]))
	first := len(recordOffsets(t, segs[0]))
	os.Remove(segs[1])

	s = openT(t, dir, opts)
	defer s.Close()
	var c collector
	drain(t, s, &c)
	got := c.got()
	wantRecords(t, got[:first], 0, first)
	wantRecords(t, got[first:], first+lost, 60)
}

// TestStatsAfterReopen: Bytes is exact after a reopen; Records counts
// only the active segment (documented as a lower bound).
func TestStatsAfterReopen(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentBytes: 1000}
	s := openT(t, dir, opts)
	appendN(t, s, 0, 60)
	want := s.Stats()
	s.Close()

	s = openT(t, dir, opts)
	defer s.Close()
	got := s.Stats()
	active := int64(len(recordOffsets(t, segmentFiles(t, dir)[len(segmentFiles(t, dir))-1])))
	if got.Bytes != want.Bytes || got.Records != active {
		t.Errorf("Stats after reopen = %+v, want %d bytes and %d records (the active segment's)", got, want.Bytes, active)
	}
	drain(t, s, &collector{})
	if got := s.Stats(); got.Bytes != 0 || got.Records != 0 {
		t.Errorf("Stats after drain = %+v, want zero", got)
	}
}
