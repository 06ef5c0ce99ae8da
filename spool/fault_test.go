package spool

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultyFile fails the next write (after writing half of it, as a full
// disk may) or the next fsync, on request.
type faultyFile struct {
	*os.File
	mu           sync.Mutex
	failWrite    bool
	failSync     bool
	failTruncate bool
}

func (f *faultyFile) Truncate(size int64) error {
	f.mu.Lock()
	fail := f.failTruncate
	f.mu.Unlock()
	if fail {
		return errInjected
	}
	return f.File.Truncate(size)
}

var errInjected = errors.New("injected failure")

func (f *faultyFile) WriteAt(b []byte, off int64) (int, error) {
	f.mu.Lock()
	fail := f.failWrite
	f.failWrite = false
	f.mu.Unlock()
	if fail {
		n, _ := f.File.WriteAt(b[:len(b)/2], off)
		return n, errInjected
	}
	return f.File.WriteAt(b, off)
}

func (f *faultyFile) Sync() error {
	f.mu.Lock()
	fail := f.failSync
	f.mu.Unlock()
	if fail {
		return errInjected
	}
	return f.File.Sync()
}

func injectFaults(s *Spool) *faultyFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	ff := &faultyFile{File: s.f.(*os.File)}
	s.f = ff
	return ff
}

// TestWriteFailure: a write that fails half-way (disk full) is undone, the
// Append fails, and the spool goes on as if it had not been tried.
func TestWriteFailure(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	appendN(t, s, 0, 5)
	ff := injectFaults(s)
	before := s.Stats()
	ff.failWrite = true
	if err := s.Append(payloadFor(99)); !errors.Is(err, errInjected) || !errors.Is(err, ErrDisk) {
		t.Fatalf("Append with a failing write = %v, want a disk error wrapping the write error", err)
	}
	if h := s.Health(); !errors.Is(h, errInjected) {
		t.Errorf("Health after a failed write = %v, want the write error", h)
	}
	if st := s.Stats(); st != before {
		t.Errorf("Stats after a failed Append = %+v, want unchanged %+v", st, before)
	}
	appendN(t, s, 5, 10)
	if h := s.Health(); h != nil {
		t.Errorf("Health after a durable Append = %v, want nil", h)
	}
	s.Close()

	var logs logBuffer
	s = openT(t, dir, Options{Logger: newLogger(&logs)})
	defer s.Close()
	if logs.String() != "" {
		t.Errorf("Open logged %q, want a clean segment", logs.String())
	}
	var c collector
	drain(t, s, &c)
	wantRecords(t, c.got(), 0, 10)
}

// TestHalfWrittenRecord: a write that fails half-way and cannot be cut
// off (the process dies, or the truncate fails too) leaves half a record at
// the end of the segment. The next start cuts it off and delivers every
// acknowledged record; so does the next Append, without a restart.
func TestHalfWrittenRecord(t *testing.T) {
	for _, restart := range []bool{true, false} {
		dir := t.TempDir()
		s := openT(t, dir, Options{})
		appendN(t, s, 0, 5)
		ff := injectFaults(s)
		ff.failWrite, ff.failTruncate = true, true
		if err := s.Append(payloadFor(5)); !errors.Is(err, ErrDisk) {
			t.Fatalf("Append with a failing write = %v, want a disk error", err)
		}
		ff.mu.Lock()
		ff.failTruncate = false
		ff.mu.Unlock()
		if restart {
			s.Close() // reports the unrepaired failure; the file keeps the half record
			var logs logBuffer
			s = openT(t, dir, Options{Logger: newLogger(&logs)})
			if !strings.Contains(logs.String(), "torn record") {
				t.Errorf("Open logged %q, want the torn record cut off", logs.String())
			}
		}
		appendN(t, s, 6, 8)
		var c collector
		drain(t, s, &c)
		got := c.got()
		if len(got) != 7 || string(got[4]) != string(payloadFor(4)) || string(got[5]) != string(payloadFor(6)) {
			t.Errorf("restart=%v: delivered %q, want records 0-4, 6, 7", restart, got)
		}
		s.Close()
	}
}

