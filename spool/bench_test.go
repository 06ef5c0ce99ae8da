package spool

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkAppend measures durable appends (each returns after fsync).
// "3MB" is a 10,000-event JSON batch as one record; "500B" a single event.
// The parallel variants append from 16 goroutines, which share fsyncs;
// "draining" ones run Run with a no-op sink at the same time, whose cursor
// saves (two fsyncs per batch) compete for the disk.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name     string
		size     int
		parallel bool
		drain    bool
	}{
		{"3MB", 3 << 20, false, false},
		{"500B", 500, false, false},
		{"3MB-parallel", 3 << 20, true, false},
		{"500B-parallel", 500, true, false},
		{"3MB-parallel-draining", 3 << 20, true, true},
		{"500B-parallel-draining", 500, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := Open(b.TempDir(), Options{MaxBytes: 1 << 40, SegmentBytes: 64 << 20})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if bc.drain {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				go s.Run(ctx, func(context.Context, [][]byte) error { return nil })
			}
			payload := bytes.Repeat([]byte(`{"kind":"delivered"}`), bc.size/20+1)[:bc.size]
			b.SetBytes(int64(len(payload)))
			b.ResetTimer()
			if bc.parallel {
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := s.Append(payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for range b.N {
					if err := s.Append(payload); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkOpen measures Open of a spool whose active segment is full
// (the default 16 MiB of 500-byte records, about 32,000) behind 1 GiB of
// older segments: the time /healthz would wait at start.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	// Older segments (sparse): Open only stats them.
	for seq := 1; seq <= 64; seq++ {
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("%020d.seg", seq)))
		if err != nil {
			b.Fatal(err)
		}
		f.Truncate(DefaultSegmentBytes)
		f.Close()
	}
	rec := encodeRecord(bytes.Repeat([]byte("x"), 500))
	active := bytes.Repeat(rec, DefaultSegmentBytes/len(rec))
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%020d.seg", 65)), active, 0o640); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(active)))
	for b.Loop() {
		s, err := Open(dir, Options{MaxBytes: 2 << 30})
		if err != nil {
			b.Fatal(err)
		}
		if st := s.Stats(); st.Records != int64(DefaultSegmentBytes/len(rec)) {
			b.Fatalf("Stats = %+v", st)
		}
		s.Close()
	}
}

// BenchmarkLatency measures the time from Append to the record reaching a
// running Run's sink (the 202-to-queryable budget minus the store write).
func BenchmarkLatency(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	got := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx, func(context.Context, [][]byte) error {
		got <- struct{}{}
		return nil
	})
	payload := bytes.Repeat([]byte("x"), 500)
	for b.Loop() {
		if err := s.Append(payload); err != nil {
			b.Fatal(err)
		}
		<-got
	}
}
