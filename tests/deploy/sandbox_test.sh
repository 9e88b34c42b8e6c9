#!/bin/bash
# The daemon inside an approximation of the unit's sandbox, without PID-1
# systemd: a private mount namespace where every mount is read-only
# (ProtectSystem=strict) except the state and runtime directories, a private
# /tmp (PrivateTmp), an unprivileged UID and GID that own nothing else
# (DynamicUser), no capabilities in any set and no_new_privs
# (CapabilityBoundingSet=, AmbientCapabilities=, NoNewPrivileges), UMask 0077.
# The unit's seccomp settings are applied as systemd would (seccomp_exec.py:
# SystemCallFilter= expanded with systemd-analyze's own tables, EPERM,
# native architecture, RestrictAddressFamilies=, MemoryDenyWriteExecute=).
# It must start, answer /readyz, acknowledge an HTTP event, stop cleanly on
# SIGTERM, and find the event again after a restart; `store verify` passes.
# A copy of the unit that also denies @network-io must keep it from starting
# (the filter bites). Not covered: the other Protect* settings,
# PrivateDevices, DynamicUser's UID allocation (systemd as PID 1).
#
#   sandbox_test.sh SLUICE_BINARY       exit 77 unless root with unshare/setpriv
set -u
sluice=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
for t in unshare setpriv curl python3 findmnt systemd-analyze; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
[[ $(id -u) -eq 0 ]] || { echo "SKIP: needs root (mount namespace, setpriv)"; exit 77; }
here=$(cd "$(dirname "$0")" && pwd)
/usr/bin/python3 -c 'import seccomp' 2>/dev/null ||
  { echo "SKIP: python3-seccomp not installed (apt-get install python3-seccomp)"; exit 77; }
unit=$here/../../deploy/systemd/sluice.service
# A fresh mount namespace must be allowed (not in every container).
unshare --mount true 2>/dev/null || { echo "SKIP: unshare --mount not permitted here"; exit 77; }

uid=$((61184 + RANDOM % 1000)) # a UID and GID that own no file (DynamicUser's range)
base=$(mktemp -d -p /var/tmp sluice-sandbox.XXXXXX)
chmod 0755 "$base"
state=$base/state run=$base/run etc=$base/etc
mkdir -p "$state" "$run" "$etc"
chown "$uid:$uid" "$state" "$run"
chmod 0700 "$state"
fail=0 pid=
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }
cleanup() {
  [[ -n $pid ]] && kill -TERM "$pid" 2>/dev/null
  rm -rf "$base"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port) admin=$(free_port)
cat >"$etc/sluice.yaml" <<CFG
node:
  id: sandbox-test
  data_dir: $state
listeners:
  native:
    tcp: ""
    unix: $run/native.sock
  http:
    address: 127.0.0.1:$http
admin:
  address: 127.0.0.1:$admin
# The uplink runs too (librdkafka's threads, name resolution with netlink
# refused, connects), against a port where no broker listens.
kafka:
  enabled: true
  brokers: localhost:$(free_port)
  delivery: at_least_once
streams:
  - name: telemetry
CFG
chmod 0644 "$etc/sluice.yaml"
# The checkout may lie under /tmp, which the namespace covers with a fresh
# tmpfs (PrivateTmp): what runs inside is copied out of it first.
install -m 0755 "$sluice" "$base/sluice"
install -m 0644 "$here/seccomp_exec.py" "$base/seccomp_exec.py"
install -m 0644 "$unit" "$base/sluice.service"
sluice=$base/sluice unit=$base/sluice.service

start() {
  # The namespace's shell execs setpriv, which execs the seccomp loader, which
  # execs sluice: $! is the daemon. $1: the unit whose filter applies.
  unshare --mount --propagation private -- bash -c '
    set -e
    for m in $(findmnt -rn -o TARGET | sort -u); do
      case $m in /proc* | /sys* | /dev*) continue ;; esac
      mount -o remount,bind,ro "$m" 2>/dev/null || true
    done
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
    for d in "$1" "$2"; do # StateDirectory, RuntimeDirectory: writable
      mount --bind "$d" "$d"
      mount -o remount,bind,rw "$d"
    done
    umask 0077
    exec setpriv --reuid="$3" --regid="$3" --clear-groups --no-new-privs \
      --inh-caps=-all --ambient-caps=-all --bounding-set=-all -- \
      /usr/bin/python3 "$6" "$7" -- "$4" run -c "$5"' sandbox "$state" "$run" "$uid" \
    "$sluice" "$etc/sluice.yaml" "$base/seccomp_exec.py" "${1:-$unit}" \
    >>"$base/daemon.log" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 30))
  while ((SECONDS < deadline)); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$admin/readyz") == 200 ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.05 # polling /readyz, with a deadline
  done
  return 1
}
stop() {
  kill -TERM "$pid"
  wait "$pid"
  local rc=$?
  pid=
  return $rc
}