// TestSyncFailure: after a failed fsync the bytes not yet durable are in
// an unknown state; the Append fails (nothing acknowledged), the next one
// cuts the segment back to its durable end and goes on, without a reopen.
// What was acknowledged is delivered, exactly once, and the record whose
// fsync failed never is.
func TestSyncFailure(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	appendN(t, s, 0, 5)
	ff := injectFaults(s)
	ff.failSync = true
	err := s.Append(payloadFor(5))
	var de *DiskError
	if !errors.Is(err, errInjected) || !errors.Is(err, ErrDisk) || !errors.As(err, &de) || de.Op != "sync" {
		t.Fatalf("Append with a failing fsync = %v, want a *DiskError of op sync wrapping the fsync error", err)
	}
	if h := s.Health(); !errors.Is(h, errInjected) {
		t.Errorf("Health after a failed fsync = %v, want the fsync error", h)
	}
	// Still failing: the repair's own fsync fails, nothing is written.
	if err := s.Append(payloadFor(6)); !errors.Is(err, ErrDisk) {
		t.Fatalf("Append while fsync still fails = %v, want a disk error", err)
	}
	ff.mu.Lock()
	ff.failSync = false
	ff.mu.Unlock()
	appendN(t, s, 7, 9)
	if h := s.Health(); h != nil {
		t.Errorf("Health after a durable Append = %v, want nil", h)
	}
	if st := s.Stats(); st.Records != 7 {
		t.Errorf("Stats().Records = %d, want 7 (the cut-off record not counted)", st.Records)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}

	var logs logBuffer
	s = openT(t, dir, Options{Logger: newLogger(&logs)})
	defer s.Close()
	if logs.String() != "" {
		t.Errorf("Open logged %q, want a clean segment", logs.String())
	}
	var c collector
	drain(t, s, &c)
	got := c.got()
	want := [][]byte{}
	for _, i := range []int{0, 1, 2, 3, 4, 7, 8} {
		want = append(want, payloadFor(i))
	}
	if len(got) != len(want) {
		t.Fatalf("delivered %d records %q, want %d: 0-4, 7, 8", len(got), got, len(want))
	}
	for i := range want {
		if string(got[i]) != string(want[i]) {
			t.Errorf("record %d = %q, want %q", i, got[i], want[i])
		}
	}
}

// TestSyncFailureConcurrent: Appends racing a failing fsync, some sharing
// it (group commit); every Append that returned nil is delivered, once,
// and none that failed is.
func TestSyncFailureConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{}) // one segment: the faults apply throughout
	ff := injectFaults(s)
	const workers, each = 8, 200
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
	)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				n := w*each + i
				if n%50 == 7 {
					ff.mu.Lock()
					ff.failSync = !ff.failSync
					ff.mu.Unlock()
				}
				p := payloadFor(n)
				if err := s.Append(p); err == nil {
					mu.Lock()
					acked[string(p)] = true
					mu.Unlock()
				} else if !errors.Is(err, ErrDisk) {
					t.Errorf("Append: %v, want nil or a disk error", err)
				}
			}
		})
	}
	wg.Wait()
	ff.mu.Lock()
	ff.failSync = false
	ff.mu.Unlock()
	if err := s.Append([]byte("last")); err != nil {
		t.Fatalf("Append after the faults: %v", err)
	}
	acked["last"] = true
	if len(acked) < 2 || len(acked) >= workers*each {
		t.Fatalf("%d Appends acknowledged: the test did not exercise both outcomes", len(acked))
	}
	var c collector
	drain(t, s, &c)
	seen := map[string]int{}
	for _, p := range c.got() {
		seen[string(p)]++
	}
	for p := range acked {
		if seen[p] != 1 {
			t.Errorf("acknowledged record %.20q delivered %d times, want once", p, seen[p])
		}
	}
	for p := range seen {
		if !acked[p] {
			t.Errorf("record %.20q delivered but its Append failed", p)
		}
	}
	s.Close()
}

// TestProbe: after a failure Probe repairs and clears it without a
// client's Append; while the fault lasts it reports it.
func TestProbe(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	defer s.Close()
	if err := s.Probe(); err != nil {
		t.Fatalf("Probe of a healthy spool = %v", err)
	}
	appendN(t, s, 0, 3)
	ff := injectFaults(s)
	ff.failSync = true
	if err := s.Append(payloadFor(3)); !errors.Is(err, ErrDisk) {
		t.Fatalf("Append = %v, want a disk error", err)
	}
	if err := s.Probe(); !errors.Is(err, errInjected) {
		t.Errorf("Probe while fsync fails = %v, want the fsync error", err)
	}
	ff.mu.Lock()
	ff.failSync = false
	ff.mu.Unlock()
	if err := s.Probe(); err == nil {
		t.Errorf("Probe within a second of the last = nil, want the failure still reported (no I/O)")
	}
	s.mu.Lock()
	s.probed = time.Time{}
	s.mu.Unlock()
	if err := s.Probe(); err != nil {
		t.Errorf("Probe once the disk works = %v, want nil", err)
	}
	if h := s.Health(); h != nil {
		t.Errorf("Health after a good Probe = %v, want nil", h)
	}
	if _, err := os.Stat(dir + "/probe.tmp"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("probe file left behind: %v", err)
	}
	appendN(t, s, 4, 6)
	var c collector
	drain(t, s, &c)
	if got := c.got(); len(got) != 5 || string(got[3]) != string(payloadFor(4)) {
		t.Errorf("delivered %q, want records 0-2, 4, 5", got)
	}
}
