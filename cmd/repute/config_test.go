package main

import (
	"bytes"
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

func writeFile(t *testing.T, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

// TestConfigFileErrors holds the messages of a wrong file to the user's
// words: the line, the key, what was meant or expected; no Go type names.
func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       string // substring of the error
	}{
		{"typo", "listen: x:1\n\nmax_body_byte: 10\n", `config repute.yaml: line 3: unknown key "max_body_byte" (did you mean max_body_bytes?)`},
		{"typo far from all", "frobnicate: 1\n", `line 1: unknown key "frobnicate"`},
		{"typo in a section", "bounce_phrases:\n  - reason: filtered\n    phrase: [x]\n", `line 3: bounce_phrases[0]: unknown key "phrase" (did you mean phrases?)`},
		{"typo in accounts", "accounts:\n  - name: a\n    key: [x]\n", `line 3: accounts[0]: unknown key "key" (did you mean keys?)`},
		{"not a number", "max_body_bytes: lots\n", `line 1: max_body_bytes: expected a whole number, got "lots"`},
		{"not a duration", "shutdown_timeout: 30\n", `line 1: shutdown_timeout: expected a duration such as 30s, 5m or 1h30m, got "30"`},
		{"a list for a scalar", "listen: [a, b]\n", `line 1: listen: expected text, got a list`},
		{"a scalar for a list", "accounts: acme\n", `line 1: accounts: expected a list of sections, got "acme"`},
		{"a scalar for a map", "isp_domains: x\n", `line 1: isp_domains: expected a section of key: value lines, got "x"`},
		{"bool", "bounce_phrases:\n  - reason: filtered\n    final: maybe\n", `line 3: bounce_phrases[0].final: expected true or false, got "maybe"`},
		{"plain secret", "signing_keys: abc\n", `line 1: signing_keys: a secret is never a plain value in the file: use signing_keys_env: NAME`},
		{"syntax", "listen: [\n", `config repute.yaml: line `},
		{"both passwords", "clickhouse_password: a\nclickhouse_password_env: B\n", "keep clickhouse_password_env or clickhouse_password_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir)
			os.WriteFile("repute.yaml", []byte(tt.yaml), 0o600)
			_, err := loadServeConfig([]string{"--config", "repute.yaml"}, func(string) string { return "" }, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("config %q: error %v, want one containing %q", tt.yaml, err, tt.want)
			}
			for _, goWord := range []string{"int64", "time.Duration", "!!str", "unmarshal", "[]main", "string"} {
				if strings.Contains(err.Error(), goWord) {
					t.Errorf("config %q: error %q speaks Go (%s)", tt.yaml, err, goWord)
				}
			}
		})
	}
}

func TestEnvironmentErrorSaysWhatIsExpected(t *testing.T) {
	env := map[string]string{"REPUTE_SHUTDOWN_TIMEOUT": "30"}
	_, err := loadServeConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if want := `REPUTE_SHUTDOWN_TIMEOUT="30": expected a duration such as 30s`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
}

