package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

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
	addr := testenv.ClickHouse(t)
	var b [6]byte
	rand.Read(b[:])
	db := "repute_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		conn, err := ch.Open(&ch.Options{Addr: []string{addr}})
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
			t.Errorf("drop %s: %v", db, err)
		}
	})
	t.Setenv("REPUTE_CLICKHOUSE", addr) // the environment works as well as the flag
	for i := 0; i < 2; i++ {
		var stdout, stderr bytes.Buffer
		code := runMigrate([]string{"--clickhouse-database", db}, &stdout, &stderr)
		if code != 0 || !strings.Contains(stdout.String(), "up to date") {
			t.Fatalf("migrate #%d = %d, stdout %q, stderr %q; want 0, up to date", i+1, code, stdout.String(), stderr.String())
		}
	}
}
