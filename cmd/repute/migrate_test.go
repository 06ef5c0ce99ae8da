package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"repute/internal/testenv"
)

func TestMigrateNeedsAddress(t *testing.T) {
	t.Setenv("REPUTE_CLICKHOUSE", "")
	var stdout, stderr bytes.Buffer
	if code := runMigrate(nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--clickhouse") {
		t.Errorf("migrate without an address = %d, %q; want 2 and a message naming --clickhouse", code, stderr.String())
	}
}

func TestMigrateCommand(t *testing.T) {
	addr, db := testenv.ClickHouseDatabase(t)
	t.Setenv("REPUTE_CLICKHOUSE", addr) // the environment works as well as the flag
	for i := 0; i < 2; i++ {
		var stdout, stderr bytes.Buffer
		code := runMigrate([]string{"--clickhouse-database", db}, &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "up to date") {
			t.Fatalf("migrate #%d = %d, stdout %q, stderr %q; want 0, up to date", i+1, code, stdout.String(), stderr.String())
		}
	}
}

func TestMigrateReadsServeConfigFile(t *testing.T) {
	addr, db := testenv.ClickHouseDatabase(t)
	file := filepath.Join(t.TempDir(), "repute.yaml")
	if err := os.WriteFile(file, []byte("clickhouse: "+addr+"\nclickhouse_database: "+db+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := runMigrate([]string{"--config", file}, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), db) {
		t.Errorf("migrate --config = %d, stdout %q, stderr %q; want 0 naming %s", code, stdout.String(), stderr.String(), db)
	}
}
