// Package corpustest makes test and benchmark inputs from the repository's
// bounce corpus (testdata/bounces): any number of distinct reports, each a
// real message with its identity and recipients rewritten, so that every
// copy yields events of its own.
package corpustest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"testing"

	"repute/ingest"
)

// Dir returns the corpus's maildir (testdata/bounces/maildir at the module
// root), found from the working directory of the test.
func Dir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "testdata", "bounces", "maildir")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("corpustest: no go.mod above the working directory")
		}
		dir = parent
	}
}

// Files returns the corpus's messages, sorted by path.
func Files(tb testing.TB) (paths []string, raws [][]byte) {
	tb.Helper()
	err := filepath.WalkDir(Dir(tb), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		paths = append(paths, path)
		return nil
	})
	if err != nil || len(paths) == 0 {
		tb.Fatalf("corpustest: %d files, %v", len(paths), err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			tb.Fatal(err)
		}
		raws = append(raws, raw)
	}
	return paths, raws
}

// Variants returns n messages drawn in turn from the corpus. Copy i gets a
// Message-ID of its own, as its first header field, and each recipient
// the parser finds in it is rewritten everywhere in the message to
// "c<i>-" + the address, so that no two copies share a report identity
// or, where the address is written plainly, a recipient.
func Variants(tb testing.TB, n int) [][]byte {
	tb.Helper()
	_, raws := Files(tb)
	type base struct {
		raw   []byte
		addrs []*regexp.Regexp
	}
	bases := make([]base, len(raws))
	for i, raw := range raws {
		bases[i].raw = raw
		results, _ := ingest.ParseBytes(raw)
		seen := map[string]bool{}
		for _, r := range results {
			if r.Recipient == "" || seen[r.Recipient] {
				continue
			}
			seen[r.Recipient] = true
			bases[i].addrs = append(bases[i].addrs, regexp.MustCompile(`(?i)\b`+regexp.QuoteMeta(r.Recipient)))
		}
	}
	out := make([][]byte, n)
	for i := range n {
		b := bases[i%len(bases)]
		msg := b.raw
		// A leading mbox "From " line stays first.
		var from []byte
		if bytes.HasPrefix(msg, []byte("From ")) {
			if j := bytes.IndexByte(msg, '\n'); j >= 0 {
				from, msg = msg[:j+1], msg[j+1:]
			}
		}
		prefix := fmt.Sprintf("c%d-", i)
		for _, re := range b.addrs {
			msg = re.ReplaceAllFunc(msg, func(m []byte) []byte { return append([]byte(prefix), m...) })
		}
		var buf bytes.Buffer
		buf.Write(from)
		eol := "\n"
		if bytes.Contains(msg, []byte("\r\n")) {
			eol = "\r\n"
		}
		fmt.Fprintf(&buf, "Message-ID: <corpus-copy-%d@repute.test>%s", i, eol)
		buf.Write(msg)
		out[i] = buf.Bytes()
	}
	return out
}
