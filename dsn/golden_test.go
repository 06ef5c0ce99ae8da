package dsn

import (
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json from the parser's output")

// golden is what the testdata goldens record of a parse.
type golden struct {
	Error      string            `json:"error,omitempty"`
	Kind       Kind              `json:"kind,omitempty"`
	Structured bool              `json:"structured,omitempty"`
	MessageID  string            `json:"messageid,omitempty"`
	VERP       string            `json:"verp,omitempty"`
	Recipients []goldenRecipient `json:"recipients,omitempty"`
}

type goldenRecipient struct {
	Address   string `json:"address"`
	Action    string `json:"action"`
	Status    string `json:"status"`
	ReplyCode string `json:"replycode"`
	Reason    Reason `json:"reason"`
	Hard      bool   `json:"hard"`
}

// TestGoldenDialects parses every testdata/*.eml (one realistic sample
// per dialect) and compares with testdata/*.json.
func TestGoldenDialects(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, name := range files {
		t.Run(filepath.Base(name), func(t *testing.T) {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			var g golden
			rep, err := ParseBytes(b)
			if err != nil {
				g.Error = err.Error()
			}
			if rep != nil {
				g.Kind, g.Structured, g.MessageID, g.VERP = rep.Kind, rep.Structured, rep.Original.MessageID, rep.VERP
				for _, rc := range rep.Recipients {
					g.Recipients = append(g.Recipients, goldenRecipient{rc.Address, rc.Action, rc.Status, rc.ReplyCode, rc.Reason, rc.Hard})
				}
			}
			got, _ := json.MarshalIndent(g, "", "  ")
			got = append(got, '\n')
			want := strings.TrimSuffix(name, ".eml") + ".json"
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			wb, err := os.ReadFile(want)
			if errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s missing: run go test -run TestGoldenDialects -update and review it", want)
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(wb) != string(got) {
				t.Errorf("%s:\n got %s\nwant %s", name, got, wb)
			}
		})
	}
}
