package ingest

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The golden test scores ParseMessage over the bounce corpus exactly as
// testdata/bounces/README.md (the repository's copy of the corpus) defines it, and fails when any figure
// falls below the floor recorded in testdata/accuracy.json (a ratchet).
// Run with -update to record higher figures, -diff to list every miss.

var (
	update   = flag.Bool("update", false, "rewrite testdata/accuracy.json with the measured figures")
	showDiff = flag.Bool("diff", false, "log every labelled row the parser gets wrong")
)

const (
	corpusDir    = "../testdata/bounces"
	accuracyFile = "testdata/accuracy.json"
)

// label is one entry of labels.json.
type label struct {
	File    string   `json:"file"`
	Family  string   `json:"family"`
	Kind    string   `json:"kind"`
	Results []Result `json:"results"`
}

// accuracy holds the per-field figures of the corpus README.
type accuracy struct {
	Recipient    float64 `json:"recipient"`
	Status       float64 `json:"status"`
	Reason       float64 `json:"reason"`
	HardSoft     float64 `json:"hardsoft"`
	FeedbackType float64 `json:"feedbacktype"`
	NotBounce    float64 `json:"notbounce"`
}

func (a accuracy) fields() []struct {
	name string
	v    float64
} {
	return []struct {
		name string
		v    float64
	}{
		{"recipient", a.Recipient}, {"status", a.Status}, {"reason", a.Reason},
		{"hardsoft", a.HardSoft}, {"feedbacktype", a.FeedbackType}, {"notbounce", a.NotBounce},
	}
}

// corpusRoot returns the corpus directory. The corpus is part of the
// repository (testdata/bounces), so a missing one is a failure, never a
// skip.
func corpusRoot(tb testing.TB) string {
	tb.Helper()
	if _, err := os.Stat(filepath.Join(corpusDir, "labels.json")); err != nil {
		tb.Fatalf("bounce corpus missing at testdata/bounces (repository root): %v", err)
	}
	return corpusDir
}

func loadLabels(tb testing.TB, dir string) []label {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "labels.json"))
	if err != nil {
		tb.Fatal(err)
	}
	var labels []label
	if err := json.Unmarshal(b, &labels); err != nil {
		tb.Fatalf("labels.json: %v", err)
	}
	return labels
}

// score compares the results of one file with its labels and adds to the
// counters; it returns descriptions of the misses.
type scorer struct {
	rows, found, status, reason, hard int
	fbRows, fb                        int
	notFiles, notOK                   int
}

func (s *scorer) add(l label, got []Result) (misses []string) {
	if l.Kind == "not-bounce" {
		s.notFiles++
		if len(got) == 0 {
			s.notOK++
		} else {
			misses = append(misses, fmt.Sprintf("not a bounce, got %d results (first %+v)", len(got), got[0]))
		}
		return misses
	}
	used := make([]bool, len(got))
	pair := make([]int, len(l.Results))
	for i, want := range l.Results {
		pair[i] = -1
		if want.Recipient == "" {
			continue
		}
		for j, g := range got {
			if !used[j] && strings.EqualFold(strings.TrimSpace(g.Recipient), want.Recipient) {
				used[j], pair[i] = true, j
				break
			}
		}
	}
	// Rows with no recipient take any result left over.
	for i, want := range l.Results {
		if want.Recipient != "" {
			continue
		}
		for j := range got {
			if !used[j] {
				used[j], pair[i] = true, j
				break
			}
		}
	}
	for i, want := range l.Results {
		s.rows++
		if want.FeedbackType != "" {
			s.fbRows++
		}
		if pair[i] < 0 {
			misses = append(misses, fmt.Sprintf("row %d: recipient %q not found (got %s)", i, want.Recipient, recipients(got)))
			continue
		}
		g := got[pair[i]]
		s.found++
		var bad []string
		if g.Status == want.Status {
			s.status++
		} else {
			bad = append(bad, fmt.Sprintf("status %q want %q", g.Status, want.Status))
		}
		if g.Reason == want.Reason {
			s.reason++
		} else {
			bad = append(bad, fmt.Sprintf("reason %q want %q", g.Reason, want.Reason))
		}
		if g.HardBounce == want.HardBounce {
			s.hard++
		} else {
			bad = append(bad, fmt.Sprintf("hard %v want %v", g.HardBounce, want.HardBounce))
		}
		if want.FeedbackType != "" {
			if g.FeedbackType == want.FeedbackType {
				s.fb++
			} else {
				bad = append(bad, fmt.Sprintf("feedbacktype %q want %q", g.FeedbackType, want.FeedbackType))
			}
		}
		if len(bad) > 0 {
			misses = append(misses, fmt.Sprintf("row %d %s: %s [diag %.160q]", i, want.Recipient, strings.Join(bad, ", "), g.DiagnosticCode))
		}
	}
	return misses
}

