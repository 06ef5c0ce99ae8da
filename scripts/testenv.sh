#!/usr/bin/env bash
# Test services for make test: up | down | status.
#
#   up      installs what is missing (Debian packages), starts a throwaway
#           ClickHouse on 127.0.0.1:19000 from scripts/clickhouse/config.xml
#           with its data in a temporary directory, waits until it answers,
#           and prints ONLY the environment the tests read, as KEY=value
#           lines (REPUTE_TEST_CLICKHOUSE=127.0.0.1:19000). Logs go to stderr.
#   down    stops it by PID (SIGTERM, then SIGKILL after a bound) and removes
#           its temporary directory.
#   status  says what runs.
#
# Several make test runs at once (colleagues on one machine) share the one
# instance: up while it runs reuses it and counts one more user, down counts
# one less and stops it only when none is left (down --force stops it now).
# Tests are not disturbed by the sharing: each uses a database of its own.
#
# It never touches the system-wide clickhouse-server service or
# /var/lib/clickhouse. State (PID, data directory, users) lives in
# ${REPUTE_TESTENV_DIR:-${TMPDIR:-/tmp}/repute-testenv}; the port can be moved
# with REPUTE_TESTENV_CLICKHOUSE_PORT.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
tmp=${TMPDIR:-/tmp}
state=${REPUTE_TESTENV_DIR:-$tmp/repute-testenv}
port=${REPUTE_TESTENV_CLICKHOUSE_PORT:-19000}
addr=127.0.0.1:$port
pid_file=$state/clickhouse.pid
dir_file=$state/clickhouse.dir
users_file=$state/clickhouse.users
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
	# Wait for another apt/dpkg (a colleague's install) instead of failing.
	local lock=(-o DPkg::Lock::Timeout=600)
	as_root env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" update -q >&2
	as_root env DEBIAN_FRONTEND=noninteractive apt-get "${lock[@]}" install -y -q \
		--no-install-recommends "${missing[@]}" >&2
}

# lock serialises up and down (flock on a file of the state directory).
lock() {
	mkdir -p "$state"
	exec 9>"$state/lock"
	flock 9
}

# running_pid prints the PID of our server if it still runs. It checks the
# command line too, so a PID reused by another process is never signalled.
running_pid() {
	[ -f "$pid_file" ] && [ -f "$dir_file" ] || return 1
	local pid dir
	pid=$(cat "$pid_file")
	dir=$(cat "$dir_file")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--config-file=$dir/config.xml" || return 1
	echo "$pid"
}

answers() {
	clickhouse-client --host 127.0.0.1 --port "$port" --query 'SELECT 1' >/dev/null 2>&1
}

users() { cat "$users_file" 2>/dev/null || echo 0; }

up() {
	install_packages
	lock
	local pid
	if pid=$(running_pid) && answers; then
		echo $(($(users) + 1)) >"$users_file"
		log "ClickHouse already runs (pid $pid) on $addr; users: $(users)"
		echo "REPUTE_TEST_CLICKHOUSE=$addr"
		return 0
	fi
	stop # a dead or stuck leftover
	if answers; then
		log "something else already answers on $addr; set REPUTE_TESTENV_CLICKHOUSE_PORT"
		return 1
	fi
	local dir
	dir=$(mktemp -d "$tmp/repute-clickhouse.XXXXXX")
	mkdir -p "$dir/data" "$dir/tmp" "$dir/log" "$dir/user_files" "$dir/format_schemas"
	sed -e "s|@DATA@|$dir|g" -e "s|<tcp_port>19000</tcp_port>|<tcp_port>$port</tcp_port>|" \
		"$root/scripts/clickhouse/config.xml" >"$dir/config.xml"
	echo "$dir" >"$dir_file"
	# setsid: the server outlives this script and gets no terminal signals;
	# fd 9 (the lock) is not passed on.
	setsid clickhouse-server --config-file="$dir/config.xml" \
		>"$dir/log/stdout.log" 2>&1 </dev/null 9>&- &
	echo $! >"$pid_file"
	log "started ClickHouse (pid $!) on $addr, data in $dir"
	local waited=0
	until answers; do
		if ! running_pid >/dev/null; then
			log "ClickHouse exited during start; its logs:"
			tail -n 30 "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
			stop
			return 1
		fi
		if [ "$waited" -ge $((start_wait * 10)) ]; then
			log "ClickHouse did not answer on $addr within ${start_wait}s"
			stop
			return 1
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	echo 1 >"$users_file"
	echo "REPUTE_TEST_CLICKHOUSE=$addr"
}

down() {
	lock
	local left=$(($(users) - 1))
	if [ "${1:-}" != --force ] && [ "$left" -gt 0 ] && running_pid >/dev/null; then
		echo "$left" >"$users_file"
		log "ClickHouse still used by $left other run(s): left running (down --force stops it)"
		return 0
	fi
	stop
}

# stop stops the server, if ours runs, and removes its data and state.
stop() {
	local pid
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
		"$tmp"/repute-clickhouse.*) rm -rf "$dir" ;;
		esac
	fi
	rm -f "$pid_file" "$dir_file" "$users_file"
}

status() {
	local pid
	if pid=$(running_pid); then
		local how="not answering"
		answers && how="answering"
		echo "clickhouse: pid $pid on $addr ($how), users $(users), data in $(cat "$dir_file")"
	else
		echo "clickhouse: not running"
	fi
}

case "${1:-}" in
up) up ;;
down) down "${2:-}" ;;
status) status ;;
*)
	echo "usage: $0 up | down [--force] | status" >&2
	exit 2
	;;
esac
