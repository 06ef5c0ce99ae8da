#!/usr/bin/env bash
# make test: start the test services, run every test against them, stop them.
set -euo pipefail
cd "$(dirname "$0")/.."

env_file=$(mktemp)
trap 'scripts/testenv.sh down || true; rm -f "$env_file"' EXIT
scripts/testenv.sh up > "$env_file"
# Every KEY=value line of up is exported to the tests: REPUTE_TEST_CLICKHOUSE,
# REPUTE_TEST_IMAP, REPUTE_TEST_IMAP_USER, REPUTE_TEST_IMAP_PASSWORD.
set -a; . "$env_file"; set +a
# Under make test a missing service is a failure, not a skip.
export REPUTE_TEST_REQUIRE_SERVICES=1
# And the heavy tests run: a real repute serve under 200 concurrent 16 MiB
# posts, its peak RSS measured (cmd/repute/heavy_test.go, about a minute).
export REPUTE_HEAVY_TESTS=1
# And a test that cannot mount its small file system (a size-limited tmpfs,
# to fill the disk under the spool: internal/smallfs) fails, not skips.
export REPUTE_TEST_REQUIRE_SMALLFS=1
# And a missing browser fails the unsubscribe page's Chromium test.
export REPUTE_REQUIRE_CHROMIUM=1
go vet ./...
# cmd/repute alone takes 10-15 minutes under -race on 2 cores (the attacks,
# the crash tests): past go test's default 10-minute timeout.
go test -race -count=1 -timeout 45m ./...
