package main

import (
	"bytes"
	"runtime/debug"
	"strings"
	"testing"

	"repute/api"
)

func TestVersionFrom(t *testing.T) {
	rev := "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"module version", debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"revision", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "false"}}}, "0123456789ab"},
		{"dirty", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}}, "0123456789ab+dirty"},
		{"nothing", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
	}
	for _, tt := range tests {
		if got := versionFrom(&tt.info); got != tt.want {
			t.Errorf("%s: versionFrom = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	old := version
	version = "v0.0.0-test"
	defer func() { version = old }()
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out bytes.Buffer
		if code := runMain(args, &out, &out); code != 0 || strings.TrimSpace(out.String()) != "repute v0.0.0-test" {
			t.Errorf("repute %v = %d, %q; want 0, \"repute v0.0.0-test\"", args, code, out.String())
		}
	}
}

func TestKeysNew(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := runMain([]string{"keys", "new", "--account", "acme"}, &out, &errOut); code != 0 {
		t.Fatalf("keys new = %d, %s", code, errOut.String())
	}
	lines := strings.Split(out.String(), "\n")
	key, ok := strings.CutPrefix(lines[0], "key: ")
	if !ok || !strings.HasPrefix(key, "rk_") || len(key) < 32 {
		t.Fatalf("first line %q, want key: rk_…", lines[0])
	}
	// The printed block, pasted under accounts:, configures that key.
	var block []string
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "  ") {
			block = append(block, l)
		}
	}
	var cfg serveConfig
	if err := decodeYAML([]byte("accounts:\n"+strings.Join(block, "\n")+"\n"), &cfg); err != nil {
		t.Fatalf("pasted block: %v\n%s", err, out.String())
	}
	if len(cfg.Accounts) != 1 || cfg.Accounts[0].Name != "acme" || len(cfg.Accounts[0].Keys) != 1 ||
		cfg.Accounts[0].Keys[0] != hashOf(key) || !validKeyHash(cfg.Accounts[0].Keys[0]) {
		t.Errorf("pasted block gives %+v, want acme with the hash of %s", cfg.Accounts, key)
	}
	var out2 bytes.Buffer
	runMain([]string{"keys", "new", "--account", "acme"}, &out2, &errOut)
	if out2.String() == out.String() {
		t.Error("two keys new printed the same key")
	}
	for _, args := range [][]string{{"keys"}, {"keys", "new"}, {"keys", "new", "--account", "a", "extra"}} {
		if code := runMain(args, &out, &errOut); code != 2 {
			t.Errorf("repute %v = %d, want 2", args, code)
		}
	}
}

func hashOf(key string) string { return api.HashKey(key) }
