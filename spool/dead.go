package spool

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// DeadDir is the subdirectory of a spool that holds dead-letter files.
const DeadDir = "dead"

// Refusal names a part of one payload that the sink can never deliver.
type Refusal struct {
	// Index is the payload's index in the batch passed to the sink.
	Index int
	// Part is the sink's own index of the refused part within the payload
	// (an event in a batch of events); 0 when the whole payload is refused.
	Part int
	// Payload is the bytes set aside: the payload, or the refused part of
	// it in the sink's encoding.
	Payload []byte
	// Attempts is how many times the sink tried to deliver it.
	Attempts int
	// Err is why it was refused (the store's last error).
	Err error
}

// RefusedError, returned by a sink, says that the batch is delivered
// except for the refused parts: Run writes each to a dead-letter file and
// moves on, as after a nil error. A sink returns it only for what it can
// never deliver, never because the store is down.
type RefusedError struct {
	Refused []Refusal
}

func (e *RefusedError) Error() string {
	if len(e.Refused) == 1 {
		return fmt.Sprintf("spool: 1 record refused: %v", e.Refused[0].Err)
	}
	return fmt.Sprintf("spool: %d records refused", len(e.Refused))
}

// DeadRecord is one dead-letter file: a part of a record the sink refused
// for good, set aside so that the records after it are drained.
//
// On disk it is "dead/%020d-%020d-%06d.json" (segment, offset, part) in the
// spool directory, holding this struct as one JSON object and a newline;
// Payload is base64 in JSON.
type DeadRecord struct {
	// Time is when the record was set aside.
	Time time.Time `json:"time"`
	// Segment and Offset are the position of the spool record it came
	// from; Part the sink's index of it within that record.
	Segment uint64 `json:"segment"`
	Offset  int64  `json:"offset"`
	Part    int    `json:"part"`
	// Attempts is how many times the sink tried to deliver it.
	Attempts int `json:"attempts"`
	// Error is the sink's last error for it.
	Error string `json:"error"`
	// Payload is the refused bytes, in the sink's encoding.
	Payload []byte `json:"payload"`
}

func deadName(seq uint64, off int64, part int) string {
	return fmt.Sprintf("%020d-%020d-%06d.json", seq, off, part)
}

// countDead returns the number of dead-letter files in the spool directory
// dir and removes temporary files left by a crash.
func countDead(dir string) (int64, error) {
	entries, err := os.ReadDir(filepath.Join(dir, DeadDir))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	var n int64
	for _, e := range entries {
		switch name := e.Name(); {
		case strings.HasSuffix(name, ".json"):
			n++
		case strings.HasSuffix(name, ".tmp"):
			os.Remove(filepath.Join(dir, DeadDir, name))
		}
	}
	return n, nil
}

// ReadDead reads the dead-letter files of the spool in dir, in spool
// order. It takes no lock: a file is renamed into place once complete, so
// it may run beside the process that owns the spool. A file it cannot read
// is reported in the error, after the others; none at all is no error.
func ReadDead(dir string) ([]DeadRecord, error) {
	deadDir := filepath.Join(dir, DeadDir)
	entries, err := os.ReadDir(deadDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	var (
		out  []DeadRecord
		errs []error
	)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(deadDir, e.Name()))
		if err != nil {
			errs = append(errs, fmt.Errorf("spool: %w", err))
			continue
		}
		var d DeadRecord
		if err := json.Unmarshal(b, &d); err != nil {
			errs = append(errs, fmt.Errorf("spool: dead-letter file %s: %w", filepath.Join(deadDir, e.Name()), err))
			continue
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b DeadRecord) int {
		return cmp.Or(cmp.Compare(a.Segment, b.Segment), cmp.Compare(a.Offset, b.Offset), cmp.Compare(a.Part, b.Part))
	})
	return out, errors.Join(errs...)
}

// deadLetter writes a dead-letter file for each refusal of batch b. A file
// left by an earlier run for the same part (a crash before the cursor
// passed it) is kept.
func (s *Spool) deadLetter(b *batch, refused []Refusal) error {
	if len(refused) == 0 {
		return nil
	}
	dir := filepath.Join(s.dir, DeadDir)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("spool: dead letter: %w", err)
	}
	if err := syncDir(s.dir); err != nil {
		return err
	}
	now := time.Now().UTC()
	for _, r := range refused {
		if r.Index < 0 || r.Index >= len(b.offsets) {
			return fmt.Errorf("spool: sink refused payload %d of a batch of %d", r.Index, len(b.offsets))
		}
		d := DeadRecord{
			Time: now, Segment: b.from.seq, Offset: b.offsets[r.Index], Part: r.Part,
			Attempts: r.Attempts, Payload: r.Payload,
		}
		if r.Err != nil {
			d.Error = r.Err.Error()
		}
		path := filepath.Join(dir, deadName(d.Segment, d.Offset, d.Part))
		attrs := []any{"segment", d.Segment, "offset", d.Offset, "part", d.Part, "attempts", d.Attempts,
			"bytes", len(d.Payload), "err", d.Error, "file", path}
		if _, err := os.Stat(path); err == nil {
			s.log.Error("spool: skipping a record dead-lettered before", attrs...)
			continue
		}
		if err := writeDead(path, d); err != nil {
			return err
		}
		s.mu.Lock()
		s.dead++
		s.mu.Unlock()
		s.log.Error("spool: record refused for good, moved to a dead-letter file", attrs...)
	}
	return syncDir(dir)
}

// writeDead writes d to path atomically (a temporary file, fsync, rename).
func writeDead(path string, d DeadRecord) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("spool: dead letter: %w", err)
	}
	b = append(b, '\n')
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("spool: dead letter: %w", err)
	}
	_, err = f.Write(b)
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
		return fmt.Errorf("spool: dead letter: %w", err)
	}
	return nil
}
