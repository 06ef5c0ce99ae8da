package dsn

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that Parse never panics and returns either a report or
// an error, on inputs seeded from testdata, the bounce corpus and the
// generated bounces of charset_test.go.
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 5m ./dsn/
func FuzzParse(f *testing.F) {
	for _, pattern := range []string{
		filepath.Join("testdata", "*.eml"),
		filepath.Join("..", "..", "shared", "corpus", "bounces", "maildir", "*", "*.eml"),
	} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil {
				f.Add(b)
			}
		}
	}
	// Bounces in other charsets, with encoded words and in HTML.
	for _, b := range charsetSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := ParseBytes(b)
		if rep == nil && err == nil {
			t.Fatal("nil report without an error")
		}
		if rep == nil {
			return
		}
		for _, rc := range rep.Recipients {
			if rc.Reason == "" {
				t.Fatalf("recipient %q without a reason", rc.Address)
			}
			if len(rc.Diagnostic) > maxDiagnostic {
				t.Fatalf("diagnostic of %d bytes", len(rc.Diagnostic))
			}
		}
	})
}
