package arf

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// complaintFiles returns the testdata messages and the corpus complaint
// reports.
func complaintFiles(tb testing.TB) []string {
	files, _ := filepath.Glob("testdata/*.eml")
	corpus, _ := filepath.Glob(filepath.Join(corpusDir, "maildir", "*", "arf-*.eml"))
	return append(files, corpus...)
}

func readAll(tb testing.TB, files []string) [][]byte {
	msgs := make([][]byte, 0, len(files))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		msgs = append(msgs, b)
	}
	return msgs
}

func benchmarkMessages(b *testing.B, msgs [][]byte, parse func([]byte)) {
	var size int64
	for _, m := range msgs {
		size += int64(len(m))
	}
	b.SetBytes(size / int64(len(msgs)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		parse(msgs[i%len(msgs)])
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func parseReader(b []byte) { Parse(bytes.NewReader(b)) }
func parseBytes(b []byte)  { ParseBytes(b) }

// BenchmarkParse parses the complaint reports of testdata and the corpus.
func BenchmarkParse(b *testing.B) {
	msgs := readAll(b, complaintFiles(b))
	b.Run("reader", func(b *testing.B) { benchmarkMessages(b, msgs, parseReader) })
	b.Run("bytes", func(b *testing.B) { benchmarkMessages(b, msgs, parseBytes) })
}

// BenchmarkParseNotFeedback runs Parse over every corpus message that is no
// complaint: the ErrNotFeedback path every bounce takes.
func BenchmarkParseNotFeedback(b *testing.B) {
	var files []string
	for _, e := range loadCorpus(b) {
		if e.Kind != "feedback" {
			files = append(files, filepath.Join(corpusDir, e.File))
		}
	}
	msgs := readAll(b, files)
	b.Run("reader", func(b *testing.B) { benchmarkMessages(b, msgs, parseReader) })
	b.Run("bytes", func(b *testing.B) { benchmarkMessages(b, msgs, parseBytes) })
}
