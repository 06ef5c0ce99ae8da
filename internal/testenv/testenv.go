// Package testenv tells tests where the real services started by
// scripts/testenv.sh (make test) are.
//
// Without the services a test skips, saying how to run it; under make test
// (REPUTE_TEST_REQUIRE_SERVICES=1) a missing service fails the test instead.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
)

// Environment variables set by scripts/test.sh from scripts/testenv.sh up.
const (
	ClickHouseVar      = "REPUTE_TEST_CLICKHOUSE"       // host:port of the native protocol
	RequireServicesVar = "REPUTE_TEST_REQUIRE_SERVICES" // "1": a missing service is a failure
)

// ClickHouse returns the address of the test ClickHouse server, or skips
// (fails under make test) when none is configured.
func ClickHouse(t testing.TB) string {
	t.Helper()
	return lookup(t, ClickHouseVar, "ClickHouse")
}

func lookup(t testing.TB, variable, service string) string {
	t.Helper()
	if v := os.Getenv(variable); v != "" {
		return v
	}
	if os.Getenv(RequireServicesVar) == "1" {
		t.Fatalf("%s not configured (%s unset) although %s=1: scripts/testenv.sh up did not run or failed",
			service, variable, RequireServicesVar)
	}
	t.Skipf("%s not configured: run make test", service)
	return ""
}

// ClickHouseDatabase returns the address of the test ClickHouse server and a
// fresh database name of the test's own (repute_test_<random>), which the
// code under test creates (clickhouse.Open and Migrate do) and which is
// dropped when the test ends. Skips or fails like ClickHouse.
func ClickHouseDatabase(t testing.TB) (addr, database string) {
	t.Helper()
	addr = ClickHouse(t)
	var b [6]byte
	rand.Read(b[:])
	database = "repute_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		conn, err := ch.Open(&ch.Options{Addr: []string{addr}, DialTimeout: 10 * time.Second})
		if err != nil {
			t.Errorf("testenv: drop %s: %v", database, err)
			return
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+database); err != nil {
			t.Errorf("testenv: drop %s: %v", database, err)
		}
	})
	return addr, database
}
