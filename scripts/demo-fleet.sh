#!/usr/bin/env bash
# `make demo-fleet`: the fleet control plane on one machine in a few
# minutes (docs/FLEET.md). The harness's Kafka; 20 daemons with the fleet
# agent on (labels site=..., two with ring=canary); `sluice fleet render`
# signing with a fresh Ed25519 key; a small client writing to every daemon's
# stream "default" (so a change that breaks ingest shows in the health
# gate). The story, with a live table of nodes and phases:
#   1. a policy rolled out in batches: canaries, 25%, 50%, 100%, while one
#      node (demo-20) is offline;
#   2. a second revision of it, demo-20 still offline (two generations
#      missed);
#   3. a bad policy (it removes the stream the clients write to): the
#      canaries apply it, their health gate fails, they roll back, the
#      rollout stops, and no other node ever gets a document of it;
#   4. demo-20 comes back and applies only the newest generation.
# It checks each step, cleans up everything it started and exits non-zero
# when a check fails.
#
#   scripts/demo-fleet.sh [BUILD_DIR]     (make demo-fleet)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
N=20
bold=$(tput bold 2>/dev/null || true); off=$(tput sgr0 2>/dev/null || true)
tty=0; [[ -t 2 ]] && tty=1
say() { printf '%s==> %s%s\n' "$bold" "$*" "$off" >&2; }
note() { printf '    %s\n' "$*" >&2; }
die() { say "demo-fleet FAILED: $*"; exit 1; }

sluice=$build/daemon/sluice
[[ -x $sluice ]] || die "$sluice is missing: build first (make demo-fleet does)"
"$sluice" config-docs | grep '`fleet.enabled`' >/dev/null || die "this sluice has no fleet agent"

