package spool

import (
	"errors"
	"os"
	"sync"
	"testing"
)

// faultyFile fails the next write (after writing half of it, as a full
// disk may) or the next fsync, on request.
type faultyFile struct {
	*os.File
	mu        sync.Mutex
	failWrite bool
	failSync  bool
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
	if err := s.Append(payloadFor(99)); !errors.Is(err, errInjected) {
		t.Fatalf("Append with a failing write = %v, want the write error", err)
	}
	if st := s.Stats(); st != before {
		t.Errorf("Stats after a failed Append = %+v, want unchanged %+v", st, before)
	}
	appendN(t, s, 5, 10)
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

// TestSyncFailure: after a failed fsync the file's state is unknown, so
// every later Append fails until the spool is reopened; what was
// acknowledged before is still delivered.
func TestSyncFailure(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	appendN(t, s, 0, 5)
	ff := injectFaults(s)
	ff.failSync = true
	if err := s.Append(payloadFor(5)); !errors.Is(err, errInjected) {
		t.Fatalf("Append with a failing fsync = %v, want the fsync error", err)
	}
	ff.mu.Lock()
	ff.failSync = false
	ff.mu.Unlock()
	if err := s.Append(payloadFor(6)); !errors.Is(err, errInjected) {
		t.Fatalf("Append after a failed fsync = %v, want the sticky error", err)
	}
	if err := s.Close(); !errors.Is(err, errInjected) {
		t.Errorf("Close after a failed fsync = %v, want the sticky error", err)
	}

	s = openT(t, dir, Options{})
	defer s.Close()
	appendN(t, s, 7, 8)
	var c collector
	drain(t, s, &c)
	// Record 5 was written but not acknowledged: it may come (the
	// client retries it, the store collapses the duplicate).
	got := c.got()
	wantRecords(t, got[:5], 0, 5)
	if rest := got[5:]; len(rest) != 1 && len(rest) != 2 || string(rest[len(rest)-1]) != string(payloadFor(7)) {
		t.Errorf("after the acknowledged records got %q, want [record 5] and record 7", rest)
	}
}
