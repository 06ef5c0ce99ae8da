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
		b.ReportMetric(float64(parsed)/b.Elapsed().Seconds(), "msgs/s")
	}
	b.Run("serial", func(b *testing.B) {
		b.SetBytes(total)
		b.ReportAllocs()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		cpu0 := processCPU()
		n := 0
		for b.Loop() {
			for _, m := range msgs {
				if _, err := ParseBytes(m); err != nil && len(m) == 0 {
					b.Fatal(err)
				}
			}
			n += len(msgs)
		}
		cpu := processCPU() - cpu0
		runtime.ReadMemStats(&after)
		report(b, n)
		if cpu > 0 {
			// Messages per second of CPU time (GC included): the
			// figure to compare when other processes share the cores.
			b.ReportMetric(float64(n)/cpu.Seconds(), "msgs/cpu-s")
		}
		b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(n), "B/msg")
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(total)
		b.ReportAllocs()
		cpu0 := processCPU()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				for _, m := range msgs {
					ParseBytes(m)
				}
			}
		})
		cpu := processCPU() - cpu0
		report(b, b.N*len(msgs))
		if cpu > 0 {
			b.ReportMetric(float64(b.N*len(msgs))/cpu.Seconds(), "msgs/cpu-s")
		}
	})
}
