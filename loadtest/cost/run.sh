#!/usr/bin/env bash
# loadtest/run cost: instructions per event of the daemon, counted by
# valgrind's callgrind (machine-independent: no clock, no hardware counter),
# per workload and per phase, beside the committed baseline
# (loadtest/cost/baseline.json). Progress on stderr, one JSON object on
# stdout. docs/BENCHMARKS.md "cost".
#
#   loadtest/run cost [--n1 20000] [--n2 220000] [--drain-n1 20000]
#                     [--drain-n2 220000] [--only ingest|drain] [--keep DIR]
#                     [--compression lz4] [--omit-headers '[node, schema]']
#                     [--format protobuf|json] [--compression-level 0]
#   scripts/harness run -- loadtest/run cost     # with the drain (Kafka)
#
# Slope method: each workload runs twice, with N1 and with N2 events, each
# under its own `valgrind --tool=callgrind` daemon; instructions per event =
# (Ir(N2) - Ir(N1)) / (N2 - N1), so start-up, shutdown and everything else
# paid once cancel. The same for each phase, from callgrind_annotate's
# inclusive cost of the functions that stand for it (PHASES below).
#
# (a) ingest: sl_loadgen (native, not under valgrind) publishes N events
#     over 2 connections in batches of 1000 to `sluice run` (sync: interval).
# (b) drain: sl_drain_load fills a store with N events (not under
#     valgrind), then `sluice run` with the uplink (exactly_once) delivers
#     them to the harness's Kafka ($SLUICE_TEST_KAFKA_BOOTSTRAP); skipped,
#     with "drain": "skipped" in the JSON, when that is not set.
set -euo pipefail
n1=20000 n2=220000 dn1=20000 dn2=220000 only="" keep=""
# The drain's stream codec and kafka.omit_headers (docs/DELIVERY.md).
compression=lz4 omit_headers="[]" format=protobuf level=0
while [[ $# -gt 0 ]]; do
  case $1 in
  --n1) n1=$2; shift 2 ;;
  --n2) n2=$2; shift 2 ;;
  --drain-n1) dn1=$2; shift 2 ;;
  --drain-n2) dn2=$2; shift 2 ;;
  --only) only=$2; shift 2 ;;
  --keep) keep=$2; shift 2 ;;
  --compression) compression=$2; shift 2 ;;
  --omit-headers) omit_headers=$2; shift 2 ;;
  --format) format=$2; shift 2 ;;
  --compression-level) level=$2; shift 2 ;;
  *) echo "usage: loadtest/run cost [--n1 N] [--n2 N] [--drain-n1 N] [--drain-n2 N] [--only ingest|drain] [--keep DIR] [--compression C] [--omit-headers LIST] [--format F] [--compression-level L]" >&2; exit 2 ;;
  esac
