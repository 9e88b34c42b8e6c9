#!/usr/bin/env bash
# loadtest/run http: HTTP JSON ingest to Kafka (issue 21), with the native
# path in the same run as the baseline. Progress on stderr, one JSON object
# on stdout. docs/BENCHMARKS.md "http".
#
#   loadtest/run http [--events N] [--connections C] [--batch B]
#                     [--steady-rate R] [--steady-seconds S]
#
# The load generator is sluice-sim (connectors/sim: realistic readings; its
# HTTP output POSTs JSON lines over one keep-alive connection, B events per
# request, and counts a 2xx as acked): C processes at once, so C keep-alive
# connections. Each case runs its own daemon (defaults: store.sync always,
# exactly-once; the stream `format: json`, compression zstd) against a
# private Kafka, and its CPU (user + sys of the daemon process only, from
# /proc/PID/stat) is taken from before the load until the uplink has
# delivered every event, so it holds ingest and the drain:
#
#   http     C connections flat out, N events       events_per_s, cpu_us_per_event
#   native   the same N events over C native connections (the C client
#            library, sluice-sim --output native): the baseline
#   steady   HTTP at R events/s for S s              cpu_us_per_event_steady
#   lz4      as http with `compression: lz4`         kafka_bytes_per_event_lz4,
#                                                    cpu_us_per_event_lz4
#
# ratio_to_native = http's cpu_us_per_event / native's. Each case ends with
# sl_kcheck, a read_committed consumer: missing and duplicates per node,
# stream and offset. kafka_bytes_per_event: the broker's log segment bytes
# of the case's topic (record batches after compression, headers included)
# per event. rss_anon_kb_max: the daemon's RssAnon, sampled every 0.2 s.
set -euo pipefail
events=200000 conns=8 batch=100 steady_rate=20000 steady_seconds=10
while [[ $# -gt 0 ]]; do
  case $1 in
  --events) events=$2; shift 2 ;;
  --connections) conns=$2; shift 2 ;;
  --batch) batch=$2; shift 2 ;;
  --steady-rate) steady_rate=$2; shift 2 ;;
  --steady-seconds) steady_seconds=$2; shift 2 ;;
  *) echo "usage: loadtest/run http [--events N] [--connections C] [--batch B] [--steady-rate R] [--steady-seconds S]" >&2; exit 2 ;;
  esac
done
# shellcheck source=../common/lib.sh
. "$(dirname "$0")/../common/lib.sh"
sl_lt_init http
sl_build_release sluice sluice-sim sl_kcheck
hz=$(getconf CLK_TCK)

echo "http: starting Kafka" >&2
sl_lt_kafka_start
kdata=$SLUICE_HARNESS_DIR/kafka/data

cpu_ticks() { # PID: utime + stime of the process (all its threads)
  awk '{print $14 + $15}' "/proc/$1/stat"
}

