package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"repute/api"
)

// TestStartupFailureIsOneLine: a start-up failure is one plain line on
// stderr, exit status 1, and leaves a new data directory untouched.
func TestStartupFailureIsOneLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	tmp := t.TempDir()
	notADir := filepath.Join(tmp, "file")
	os.WriteFile(notADir, nil, 0o600)
	tests := []struct {
		name string
		args []string
		want string
		data string // must not exist afterwards
	}{
		{"port in use", []string{"--listen", addr, "--data", filepath.Join(tmp, "new")},
			"repute serve: listen " + addr + ": address already in use\n", filepath.Join(tmp, "new")},
		{"data dir not a directory", []string{"--listen", "127.0.0.1:0", "--data", filepath.Join(notADir, "var")},
			"repute serve: data directory " + filepath.Join(notADir, "var") + ": not a directory\n", ""},
		{"unreadable config", []string{"--config", filepath.Join(tmp, "nope.yaml"), "--data", filepath.Join(tmp, "new2")},
			"repute serve: config " + filepath.Join(tmp, "nope.yaml") + ": no such file or directory\n", filepath.Join(tmp, "new2")},
		{"placeholder key", []string{"--config", "../../repute.example.yaml", "--listen", "127.0.0.1:0", "--data", filepath.Join(tmp, "new3")},
			`repute serve: config accounts: account "acme": key "sha256:REPLACE-ME" is not a key hash ("sha256:" and 64 hex digits); make one with: repute keys new --account acme` + "\n",
			filepath.Join(tmp, "new3")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("REPUTE_ADMIN_KEY", "admin")
			var stdout, stderr bytes.Buffer
			code := runMain(append([]string{"serve"}, tt.args...), &stdout, &stderr)
			if code != 1 || stderr.String() != tt.want {
				t.Errorf("exit %d, stderr %q; want 1, %q", code, stderr.String(), tt.want)
			}
			if tt.data != "" {
				if _, err := os.Stat(tt.data); !os.IsNotExist(err) {
					entries, _ := os.ReadDir(tt.data)
					t.Errorf("data directory %s was created (%v, %d entries)", tt.data, err, len(entries))
				}
			}
		})
	}
}

// TestStartupFailureChild runs the real binary: port in use → exit 1, one
// line on stderr, no repute.duckdb.
func TestStartupFailureChild(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := filepath.Join(t.TempDir(), "var")
	cmd := childCommand("serve", "--listen", busy.Addr().String(), "--data", data)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("child: %v, want exit status 1", err)
	}
	if want := "repute serve: listen " + busy.Addr().String() + ": address already in use\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
	if _, err := os.Stat(filepath.Join(data, "repute.duckdb")); !os.IsNotExist(err) {
		t.Errorf("repute.duckdb exists after a failed start (%v)", err)
	}
}

// logLines decodes JSON log lines.
func logLines(t *testing.T, b []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(l, &m); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
		out = append(out, m)
	}
	return out
}