func TestLevenshteinAndClosest(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"kitten", "sitting", 3}, {"max_body_byte", "max_body_bytes", 1}} {
		if got := levenshtein(tt.a, tt.b); got != tt.d {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.d)
		}
	}
	known := []string{"listen", "data", "max_body_bytes", "log_level"}
	for _, tt := range []struct{ in, want string }{
		{"lisen", "listen"}, {"dta", "data"}, {"log-level", "log_level"}, {"zzzzzz", ""}, {"x", ""},
	} {
		if got := closest(tt.in, known); got != tt.want {
			t.Errorf("closest(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestClickHousePassword: the plain key still works with a deprecation
// warning; _env and _file are the way; the flag and the environment win.
func TestClickHousePassword(t *testing.T) {
	pwFile := writeFile(t, "pw", "from-file\n", 0o600)
	openFile := writeFile(t, "pw-open", "x\n", 0o644)
	env := map[string]string{"CH_PW": "from-env"}
	getenv := func(k string) string { return env[k] }
	tests := []struct {
		name, yaml string
		args       []string
		env        map[string]string
		want       string
		warn       bool
		err        string
	}{
		{name: "plain in file", yaml: "clickhouse_password: plain\n", want: "plain", warn: true},
		{name: "env", yaml: "clickhouse_password_env: CH_PW\n", want: "from-env"},
		{name: "file", yaml: "clickhouse_password_file: " + pwFile + "\n", want: "from-file"},
		{name: "flag wins", yaml: "clickhouse_password_env: CH_PW\n", args: []string{"--clickhouse-password", "flag"}, want: "flag"},
		{name: "env var unset", yaml: "clickhouse_password_env: NOPE\n", err: "clickhouse_password_env: environment variable NOPE is not set or empty"},
		{name: "open file", yaml: "clickhouse_password_file: " + openFile + "\n", err: "is readable by group or others (mode 0644): chmod 600"},
		{name: "both", yaml: "clickhouse_password_env: CH_PW\nclickhouse_password_file: " + pwFile + "\n", err: "both set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, "repute.yaml", tt.yaml, 0o600)
			cfg, err := loadServeConfig(append([]string{"--config", file}, tt.args...), getenv, io.Discard)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.ClickHousePassword != tt.want {
				t.Errorf("password %q, want %q", cfg.ClickHousePassword, tt.want)
			}
			warned := len(cfg.warnings) == 1 && strings.Contains(cfg.warnings[0], "clickhouse_password is deprecated")
			if warned != tt.warn {
				t.Errorf("warnings %q, want deprecation warning: %v", cfg.warnings, tt.warn)
			}
		})
	}
}

// TestSecretInASection: any section can hold a secret field, set by X_env
// or X_file, never X.
func TestSecretInASection(t *testing.T) {
	type section struct {
		User     string `yaml:"user"`
		Password secret `yaml:"password"`
	}
	var v struct {
		IMAP section `yaml:"imap"`
	}
	if err := decodeYAML([]byte("imap:\n  user: u\n  password_env: IMAP_PW\n"), &v); err != nil {
		t.Fatal(err)
	}
	got, err := v.IMAP.Password.Resolve(func(k string) string { return map[string]string{"IMAP_PW": " s3cret\n"}[k] })
	if err != nil || got != "s3cret" {
		t.Errorf("Resolve = %q, %v; want s3cret", got, err)
	}
	err = decodeYAML([]byte("imap:\n  password: s3cret\n"), &v)
	if err == nil || !strings.Contains(err.Error(), "line 2: imap.password: a secret is never a plain value") {
		t.Errorf("plain secret: %v", err)
	}
	if got, err := (secret{}).Resolve(nil); got != "" || err != nil {
		t.Errorf("unset secret: %q, %v", got, err)
	}
}

func TestSubcommandHelpListsItsOwnFlags(t *testing.T) {
	for _, tt := range []struct {
		run          func([]string, io.Writer, io.Writer) int
		args         []string
		want, reject []string
	}{
		{runMigrate, nil, []string{"-config", "-clickhouse ", "-clickhouse-database", "-clickhouse-password", "-log-level"}, []string{"-listen", "-max-body-bytes", "-spool-max-bytes", "-data ", "-shutdown-timeout"}},
		{runServe, nil, []string{"-listen", "-max-body-bytes", "-data", "-clickhouse-password"}, nil},
		{runBench, []string{"intake"}, []string{"-events", "-clickhouse ", "-clickhouse-user", "-clickhouse-password", "-config"}, []string{"-listen", "-max-body-bytes"}},
	} {
		var out bytes.Buffer
		code := tt.run(append(tt.args, "--help"), &out, &out)
		help := out.String()
		if code != 0 {
			t.Errorf("%v --help: status %d", tt.args, code)
		}
		for _, w := range tt.want {
			if !strings.Contains(help, w) {
				t.Errorf("help lacks %s:\n%s", w, help)
			}
		}
		for _, r := range tt.reject {
			if strings.Contains(help, r) {
				t.Errorf("help lists %s:\n%s", r, help)
			}
		}
	}
}