# run_case NAME OUTPUT TOTAL_RATE COUNT_PER_CONNECTION [CODEC]: one daemon,
# the load, the drain, the check; writes $work/NAME.json.
run_case() {
  local name=$1 output=$2 rate=$3 per=$4 codec=${5:-zstd} d=$work/$1
  mkdir -p "$d"
  cat >"$d/sluice.yaml" <<YAML
node:
  id: lt-http-$name
  data_dir: $d/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: "127.0.0.1:0"
admin:
  address: ""
kafka:
  enabled: true
  brokers: "$brokers"
streams:
  - name: readings
    topic: lt-http-$name
    format: json
    compression: $codec
YAML
  "$bin/daemon/sluice" run -c "$d/sluice.yaml" 2>"$d/daemon.log" &
  pid=$!
  local line="" port
  for _ in $(seq 1 300); do
    line=$(grep ' ready: ' "$d/daemon.log" || true)
    [[ -n $line ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$d/daemon.log" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $line ]] || { echo "http: daemon not ready" >&2; exit 1; }
  if [[ $output == http ]]; then
    port=$(sed -n 's/.* http port \([0-9]*\),.*/\1/p' <<<"$line")
  else
    port=$(sed -n 's/.* ready: native tcp [^ ]* (port \([0-9]*\)).*/\1/p' <<<"$line")
  fi
  # The uplink reached Kafka (its first transaction) before the load.
  sleep 2
  ( while kill -0 "$pid" 2>/dev/null; do
      sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$pid/status" 2>/dev/null
      sleep 0.2
    done >"$d/rss" ) &
  local c0 t0 t1 c1
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s.%N)
  # Each generator takes its share of the rate (0: flat out).
  local each
  each=$(awk -v r="$rate" -v c="$conns" 'BEGIN {print r / c}')
  echo "http: $name: $conns x $per events over $output ($([[ $rate == 0 ]] && echo "flat out" || echo "$rate events/s"))" >&2
  local sims=()
  for i in $(seq 1 "$conns"); do
    "$bin/connectors/sluice-sim" --output "$output" --address "127.0.0.1:$port" \
      --client_id "lt-$name-$i" --seed "$i" --sources 100 \
      --inference_sources 0 --rate "$each" --count "$per" --batch "$batch" \
      --log_level warn >"$d/sim$i.out" 2>>"$d/sim.log" &
    sims+=($!)
  done
  local st=0
  for p in "${sims[@]}"; do wait "$p" || st=1; done
  t1=$(date +%s.%N)
  [[ $st -eq 0 ]] || { echo "http: $name: a generator failed" >&2; cat "$d"/sim*.out "$d/sim.log" >&2; exit 1; }
  local acked
  acked=$(cat "$d"/sim*.out | sed -n 's/.* acked \([0-9]*\) .*/\1/p' | awk '{s += $1} END {print s + 0}')
  # Delivered: the uplink's consumer cursor past every stored event (read
  # from outside: `sluice store stats`, no request to the daemon).
  local stored next deadline=$((SECONDS + 600))
  while :; do
    stats=$("$bin/daemon/sluice" store stats -d "$d/data" 2>/dev/null || true)
    stored=$(sed -n 's/^stream readings (id [0-9]*): offsets [0-9]*\.\.\([0-9]*\),.*/\1/p' <<<"$stats" | head -1)
    next=$(sed -n 's/^  consumer [^:]*: next \([0-9]*\),.*/\1/p' <<<"$stats" | sort -n | tail -1)
    [[ -n $stored && -n $next && $next -ge $stored && $stored -ge $acked ]] && break
    ((SECONDS < deadline)) || { echo "http: $name: not delivered in 10 minutes ($next of $stored)" >&2; exit 1; }
    sleep 0.2
  done
  c1=$(cpu_ticks "$pid")
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
  wait 2>/dev/null || true
  # Every offset exactly once, read_committed.
  printf 'expect readings %s\ncheck\nquit\n' "$stored" >"$d/control"
  "$bin/loadtest/common/sl_kcheck" --brokers "$brokers" --node "lt-http-$name" \
    --topic "lt-http-$name" --control "$d/control" --timeout 120 \
    >"$d/kcheck.json" 2>"$d/kcheck.log" || true
  python3 - "$d" "$name" "$acked" "$stored" "$t0" "$t1" "$c0" "$c1" "$hz" \
    "$kdata/lt-http-$name-0" >"$work/$name.json" <<'PY'
import glob, json, os, sys
d, name, acked, stored, t0, t1, c0, c1, hz, seg = sys.argv[1:]
acked, stored = int(acked), int(stored)
secs = float(t1) - float(t0)
cpu_s = (int(c1) - int(c0)) / int(hz)
k = json.loads(open(d + "/kcheck.json").read().strip().splitlines()[-1])
rss = [int(x) for x in open(d + "/rss").read().split() if x.strip()]
segb = sum(os.path.getsize(f) for f in glob.glob(seg + "/*.log"))
print(json.dumps({
    "events": acked, "stored": stored, "seconds": round(secs, 2),
    "events_per_s": round(acked / secs),
    "cpu_s": round(cpu_s, 2),
    "cpu_us_per_event": round(cpu_s * 1e6 / acked, 2),
    "kafka_bytes_per_event": round(segb / stored, 1),
    "rss_anon_kb_max": max(rss) if rss else None,
    "missing": k.get("missing"), "duplicates": k.get("duplicates"),
}))
PY
  echo "http: $name: $(cat "$work/$name.json")" >&2
}

per=$(( (events + conns - 1) / conns ))
run_case http http 0 "$per"
run_case native native 0 "$per"
steady_per=$(( steady_rate * steady_seconds / conns ))
run_case steady http "$steady_rate" "$steady_per"
run_case lz4 http 0 "$per" lz4

python3 - "$work" "$conns" "$batch" "$steady_rate" <<'PY'
import json, sys
w, conns, batch, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
h, n, s, l = (json.load(open(f"{w}/{x}.json"))
              for x in ("http", "native", "steady", "lz4"))
print(json.dumps({
    "scenario": "http", "connections": conns, "batch": batch,
    "events": h["events"],
    "events_per_s": h["events_per_s"],
    "cpu_us_per_event": h["cpu_us_per_event"],
    "cpu_us_per_event_steady": s["cpu_us_per_event"],
    "steady_rate": rate,
    "native_events_per_s": n["events_per_s"],
    "native_cpu_us_per_event": n["cpu_us_per_event"],
    "ratio_to_native": round(h["cpu_us_per_event"] / n["cpu_us_per_event"], 2),
    "kafka_bytes_per_event": h["kafka_bytes_per_event"],
    "kafka_bytes_per_event_lz4": l["kafka_bytes_per_event"],
    "cpu_us_per_event_lz4": l["cpu_us_per_event"],
    "rss_anon_kb_max": max(x["rss_anon_kb_max"] or 0 for x in (h, n, s, l)),
    "missing": sum(x["missing"] or 0 for x in (h, n, s, l)),
    "duplicates": sum(x["duplicates"] or 0 for x in (h, n, s, l)),
    "cases": {"http": h, "native": n, "steady": s, "lz4": l},
}))
PY