func recipients(rs []Result) string {
	var a []string
	for _, r := range rs {
		a = append(a, r.Recipient)
	}
	return "[" + strings.Join(a, " ") + "]"
}

func ratio(n, d int) float64 {
	if d == 0 {
		return 1
	}
	return float64(n) / float64(d)
}

func (s *scorer) accuracy() accuracy {
	return accuracy{
		Recipient:    ratio(s.found, s.rows),
		Status:       ratio(s.status, s.rows),
		Reason:       ratio(s.reason+s.notOK, s.rows+s.notFiles),
		HardSoft:     ratio(s.hard, s.rows),
		FeedbackType: ratio(s.fb, s.fbRows),
		NotBounce:    ratio(s.notOK, s.notFiles),
	}
}

// floor4 rounds down to four decimals, so a recorded figure is never
// above what was measured.
func floor4(v float64) float64 { return math.Floor(v*1e4) / 1e4 }

func TestGoldenCorpus(t *testing.T) {
	dir := corpusRoot(t)
	labels := loadLabels(t, dir)
	if len(labels) == 0 {
		t.Fatal("labels.json holds no entries")
	}
	var s scorer
	families := map[string][2]int{} // family → rows right, rows
	for _, l := range labels {
		raw, err := os.ReadFile(filepath.Join(dir, l.File))
		if err != nil {
			t.Errorf("%s: %v", l.File, err)
			continue
		}
		got, _ := ParseBytes(raw)
		before := s.reason + s.notOK
		misses := s.add(l, got)
		f := families[l.Family]
		f[0] += s.reason + s.notOK - before
		f[1] += max(len(l.Results), 1)
		families[l.Family] = f
		if *showDiff {
			for _, m := range misses {
				t.Logf("%s: %s", l.File, m)
			}
		}
	}
	acc := s.accuracy()
	t.Logf("%d files, %d labelled rows, %d not-bounce files", len(labels), s.rows, s.notFiles)
	for _, f := range acc.fields() {
		t.Logf("%-13s %.4f", f.name, f.v)
	}
	if *showDiff {
		for fam, f := range families {
			if f[0] < f[1] {
				t.Logf("family %-24s reason %d/%d", fam, f[0], f[1])
			}
		}
	}

	if *update {
		rec := accuracy{
			Recipient: floor4(acc.Recipient), Status: floor4(acc.Status), Reason: floor4(acc.Reason),
			HardSoft: floor4(acc.HardSoft), FeedbackType: floor4(acc.FeedbackType), NotBounce: floor4(acc.NotBounce),
		}
		b, _ := json.MarshalIndent(rec, "", "  ")
		if err := os.WriteFile(accuracyFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(accuracyFile)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenCorpus -update to record the figures)", err)
	}
	var floor accuracy
	if err := json.Unmarshal(b, &floor); err != nil {
		t.Fatalf("%s: %v", accuracyFile, err)
	}
	have := acc.fields()
	for i, f := range floor.fields() {
		if have[i].v+1e-9 < f.v {
			t.Errorf("%s accuracy fell to %.4f, below the recorded %.4f", f.name, have[i].v, f.v)
		}
	}
}