if start; then ok "starts and answers /readyz as uid $uid, no capabilities, read-only root, the unit's seccomp filter"; else
  bad "did not become ready: $(tail -5 "$base/daemon.log")"; exit 1
fi
caps=$(grep -E '^Cap(Eff|Prm|Bnd|Amb)' /proc/"$pid"/status | awk '{print $2}' | sort -u)
[[ $caps == 0000000000000000 ]] && ok "capability sets all empty" || bad "capabilities: $caps"
grep -q '^NoNewPrivs:[[:space:]]*1' /proc/"$pid"/status && ok "no_new_privs set" || bad "no_new_privs not set"
grep -q '^Seccomp:[[:space:]]*2' /proc/"$pid"/status && ok "seccomp filter mode on the daemon" || bad "no seccomp filter on the daemon"
[[ $(stat -c %u "$run/native.sock" 2>/dev/null) == "$uid" ]] && ok "unix socket in the runtime directory" ||
  bad "no unix socket in $run"
code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary '{"source":"sandbox/probe","value":1}' "http://127.0.0.1:$http/v1/events")
[[ $code == 2* ]] && ok "HTTP event acknowledged ($code)" || bad "HTTP event: $code"
# The uplink resolved "localhost" and tried to connect under the filter
# (connection refused is the expected outcome: nothing listens there).
deadline=$((SECONDS + 15))
until grep -q 'Connect to ipv4#127.0.0.1' "$base/daemon.log" || ((SECONDS > deadline)); do
  sleep 0.1 # polling the log, with a deadline
done
grep -q 'Connect to ipv4#127.0.0.1' "$base/daemon.log" &&
  ok "uplink resolved localhost and connected (refused: no broker) under the filter" ||
  bad "no uplink connection attempt in the log"
if stop; then ok "SIGTERM: exit 0"; else bad "SIGTERM: exit $?: $(tail -3 "$base/daemon.log")"; fi

files=$(find "$state" -newer "$etc/sluice.yaml" -type f | wc -l)
((files > 0)) && ok "the store is written in the state directory ($files files)" || bad "nothing in $state"
find "$state" -type f ! -user "$uid" | grep -q . && bad "state files not owned by $uid" || ok "state files owned by $uid"
perm=$(find "$state" -type f -perm /077 | head -1)
[[ -z $perm ]] && ok "no state file readable by group or others" || bad "group/other access: $perm"

if start; then ok "restarts on the same store"; else bad "restart: $(tail -5 "$base/daemon.log")"; exit 1; fi
events=$(curl -s "http://127.0.0.1:$admin/v1/status" | python3 -c '
import json, sys
d = json.load(sys.stdin)
s = d.get("streams", [])
s = s.values() if isinstance(s, dict) else s
print(sum(int(x.get("events", 0)) for x in s))' 2>/dev/null)
[[ ${events:-0} -ge 1 ]] && ok "the event is still there after the restart ($events)" ||
  bad "events after restart: '${events:-}'"
stop || bad "second SIGTERM: exit $?"
out=$(setpriv --reuid="$uid" --regid="$uid" --clear-groups "$sluice" store verify -d "$state" 2>&1) &&
  ok "store verify passes" || bad "store verify: $out"

# The filter is real: the same unit denying @network-io keeps it from starting.
sed 's/^SystemCallFilter=~@privileged @resources$/&\nSystemCallFilter=~@network-io/' "$unit" >"$base/narrow.service"
grep -q '^SystemCallFilter=~@network-io' "$base/narrow.service" || bad "could not build the narrow unit"
if start "$base/narrow.service"; then
  bad "the daemon started with @network-io denied: the filter is not applied"
  stop
else
  ok "with @network-io also denied it cannot start: the filter applies ($(grep -m1 -o 'Operation not permitted\|EPERM\|cannot[^:]*' "$base/daemon.log" | head -1))"
  pid=
fi

# The read-only root is real: a store outside the state directory, owned by
# the same UID, cannot be written.
mkdir -m 0700 "$base/elsewhere" && chown "$uid:$uid" "$base/elsewhere"
sed -i "s#data_dir: .*#data_dir: $base/elsewhere#" "$etc/sluice.yaml"
if start; then
  bad "a store outside the state directory was writable"
  stop
else
  grep -q 'Read-only file system' "$base/daemon.log" &&
    ok "a store outside the state directory: refused (read-only file system)" ||
    bad "outside store failed for another reason: $(tail -2 "$base/daemon.log")"
  pid=
fi
exit $fail
