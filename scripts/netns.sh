#!/usr/bin/env bash
# A private Kafka behind a network namespace, for the link-fault tests
# (tests/sync/sync_netns_test.c). sluice stays in the root namespace and
# reaches the broker over a veth pair on a private /30, whose link this
# script cuts, flaps or rate-limits. netem is not assumed (this kernel has
# none): a cut is the `blackhole` qdisc or the link set down, a rate limit
# is `tbf`.
#
#   scripts/netns.sh run -- CMD...
#       make netns sluice-net-<pid> and its veth pair, start Kafka inside it
#       (scripts/kafka.sh with SLUICE_KAFKA_HOST = the netns end), export
#       SLUICE_NETNS_DIR, SLUICE_NETNS_SH and SLUICE_TEST_KAFKA_BOOTSTRAP,
#       run CMD, then stop Kafka and delete the netns and the veth pair
#       whatever happened (trap); exit with CMD's code. The state dir (Kafka
#       data and logs) is a fresh temp dir, removed after a clean run and kept
#       after a failure. Exits 77 (ctest: skipped) when no netns can be made
#       here: not root, no ip or tc, netns creation refused, no java/kcat.
#   scripts/netns.sh up | down | status | env
#       the same by hand, state in $SLUICE_NETNS_DIR (default
#       /tmp/sluice-netns-$USER); the netns is named after the caller's pid.
#   scripts/netns.sh cut          both veth ends drop every packet (blackhole
#                                 qdisc): TCP connections hang, no RST, no
#                                 local error, routes stay (a partition)
#   scripts/netns.sh cut --down   the root-side end is set down: its route
#                                 goes, sends fail locally (EHOSTUNREACH,
#                                 from an `unreachable` fallback route)
#   scripts/netns.sh restore      undo a cut (a rate set before stays)
#   scripts/netns.sh rate BITS|off
#                                 tbf on both ends (e.g. 8mbit), or none
#   scripts/netns.sh stats        tc -s qdisc of both ends
#
# cut/restore/rate/stats work on $SLUICE_NETNS_DIR (set by run). A netns of
# this script whose owner process is gone (a run killed with SIGKILL) is
# removed, with whatever still runs in it, by the next run or up.
set -euo pipefail

# shellcheck disable=SC2034 # read by lib/common.sh
SL_PROG=netns.sh
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
SELF=$SL_ROOT/scripts/netns.sh
KAFKA_SH=$SL_ROOT/scripts/kafka.sh
SKIP=77
PREFIX=sluice-net-
# Blocks of 4 addresses in 10.213.0.0/16; one per run, chosen from the
# owner's pid and moved on while it overlaps an address or route here.
NET16=10.213

usage() {
  echo "usage: scripts/netns.sh run -- CMD... | up|down|status|env | cut [--down] | restore | rate BITS|off | stats" >&2
  exit 2
}

state_dir() {
  printf '%s\n' "${SLUICE_NETNS_DIR:-/tmp/sluice-netns-${USER:-$(id -un)}}"
}

# load: read the state written by create (NS, VR, VN, ADDR_ROOT, ADDR_NS...).
load() {
  local f
  f=$(state_dir)/netns.env
  [[ -s $f ]] || sl_die "no netns in $(state_dir) (scripts/netns.sh up, or run)"
  # shellcheck disable=SC1090
  source "$f"
}

# can_netns: why a netns cannot be made here (empty: it can).
cannot_netns() {
  local c
  if [[ $(id -u) -ne 0 ]]; then
    echo "not root (a network namespace needs CAP_NET_ADMIN)"
    return
  fi
  for c in ip tc python3 java kcat setsid flock; do
    if ! command -v "$c" >/dev/null; then
      echo "$c not found (scripts/deps.sh installs the harness's packages)"
      return
    fi
  done
}

# gc: remove our netns whose owner process is gone, with what runs in it.
gc() {
  local ns owner pid
  while read -r ns _; do
    [[ $ns =~ ^${PREFIX}([0-9]+)$ ]] || continue
    owner=${BASH_REMATCH[1]}
    ! sl_proc_live "$owner" || continue
    sl_warn "removing stale netns $ns (owner $owner is gone)"
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
    ip netns del "$ns" 2>/dev/null || true
    ip link del "slr$owner" 2>/dev/null || true
  done < <(ip netns list 2>/dev/null)
  # The fallback routes of removed pairs (see create): a live pair has an
  # address in its block.
  while read -r _ net _; do
    [[ -n $(ip -4 -o addr show to "$net") ]] ||
      ip route del unreachable "$net" metric 4000 2>/dev/null || true
  done < <(ip -4 route show type unreachable | grep "^unreachable ${NET16//./\\.}\\." || true)
}

