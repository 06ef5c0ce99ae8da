// Package testenv tells tests where the real services started by
// scripts/testenv.sh (make test) are.
//
// Without the services a test skips, saying how to run it; under make test
// (REPUTE_TEST_REQUIRE_SERVICES=1) a missing service fails the test instead.
package testenv

import (
	"os"
	"testing"
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
