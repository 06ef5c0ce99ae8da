package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSigningKeys(t *testing.T) {
	k1, k2 := strings.Repeat("a", 32), strings.Repeat("b", 43)
	tests := []struct {
		in     string
		verify []string
		err    string
	}{
		{in: k1, verify: []string{k1}},
		{in: k1 + "," + k2, verify: []string{k1, k2}},
		{in: " " + k2 + " ,\n" + k1 + ",\n", verify: []string{k2, k1}},
		{in: k1 + "\n" + k2 + "\n", verify: []string{k1, k2}},
		{in: "", err: "no signing key"},
		{in: " , ", err: "no signing key"},
		{in: k1 + ",short", err: "signing key 2 is 5 characters long: want at least 32"},
	}
	for _, tt := range tests {
		ks, err := parseSigningKeys(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("parseSigningKeys(%q) error %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseSigningKeys(%q): %v", tt.in, err)
			continue
		}
		var got []string
		for _, k := range ks.Verify {
			got = append(got, string(k))
		}
		if strings.Join(got, ",") != strings.Join(tt.verify, ",") || !bytes.Equal(ks.Sign, ks.Verify[0]) {
			t.Errorf("parseSigningKeys(%q) = sign %q verify %q, want verify %q, the first signing", tt.in, ks.Sign, got, tt.verify)
		}
	}
}

func TestSigningKeysGeneratedOnceMode0600(t *testing.T) {
	dir := t.TempDir()
	ks, source, generated, err := loadSigningKeys(secret{}, dir, nil)
	if err != nil || !generated || len(ks.Sign) < minSigningKeyLen || len(ks.Verify) != 1 {
		t.Fatalf("first start: %v, generated %v, keys %q", err, generated, ks.Verify)
	}
	path := filepath.Join(dir, signingKeysFile)
	if source != "generated "+path {
		t.Errorf("source %q", source)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want 0600", path, err, st.Mode().Perm())
	}
	again, _, generated, err := loadSigningKeys(secret{}, dir, nil)
	if err != nil || generated || !bytes.Equal(again.Sign, ks.Sign) {
		t.Errorf("restart: %v, generated %v, sign %q; want the same key %q", err, generated, again.Sign, ks.Sign)
	}
	// Group or others could read it: refused, naming the path and mode.
	os.Chmod(path, 0o640)
	_, _, _, err = loadSigningKeys(secret{}, dir, nil)
	if err == nil || !errors.Is(err, errSecretFileMode) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "0640") {
		t.Errorf("group-readable key file: %v, want a refusal naming %s and 0640", err, path)
	}
}

func TestSigningKeysFromEnvironmentAndFile(t *testing.T) {
	k1, k2 := strings.Repeat("x", 40), strings.Repeat("y", 40)
	env := map[string]string{"REPUTE_SIGNING": k1 + "," + k2}
	getenv := func(k string) string { return env[k] }
	dir := t.TempDir()
	ks, source, generated, err := loadSigningKeys(secret{Env: "REPUTE_SIGNING", name: "signing_keys"}, dir, getenv)
	if err != nil || generated || string(ks.Sign) != k1 || len(ks.Verify) != 2 || source != "environment REPUTE_SIGNING" {
		t.Fatalf("env: %v %v %q %q", err, generated, ks.Verify, source)
	}
	if _, err := os.Stat(filepath.Join(dir, signingKeysFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("keys from the environment, yet %s was written", signingKeysFile)
	}
	_, _, _, err = loadSigningKeys(secret{Env: "UNSET", name: "signing_keys"}, dir, getenv)
	if err == nil || !strings.Contains(err.Error(), "signing_keys_env: environment variable UNSET is not set") {
		t.Errorf("unset variable: %v", err)
	}
	file := writeFile(t, "keys", k2+"\n"+k1+"\n", 0o600)
	ks, _, _, err = loadSigningKeys(secret{File: file, name: "signing_keys"}, dir, getenv)
	if err != nil || string(ks.Sign) != k2 || len(ks.Verify) != 2 {
		t.Errorf("file: %v %q", err, ks.Verify)
	}
	open := writeFile(t, "keys", k1, 0o604)
	if _, _, _, err = loadSigningKeys(secret{File: open, name: "signing_keys"}, dir, getenv); !errors.Is(err, errSecretFileMode) {
		t.Errorf("world-readable file: %v, want a refusal", err)
	}
}

func TestSigningKeysConfig(t *testing.T) {
	file := writeFile(t, "repute.yaml", "signing_keys_env: MY_KEYS\n", 0o600)
	cfg, err := loadServeConfig([]string{"--config", file}, func(string) string { return "" }, nil)
	if err != nil || cfg.SigningKeys.Env != "MY_KEYS" || cfg.SigningKeys.name != "signing_keys" {
		t.Errorf("signing_keys_env: %v, %+v", err, cfg.SigningKeys)
	}
}
