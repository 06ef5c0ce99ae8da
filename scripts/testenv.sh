#!/usr/bin/env bash
# Test services for make test: up | down | status | install.
#
#   up      installs what is missing (Debian packages), starts
#           - a throwaway ClickHouse on 127.0.0.1:19000 from
#             scripts/clickhouse/config.xml, its data in a temporary directory;
#           - a throwaway Dovecot (IMAP, with IDLE and MOVE) on 127.0.0.1:10143
#             from scripts/dovecot/dovecot.conf, one user whose password is
#             made now, maildir storage in a temporary directory;
#           waits until each answers, and prints ONLY the environment the
#           tests read, as KEY=value lines. Logs go to stderr.
#               REPUTE_TEST_CLICKHOUSE=127.0.0.1:19000
#               REPUTE_TEST_IMAP=127.0.0.1:10143
#               REPUTE_TEST_IMAP_USER=<user>
#               REPUTE_TEST_IMAP_PASSWORD=<password>
#   down    stops them by PID (SIGTERM, then SIGKILL after a bound) and
#           removes their temporary directories.
#   status  says what runs.
#   install installs the missing Debian packages only: what up installs
#           first (the services' and chromium), and wrk and nginx-light for
#           repute bench pixel.
#
# Several make test runs at once (colleagues on one machine) share the one
# instance of each: up while it runs reuses it and counts one more user, down
# counts one less and stops it only when none is left (down --force stops it
# now). Tests are not disturbed by the sharing: each uses a ClickHouse
# database and an IMAP folder of its own.
#
# It never touches the system-wide clickhouse-server or dovecot services,
# /var/lib/clickhouse, /etc/dovecot or /var/mail. State (PIDs, directories,
# users) lives in ${REPUTE_TESTENV_DIR:-${TMPDIR:-/tmp}/repute-testenv}; the
# ports can be moved with REPUTE_TESTENV_CLICKHOUSE_PORT and
# REPUTE_TESTENV_IMAP_PORT.
set -euo pipefail

# dovecot and doveconf live in /usr/sbin, which a user's PATH may lack.
PATH=$PATH:/usr/sbin:/sbin
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=${TMPDIR:-/tmp}
state=${REPUTE_TESTENV_DIR:-$tmp/repute-testenv}
start_wait=60 # seconds until a started server must answer
stop_wait=30  # seconds between SIGTERM and SIGKILL

ch_port=${REPUTE_TESTENV_CLICKHOUSE_PORT:-19000}
ch_addr=127.0.0.1:$ch_port
ch_pid_file=$state/clickhouse.pid
ch_dir_file=$state/clickhouse.dir
ch_users_file=$state/clickhouse.users

imap_port=${REPUTE_TESTENV_IMAP_PORT:-10143}
imap_addr=127.0.0.1:$imap_port
imap_user=repute
imap_pid_file=$state/dovecot.pid
imap_dir_file=$state/dovecot.dir
imap_users_file=$state/dovecot.users

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

