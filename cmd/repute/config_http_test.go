package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The HTTP limits are scalar keys like the others: file, environment,
// flag; the example file shows their defaults.
func TestConfigHTTPLimits(t *testing.T) {
	file := filepath.Join(t.TempDir(), "repute.yaml")
	os.WriteFile(file, []byte("read_timeout: 30s\nmin_body_rate: 1000\nidle_timeout: 1m\n"), 0o600)
	env := map[string]string{"REPUTE_WRITE_TIMEOUT": "45s", "REPUTE_IDLE_TIMEOUT": "90s"}
	cfg, err := loadServeConfig([]string{"--config", file, "--idle-timeout", "10s", "--max-inflight-bytes", "1073741824"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"read_timeout (file)", cfg.ReadTimeout, 30 * time.Second},
		{"write_timeout (env)", cfg.WriteTimeout, 45 * time.Second},
		{"idle_timeout (flag)", cfg.IdleTimeout, 10 * time.Second},
		{"min_body_rate (file)", cfg.MinBodyRate, int64(1000)},
		{"max_inflight_bytes (flag)", cfg.MaxInflightBytes, int64(1 << 30)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}

	def := defaultServeConfig()
	example, err := loadServeConfig([]string{"--config", "../../repute.example.yaml"}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if example.ReadTimeout != def.ReadTimeout || example.WriteTimeout != def.WriteTimeout || example.IdleTimeout != def.IdleTimeout ||
		example.MinBodyRate != def.MinBodyRate || example.MaxInflightBytes != def.MaxInflightBytes ||
		example.QueryTimeout != def.QueryTimeout || example.MaxResultRows != def.MaxResultRows ||
		example.RateLimits != def.RateLimits || example.AuthLockout != def.AuthLockout {
		t.Errorf("repute.example.yaml does not show the defaults of the HTTP limits")
	}

	for name, args := range map[string][]string{
		"budget under one largest body": {"--max-inflight-bytes", "1000000"},
		"zero rate":                     {"--min-body-rate", "0"},
		"zero timeout":                  {"--write-timeout", "0s"},
	} {
		_, err := loadServeConfig(args, func(string) string { return "" }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), strings.Fields(args[0])[0]) {
			t.Errorf("%s: %v, want an error naming %s", name, err, args[0])
		}
	}
}
