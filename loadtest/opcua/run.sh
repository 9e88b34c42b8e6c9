#!/usr/bin/env bash
# loadtest/run opcua: sluice-opcua with many monitored items changing on a
# real OPC UA server (node-opcua from npm by default, asyncua from PyPI with
# --server python; scripts/opcua-servers.sh installs them into a cache),
# publishing into a real daemon. Progress on stderr, one JSON object on
# stdout.
#
#   loadtest/run opcua [--items N] [--rate HZ] [--seconds S] [--server node|python]
#
# Defaults: 10000 items changing at 1 Hz for 60 s. The server changes every
# item to the round number n = 1, 2, ... each round; after the measured
# window it stops, the run waits for the last round to arrive, then the
# store is dumped and every item checked: `missing` counts the values
# between an item's first stored one and the last round that are not in the
# store (0: no change lost). CPU is measured over the window for the
# connector, the server and the daemon, so the JSON says which side limits
# the rate (`server_rate_hz` below --rate: the server could not keep up).
# CreateMonitoredItems goes 5000 items per call: requests of several chunks.
set -euo pipefail
items=10000 rate=1 seconds=60 server=node
while [[ $# -gt 0 ]]; do
  case $1 in
  --items) items=$2; shift 2 ;;
  --rate) rate=$2; shift 2 ;;
  --seconds) seconds=$2; shift 2 ;;
  --server) server=$2; shift 2 ;;
  *) echo "usage: loadtest/run opcua [--items N] [--rate HZ] [--seconds S] [--server node|python]" >&2; exit 2 ;;
  esac
