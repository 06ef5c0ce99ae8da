package spool

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrDisk is matched (errors.Is) by every *DiskError: the disk refused a
// write or an fsync of the spool.
var ErrDisk = errors.New("spool: disk write failed")

// DiskError is a failed write, fsync or file creation in the spool's
// directory: a full disk (ENOSPC, EDQUOT) or an I/O error (EIO). The
// record being appended was not acknowledged.
type DiskError struct {
	Dir  string // the spool directory
	Op   string // "write", "sync", "create", "sync directory", "repair"
	Path string // the file (or directory) operated on
	Err  error  // the system's error
}

func (e *DiskError) Error() string {
	cause := "disk write failed"
	switch {
	case errors.Is(e.Err, syscall.ENOSPC):
		cause = "disk full"
	case errors.Is(e.Err, syscall.EDQUOT):
		cause = "disk quota exceeded"
	case errors.Is(e.Err, syscall.EIO):
		cause = "disk I/O error"
	}
	return fmt.Sprintf("spool: %s at %s (%s %s: %v)", cause, e.Dir, e.Op, filepath.Base(e.Path), errnoOf(e.Err))
}

// Unwrap makes a DiskError match ErrDisk and its system error
// (syscall.ENOSPC, ...).
func (e *DiskError) Unwrap() []error { return []error{ErrDisk, e.Err} }

// errnoOf is err's system error when it has one (without the operation and
// path that DiskError names already), else err.
func errnoOf(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// isNoSpace reports whether err says the disk (or the quota) is full.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

func (s *Spool) diskError(op, path string, err error) *DiskError {
	return &DiskError{Dir: s.dir, Op: op, Path: path, Err: err}
}

// fail records a disk failure for Health (mu held); the first of a run of
// failures is logged, not every refused Append.
func (s *Spool) fail(err error) {
	if s.failure == nil {
		s.log.Error("spool: disk failure: appends are refused until the disk takes writes again", "err", err)
	}
	s.failure = err
}

// recovered clears the failure after a durable write (mu held).
func (s *Spool) recovered() {
	if s.failure != nil {
		s.log.Info("spool: the disk takes writes again", "after", s.failure)
		s.failure = nil
	}
}

// repair cuts the active segment back to its durable end (syncedTo) and
// makes that durable, after a failed fsync or a failed write that could not
// be undone, so that appending can go on (mu held, no fsync in flight).
// The bytes cut off were never acknowledged: their Appends failed or are
// waiting and are told (waiter.cut). Retrying the fsync instead would not
// do: after a failed fsync Linux may have marked the unwritten pages clean,
// so a second fsync reports success for data that never reached the disk
// (https://wiki.postgresql.org/wiki/Fsync_Errors). What was made durable
// before the failure is left alone.
func (s *Spool) repair() error {
	off := s.syncedTo.off
	err := s.f.Truncate(off)
	if err == nil {
		err = s.f.Sync()
	}
	if err != nil {
		derr := s.diskError("repair", s.segPath(s.active()), err)
		s.fail(derr)
		return derr
	}
	s.log.Warn("spool: cut the active segment back to its durable end after a failed write",
		"segment", s.active(), "offset", off, "bytes", s.size-off, "records", s.written-s.syncedWritten, "after", s.err)
	s.bytes -= s.size - off
	s.records = max(s.records-(s.written-s.syncedWritten), 0)
	s.written = s.syncedWritten
	s.size = off
	cut := pos{seq: s.active(), off: off}
	for w := range s.waiters {
		if cut.less(w.end) {
			w.cut = s.err
		}
	}
	s.err = nil
	s.synced.Broadcast()
	return nil
}

// sealDrained seals the active segment when it is wholly drained (mu
// held), on a full disk: only sealed segments are deleted by the drain, so
// a drained active segment would otherwise hold its space until the next
// rotation, which the full disk prevents. Once sealed, Run moves the
// cursor past it and deletes it, and the space returns without help.
func (s *Spool) sealDrained() {
	if s.size == 0 || s.syncing || s.err != nil || s.cursor != (pos{seq: s.active(), off: s.size}) {
		return
	}
	if err := s.rotate(); err == nil {
		s.log.Info("spool: sealed the drained active segment so that the drain deletes it (disk full)", "segment", s.active()-1)
		s.wake()
	}
}

// Health returns the disk failure that refused the last Append, or nil
// when the last Append (or Probe) succeeded: what /readyz reports.
func (s *Spool) Health() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// minProbe and maxProbe bound what Probe writes: the size of the record
// that failed, so that readiness returns when that write would succeed.
const (
	minProbe = 64 << 10
	maxProbe = 32 << 20
)

// probeEvery bounds how often Probe touches the disk: it may be called on
// every /readyz request.
const probeEvery = time.Second

// Probe checks, after a disk failure, whether the spool can write again,
// so that readiness recovers without waiting for a client's write: it
// repairs the active segment if needed, then writes and fsyncs a probe file
// in the spool directory, as large as the record that failed (64 KiB to 32
// MiB), and removes it. On success the failure
// is cleared and nil returned; otherwise the failure is returned. Without
// a failure, or within a second of the last try, it does no I/O and
// returns Health.
func (s *Spool) Probe() error {
	s.mu.Lock()
	failure := s.failure
	if failure == nil || s.closed || time.Since(s.probed) < probeEvery {
		s.mu.Unlock()
		return failure
	}
	s.probed = time.Now()
	size := min(max(s.failedBytes, minProbe), maxProbe)
	for s.syncing {
		s.synced.Wait()
	}
	if s.err != nil {
		if err := s.repair(); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	s.mu.Unlock()

	err := writeProbe(filepath.Join(s.dir, "probe.tmp"), size)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		// Append may have failed or succeeded meanwhile: report its
		// verdict if it succeeded, else the probe's.
		if s.failure == nil {
			return nil
		}
		s.failure = s.diskError("probe", filepath.Join(s.dir, "probe.tmp"), err)
		if isNoSpace(err) {
			s.sealDrained()
		}
		return s.failure
	}
	if s.failure == failure {
		s.recovered()
	}
	return s.failure
}

// writeProbe writes size bytes to path, fsyncs it and removes it. (Load
// removes a probe.tmp a crash left, as every *.tmp.)
func writeProbe(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, size))
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if rerr := os.Remove(path); err == nil {
		err = rerr
	}
	return err
}