# install_packages installs the missing Debian packages the tests need;
# with "bench", also wrk and nginx-light, which only repute bench pixel
# uses (nginx's package starts a system nginx on port 80, which make test
# has no business doing).
install_packages() {
	local missing=()
	command -v clickhouse-server >/dev/null || missing+=(clickhouse-server)
	command -v clickhouse-client >/dev/null || missing+=(clickhouse-client)
	command -v dovecot >/dev/null || missing+=(dovecot-core)
	[ -x /usr/lib/dovecot/imap ] || missing+=(dovecot-imapd)
	# The unsubscribe page's end-to-end test drives a headless Chromium.
	[ -x /usr/bin/chromium ] || missing+=(chromium)
	if [ "${1:-}" = bench ]; then
		# repute bench pixel compares with nginx's empty_gif under wrk.
		command -v wrk >/dev/null || missing+=(wrk)
		command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
	fi
	[ ${#missing[@]} -eq 0 ] && return 0
	log "installing ${missing[*]}"
	# Wait for another apt/dpkg (a colleague's install) instead of failing.
	# dovecot-core's postinst may start the system-wide dovecot (143, 993):
	# it is left alone, ours has its own port and directories.
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

# pid_of FILE DIR_FILE PATTERN prints the PID in FILE if that process still
# runs with PATTERN (which names its temporary directory) in its command line,
# so a PID reused by another process is never signalled.
pid_of() {
	[ -f "$1" ] && [ -f "$2" ] || return 1
	local pid dir
	pid=$(cat "$1")
	dir=$(cat "$2")
	[ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "${3//@DIR@/$dir}" || return 1
	echo "$pid"
}

# stop_pid PID NAME: SIGTERM, then SIGKILL after stop_wait seconds.
stop_pid() {
	log "stopping $2 (pid $1)"
	kill -TERM "$1" 2>/dev/null || true
	local waited=0
	while kill -0 "$1" 2>/dev/null; do
		if [ "$waited" -ge $((stop_wait * 10)) ]; then
			log "$2 (pid $1) ignored SIGTERM for ${stop_wait}s: SIGKILL"
			kill -KILL "$1" 2>/dev/null || true
			break
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
}

# remove_dir DIR_FILE PREFIX removes the directory named in DIR_FILE if it is
# one of ours (PREFIX.XXXXXX under $tmp).
remove_dir() {
	[ -f "$1" ] || return 0
	local dir
	dir=$(cat "$1")
	case "$dir" in
	"$tmp/$2".*) rm -rf "$dir" ;;
	esac
}

count() { cat "$1" 2>/dev/null || echo 0; }

# ---- ClickHouse ----

ch_running_pid() { pid_of "$ch_pid_file" "$ch_dir_file" "--config-file=@DIR@/config.xml"; }

ch_answers() {
	clickhouse-client --host 127.0.0.1 --port "$ch_port" --query 'SELECT 1' >/dev/null 2>&1
}

ch_up() {
	local pid
	if pid=$(ch_running_pid) && ch_answers; then
		echo $(($(count "$ch_users_file") + 1)) >"$ch_users_file"
		log "ClickHouse already runs (pid $pid) on $ch_addr; users: $(count "$ch_users_file")"
		echo "REPUTE_TEST_CLICKHOUSE=$ch_addr"
		return 0
	fi
	ch_stop # a dead or stuck leftover
	if ch_answers; then
		log "something else already answers on $ch_addr; set REPUTE_TESTENV_CLICKHOUSE_PORT"
		return 1
	fi
	local dir
	dir=$(mktemp -d "$tmp/repute-clickhouse.XXXXXX")
	mkdir -p "$dir/data" "$dir/tmp" "$dir/log" "$dir/user_files" "$dir/format_schemas"
	sed -e "s|@DATA@|$dir|g" -e "s|<tcp_port>19000</tcp_port>|<tcp_port>$ch_port</tcp_port>|" \
		"$root/scripts/clickhouse/config.xml" >"$dir/config.xml"
	echo "$dir" >"$ch_dir_file"
	# setsid: the server outlives this script and gets no terminal signals;
	# fd 9 (the lock) is not passed on.
	setsid clickhouse-server --config-file="$dir/config.xml" \
		>"$dir/log/stdout.log" 2>&1 </dev/null 9>&- &
	echo $! >"$ch_pid_file"
	log "started ClickHouse (pid $!) on $ch_addr, data in $dir"
	local waited=0
	until ch_answers; do
		if ! ch_running_pid >/dev/null; then
			log "ClickHouse exited during start; its logs:"
			tail -n 30 "$dir/log/stdout.log" "$dir/log/clickhouse-server.err.log" >&2 2>/dev/null || true
			ch_stop
			return 1
		fi
		if [ "$waited" -ge $((start_wait * 10)) ]; then
			log "ClickHouse did not answer on $ch_addr within ${start_wait}s"
			ch_stop
			return 1
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	echo 1 >"$ch_users_file"
	echo "REPUTE_TEST_CLICKHOUSE=$ch_addr"
}

ch_down() {
	local left=$(($(count "$ch_users_file") - 1))
	if [ "${1:-}" != --force ] && [ "$left" -gt 0 ] && ch_running_pid >/dev/null; then
		echo "$left" >"$ch_users_file"
		log "ClickHouse still used by $left other run(s): left running (down --force stops it)"
		return 0
	fi
	ch_stop
}

# ch_stop stops the server, if ours runs, and removes its data and state.
ch_stop() {
	local pid
	if pid=$(ch_running_pid); then
		stop_pid "$pid" ClickHouse
	fi
	remove_dir "$ch_dir_file" repute-clickhouse
	rm -f "$ch_pid_file" "$ch_dir_file" "$ch_users_file"
}

ch_status() {
	local pid
	if pid=$(ch_running_pid); then
		local how="not answering"
		ch_answers && how="answering"
		echo "clickhouse: pid $pid on $ch_addr ($how), users $(count "$ch_users_file"), data in $(cat "$ch_dir_file")"
	else
		echo "clickhouse: not running"
	fi
}

# ---- Dovecot (IMAP) ----

# The master process keeps the command line it was started with.
imap_running_pid() { pid_of "$imap_pid_file" "$imap_dir_file" "-c @DIR@/dovecot.conf"; }

# imap_answers: a TCP connect and the "* OK" greeting, within 5 s.
imap_answers() {
	timeout 5 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		IFS= read -r line <&3 || exit 1
		printf "x LOGOUT\r\n" >&3
		[[ $line == "* OK"* ]]' imap-answers "$imap_port" 2>/dev/null
}

# imap_answers_soon: our running Dovecot is judged stuck (and restarted,
# which ends the sessions of the runs sharing it) only after several tries,
# so that a busy machine does not cost a colleague's run its server.
imap_answers_soon() {
	local try
	for try in 1 2 3; do
		imap_answers && return 0
		sleep 1
	done
	return 1
}

# imap_env prints the lines the tests read; the password is in the running
# instance's directory, so every run sharing it gets the same.
imap_env() {
	local dir
	dir=$(cat "$imap_dir_file")
	echo "REPUTE_TEST_IMAP=$imap_addr"
	echo "REPUTE_TEST_IMAP_USER=$imap_user"
	echo "REPUTE_TEST_IMAP_PASSWORD=$(cat "$dir/password")"
}

imap_up() {
	local pid
	if pid=$(imap_running_pid) && imap_answers_soon; then
		echo $(($(count "$imap_users_file") + 1)) >"$imap_users_file"
		log "Dovecot already runs (pid $pid) on $imap_addr; users: $(count "$imap_users_file")"
		imap_env
		return 0
	fi
	imap_stop # a dead or stuck leftover
	if imap_answers; then
		log "something else already answers on $imap_addr; set REPUTE_TESTENV_IMAP_PORT"
		return 1
	fi
	# As root the mailboxes belong to the existing mail user and the login
	# and internal processes to Debian's dovenull and dovecot users; as
	# another user, Dovecot runs everything as that user (and cannot chroot).
	local login_user=dovenull internal_user=dovecot internal_group=dovecot
	local mail_user=mail mail_group=mail
	if [ "$(id -u)" != 0 ]; then
		login_user=$(id -un)
		internal_user=$login_user
		internal_group=$(id -gn)
		mail_user=$login_user
		mail_group=$(id -gn)
	fi
	local dir password
	dir=$(mktemp -d "$tmp/repute-dovecot.XXXXXX")
	# Traversable: the mail, login and internal users reach their sockets,
	# mailboxes and the passwd file under it.
	chmod 755 "$dir"
	mkdir -p "$dir/run" "$dir/state" "$dir/log" "$dir/mail"
	chown "$mail_user:$mail_group" "$dir/mail"
	password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
	(umask 077 && echo "$password" >"$dir/password")
	(umask 077 && echo "$imap_user:{PLAIN}$password" >"$dir/passwd")
	chgrp "$internal_group" "$dir/passwd"
	chmod 640 "$dir/passwd"
	sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$imap_port|" \
		-e "s|@LOGIN_USER@|$login_user|" -e "s|@INTERNAL_USER@|$internal_user|" \
		-e "s|@INTERNAL_GROUP@|$internal_group|" \
		-e "s|@MAIL_USER@|$mail_user|" -e "s|@MAIL_GROUP@|$mail_group|" \
		-e "s|@MAIL_UID@|$(id -u "$mail_user")|" -e "s|@MAIL_GID@|$(getent group "$mail_group" | cut -d: -f3)|" \
		"$root/scripts/dovecot/dovecot.conf" >"$dir/dovecot.conf"
	if [ "$(id -u)" != 0 ]; then
		local service
		for service in anvil imap-login ipc aggregator old-stats imap-urlauth-login; do
			printf 'service %s {\n  chroot =\n}\n' "$service"
		done >>"$dir/dovecot.conf"
	fi
	echo "$dir" >"$imap_dir_file"
	if ! doveconf -n -c "$dir/dovecot.conf" >/dev/null 2>"$dir/log/doveconf.err"; then
		log "Dovecot refuses $dir/dovecot.conf:"
		cat "$dir/log/doveconf.err" >&2
		imap_stop
		return 1
	fi
	# dovecot checks its configuration and binds its listeners, then goes
	# to the background (setsid: no terminal signals; fd 9, the lock, is not
	# passed on); the master's PID is in base_dir/master.pid.
	if ! setsid dovecot -c "$dir/dovecot.conf" </dev/null >"$dir/log/stdout.log" 2>&1 9>&-; then
		log "Dovecot did not start:"
		cat "$dir/log/stdout.log" "$dir/log/dovecot.log" >&2 2>/dev/null || true
		imap_stop
		return 1
	fi
	local waited=0
	until [ -s "$dir/run/master.pid" ]; do
		if [ "$waited" -ge $((start_wait * 10)) ]; then
			log "Dovecot wrote no $dir/run/master.pid within ${start_wait}s"
			imap_stop
			return 1
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	cp "$dir/run/master.pid" "$imap_pid_file"
	log "started Dovecot $(dovecot --version | cut -d' ' -f1) (pid $(cat "$imap_pid_file")) on $imap_addr, mail in $dir/mail"
	until imap_answers; do
		if ! imap_running_pid >/dev/null; then
			log "Dovecot exited during start; its log:"
			tail -n 30 "$dir/log/stdout.log" "$dir/log/dovecot.log" >&2 2>/dev/null || true
			imap_stop
			return 1
		fi
		if [ "$waited" -ge $((start_wait * 10)) ]; then
			log "Dovecot did not answer on $imap_addr within ${start_wait}s"
			imap_stop
			return 1
		fi
		sleep 0.1
		waited=$((waited + 1))
	done
	echo 1 >"$imap_users_file"
	imap_env
}

imap_down() {
	local left=$(($(count "$imap_users_file") - 1))
	if [ "${1:-}" != --force ] && [ "$left" -gt 0 ] && imap_running_pid >/dev/null; then
		echo "$left" >"$imap_users_file"
		log "Dovecot still used by $left other run(s): left running (down --force stops it)"
		return 0
	fi
	imap_stop
}

# imap_stop stops the server, if ours runs, and removes its mail and state.
# The master stops its children on SIGTERM.
imap_stop() {
	local pid
	if pid=$(imap_running_pid); then
		stop_pid "$pid" Dovecot
	fi
	remove_dir "$imap_dir_file" repute-dovecot
	rm -f "$imap_pid_file" "$imap_dir_file" "$imap_users_file"
}

imap_status() {
	local pid
	if pid=$(imap_running_pid); then
		local how="not answering"
		imap_answers && how="answering"
		echo "dovecot: pid $pid on $imap_addr ($how), users $(count "$imap_users_file"), mail in $(cat "$imap_dir_file")/mail"
	else
		echo "dovecot: not running"
	fi
}

# ---- all services ----

up() {
	install_packages
	lock
	ch_up
	imap_up
}

down() {
	lock
	local failed=0
	ch_down "$@" || failed=1
	imap_down "$@" || failed=1
	return "$failed"
}

status() {
	ch_status
	imap_status
}

case "${1:-}" in
up) up ;;
install) install_packages bench ;;
down) down "${2:-}" ;;
status) status ;;
*)
	echo "usage: $0 up | down [--force] | status | install" >&2
	exit 2
	;;
esac
