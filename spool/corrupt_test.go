package spool

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordOffsets returns the offset of every record in a segment file
// written by appendN (which the test knows to be valid).
func recordOffsets(t *testing.T, path string) []int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var offs []int64
	for off := 0; off < len(b); {
		offs = append(offs, int64(off))
		off += headerSize + int(binary.BigEndian.Uint32(b[off+4:off+8]))
	}
	return offs
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func appendBytes(t *testing.T, path string, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func quarantineFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.quarantine"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// logBuffer is a concurrency-safe sink for a text slog.Logger.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newLogger(b *logBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, nil))
}

func TestTornTail(t *testing.T) {
	full := encodeRecord(payloadFor(1000))
	badCRC := bytes.Clone(full)
	badCRC[len(badCRC)-1] ^= 1
	tails := map[string][]byte{
		"short magic":      []byte(magic[:2]),
		"short header":     full[:headerSize-3],
		"header only":      full[:headerSize],
		"short payload":    full[:len(full)-5],
		"bad checksum":     badCRC,
		"zeros":            make([]byte, 4096),
		"bad then garbage": append(bytes.Clone(badCRC), "garbage"...),
	}
	for name, tail := range tails {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, Options{})
			appendN(t, s, 0, 20)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			seg := segmentFiles(t, dir)[0]
			size := fileSize(t, seg)
			appendBytes(t, seg, tail)

			var logs logBuffer
			s = openT(t, dir, Options{Logger: newLogger(&logs)})
			defer s.Close()
			if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "torn") {
				t.Errorf("log %q, want a warning about the torn record", l)
			}
			if got := fileSize(t, seg); got != size {
				t.Errorf("segment is %d bytes after Open, want the valid prefix of %d", got, size)
			}
			if st := s.Stats(); st.Records != 20 || st.Quarantined != 0 {
				t.Errorf("Stats = %+v, want 20 records, nothing quarantined", st)
			}
			appendN(t, s, 20, 25)
			var c collector
			drain(t, s, &c)
			wantRecords(t, c.got(), 0, 25)
			if q := quarantineFiles(t, dir); len(q) != 0 {
				t.Errorf("quarantine files %v, want none for a torn tail", q)
			}
		})
	}
}

// TestTornLastRecord damages the last acknowledged record itself: with
// nothing valid after it, it cannot be told from a torn write and is cut.
func TestTornLastRecord(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	appendN(t, s, 0, 10)
	s.Close()
	seg := segmentFiles(t, dir)[0]
	offs := recordOffsets(t, seg)
	flipByte(t, seg, offs[9]+headerSize+2)

	s = openT(t, dir, Options{})
	defer s.Close()
	if got := fileSize(t, seg); got != offs[9] {
		t.Errorf("segment is %d bytes after Open, want %d", got, offs[9])
	}
	var c collector
	drain(t, s, &c)
	wantRecords(t, c.got(), 0, 9)
}

func TestCorruptMiddle(t *testing.T) {
	cases := []struct {
		name   string
		at     int64 // offset within record 7
		reason string
	}{
		{"payload", headerSize + 3, "bad checksum"},
		{"magic", 1, "bad magic"},
		{"length", 6, "length past the end"},
		{"checksum", 9, "bad checksum"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openT(t, dir, Options{})
			appendN(t, s, 0, 20)
			s.Close()
			seg := segmentFiles(t, dir)[0]
			size := fileSize(t, seg)
			offs := recordOffsets(t, seg)
			orig, _ := os.ReadFile(seg)
			flipByte(t, seg, offs[7]+tc.at)

			var logs logBuffer
			s = openT(t, dir, Options{Logger: newLogger(&logs)})
			defer s.Close()
			if got := fileSize(t, seg); got != size {
				t.Fatalf("Open cut the segment to %d bytes, want it kept at %d", got, size)
			}
			var c collector
			drain(t, s, &c)
			got := c.got()
			wantRecords(t, got[:7], 0, 7)
			wantRecords(t, got[7:], 8, 20)
			checkQuarantine(t, dir, s, 1, tc.reason, orig[offs[7]:offs[8]], offs[7], 0x40)
			if l := logs.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, "quarantined") {
				t.Errorf("log %q, want an error about the quarantined record", l)
			}
		})
	}
}

