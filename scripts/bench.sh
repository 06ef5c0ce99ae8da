#!/usr/bin/env bash
# make bench: intake throughput on both stores beside their raw insert rates,
# then the parser benchmarks. ClickHouse is the throwaway test instance.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== intake → DuckDB"
bin/repute bench intake

env_file=$(mktemp)
trap 'scripts/testenv.sh down || true; rm -f "$env_file"' EXIT
scripts/testenv.sh up > "$env_file"
set -a; . "$env_file"; set +a
echo "== intake → ClickHouse ($REPUTE_TEST_CLICKHOUSE)"
bin/repute bench intake --clickhouse "$REPUTE_TEST_CLICKHOUSE"

echo "== parsers"
go test -run '^$' -bench . -benchmem -cpu 1,2 ./ingest/
go test -run '^$' -bench . -benchmem ./dsn/ ./arf/