done
: "${SL_BUILD_RELEASE:?run through loadtest/run}"
sl_build_release sluice sluice-opcua
bin=$SL_BUILD_RELEASE
src=$SL_SOURCE_DIR
cache=$("$src/scripts/opcua-servers.sh" "$([[ $server == node ]] && echo node || echo python)" --print)
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_opcua_lt.XXXXXX")
dpid= cpid= spid=
cleanup() {
  for p in $cpid $spid $dpid; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/sluice.yaml" <<YAML
node:
  id: bench-opcua
  data_dir: $work/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: "127.0.0.1:0"
streams:
  - name: readings
  - name: status
YAML
"$bin/daemon/sluice" run -c "$work/sluice.yaml" >"$work/daemon.log" 2>&1 &
dpid=$!
nport=
for _ in $(seq 1 200); do
  nport=$(grep -o 'native tcp 127.0.0.1:0 (port [0-9]*' "$work/daemon.log" 2>/dev/null | grep -o '[0-9]*$' || true)
  [[ -n $nport ]] && break
  sleep 0.1
done
[[ -n $nport ]] || { echo "opcua: the daemon did not start" >&2; cat "$work/daemon.log" >&2; exit 1; }

# The server, as a coprocess: commands on its stdin, answers on its stdout
# (node-opcua also logs there: answers are found by their first word).
if [[ $server == node ]]; then
  export NODE_PATH=$cache/node/node_modules
  coproc SRV { exec node "$src/tests/connectors/opcua/server.js" --load "$items" --rate "$rate" 2>"$work/server.err"; }
else
  coproc SRV { exec "$cache/venv/bin/python" "$src/tests/connectors/opcua/server.py" --load "$items" --rate "$rate" 2>"$work/server.err"; }
fi
spid=$SRV_PID
# answer WORD: the next stdout line starting with WORD, its second field in
# $ans (not in $(...): a subshell has no coprocess descriptors).
answer() {
  local line
  while IFS= read -r -t 120 line <&"${SRV[0]}"; do
    [[ $line == "$1"* ]] && { ans=$(awk '{print $2}' <<<"$line"); return 0; }
  done
  echo "opcua: no '$1' from the server" >&2
  tail -20 "$work/server.err" >&2
  exit 1
}
answer port
sport=$ans
echo "opcua: $server server with $items items at $rate Hz on port $sport" >&2
ns=$([[ $server == node ]] && echo 1 || echo 2)
{
  cat <<YAML
address: "127.0.0.1:$nport"
client_id: bench-opcua
log_level: ${SL_OPCUA_LOG_LEVEL:-info}
stream: readings
status_stream: status
max_buffered: 200000
servers:
  - name: load
    url: opc.tcp://127.0.0.1:$sport/sluice/
    publishing_interval: 250ms
    publish_requests: 10
    max_notifications: 0
    items_per_request: 5000
    items:
YAML
  for ((i = 0; i < items; i++)); do
    echo "      - {name: v$i, node: \"ns=$ns;s=Load.V$i\", interval: 0, queue_size: 4}"
  done
} >"$work/opcua.yaml"
"$bin/connectors/sluice-opcua" -c "$work/opcua.yaml" >"$work/opcua.log" 2>&1 &
cpid=$!

cpu_s() { # utime + stime of a pid, in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}
# Up when every item has its first value (one reading each at least).
for _ in $(seq 1 600); do
  grep -q 'server load: up' "$work/opcua.log" && break
  kill -0 "$cpid" 2>/dev/null || { echo "opcua: the connector exited" >&2; tail "$work/opcua.log" >&2; exit 1; }
  sleep 0.1
done
grep -q 'server load: up' "$work/opcua.log" || { echo "opcua: the connector never came up" >&2; tail "$work/opcua.log" >&2; exit 1; }
sleep 3
echo rounds >&"${SRV[1]}"
answer rounds
r0=$ans
c0=$(cpu_s "$cpid") s0=$(cpu_s "$spid") d0=$(cpu_s "$dpid")
t0=$(date +%s.%N)
echo "opcua: measuring for ${seconds}s from round $r0" >&2
sleep "$seconds"
echo rounds >&"${SRV[1]}"
answer rounds
r1=$ans
c1=$(cpu_s "$cpid") s1=$(cpu_s "$spid") d1=$(cpu_s "$dpid")
t1=$(date +%s.%N)
rss=$(awk '/^RssAnon:/ {print $2}' "/proc/$cpid/status")
echo stop >&"${SRV[1]}"
answer stopped
rend=$ans
echo "opcua: server stopped at round $rend; waiting for the last values" >&2
# Drain: wait until the stored count stops growing for 10 s (bounded: 120 s).
last=-1 still=0
for _ in $(seq 1 240); do
  n=$("$bin/daemon/sluice" store stats -d "$work/data" 2>/dev/null |
    sed -n 's/^stream readings .* \([0-9]*\) events in.*/\1/p')
  if [[ $n == "$last" ]]; then still=$((still + 1)); else still=0; fi
  last=$n
  [[ $still -ge 20 ]] && break
  sleep 0.5
done
kill -TERM "$cpid"
wait "$cpid" 2>/dev/null || true
cpid=
"$bin/daemon/sluice" store dump -d "$work/data" --stream readings >"$work/dump.jsonl" 2>/dev/null
# The connector's own counters (lost: notifications the server no longer
# had; overflows: values after which the server's item queue dropped some).
stats=$(grep -a 'stopped:' "$work/opcua.log" | tail -1)
[[ -n ${SL_OPCUA_KEEP_LOG:-} ]] && cp "$work/opcua.log" "$SL_OPCUA_KEEP_LOG"
echo "opcua: connector $stats" >&2
lost=$(grep -o 'lost [0-9]*' <<<"$stats" | grep -o '[0-9]*' || echo 0)
overflows=$(grep -o 'overflows [0-9]*' <<<"$stats" | grep -o '[0-9]*' || echo 0)
python3 - "$work/dump.jsonl" "$items" "$rend" "$r0" "$r1" "$t0" "$t1" "$c0" "$c1" "$s0" "$s1" "$d0" "$d1" "$rss" "$rate" "$server" "$lost" "$overflows" <<'PY'
import json, sys
(path, items, rend, r0, r1, t0, t1, c0, c1, s0, s1, d0, d1, rss, rate, server,
 lost, overflows) = sys.argv[1:]
items, rend, r0, r1 = int(items), int(rend), int(r0), int(r1)
window = float(t1) - float(t0)
seen = {}
delivered = 0
for line in open(path):
    e = json.loads(line)
    r = e.get("reading") or {}
    v = r.get("double_value", r.get("value"))
    src = e.get("source", "")
    if v is None or not src.startswith("load/v"):
        continue
    delivered += 1
    seen.setdefault(src, set()).add(int(v))
missing = 0
for i in range(items):
    s = seen.get(f"load/v{i}", set())
    first = min((x for x in s if x > 0), default=rend + 1)
    missing += sum(1 for n in range(max(first, 1), rend + 1) if n not in s)
    if not s:
        missing += 1  # an item that never delivered anything
changes = (r1 - r0) * items
cpu_c = float(c1) - float(c0)
print(json.dumps({
    "scenario": "opcua", "server": server, "items": items,
    "rate_hz": float(rate), "window_s": round(window, 2),
    "server_rate_hz": round((r1 - r0) / window, 3),
    "changes_per_s": round(changes / window, 1),
    "delivered": delivered, "missing": missing, "last_round": rend,
    "connector_cpu_s": round(cpu_c, 2),
    "connector_cpu_s_per_million": round(cpu_c / (changes / 1e6), 2) if changes else None,
    "server_cpu_s": round(float(s1) - float(s0), 2),
    "daemon_cpu_s": round(float(d1) - float(d0), 2),
    "connector_rss_anon_kb": int(rss),
    "connector_lost_notifications": int(lost),
    "server_queue_overflows": int(overflows),
}))
PY
