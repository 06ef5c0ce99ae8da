package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "repute.yaml")
	os.WriteFile(file, []byte("listen: 127.0.0.1:1111\ndata: /from/file\nmax_body_bytes: 100\n"+
		"shutdown_timeout: 5s\naccounts:\n  - name: acme\n    keys: [\"sha256:"+strings.Repeat("ab", 32)+"\"]\n"), 0o600)
	env := map[string]string{
		"REPUTE_DATA":           "/from/env",
		"REPUTE_MAX_BODY_BYTES": "200",
		"REPUTE_ADMIN_KEY":      "secret",
	}
	cfg, err := loadServeConfig([]string{"--config", file, "--max-body-bytes", "300"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"listen (file over default)", cfg.Listen, "127.0.0.1:1111"},
		{"data (env over file)", cfg.Data, "/from/env"},
		{"max_body_bytes (flag over env)", cfg.MaxBodyBytes, int64(300)},
		{"spool_max_bytes (default)", cfg.SpoolMaxBytes, int64(1 << 30)},
		{"shutdown_timeout (file)", cfg.ShutdownTimeout, 5 * time.Second},
		{"admin key (env)", cfg.AdminKey, "secret"},
		{"accounts (file)", len(cfg.Accounts), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	typo := filepath.Join(dir, "typo.yaml")
	os.WriteFile(typo, []byte("lisen: 127.0.0.1:1\n"), 0o600)
	noenv := func(string) string { return "" }
	for name, args := range map[string][]string{
		"misspelt key":   {"--config", typo},
		"missing file":   {"--config", filepath.Join(dir, "nope.yaml")},
		"negative bound": {"--spool-max-bytes", "-1"},
		"stray argument": {"extra"},
		"not a number":   {"--max-body-bytes", "lots"},
	} {
		if _, err := loadServeConfig(args, noenv, io.Discard); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := loadServeConfig(nil, func(k string) string {
		if k == "REPUTE_MAX_BODY_BYTES" {
			return "lots"
		}
		return ""
	}, io.Discard); err == nil || !strings.Contains(err.Error(), "REPUTE_MAX_BODY_BYTES") {
		t.Errorf("bad environment value: %v, want an error naming the variable", err)
	}
}

func TestExampleConfigLoads(t *testing.T) {
	cfg, err := loadServeConfig([]string{"--config", "../../repute.example.yaml"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:8080" || len(cfg.Accounts) != 1 || cfg.ISPDomains["example-isp.net"] != "example" {
		t.Errorf("example config: %+v", cfg)
	}
}
