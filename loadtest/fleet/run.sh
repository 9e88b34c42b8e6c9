#!/usr/bin/env bash
# loadtest/run fleet: one policy written centrally, the time from that write
# to each node's COMMITTED status as seen on the status topic. Nodes are
# real daemons (--daemons N, the daemon's fleet agent: fleet.enabled) and/or
# simulated nodes (--simulated N: sl_fleet_sim, one process running the
# real node machine fleet/node.c per node over in-memory ops, one Kafka
# consumer and producer for all). The render service (`sluice fleet
# render`) runs throughout. Progress on stderr, one JSON object on stdout:
#   nodes, committed, rejected, p50_s, p99_s, max_s, wrong_generation
#   (sl_fleet_sim watch), daemons, simulated, daemons_rss_anon_kb_total
#   (the daemons' summed RssAnon once every node committed).
#
#   loadtest/run fleet [--daemons N] [--simulated N] [--timeout S]
#                      [--brokers HOST:PORT]   (an existing Kafka; default:
#                                               a private one)
# Acceptance (issue 17): --daemons 100: p99_s <= 10, wrong_generation 0;
# --simulated 10000: max_s <= 60.
set -euo pipefail
daemons=0 simulated=0 timeout_s=120 ext_brokers=""
usage() {
  echo "usage: loadtest/run fleet [--daemons N] [--simulated N] [--timeout S] [--brokers B]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case $1 in
  --daemons) daemons=$2; shift 2 ;;
  --simulated) simulated=$2; shift 2 ;;
  --timeout) timeout_s=$2; shift 2 ;;
  --brokers) ext_brokers=$2; shift 2 ;;
  *) usage ;;
  esac
done
[[ $daemons -gt 0 || $simulated -gt 0 ]] || usage
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../common/lib.sh
source "$here/../common/lib.sh"
sl_lt_init fleet
sl_build_release sluice sl_fleet_sim_bin
sluice=$bin/daemon/sluice
sim=$bin/loadtest/fleet/sl_fleet_sim
if [[ $daemons -gt 0 ]] && ! "$sluice" config-docs | grep '`fleet.enabled`' >/dev/null; then
  echo "loadtest/run fleet: this sluice has no fleet agent (fleet.enabled)" >&2
  exit 1
fi
if [[ -n $ext_brokers ]]; then
  brokers=$ext_brokers
else
  sl_lt_kafka_start
fi
prefix="lt$$.$(date +%s)."
fleet() { "$sluice" fleet "$@" --brokers "$brokers" --topic-prefix "$prefix"; }
openssl genpkey -algorithm ed25519 -out "$work/fleet.pem" 2>/dev/null
openssl pkey -in "$work/fleet.pem" -pubout -out "$work/fleet.pub"
parts=$(( (daemons + simulated) / 500 + 6 ))
fleet init --partitions "$parts" >&2

dpids=() rpid="" spid=""
stop_all() {
  set +e
  [[ -n $rpid ]] && kill -TERM "$rpid" 2>/dev/null
  [[ -n $spid ]] && kill -TERM "$spid" 2>/dev/null
  for p in "${dpids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
}
trap 'stop_all; sl_lt_cleanup' EXIT

"$sluice" fleet render --signing-key "$work/fleet.pem" --brokers "$brokers" \
  --topic-prefix "$prefix" 2>"$work/render.log" &
rpid=$!

for ((i = 0; i < daemons; i++)); do
  d=$work/d$i
  mkdir -p "$d"
  cat >"$d/sluice.yaml" <<EOF
node:
  id: daemon-$(printf %05d "$i")
  data_dir: $d/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: ""
kafka:
  enabled: false
fleet:
  enabled: true
  brokers: "$brokers"
  topic_prefix: "$prefix"
  verify_key: $work/fleet.pub
  labels: [site=s$((i % 10))]
  heartbeat: 10s
EOF
  "$sluice" run -c "$d/sluice.yaml" >"$d/log" 2>&1 &
  dpids+=($!)
done
if [[ $simulated -gt 0 ]]; then
  mkfifo "$work/sim.ready"
  "$sim" nodes "$brokers" "$prefix" "$work/fleet.pub" "$simulated" sim \
    >"$work/sim.ready" 2>"$work/sim.log" &
  spid=$!
  read -r -t 300 line <"$work/sim.ready" || true
  [[ ${line:-} == ready ]] || { echo "simulator did not start:" >&2; cat "$work/sim.log" >&2; exit 1; }
fi
# every node's inventory must be on the topic before the policy is written
total=$((daemons + simulated))
say() { echo "fleet: $(date -u +%T) $*" >&2; }
say "$daemons daemon(s), $simulated simulated node(s) started; waiting for their inventories"
for ((t = 0; t < 120; t++)); do
  n=$(fleet status --json 2>/dev/null | grep -c '"node":' || true)
  [[ $n -ge $total ]] && break
  sleep 1
done
[[ $n -ge $total ]] || { echo "only $n of $total nodes reported" >&2; exit 1; }

cat >"$work/policy.yaml" <<EOF
name: loadtest
selector: ""
priority: 1
patch:
  log: {level: warn}
gate: {min_healthy: 1s, timeout: 30s}
EOF
say "all $total nodes reported; writing the policy"
t0=$(date +%s%N)
fleet policy apply "$work/policy.yaml" >&2
result=$("$sim" watch "$brokers" "$prefix" "$t0" "$total" "$timeout_s")
say "measured"
rss=0
for p in "${dpids[@]}"; do
  kb=$(awk '/^RssAnon:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
  rss=$((rss + ${kb:-0}))
done
echo "${result%\}}, \"daemons\": $daemons, \"simulated\": $simulated, \"daemons_rss_anon_kb_total\": $rss}"
