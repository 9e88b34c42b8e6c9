# shellcheck shell=bash
# Shared helpers for the test-harness scripts (scripts/kafka.sh,
# scripts/mosquitto.sh, scripts/harness). Source it; it defines functions and
# SL_ROOT (the source tree) and never runs anything by itself.

# shellcheck disable=SC2034 # used by the scripts that source this file
SL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

# sl_die MSG...: print "PROG: MSG" to stderr and exit 1.
sl_die() {
  printf '%s: %s\n' "${SL_PROG:-$(basename "$0")}" "$*" >&2
  exit 1
}

# sl_warn MSG...: print "PROG: MSG" to stderr.
sl_warn() {
  printf '%s: %s\n' "${SL_PROG:-$(basename "$0")}" "$*" >&2
}

# sl_need CMD...: die unless every CMD is on PATH.
sl_need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null ||
      sl_die "$c not found: run scripts/deps.sh (it installs the brokers' packages)"
  done
}

# sl_harness_dir: the root of every broker's state (data, logs, pid files).
sl_harness_dir() {
  printf '%s\n' "${SLUICE_HARNESS_DIR:-/tmp/sluice-harness-${USER:-$(id -un)}}"
}

# sl_free_ports N [HOST]: print N distinct free TCP ports on HOST (default
# 127.0.0.1), one a line.
# The sockets are all held open together, so the ports differ; another
# process may still take one before the broker binds it (then start fails
# loudly and a retry picks new ones).
sl_free_ports() {
  python3 - "$1" "${2:-127.0.0.1}" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((sys.argv[2], 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
PY
}

# sl_proc_live PID: true while PID runs. A zombie counts as gone: where
# nothing reaps orphans (some containers' PID 1) it would linger forever.
sl_proc_live() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# sl_pid_alive PIDFILE PATTERN: true when PIDFILE names a live process whose
# command line contains PATTERN (so a recycled pid is not mistaken for ours).
sl_pid_alive() {
  local pidfile=$1 pattern=$2 pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  sl_proc_live "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$pattern"
}

# sl_wait_exec PIDFILE PATTERN: after `setsid BIN ... &`, waits (at most
# 5 s) until the child has exec'd BIN: until then its command line is still
# the script's and sl_pid_alive says no, which a wait_ready right after the
# start took for "exited before it was ready" (a CI run under load, with
# empty logs).
sl_wait_exec() {
  local deadline=$((SECONDS + 5))
  until sl_pid_alive "$1" "$2" || ((SECONDS >= deadline)); do
    sleep 0.05
  done
}

# sl_stop_pid PIDFILE PATTERN NAME TIMEOUT_S: SIGTERM the process, wait up to
# TIMEOUT_S for it to exit, then SIGKILL it. Removes PIDFILE. A process that
# is already gone is success.
sl_stop_pid() {
  local pidfile=$1 pattern=$2 name=$3 timeout=$4 pid deadline
  if ! sl_pid_alive "$pidfile" "$pattern"; then
    rm -f "$pidfile"
    return 0
  fi
  pid=$(<"$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while sl_proc_live "$pid" && ((SECONDS < deadline)); do
    sleep 0.2
  done
  if sl_proc_live "$pid"; then
    sl_warn "$name (pid $pid) ignored SIGTERM for ${timeout}s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while sl_proc_live "$pid" && ((SECONDS < deadline)); do
      sleep 0.1
    done
    if sl_proc_live "$pid"; then
      sl_die "$name (pid $pid) survived SIGKILL"
    fi
  fi
  rm -f "$pidfile"
}

# sl_lock DIR: take an exclusive lock on DIR/.lock on fd 9 (waits up to 120 s)
# so that concurrent start/stop calls on one state dir do not race.
sl_lock() {
  mkdir -p "$1"
  exec 9>"$1/.lock"
  flock -w 120 9 || sl_die "timed out waiting for the lock on $1/.lock"
}

# sl_log_tail FILE [LINES]: print the last lines of a log file to stderr,
# framed with its path, for failure reports.
sl_log_tail() {
  local file=$1 lines=${2:-40}
  if [[ -s $file ]]; then
    printf -- '--- last %s lines of %s ---\n' "$lines" "$file" >&2
    tail -n "$lines" "$file" >&2
    printf -- '--- end of %s ---\n' "$file" >&2
  else
    printf -- '(log %s is empty or missing)\n' "$file" >&2
  fi
}
