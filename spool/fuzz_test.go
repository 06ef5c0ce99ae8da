package spool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzRecover puts arbitrary bytes between valid records of an old segment
// and after the valid records of the active one, then opens and drains the
// spool. Whatever the bytes, nothing may be lost without a trace: every
// byte is delivered in a record, quarantined, or (only at the end of the
// active segment) cut off as a torn tail; the valid records before the
// garbage and the records of the next segment are delivered.
func FuzzRecover(f *testing.F) {
	full := encodeRecord([]byte(`{"n":"x"}`))
	badCRC := bytes.Clone(full)
	badCRC[len(badCRC)-1] ^= 1
	for _, seed := range [][]byte{
		nil, {0}, make([]byte, 100), []byte(magic), full, full[:7], full[:len(full)-1], badCRC,
		append(bytes.Clone(badCRC), full...), append(append(bytes.Clone(full), 0, 0), full...),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, garbage []byte) {
		var before, after, next []byte
		var want [][]byte
		for i := range 3 {
			p := fmt.Appendf(nil, "before %d", i)
			before = append(before, encodeRecord(p)...)
			want = append(want, p)
		}
		after = encodeRecord([]byte("after"))
		next = encodeRecord([]byte("next"))

		dir := t.TempDir()
		old := bytes.Join([][]byte{before, garbage, after}, nil)
		active := bytes.Join([][]byte{next, before, garbage}, nil)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", 1)), old, 0o640); err != nil {
			t.Fatal(err)
		}
		activePath := filepath.Join(dir, fmt.Sprintf("%020d.seg", 2))
		if err := os.WriteFile(activePath, active, 0o640); err != nil {
			t.Fatal(err)
		}

		s := openT(t, dir, Options{})
		defer s.Close()
		cut := int64(len(active)) - fileSize(t, activePath)
		if cut < 0 || cut > int64(len(garbage)) {
			t.Fatalf("Open cut %d bytes, want at most the %d of garbage", cut, len(garbage))
		}
		var c collector
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx, c.sink) }()
		fctx, fcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer fcancel()
		if err := s.Flush(fctx); err != nil {
			t.Fatalf("Flush: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}

		got := c.got()
		if len(got) < 2*len(want)+1 {
			t.Fatalf("got %d records, want at least %d", len(got), 2*len(want)+1)
		}
		for i, p := range want {
			if !bytes.Equal(got[i], p) {
				t.Fatalf("record %d = %q, want %q", i, got[i], p)
			}
		}
		delivered := int64(0)
		for _, p := range got {
			delivered += int64(headerSize + len(p))
		}
		quarantined := int64(0)
		for _, q := range quarantineFiles(t, dir) {
			b, err := os.ReadFile(q)
			if err != nil {
				t.Fatal(err)
			}
			_, raw, _ := bytes.Cut(b, []byte("\n"))
			quarantined += int64(len(raw))
		}
		if total := int64(len(old) + len(active)); delivered+quarantined+cut != total {
			t.Errorf("%d bytes delivered + %d quarantined + %d cut = %d, want all %d",
				delivered, quarantined, cut, delivered+quarantined+cut, total)
		}
		if st := s.Stats(); st.Bytes != 0 || st.Records != 0 {
			t.Errorf("Stats after drain = %+v, want nothing undrained", st)
		}
	})
}