# pick_block OWNER: print the first /30 block (dotted base) of 10.213/16,
# starting from OWNER's slot, that overlaps no address and no route here.
pick_block() {
  python3 - "$1" "$NET16" \
    <(ip -j -4 addr show) <(ip -j -4 route show table all) <<'PY'
import ipaddress, json, sys
owner, net16 = int(sys.argv[1]), sys.argv[2]
taken = []
for a in json.load(open(sys.argv[3])):
    for i in a.get("addr_info", []):
        taken.append(ipaddress.ip_network(f"{i['local']}/{i['prefixlen']}", strict=False))
for r in json.load(open(sys.argv[4])):
    d = r.get("dst", "")
    if d and d != "default":
        taken.append(ipaddress.ip_network(d if "/" in d else d + "/32", strict=False))
for k in range(1024):
    b = (owner + k) % 16384
    net = ipaddress.ip_network(f"{net16}.{b >> 6}.{(b & 63) << 2}/30")
    if not any(net.overlaps(t) for t in taken):
        print(net.network_address)
        sys.exit(0)
sys.exit(1)
PY
}

# create OWNER: the netns, the veth pair and its addresses; writes netns.env.
# Exits 77 when the kernel refuses the netns.
create() {
  local owner=$1 dir ns vr vn base a b c d
  dir=$(state_dir)
  ns=$PREFIX$owner
  vr=slr$owner # root-side end (interface names are at most 15 bytes)
  vn=sln$owner # netns-side end
  mkdir -p "$dir"
  exec 8>/tmp/sluice-netns.lock
  flock -w 60 8 || sl_die "timed out waiting for /tmp/sluice-netns.lock"
  gc
  if ! ip netns add "$ns" 2>"$dir/ip.err"; then
    exec 8>&-
    echo "netns.sh: SKIP: cannot create a network namespace: $(<"$dir/ip.err")"
    exit "$SKIP"
  fi
  # From here on, a failure leaves a netns: the caller's trap removes it.
  printf 'NS=%s\nVR=%s\nVN=%s\nOWNER=%s\n' "$ns" "$vr" "$vn" "$owner" \
    >"$dir/netns.env"
  base=$(pick_block "$owner") || sl_die "no free /30 in $NET16.0.0/16"
  IFS=. read -r a b c d <<<"$base"
  ip link add "$vr" type veth peer name "$vn" netns "$ns"
  ip addr add "$a.$b.$c.$((d + 1))/30" dev "$vr"
  ip -n "$ns" addr add "$a.$b.$c.$((d + 2))/30" dev "$vn"
  # While the root-side end is down its route is gone, and the default
  # route would carry the packets elsewhere (here a gateway answers RST):
  # this fallback makes them fail locally instead (EHOSTUNREACH).
  ip route add unreachable "$base/30" metric 4000
  printf 'BLOCK=%s/30\n' "$base" >>"$dir/netns.env"
  ip link set "$vr" up
  ip -n "$ns" link set "$vn" up
  ip -n "$ns" link set lo up # Kafka's controller listener is on 127.0.0.1
  exec 8>&-
  printf 'ADDR_ROOT=%s\nADDR_NS=%s\nRATE=off\n' "$a.$b.$c.$((d + 1))" \
    "$a.$b.$c.$((d + 2))" >>"$dir/netns.env"
}

# destroy: stop the broker, delete the netns and the veth pair. Idempotent.
destroy() {
  local dir f pid rc=0
  dir=$(state_dir)
  f=$dir/netns.env
  [[ -s $f ]] || return 0
  # shellcheck disable=SC1090
  source "$f"
  SLUICE_KAFKA_DIR=$dir/kafka "$KAFKA_SH" clean || rc=1
  for pid in $(ip netns pids "$NS" 2>/dev/null); do
    sl_warn "killing pid $pid left in $NS"
    kill -KILL "$pid" 2>/dev/null || true
  done
  ip netns del "$NS" 2>/dev/null || true
  ip link del "$VR" 2>/dev/null || true # gone with the netns, normally
  [[ -z ${BLOCK:-} ]] || ip route del unreachable "$BLOCK" metric 4000 2>/dev/null || true
  if ip netns list | grep -q "^$NS\b" || ip link show "$VR" >/dev/null 2>&1; then
    sl_warn "could not remove $NS / $VR"
    rc=1
  fi
  rm -f "$f"
  return "$rc"
}

# kafka_up: Kafka inside the netns, listening on the netns end.
kafka_up() {
  local dir
  dir=$(state_dir)
  load
  "$KAFKA_SH" fetch # in the root namespace: the netns has no route out
  SLUICE_KAFKA_DIR=$dir/kafka SLUICE_KAFKA_HOST=$ADDR_NS \
    ip netns exec "$NS" "$KAFKA_SH" start
  SLUICE_KAFKA_DIR=$dir/kafka ip netns exec "$NS" "$KAFKA_SH" wait-ready
}

