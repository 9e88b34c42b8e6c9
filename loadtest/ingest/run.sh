#!/usr/bin/env bash
# loadtest/run ingest: native ingest through the C client library into a
# running daemon (sync: always), beside the raw LMDB ceiling measured in the
# same run. Progress on stderr, one JSON object on stdout.
#
#   loadtest/run ingest [--events N] [--connections C] [--batch B]
#
# Runs: (1) full speed: events_per_s, CPU and RSS under load; (2) half of
# that rate for ~5 s: ack latency p50/p99 at half load; (3) raw LMDB
# mdb_put of the same kind of events, same batch size, fsync on.
set -euo pipefail
events=4000000 connections=4 batch=1000
while [[ $# -gt 0 ]]; do
  case $1 in
  --events) events=$2; shift 2 ;;
  --connections) connections=$2; shift 2 ;;
  --batch) batch=$2; shift 2 ;;
  *) echo "usage: loadtest/run ingest [--events N] [--connections C] [--batch B]" >&2; exit 2 ;;
  esac
done
: "${SL_BUILD_RELEASE:?run through loadtest/run}"
sl_build_release sluice sl_loadgen sl_bench_store
bin=$SL_BUILD_RELEASE
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_ingest.XXXXXX")
pid=
cleanup() { [[ -n $pid ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

cat >"$work/sluice.yaml" <<YAML
node:
  id: bench-ingest
  data_dir: $work/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: ""
store:
  sync: always
  budget_bytes: 8GiB
streams:
  - name: readings
YAML
"$bin/daemon/sluice" run -c "$work/sluice.yaml" 2>"$work/daemon.log" &
pid=$!
port=
for _ in $(seq 1 200); do
  port=$(grep -o ' ready: native tcp [^ ]* (port [0-9]*' "$work/daemon.log" 2>/dev/null | grep -o '[0-9]*$' || true)
  [[ -n $port ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.05
done
[[ -n $port ]] || { echo "daemon not ready" >&2; cat "$work/daemon.log" >&2; exit 1; }

rss_anon() { awk '/^RssAnon/ {print $2}' "/proc/$pid/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
sleep 1
idle_rss=$(rss_anon)

echo "ingest: full speed, $events events over $connections connections, batch $batch" >&2
max_rss=0
( while kill -0 "$pid" 2>/dev/null; do rss_anon; sleep 0.2; done ) >"$work/rss" 2>/dev/null &
sampler=$!
c0=$(cpu_ticks)
"$bin/loadtest/ingest/sl_loadgen" --address "127.0.0.1:$port" --connections "$connections" \
  --events "$events" --batch "$batch" --in-flight 16 --max-seconds 120 >"$work/full.json"
c1=$(cpu_ticks)
kill "$sampler" 2>/dev/null || true
max_rss=$(sort -n "$work/rss" | tail -1)
full_rate=$(python3 -c "import json;print(int(json.load(open('$work/full.json'))['events_per_s']))")
half=$((full_rate / 2))
echo "ingest: half load, $half events/s for ~5 s" >&2
"$bin/loadtest/ingest/sl_loadgen" --address "127.0.0.1:$port" --connections "$connections" \
  --events $((half * 5)) --rate "$half" --batch "$batch" --in-flight 16 --max-seconds 60 >"$work/half.json"
kill -TERM "$pid"
wait "$pid"
status=$?
pid=
[[ $status -eq 0 ]] || { echo "daemon exited $status" >&2; exit 1; }
disk_bytes=$(du -sb "$work/data" | cut -f1)

echo "ingest: raw LMDB ceiling, batch $batch" >&2
"$bin/loadtest/store/sl_bench_store" --raw-only "$batch" --seconds 3 >"$work/raw.json"

python3 - "$work" "$events" "$idle_rss" "$max_rss" "$((c1 - c0))" "$hz" "$disk_bytes" "$half" <<'PY'
import json, sys
w, events, idle, mx, ticks, hz, disk, half = sys.argv[1:]
full = json.load(open(w + "/full.json"))
halfj = json.load(open(w + "/half.json"))
raw = json.load(open(w + "/raw.json"))
total_events = full["acked"] + halfj["acked"]
out = {
    "events_per_s": full["events_per_s"],
    "raw_events_per_s": raw["raw_events_per_s"],
    "ratio_to_raw": round(full["events_per_s"] / raw["raw_events_per_s"], 3),
    "ack_latency_p50_ms": halfj["ack_latency_p50_ms"],
    "ack_latency_p99_ms": halfj["ack_latency_p99_ms"],
    "ack_latency_p999_ms": halfj["ack_latency_p999_ms"],
    "half_load_events_per_s": halfj["events_per_s"],
    "full_load_ack_latency_p99_ms": full["ack_latency_p99_ms"],
    "cpu_s_per_million": round(int(ticks) / int(hz) / (full["acked"] / 1e6), 3),
    "rss_anon_kb": int(mx),
    "rss_anon_idle_kb": int(idle),
    "disk_bytes_per_event": round(int(disk) / total_events, 1),
    "events": full["acked"],
    "failed": full["failed"] + halfj["failed"],
    "connections": full["connections"],
    "batch": full["batch"],
    "sync": "always",
}
print(json.dumps(out))
PY
