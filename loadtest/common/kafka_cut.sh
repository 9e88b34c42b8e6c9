#!/usr/bin/env bash
# loadtest/common/kafka_cut.sh: cut and restore the harness's Kafka for the
# outage scenarios, keeping its data, its ports and its command line.
# (scripts/kafka.sh start would wipe the data and pick new ports.)
#
#   kafka_cut.sh stop [--kill]   stop the broker (SIGTERM, or SIGKILL with
#                                --kill: a crash); its command line is saved
#   kafka_cut.sh start           relaunch the saved command line and wait
#                                until the broker answers metadata again
#
# Works on $SLUICE_KAFKA_DIR or $SLUICE_HARNESS_DIR/kafka (as scripts/kafka.sh
# does); after `start`, scripts/kafka.sh stop|status work as before.
set -euo pipefail
# shellcheck disable=SC2034 # read by scripts/lib/common.sh
SL_PROG=kafka_cut.sh
# shellcheck source=../../scripts/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib/common.sh"

DIR=${SLUICE_KAFKA_DIR:-$(sl_harness_dir)/kafka}
PIDFILE=$DIR/kafka.pid
SAVED=$DIR/cmdline.saved
OUT=$DIR/logs/kafka.out
PATTERN="kafka.Kafka $DIR/server.properties"

stop() {
  local sig=TERM pid deadline
  [[ ${1:-} == --kill ]] && sig=KILL
  sl_pid_alive "$PIDFILE" "$PATTERN" || sl_die "kafka is not running in $DIR"
  pid=$(<"$PIDFILE")
  tr '\0' '\n' <"/proc/$pid/cmdline" >"$SAVED.tmp"
  mv "$SAVED.tmp" "$SAVED"
  kill -s "$sig" "$pid"
  deadline=$((SECONDS + 60))
  while sl_proc_live "$pid" && ((SECONDS < deadline)); do
    sleep 0.1
  done
  if sl_proc_live "$pid"; then
    sl_warn "kafka (pid $pid) still running after 60 s: killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 1
  fi
  ! sl_proc_live "$pid" || sl_die "kafka (pid $pid) survived SIGKILL"
}

start() {
  local timeout=${SLUICE_KAFKA_READY_TIMEOUT:-120} deadline addr pid
  [[ -s $SAVED ]] || sl_die "no saved command line in $SAVED (stop first)"
  if sl_pid_alive "$PIDFILE" "$PATTERN"; then
    return 0
  fi
  # Like scripts/kafka.sh: its own session; and no inherited descriptor
  # (a caller's pipe held open by the broker would never see EOF).
  python3 - "$SAVED" "$OUT" >"$PIDFILE" <<'PY'
import subprocess, sys
cmd = open(sys.argv[1]).read().split("\n")[:-1]
out = open(sys.argv[2], "ab")
p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                     cwd="/", close_fds=True, start_new_session=True)
print(p.pid)
PY
  pid=$(<"$PIDFILE")
  addr=$(<"$DIR/bootstrap")
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    sl_proc_live "$pid" || sl_die "kafka exited while starting (log: $OUT)"
    if kcat -L -b "$addr" -m 2 2>/dev/null | grep -q '^ *broker 1 at'; then
      return 0
    fi
    sleep 0.2
  done
  sl_die "kafka at $addr not ready after ${timeout}s"
}

case ${1:-} in
  stop) shift; stop "$@" ;;
  start) start ;;
  *) echo "usage: kafka_cut.sh stop [--kill] | start" >&2; exit 2 ;;
esac