// TestKeysInForce: serve says at start which keys are in force, and warns
// of a generated admin key that is no longer used.
func TestKeysInForce(t *testing.T) {
	acme := []accountConfig{{Name: "acme", Keys: []string{api.HashKey("k1"), api.HashKey("k2")}}, {Name: "beta", Keys: []string{api.HashKey("k3")}}}
	tests := []struct {
		name        string
		adminKey    string
		accounts    []accountConfig
		oldKeyFile  bool
		admin       string
		accountKeys map[string]any
		unusedWarn  string // substring of the warning, "" for none
	}{
		{"fresh, no keys", "", nil, false, "generated", map[string]any{}, ""},
		{"generated, reused", "", nil, true, "generated", map[string]any{}, ""},
		{"admin from env", "admin", nil, false, "environment", map[string]any{}, ""},
		{"admin from env, old file", "admin", nil, true, "environment", map[string]any{}, "REPUTE_ADMIN_KEY is set"},
		{"accounts only", "", acme, false, "none", map[string]any{"acme": 2.0, "beta": 1.0}, ""},
		{"accounts, old file", "", acme, true, "none", map[string]any{"acme": 2.0, "beta": 1.0}, "no admin key is in force"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := defaultServeConfig()
			cfg.Data = t.TempDir()
			cfg.AdminKey, cfg.Accounts = tt.adminKey, tt.accounts
			keyFile := filepath.Join(cfg.Data, "admin.key")
			if tt.oldKeyFile {
				os.WriteFile(keyFile, []byte("rk_old\n"), 0o600)
			}
			var logs bytes.Buffer
			log, _ := newLogger(&logs, "info")
			a, err := newApp(context.Background(), cfg, log)
			if err != nil {
				t.Fatal(err)
			}
			a.close()
			var inForce map[string]any
			warned := ""
			for _, l := range logLines(t, logs.Bytes()) {
				switch {
				case l["msg"] == "keys in force":
					inForce = l
				case l["level"] == "WARN" && strings.Contains(l["msg"].(string), "admin key is no longer used"):
					warned = l["msg"].(string) + " " + l["file"].(string)
				}
			}
			if inForce == nil {
				t.Fatalf("no \"keys in force\" line in\n%s", logs.String())
			}
			if inForce["admin"] != tt.admin {
				t.Errorf("admin = %v, want %s", inForce["admin"], tt.admin)
			}
			if tt.admin == "generated" && inForce["admin_key_file"] != keyFile {
				t.Errorf("admin_key_file = %v, want %s", inForce["admin_key_file"], keyFile)
			}
			if got, _ := json.Marshal(inForce["account_keys"]); string(got) != mustJSON(tt.accountKeys) {
				t.Errorf("account_keys = %s, want %s", got, mustJSON(tt.accountKeys))
			}
			if !strings.HasPrefix(inForce["signing_keys"].(string), "generated ") {
				t.Errorf("signing_keys = %v", inForce["signing_keys"])
			}
			if tt.unusedWarn == "" && warned != "" || tt.unusedWarn != "" && !strings.Contains(warned, tt.unusedWarn) {
				t.Errorf("warning %q, want one containing %q", warned, tt.unusedWarn)
			}
			if tt.unusedWarn != "" && !strings.Contains(warned, keyFile) {
				t.Errorf("warning %q does not name %s", warned, keyFile)
			}
		})
	}
}

func TestAdminKeyFileMode0600(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.key")
	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	key, err := generatedAdminKey(path, log)
	if st, serr := os.Stat(path); err != nil || serr != nil || st.Mode().Perm() != 0o600 || !strings.HasPrefix(key, "rk_") {
		t.Fatalf("generated: %v, %v, key %q; want mode 0600", err, serr, key)
	}
	os.Chmod(path, 0o644)
	again, err := generatedAdminKey(path, log)
	st, _ := os.Stat(path)
	if err != nil || again != key || st.Mode().Perm() != 0o600 {
		t.Errorf("reused: %v, key %q (want %q), mode %v; want the same key, mode made 0600", err, again, key, st.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "made it mode 0600") {
		t.Errorf("no warning for the loose mode: %s", logs.String())
	}
}

func TestDurationsLogAsText(t *testing.T) {
	var b bytes.Buffer
	log, _ := newLogger(&b, "info")
	log.Info("x", "timeout", 30*time.Second, "g", slog.GroupValue(slog.Duration("d", 1500*time.Millisecond)))
	if s := b.String(); !strings.Contains(s, `"timeout":"30s"`) || !strings.Contains(s, `"d":"1.5s"`) {
		t.Errorf("log line %s, want durations as text", s)
	}
}

func TestExampleConfigShipsNoUsableKey(t *testing.T) {
	cfg, err := loadServeConfig([]string{"--config", "../../repute.example.yaml"}, func(string) string { return "" }, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, acc := range cfg.Accounts {
		for _, k := range acc.Keys {
			if validKeyHash(k) {
				t.Errorf("repute.example.yaml ships a usable key for %s: %s", acc.Name, k)
			}
		}
	}
	if err := checkAccountKeys(cfg.Accounts); err == nil || !strings.Contains(err.Error(), "repute keys new --account acme") {
		t.Errorf("checkAccountKeys(example) = %v, want a refusal saying how to make a key", err)
	}
}
