package spool

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"repute/internal/smallfs"
)

// TestDiskFull fills a real 2 MiB file system with the spool while nothing
// drains it (the store is down): Append fails with a disk error naming
// ENOSPC and the directory, nothing partial is left. Then the store comes
// back: the drain delivers every acknowledged record, frees the drained
// segments (saving its cursor on the full disk), and Append resumes by
// itself, without a reopen.
func TestDiskFull(t *testing.T) {
	dir := filepath.Join(smallfs.Mount(t, 2<<20), "spool")
	s := openT(t, dir, Options{SegmentBytes: 128 << 10})
	defer s.Close()

	payload := func(i int) []byte {
		p := make([]byte, 8<<10)
		copy(p, payloadFor(i))
		return p
	}
	acked := 0
	var err error
	for ; acked < 1000; acked++ {
		if err = s.Append(payload(acked)); err != nil {
			break
		}
	}
	var de *DiskError
	if !errors.As(err, &de) || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrDisk) {
		t.Fatalf("Append on a full disk after %d records = %v, want a *DiskError wrapping ENOSPC", acked, err)
	}
	if msg := err.Error(); !strings.Contains(msg, "disk full at "+dir) {
		t.Errorf("error %q does not say the disk is full at %s", msg, dir)
	}
	if h := s.Health(); h == nil || !strings.Contains(h.Error(), "disk full") {
		t.Errorf("Health = %v, want the disk-full error", h)
	}
	if st := s.Stats(); st.Records != int64(acked) {
		t.Errorf("Stats().Records = %d, want the %d acknowledged", st.Records, acked)
	}

	var c collector
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- s.Run(ctx, c.sink) }()
	deadline := time.Now().Add(20 * time.Second)
	next := acked
	for {
		if err := s.Append(payload(next)); err == nil {
			next++
			break
		} else if !errors.Is(err, ErrDisk) {
			t.Fatalf("Append while the drain frees the disk: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Append still failing 20 s after the drain started: %v (free: %d bytes)", s.Health(), smallfs.Free(t, dir))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if h := s.Health(); h != nil {
		t.Errorf("Health after a durable Append = %v, want nil", h)
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	cancel()
	<-runDone
	got := c.got()
	if len(got) != next {
		t.Fatalf("delivered %d records, want %d", len(got), next)
	}
	for i, p := range got {
		if string(p) != string(payload(i)) {
			t.Fatalf("record %d is not the %dth appended", i, i)
		}
	}
}

// TestDiskFullDrainedSegment: the store keeps up, but the active segment,
// drained, has grown to fill the disk (segments are larger than the file
// system). A write refused for lack of space seals it, the drain deletes
// it, and Append resumes by itself.
func TestDiskFullDrainedSegment(t *testing.T) {
	dir := filepath.Join(smallfs.Mount(t, 1<<20), "spool")
	s := openT(t, dir, Options{}) // 16 MiB segments on a 1 MiB disk
	defer s.Close()
	var c collector
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, c.sink)

	p := make([]byte, 8<<10)
	n, failed := 0, 0
	deadline := time.Now().Add(20 * time.Second)
	for n < 400 { // about 3 MiB through a 1 MiB disk
		if err := s.Append(p); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Append: %v, want nil or ENOSPC", err)
			}
			failed++
			if time.Now().After(deadline) {
				t.Fatalf("Append refused for 20 s after %d records: %v", n, err)
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		n++
	}
	if failed == 0 {
		t.Fatalf("no Append was refused: the disk never filled")
	}
	fctx, fcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer fcancel()
	if err := s.Flush(fctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if got := len(c.got()); got != n {
		t.Errorf("delivered %d records, want the %d acknowledged", got, n)
	}
	t.Logf("%d records through a 1 MiB disk, %d Appends refused on the way", n, failed)
}