// checkQuarantine checks there are n quarantine files and that the first
// holds the reason and the damaged bytes: want with the byte that differs
// xor-ed by flip.
func checkQuarantine(t *testing.T, dir string, s *Spool, n int64, reason string, want []byte, off int64, flip byte) {
	t.Helper()
	if st := s.Stats(); st.Quarantined != n {
		t.Errorf("Stats.Quarantined = %d, want %d", st.Quarantined, n)
	}
	q := quarantineFiles(t, dir)
	if int64(len(q)) != n {
		t.Fatalf("quarantine files %v, want %d", q, n)
	}
	b, err := os.ReadFile(q[0])
	if err != nil {
		t.Fatal(err)
	}
	line, raw, _ := bytes.Cut(b, []byte("\n"))
	if !strings.Contains(string(line), "reason="+reason) || !strings.Contains(string(line), "offset="+strconv.FormatInt(off, 10)) {
		t.Errorf("quarantine header %q, want reason=%s offset=%d", line, reason, off)
	}
	if len(raw) != len(want) {
		t.Fatalf("quarantined %d bytes, want %d", len(raw), len(want))
	}
	diff := 0
	for i := range raw {
		if raw[i] != want[i] {
			diff++
			if raw[i] != want[i]^flip {
				t.Errorf("quarantined byte %d = %#x, want %#x", i, raw[i], want[i]^flip)
			}
		}
	}
	if diff != 1 {
		t.Errorf("quarantined bytes differ from the original in %d places, want 1", diff)
	}
}

// TestCorruptOlderSegment damages a record in the middle of the first
// segment and the last record of the second: both are quarantined when Run
// reaches them (Open does not read old segments) and everything else is
// delivered.
func TestCorruptOlderSegment(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{SegmentBytes: 1500})
	appendN(t, s, 0, 100)
	s.Close()
	segs := segmentFiles(t, dir)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want at least 4", len(segs))
	}
	first, second := recordOffsets(t, segs[0]), recordOffsets(t, segs[1])
	orig, _ := os.ReadFile(segs[0])
	flipByte(t, segs[0], first[3]+headerSize+1)
	flipByte(t, segs[1], second[len(second)-1]+headerSize)
	lost := []int{3, len(first) + len(second) - 1} // record numbers

	s = openT(t, dir, Options{SegmentBytes: 1500})
	defer s.Close()
	var c collector
	drain(t, s, &c)
	got := c.got()
	var want [][]byte
	for i := range 100 {
		if i != lost[0] && i != lost[1] {
			want = append(want, payloadFor(i))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d = %.30q, want %.30q", i, got[i], want[i])
		}
	}
	checkQuarantine(t, dir, s, 2, "bad checksum", orig[first[3]:first[4]], first[3], 0x40)
}

// TestQuarantineOnce stops Run after it quarantined a record but before
// the cursor passed it (the sink fails): the next run finds the file and
// neither copies nor counts the bytes again.
func TestQuarantineOnce(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, Options{})
	appendN(t, s, 0, 10)
	s.Close()
	seg := segmentFiles(t, dir)[0]
	offs := recordOffsets(t, seg)
	flipByte(t, seg, offs[2]+headerSize)

	s = openT(t, dir, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	c := collector{failN: 1 << 30}
	done := make(chan error)
	go func() { done <- s.Run(ctx, c.sink) }()
	for s.Stats().Quarantined == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openT(t, dir, Options{})
	defer s.Close()
	if st := s.Stats(); st.Quarantined != 1 {
		t.Errorf("Stats.Quarantined after reopen = %d, want 1", st.Quarantined)
	}
	var c2 collector
	drain(t, s, &c2)
	got := c2.got()
	wantRecords(t, got[:2], 0, 2)
	wantRecords(t, got[2:], 3, 10)
	if st := s.Stats(); st.Quarantined != 1 {
		t.Errorf("Stats.Quarantined after drain = %d, want 1", st.Quarantined)
	}
}