work=$(mktemp -d /tmp/sluice-demo-fleet.XXXXXX)
export SLUICE_HARNESS_DIR=$work/harness
dpids=() rpid="" cpid=""
cleanup() {
  local rc=$?
  set +e
  [[ -n $cpid ]] && kill -TERM "$cpid" 2>/dev/null
  [[ -n $rpid ]] && kill -TERM "$rpid" 2>/dev/null
  for p in "${dpids[@]}"; do [[ $p != - ]] && kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${dpids[@]}"; do [[ $p != - ]] && kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  scripts/kafka.sh clean >/dev/null 2>&1
  if [[ $rc -ne 0 ]]; then
    printf 'logs: %s (render.log, d*/log)\n' "$work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "sluice fleet demo: $N daemons, one Kafka, one renderer (a few minutes)"
scripts/kafka.sh start >&2
scripts/kafka.sh wait-ready >&2
brokers=$(scripts/kafka.sh env | sed -n 's/^SLUICE_TEST_KAFKA_BOOTSTRAP=//p')
export SLUICE_FLEET_BROKERS=$brokers
fleet() { "$sluice" fleet "$@"; }
note "Kafka $brokers"

openssl genpkey -algorithm ed25519 -out "$work/fleet.pem" 2>/dev/null
openssl pkey -in "$work/fleet.pem" -pubout -out "$work/fleet.pub"
fleet init --partitions 4 >/dev/null
note "topics sluice.fleet.{policies,desired,status,inventory,rollouts,events}; fleet key $work/fleet.pem"

"$sluice" fleet render --signing-key "$work/fleet.pem" --interval 200ms 2>"$work/render.log" &
rpid=$!

sites=(berlin paris oslo rome)
start_daemon() { # start_daemon I
  local i=$1 id d
  id=$(printf 'demo-%02d' "$i")
  d=$work/d$i
  if [[ ! -f $d/sluice.yaml ]]; then
    mkdir -p "$d"
    local labels="site=${sites[$((i % 4))]}"
    ((i <= 2)) && labels="$labels, ring=canary"
    cat >"$d/sluice.yaml" <<EOF
node:
  id: $id
  data_dir: $d/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: "127.0.0.1:0"
admin:
  address: "127.0.0.1:0"
fleet:
  enabled: true
  topic_prefix: sluice.fleet.
  brokers: "$brokers"
  verify_key: $work/fleet.pub
  labels: [$labels]
  heartbeat: 2s
EOF
  fi
  "$sluice" run -c "$d/sluice.yaml" >>"$d/log" 2>&1 &
  dpids[i]=$!
}
for ((i = 1; i <= N; i++)); do start_daemon "$i"; done
for ((i = 1; i <= N; i++)); do
  for _ in $(seq 1 200); do grep -q ' ready: ' "$work/d$i/log" 2>/dev/null && break; sleep 0.1; done
  grep -q ' ready: ' "$work/d$i/log" || { tail "$work/d$i/log" >&2; die "demo-$i did not start"; }
done
note "$N daemons ready (labels site=berlin|paris|oslo|rome; demo-01, demo-02: ring=canary)"

# The clients: 5 events/s into every daemon's stream "default" (the port
# from each daemon's latest ready line: a restart for new streams moves it).
python3 - "$work" "$N" >"$work/client.log" 2>&1 <<'EOF' &
import http.client, os, re, sys, time
work, n = sys.argv[1], int(sys.argv[2])
def port(i):
    try:
        lines = [l for l in open("%s/d%d/log" % (work, i)) if " ready: " in l]
        return int(re.search(r"http port (\d+)", lines[-1]).group(1))
    except Exception:
        return None
while not os.path.exists(work + "/stop"):
    for i in range(1, n + 1):
        p = port(i)
        if not p:
            continue
        try:
            c = http.client.HTTPConnection("127.0.0.1", p, timeout=1)
            c.request("POST", "/v1/events?stream=default", b'{"source":"s","value":1}',
                      {"Content-Type": "application/json"})
            c.getresponse().read()
            c.close()
        except Exception:
            pass
    time.sleep(0.2)
EOF
cpid=$!

# ---- the live table ------------------------------------------------------------
table() {
  [[ $tty == 1 ]] && printf '\033[H\033[2J' >&2
  printf '%s%s%s\n' "$bold" "$1" "$off" >&2
  fleet status 2>/dev/null | cut -c1-150 >&2 || true
  fleet rollout status 2>/dev/null >&2 || true
}
nodes_json() { fleet status --json 2>/dev/null; }
# count of nodes (JSON from status) satisfying a Python predicate on n
count() {
  nodes_json | python3 -c "import json,sys; d=json.load(sys.stdin); print(sum(1 for n in d if $1))"
}
rollout_state() {
  fleet rollout status "$1" --json 2>/dev/null |
    python3 -c "import json,sys; d=json.load(sys.stdin); print(d[0]['state'] if d else '-')"
}
until_true() { # until_true SECONDS TITLE PYTHON-PREDICATE-COUNT WANT
  local end=$((SECONDS + $1)) got
  while :; do
    table "$2"
    got=$(count "$3" || echo 0)
    [[ $got -ge $4 ]] && return 0
    ((SECONDS < end)) || return 1
    sleep 2
  done
}

until_true 60 "waiting for every node's inventory" "n['labels']" "$N" ||
  die "not every node reported"

say "demo-20 goes offline (stopped) before the first policy"
kill -TERM "${dpids[20]}"; wait "${dpids[20]}" 2>/dev/null || true; dpids[20]=-

cat >"$work/logs.yaml" <<'EOF'
name: logs
selector: ""
priority: 1
patch:
  log: {level: debug}
rollout:
  canary_selector: "ring=canary"
  steps_percent: [25, 50, 100]
  success_threshold: 0.75
  batch_deadline: 90s
gate: {min_healthy: 3s, timeout: 60s, max_error_rate: 0.2}
EOF
say "1. policy logs (log.level debug): canaries, then 25%, 50%, 100% of the rest"
fleet policy apply "$work/logs.yaml" >&2
until_true 180 "1. rollout of logs revision 1" \
  "n['node'] != 'demo-20' and n['phase'] == 'COMMITTED' and n['lkg_generation'] >= 1" $((N - 1)) ||
  die "revision 1 did not reach the online nodes"
g1=$(count "n['node'] != 'demo-20' and n['lkg_generation'] == 1")
note "19 online nodes committed generation 1 ($g1 of them at exactly 1)"

sed -i 's/level: debug}/level: debug, format: json}/' "$work/logs.yaml"
say "2. revision 2 of logs (log.format json too); demo-20 is still offline"
fleet policy apply "$work/logs.yaml" >&2
until_true 180 "2. rollout of logs revision 2" \
  "n['node'] != 'demo-20' and n['phase'] == 'COMMITTED' and n['lkg_generation'] >= 2" $((N - 1)) ||
  die "revision 2 did not reach the online nodes"

cat >"$work/bad.yaml" <<'EOF'
name: streams
selector: ""
priority: 5
patch:
  streams: [{name: other}]
rollout:
  canary_selector: "ring=canary"
  steps_percent: [50, 100]
  batch_deadline: 90s
  max_failures: 1
gate: {min_healthy: 20s, timeout: 60s, max_error_rate: 0.2}
EOF
before=$(nodes_json | python3 -c "import json,sys; print(' '.join('%s=%d' % (n['node'], n['desired_generation']) for n in json.load(sys.stdin)))")
say "3. a bad policy: streams [other] (the clients write to 'default'), canaries first"
fleet policy apply "$work/bad.yaml" >&2
end=$((SECONDS + 150))
while [[ $(rollout_state streams) != STOPPED ]]; do
  table "3. the bad policy on the canaries"
  ((SECONDS < end)) || die "the bad policy's rollout did not stop"
  sleep 2
done
table "3. the bad policy was stopped by its canaries"
rb=$(count "n['node'] in ('demo-01', 'demo-02') and n['phase'] == 'ROLLED_BACK'")
[[ $rb == 2 ]] || die "the canaries did not roll back ($rb of 2)"
after=$(nodes_json | python3 -c "import json,sys; print(' '.join('%s=%d' % (n['node'], n['desired_generation']) for n in json.load(sys.stdin)))")
changed=$(python3 -c "
import sys
b = dict(x.split('=') for x in sys.argv[1].split())
a = dict(x.split('=') for x in sys.argv[2].split())
print(' '.join(k for k in a if a[k] != b.get(k) and k not in ('demo-01', 'demo-02')))" "$before" "$after")
[[ -z $changed ]] || die "nodes outside the canary batch got a document: $changed"
note "the canaries rolled back (health gate); the other 18 never got a document of it"

say "4. demo-20 comes back: it missed generations 1 and 2"
start_daemon 20
until_true 90 "4. demo-20 catching up" \
  "n['node'] == 'demo-20' and n['phase'] == 'COMMITTED' and n['lkg_generation'] >= 1" 1 ||
  die "demo-20 did not catch up"
g=$(count "n['node'] == 'demo-20' and n['lkg_generation'] == 2 and n['observed_generation'] == 2")
[[ $g == 1 ]] || die "demo-20 is not on generation 2"
note "demo-20 applied generation 2 directly (the renderer wrote 1 and 2 while it was away)"
table "the end"
say "demo-fleet done: batches with canaries, a bad change stopped at the canaries, an offline node caught up"
touch "$work/stop"
