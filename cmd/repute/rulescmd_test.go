package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRulesCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join("..", "..", "rules", "defaults.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`rates:
  - id: complaints
    rate: complaint_rate
    scopes: [sender_domain]
    window: 7d
    when: above
    thresholds:
      - {severity: warning, value: 0.001}
      - {severity: warnin, value: 0.003}
patterns:
  - id: yahoo
    match: '[TSS04'
    action: pause
    for: 2h
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr string
	}{
		{"defaults", []string{"rules", "check", good}, 0,
			[]string{good + ": ok: 4 rate rules (low_open_rate, low_registration_open_rate, hard_bounce_rate, complaint_rate), 6 pattern rules (yahoo_tss04,"}, ""},
		{"problems", []string{"rules", "check", bad}, 1,
			[]string{bad + `:9: severity "warnin": one of info, warning, critical, pause`,
				bad + ":12: match: error parsing regexp: missing closing ]"}, "2 problem(s)"},
		{"missing file", []string{"rules", "check", filepath.Join(dir, "none.yaml")}, 1, nil, "no such file"},
		{"no file", []string{"rules", "check"}, 2, nil, "name one FILE"},
		{"two files", []string{"rules", "check", good, bad}, 2, nil, "name one FILE"},
		{"no subcommand", []string{"rules"}, 2, nil, "Usage:"},
		{"unknown subcommand", []string{"rules", "lint", good}, 2, nil, `unknown subcommand "lint"`},
		{"help", []string{"rules", "--help"}, 0, []string{"repute rules check FILE"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := runMain(tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stdout %q stderr %q", code, tc.code, stdout.String(), stderr.String())
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout %q lacks %q", stdout.String(), w)
				}
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
			}
		})
	}
}

// Problems come in line order, one a line.
func TestRulesCheckLineOrder(t *testing.T) {
	f := filepath.Join(t.TempDir(), "r.yaml")
	os.WriteFile(f, []byte("rates:\n  - id: X\n    rate: nope\n    zzz: 1\n"), 0o600)
	var stdout, stderr bytes.Buffer
	if code := runMain([]string{"rules", "check", f}, &stdout, &stderr); code != 1 {
		t.Fatalf("exit %d", code)
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	last := 0
	for _, l := range lines {
		rest := strings.TrimPrefix(l, f+":")
		n := 0
		for _, c := range rest {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		if n < last {
			t.Errorf("line %d after line %d: %q", n, last, stdout.String())
		}
		last = n
	}
	if len(lines) < 3 {
		t.Errorf("%d problems, want ≥ 3 (id, rate, unknown field, missing fields): %q", len(lines), stdout.String())
	}
}