done
: "${SL_BUILD_RELEASE:?run through loadtest/run}"
command -v valgrind >/dev/null || { echo "cost: valgrind is not installed" >&2; exit 1; }
sl_build_release sluice sl_loadgen sl_drain_load
bin=$SL_BUILD_RELEASE
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_cost.XXXXXX")
pid=
cleanup() {
  [[ -n $pid ]] && kill -KILL "$pid" 2>/dev/null
  wait 2>/dev/null
  if [[ -n $keep ]]; then mkdir -p "$keep" && cp "$work"/*.out "$keep"/ 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT

# Starts the daemon under callgrind with config $1, profile $2; sets pid and
# waits for the log line matching $3.
start_daemon() {
  valgrind --tool=callgrind --callgrind-out-file="$2" --dump-instr=no \
    "$bin/daemon/sluice" run -c "$1" 2>"$1.log" &
  pid=$!
  for _ in $(seq 1 1200); do
    grep -q "$3" "$1.log" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$1.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "cost: daemon not ready" >&2
  cat "$1.log" >&2
  exit 1
}
stop_daemon() {
  kill -TERM "$pid"
  local st=0
  wait "$pid" || st=$?
  pid=
  [[ $st -eq 0 ]] || { echo "cost: daemon exited $st" >&2; tail -20 "$1.log" >&2; exit 1; }
}

ingest_run() { # N
  local d=$work/ingest$1 port
  mkdir -p "$d"
  cat >"$d/sluice.yaml" <<YAML
node:
  id: cost-ingest
  data_dir: $d/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: ""
store:
  sync: interval
  budget_bytes: 8GiB
streams:
  - name: readings
YAML
  start_daemon "$d/sluice.yaml" "$work/ingest.$1.out" ' ready: native tcp '
  port=$(grep -o ' ready: native tcp [^ ]* (port [0-9]*' "$d/sluice.yaml.log" | grep -o '[0-9]*$')
  echo "cost: ingest of $1 events under callgrind" >&2
  "$bin/loadtest/ingest/sl_loadgen" --address "127.0.0.1:$port" --connections 2 \
    --events "$1" --batch 1000 --in-flight 16 --max-seconds 900 >"$d/gen.json"
  stop_daemon "$d/sluice.yaml"
  # Stored bytes per event (compressed batch values), to weigh a change of
  # compression against what it stores.
  "$bin/daemon/sluice" store stats -d "$d/data" 2>/dev/null |
    sed -n 's/.* (\([0-9.]*\) B\/event).*/\1/p' | head -1 >"$work/ingest.$1.bytes"
  python3 -c "import json,sys; j=json.load(open('$d/gen.json')); sys.exit(j['acked']!=$1 or j['failed']!=0)" ||
    { echo "cost: ingest of $1: not every event acked" >&2; cat "$d/gen.json" >&2; exit 1; }
}

drain_run() { # N
  local d=$work/drain$1
  mkdir -p "$d"
  echo "cost: storing $1 events" >&2
  "$bin/loadtest/drain/sl_drain_load" --dir "$d/data" --events "$1" >"$d/load.json"
  cat >"$d/sluice.yaml" <<YAML
node:
  id: cost-drain-$1
  data_dir: $d/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: ""
store:
  sync: interval
  budget_bytes: 8GiB
kafka:
  enabled: true
  brokers: "$SLUICE_TEST_KAFKA_BOOTSTRAP"
  delivery: exactly_once
  omit_headers: $omit_headers
  # Under callgrind (~50x slower) on a loaded box a transaction outlived the
  # 60 s default and the broker aborted it (the uplink then reports itself
  # fenced and the drain never ends): 10 minutes, the same count per event.
  properties: ["transaction.timeout.ms=600000"]
streams:
  - name: readings
    topic: cost-drain-$1-$$
    # lz4 unless --compression: as when baseline.json was taken (zstd, the
    # default since, costs more instructions on librdkafka's threads), so
    # the ratio stays comparable.
    compression: $compression
    compression_level: $level
    format: $format
YAML
  echo "cost: drain of $1 events under callgrind" >&2
  start_daemon "$d/sluice.yaml" "$work/drain.$1.out" ' ready: native tcp '
  # Done when the uplink's consumer cursor has passed every event, read by
  # `sluice store stats` from outside (LMDB readers in another process): no
  # request to the daemon, whose instructions are what is counted.
  local deadline=$((SECONDS + 1800)) next
  while :; do
    next=$("$bin/daemon/sluice" store stats -d "$d/data" 2>/dev/null |
      sed -n 's/^  consumer [^:]*: next \([0-9]*\),.*/\1/p' | sort -n | tail -1)
    [[ -n $next && $next -ge $1 ]] && break
    ((SECONDS < deadline)) || { echo "cost: drain of $1 did not finish in 30 minutes" >&2; exit 1; }
    sleep 0.5
  done
  stop_daemon "$d/sluice.yaml"
}

if [[ $only != drain ]]; then
  ingest_run "$n1"
  ingest_run "$n2"
fi
drain=skipped
if [[ $only != ingest ]]; then
  if [[ -n ${SLUICE_TEST_KAFKA_BOOTSTRAP:-} ]]; then
    drain_run "$dn1"
    drain_run "$dn2"
    drain=measured
  else
    echo "cost: SKIPPED the drain: no Kafka (run under scripts/harness run --)" >&2
  fi
fi
python3 "$here/report.py" "$work" "$n1" "$n2" "$dn1" "$dn2" "$drain" "$only" "$here/baseline.json"
