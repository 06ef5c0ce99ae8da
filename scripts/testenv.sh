#!/usr/bin/env bash
# Test services for make test: up | down | status. Prints, on up, the
# environment variables the tests read. (ClickHouse arrives with issue 3.)
set -euo pipefail
case "${1:-}" in
up) ;;
down) ;;
status) echo "no services" ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
