package arf

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// corpusDir is the repository's copy of the bounce corpus (see its README.md).
const corpusDir = "../testdata/bounces"

type corpusEntry struct {
	File    string `json:"file"`
	Kind    string `json:"kind"`
	Results []struct {
		Recipient    string `json:"recipient"`
		FeedbackType string `json:"feedbacktype"`
	} `json:"results"`
}

func loadCorpus(t testing.TB) []corpusEntry {
	b, err := os.ReadFile(filepath.Join(corpusDir, "labels.json"))
	if errors.Is(err, os.ErrNotExist) {
		t.Fatalf("bounce corpus missing at %s: %v", corpusDir, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	var entries []corpusEntry
	if err := json.Unmarshal(b, &entries); err != nil {
		t.Fatalf("labels.json: %v", err)
	}
	return entries
}

// TestCorpusFeedback checks every complaint report of the corpus against its
// labels: feedback type and recipients, in order.
func TestCorpusFeedback(t *testing.T) {
	n := 0
	for _, e := range loadCorpus(t) {
		if e.Kind != "feedback" {
			continue
		}
		n++
		t.Run(e.File, func(t *testing.T) {
			r, err := parseFile(t, filepath.Join(corpusDir, e.File))
			if r == nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(r.Recipients) != len(e.Results) {
				t.Fatalf("Recipients = %q, want %d of them", r.Recipients, len(e.Results))
			}
			for i, want := range e.Results {
				if r.FeedbackType != want.FeedbackType {
					t.Errorf("FeedbackType = %q, want %q", r.FeedbackType, want.FeedbackType)
				}
				if !strings.EqualFold(r.Recipients[i], want.Recipient) {
					t.Errorf("Recipients[%d] = %q, want %q", i, r.Recipients[i], want.Recipient)
				}
			}
		})
	}
	if n == 0 {
		t.Error("labels.json lists no feedback report")
	}
}

// TestCorpusNotFeedback checks that no bounce, auto-reply or other message of
// the corpus is taken for a complaint.
func TestCorpusNotFeedback(t *testing.T) {
	for _, e := range loadCorpus(t) {
		if e.Kind == "feedback" {
			continue
		}
		r, err := parseFile(t, filepath.Join(corpusDir, e.File))
		if r != nil || err != ErrNotFeedback {
			t.Errorf("%s (%s): Parse = %+v, %v; want ErrNotFeedback", e.File, e.Kind, r, err)
		}
	}
}
