package ingest

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// loadCorpus reads every labelled file of the bounce corpus into memory.
func loadCorpus(b *testing.B) (msgs [][]byte, total int64) {
	b.Helper()
	dir := corpusRoot(b)
	for _, l := range loadLabels(b, dir) {
		raw, err := os.ReadFile(filepath.Join(dir, l.File))
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, raw)
		total += int64(len(raw))
	}
	if len(msgs) == 0 {
		b.Fatal("empty corpus")
	}
	return msgs, total
}

// BenchmarkParseCorpus parses the whole corpus per iteration, on one
// goroutine and in parallel. It reports messages per second, MB/s (of
// message bytes) and bytes allocated per message.
//
//	go test -run '^$' -bench ParseCorpus -benchmem ./ingest/
func BenchmarkParseCorpus(b *testing.B) {
	msgs, total := loadCorpus(b)
	report := func(b *testing.B, parsed int) {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(parsed)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(total)
		b.ReportAllocs()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		n := 0
		for b.Loop() {
			for _, m := range msgs {
				if _, err := ParseBytes(m); err != nil && len(m) == 0 {
					b.Fatal(err)
				}
			}
			n += len(msgs)
		}
		runtime.ReadMemStats(&after)
		report(b, n)
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n), "B/msg")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(total)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				for _, m := range msgs {
					ParseBytes(m)
				}
			}
		})
		report(b, b.N*len(msgs))
	})
}
