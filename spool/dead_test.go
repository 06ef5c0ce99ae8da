package spool

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// refuser is a sink that refuses, for good, the payloads for which refuse
// is true, and delivers the rest of each batch.
type refuser struct {
	collector
	refuse func(p []byte) bool
}

func (r *refuser) sink(ctx context.Context, payloads [][]byte) error {
	var ref []Refusal
	var ok [][]byte
	for i, p := range payloads {
		if r.refuse(p) {
			ref = append(ref, Refusal{Index: i, Part: 2, Payload: p, Attempts: 3, Err: errors.New("store: bad data")})
			continue
		}
		ok = append(ok, p)
	}
	if err := r.collector.sink(ctx, ok); err != nil {
		return err
	}
	if ref != nil {
		return &RefusedError{Refused: ref}
	}
	return nil
}

// drainWith runs s with sink until everything appended so far is drained.
func drainWith(t *testing.T, s *Spool, sink func(context.Context, [][]byte) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx, sink) }()
	fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v (a refused record must not block the drain)", err)
	}
	cancel()
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func TestRefusedGoesToDeadLetter(t *testing.T) {
	dir := t.TempDir()
	var logs logBuffer
	s := openT(t, dir, Options{SegmentBytes: 1000, BatchRecords: 7, Logger: newLogger(&logs)})
	appendN(t, s, 0, 50)
	bad := map[string]bool{string(payloadFor(3)): true, string(payloadFor(31)): true}
	r := &refuser{refuse: func(p []byte) bool { return bad[string(p)] }}
	drainWith(t, s, r.sink)

	got := r.got()
	if len(got) != 48 {
		t.Errorf("delivered %d records, want the 48 not refused", len(got))
	}
	if st := s.Stats(); st.Dead != 2 || st.Records != 0 {
		t.Errorf("Stats = %+v, want 2 dead and nothing undrained", st)
	}
	dead, err := ReadDead(dir)
	if err != nil || len(dead) != 2 {
		t.Fatalf("ReadDead = %d records, %v; want 2", len(dead), err)
	}
	for i, n := range []int{3, 31} {
		d := dead[i]
		if !bytes.Equal(d.Payload, payloadFor(n)) || d.Error != "store: bad data" || d.Attempts != 3 || d.Part != 2 ||
			d.Segment == 0 || time.Since(d.Time) > time.Minute {
			t.Errorf("dead record %d = %+v, want record %d with its error, attempts, part and position", i, d, n)
		}
	}
	if strings.Count(logs.String(), "dead-letter file") != 2 || !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("log %q, want one error per dead-lettered record", logs.String())
	}
	s.Close()

	// The count survives a restart; nothing is replayed.
	s = openT(t, dir, Options{})
	defer s.Close()
	if st := s.Stats(); st.Dead != 2 || st.Records != 0 {
		t.Errorf("Stats after reopen = %+v, want 2 dead, 0 records", st)
	}
}

// A crash after the dead-letter file and before the cursor: the same
// refusal on replay keeps the file and does not count it twice.
func TestDeadLetterOnce(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	appendN(t, s, 0, 3)
	b, err := (&reader{s: s}).read()
	if err != nil {
		t.Fatal(err)
	}
	ref := []Refusal{{Index: 1, Part: 2, Payload: b.payloads[1], Err: errors.New("bad")}}
	if err := s.deadLetter(b, ref); err != nil {
		t.Fatal(err)
	}
	s.Close() // no cursor saved: a crash

	var logs logBuffer
	s = openT(t, dir, Options{Logger: newLogger(&logs)})
	defer s.Close()
	r := &refuser{refuse: func(p []byte) bool { return bytes.Equal(p, payloadFor(1)) }}
	drainWith(t, s, r.sink)
	if st := s.Stats(); st.Dead != 1 {
		t.Errorf("Stats.Dead = %d, want 1", st.Dead)
	}
	if !strings.Contains(logs.String(), "dead-lettered before") {
		t.Errorf("log %q, want the replayed refusal named as dead-lettered before", logs.String())
	}
	files, _ := filepath.Glob(filepath.Join(dir, DeadDir, "*.json"))
	if len(files) != 1 {
		t.Errorf("dead-letter files %v, want 1", files)
	}
}

func TestDeadLetterFailureRetries(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	defer s.Close()
	appendN(t, s, 0, 3)
	// A file where the dead-letter directory goes: writing fails, the
	// records stay.
	if err := os.WriteFile(filepath.Join(dir, DeadDir), nil, 0o640); err != nil {
		t.Fatal(err)
	}
	r := &refuser{refuse: func(p []byte) bool { return bytes.Equal(p, payloadFor(1)) }}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx, r.sink) }()
	time.Sleep(50 * time.Millisecond)
	if st := s.Stats(); st.Records != 3 || st.Dead != 0 {
		t.Errorf("Stats with an unwritable dead-letter directory = %+v, want 3 records kept, 0 dead", st)
	}
	os.Remove(filepath.Join(dir, DeadDir))
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush after the directory is fixed: %v", err)
	}
	cancel()
	<-runErr
	if st := s.Stats(); st.Dead != 1 {
		t.Errorf("Stats.Dead = %d, want 1", st.Dead)
	}
}

func TestReadDeadNone(t *testing.T) {
	if d, err := ReadDead(t.TempDir()); d != nil || err != nil {
		t.Errorf("ReadDead of a spool with no dead letters = %v, %v; want nil, nil", d, err)
	}
}

func TestUndrained(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentBytes: 1000, BatchRecords: 5})
	appendN(t, s, 0, 40)
	// Drain some, by hand: one batch.
	b, err := (&reader{s: s}).read()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.advance(b); err != nil {
		t.Fatal(err)
	}
	drained := len(b.payloads)
	s.Close()

	s = openT(t, dir, Options{SegmentBytes: 1000})
	defer s.Close()
	var got [][]byte
	if err := s.Undrained(func(p []byte) error {
		got = append(got, bytes.Clone(p))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantRecords(t, got, drained, 40)
	// It moves nothing: Run still delivers them all.
	var c collector
	drain(t, s, &c)
	wantRecords(t, c.got(), drained, 40)

	stop := errors.New("stop")
	appendN(t, s, 40, 42)
	if err := s.Undrained(func([]byte) error { return stop }); err != stop {
		t.Errorf("Undrained = %v, want fn's error", err)
	}
}

// After a failed sink the batch is read again, with what was appended
// meanwhile.
func TestRetryReadsAppendedRecords(t *testing.T) {
	s := openT(t, t.TempDir(), Options{})
	defer s.Close()
	appendN(t, s, 0, 1)
	failed := make(chan struct{})
	var (
		mu    sync.Mutex
		sizes []int
	)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() {
		runErr <- s.Run(ctx, func(ctx context.Context, payloads [][]byte) error {
			mu.Lock()
			defer mu.Unlock()
			sizes = append(sizes, len(payloads))
			if len(payloads) < 2 {
				if len(sizes) == 1 {
					close(failed)
				}
				return errors.New("cannot judge a lone record")
			}
			return nil
		})
	}()
	<-failed
	appendN(t, s, 1, 2)
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	cancel()
	<-runErr
	mu.Lock()
	defer mu.Unlock()
	if sizes[len(sizes)-1] != 2 {
		t.Errorf("sink calls got %v payloads, want the last call with both records", sizes)
	}
}
