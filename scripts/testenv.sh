#!/usr/bin/env bash
# Test services for make test: up | down | status.
#
#   up      installs what is missing (Debian packages), starts a throwaway
#           ClickHouse on 127.0.0.1:19000 from scripts/clickhouse/config.xml
#           with its data in a temporary directory, waits until it answers,
#           and prints ONLY the environment the tests read, as KEY=value
#           lines (REPUTE_TEST_CLICKHOUSE=127.0.0.1:19000). Logs go to stderr.
#           Running up while the instance runs reuses it.
#   down    stops it by PID (SIGTERM, then SIGKILL after a bound) and removes
#           its temporary directory.
#   status  says what runs.
#
# It never touches the system-wide clickhouse-server service or
# /var/lib/clickhouse. State (PID, data directory) lives in
# ${REPUTE_TESTENV_DIR:-${TMPDIR:-/tmp}/repute-testenv}; the port can be moved
# with REPUTE_TESTENV_CLICKHOUSE_PORT.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${REPUTE_TESTENV_DIR:-${TMPDIR:-/tmp}/repute-testenv}
port=${REPUTE_TESTENV_CLICKHOUSE_PORT:-19000}
addr=127.0.0.1:$port
pid_file=$state/clickhouse.pid
dir_file=$state/clickhouse.dir
start_wait=60 # seconds until a started server must answer
stop_wait=30  # seconds between SIGTERM and SIGKILL

log() { echo "testenv: $*" >&2; }

as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif command -v sudo >/dev/null; then
		sudo "$@"
	else
		log "need root to run: $*"
		return 1
	fi
}

install_packages() {
	local missing=()
	command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
	command -v clickhouse-client >/dev/null || missing+=(clickhouse-client)
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	# Wait for another apt/dpkg (a colleague's install) instead of failing.
	local lock=(-o DPkg::Lock::Timeout=600)
	as_root apt-get "${lock[@]}" update -q >&2
	as_root env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y -q \
		--no-install-recommends "${missing[@]}" >&2
}

running_pid() {
	[ -f "$pid_file" ] || return 1
	local pid
	pid=$(cat "$pid_file")
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

answers() {
	clickhouse-client --host 127.0.0.1 --port "$port" --query 'SELECT 1' >/dev/null 2>&1
}

up() {
	install_packages
	mkdir -p "$state"
	if pid=$(running_pid) && answers; then
		log "ClickHouse already runs (pid $pid) on $addr"
		echo "REPUTE_TEST_CLICKHOUSE=$addr"
		return 0
	fi
	[ -f "$pid_file" ] && down # a dead or stuck leftover
	if answers; then
		log "something else already answers on $addr; set REPUTE_TESTENV_CLICKHOUSE_PORT"
		return 1
	fi
	local dir
	dir=$(mktemp -d "${TMPDIR:-/tmp}/repute-clickhouse.XXXXXX")
	mkdir -p "$dir/data" "$dir/tmp" "$dir/log" "$dir/user_files" "$dir/format_schemas"
	sed -e "s|@DATA@|$dir|g" -e "s|<tcp_port>19000</tcp_port>|<tcp_port>$port</tcp_port>|" \
		"$root/scripts/clickhouse/config.xml" >"$dir/config.xml"
	echo "$dir" >"$dir_file"
	# setsid: the server outlives this script and gets no terminal signals.
	setsid clickhouse-server --config-file="$dir/config.xml" \
		>"$dir/log/stdout.log" 2>&1 </dev/null &
	echo $! >"$pid_file"
	log "started ClickHouse (pid $!) on $addr, data in $dir"
	local waited=0
	until answers; do
		if ! running_pid >/dev/null; then
			log "ClickHouse exited during start; its logs:"
			tail -n 30 "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
			return 1
		fi
		if [ "$waited" -ge $((start_wait * 10)) ]; then
			log "ClickHouse did not answer on $addr within ${start_wait}s"
			return 1
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	echo "REPUTE_TEST_CLICKHOUSE=$addr"
}

down() {
	if pid=$(running_pid); then
		log "stopping ClickHouse (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		local waited=0
		while kill -0 "$pid" 2>/dev/null; do
			if [ "$waited" -ge $((stop_wait * 10)) ]; then
				log "ClickHouse (pid $pid) ignored SIGTERM for ${stop_wait}s: SIGKILL"
				kill -KILL "$pid" 2>/dev/null || true
				break
			fi
			sleep 0.1
			waited=$((waited + 1))
		done
	fi
	if [ -f "$dir_file" ]; then
		local dir
		dir=$(cat "$dir_file")
		case "$dir" in
		"${TMPDIR:-/tmp}"/repute-clickhouse.*) rm -rf "$dir" ;;
		esac
	fi
	rm -f "$pid_file" "$dir_file"
}

status() {
	if pid=$(running_pid); then
		local state_word="not answering"
		answers && state_word="answering"
		echo "clickhouse: pid $pid on $addr ($state_word), data in $(cat "$dir_file" 2>/dev/null)"
	else
		echo "clickhouse: not running"
	fi
}

case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