env_lines() {
  local dir
  dir=$(state_dir)
  load
  printf 'SLUICE_NETNS_DIR=%s\n' "$dir"
  printf 'SLUICE_NETNS_SH=%s\n' "$SELF"
  printf 'SLUICE_TEST_KAFKA_BOOTSTRAP=%s\n' "$(<"$dir/kafka/bootstrap")"
}

up() {
  local why
  why=$(cannot_netns)
  if [[ -n $why ]]; then
    echo "netns.sh: SKIP: $why"
    exit "$SKIP"
  fi
  [[ ! -s $(state_dir)/netns.env ]] || sl_die "$(state_dir) has a netns already (down first)"
  create "$PPID"
  kafka_up
  env_lines
}

status() {
  load
  echo "netns $NS: $VR $ADDR_ROOT <-> $VN $ADDR_NS, rate $RATE"
  SLUICE_KAFKA_DIR=$(state_dir)/kafka "$KAFKA_SH" status
}

# set_qdisc KIND...: the same root qdisc on both ends ("" = none).
set_qdisc() {
  if [[ $# -eq 0 ]]; then
    tc qdisc del dev "$VR" root 2>/dev/null || true
    ip netns exec "$NS" tc qdisc del dev "$VN" root 2>/dev/null || true
    return 0
  fi
  tc qdisc replace dev "$VR" root "$@"
  ip netns exec "$NS" tc qdisc replace dev "$VN" root "$@"
}

# The link as the state says it should be without a cut: up, and rate-
# limited when a rate is set. burst 64kb covers a 64 KB GSO segment;
# latency bounds tbf's queue (longer waits are dropped, as on a real
# metered link).
apply_rate() {
  if [[ $RATE == off ]]; then
    set_qdisc
  else
    set_qdisc tbf rate "$RATE" burst 64kb latency 200ms
  fi
}

cut() {
  load
  case ${1:-} in
    "") set_qdisc blackhole ;;
    --down) ip link set "$VR" down ;;
    *) usage ;;
  esac
}

restore() {
  load
  ip link set "$VR" up
  apply_rate
}

rate() {
  [[ $# -eq 1 ]] || usage
  load
  [[ $1 == off || $1 =~ ^[0-9]+(bit|kbit|mbit|gbit)$ ]] ||
    sl_die "rate: want e.g. 8mbit, 500kbit or off, not $1"
  sed -i "s/^RATE=.*/RATE=$1/" "$(state_dir)/netns.env"
  RATE=$1
  apply_rate
}

stats() {
  load
  echo "== $VR (root side: sluice -> Kafka)"
  tc -s qdisc show dev "$VR"
  echo "== $VN (netns side: Kafka -> sluice)"
  ip netns exec "$NS" tc -s qdisc show dev "$VN"
}

# ---- run -------------------------------------------------------------------

RUN_CHILD=""
RUN_DIR=""

on_exit() {
  local rc=$1
  trap - EXIT INT TERM HUP
  set +e
  if ! destroy; then
    sl_warn "cleanup failed: check 'ip netns list' and 'ip link'"
    [[ $rc -ne 0 ]] || rc=1
  fi
  if [[ $rc -ne 0 && $rc -ne $SKIP ]]; then
    sl_warn "failed with exit code $rc; state (Kafka log) kept in $RUN_DIR"
  else
    rm -rf "$RUN_DIR"
  fi
  exit "$rc"
}

on_signal() {
  if [[ -n $RUN_CHILD ]]; then
    kill -s "$1" "$RUN_CHILD" 2>/dev/null || true
  else
    exit $((128 + $2))
  fi
}

run() {
  local why line rc
  [[ ${1:-} == -- ]] && shift
  [[ $# -gt 0 ]] || usage
  why=$(cannot_netns)
  if [[ -n $why ]]; then
    echo "netns.sh: SKIP: $why"
    exit "$SKIP"
  fi
  RUN_DIR=$(mktemp -d "/tmp/sluice-netns-run.XXXXXX")
  export SLUICE_NETNS_DIR=$RUN_DIR
  trap 'on_exit $?' EXIT
  trap 'on_signal INT 2' INT
  trap 'on_signal TERM 15' TERM
  trap 'on_signal HUP 1' HUP
  create "$$"
  kafka_up
  while IFS= read -r line; do
    export "${line?}"
  done < <(env_lines)
  (
    trap - INT QUIT
    exec "$@"
  ) <&0 &
  RUN_CHILD=$!
  while :; do
    rc=0
    wait "$RUN_CHILD" || rc=$?
    kill -0 "$RUN_CHILD" 2>/dev/null || break
  done
  exit "$rc"
}

[[ $# -ge 1 ]] || usage
cmd=$1
shift
case $cmd in
  run) run "$@" ;;
  up) up ;;
  down) destroy ;;
  status) status ;;
  env) env_lines ;;
  cut) cut "$@" ;;
  restore) restore ;;
  rate) rate "$@" ;;
  stats) stats ;;
  *) usage ;;
esac
