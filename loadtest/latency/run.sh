#!/usr/bin/env bash
# loadtest/run latency: live ingest at a steady rate, event time -> Kafka
# append time (LogAppendTime of the read_committed consumer's record), alone
# and during a concurrent backlog drain. Progress on stderr, one JSON object
# on stdout.
#
#   loadtest/run latency [--rate 50000] [--seconds 50] [--warmup 30]
#                        [--backlog 5000000]
#                        [--delivery exactly_once|at_least_once]
#                        [--commit-interval 100ms] [--serial-commits]
#                        [--store-sync always|interval]
#                        [--out DIR]   (keeps the per-record dump and logs)
#
# Steps: (1) a private Kafka (scripts/kafka.sh: own state dir, free ports);
# the stream's topic is created with message.timestamp.type=LogAppendTime;
# (2) `sluice run` (store.sync: always, the default; uplink exactly-once,
# the defaults) and sl_latency publishing --rate events/s for --seconds
# (the first --warmup s are warm-up, not measured: a freshly started broker
# and daemon stall now and then for their first ~40 s) with time_ns = the wall clock
# at the publish call; (3) the daemon stops, sl_drain_load appends
# --backlog events to the same stream (stored, not delivered), the daemon
# starts again: the uplink splits the stream into a live lane and a backlog
# lane; once it is running, sl_latency publishes at the same rate until
# every backlog record was seen; live records appended between the first
# and the last historical record make the "during drain" figures.
set -euo pipefail
warmup=30 rate=50000 seconds=50 backlog=5000000 delivery=exactly_once commit_interval=100ms
pipeline=true out='' store_sync=always
while [[ $# -gt 0 ]]; do
  case $1 in
  --rate) rate=$2; shift 2 ;;
  --seconds) seconds=$2; shift 2 ;;
  --warmup) warmup=$2; shift 2 ;;
  --backlog) backlog=$2; shift 2 ;;
  --delivery) delivery=$2; shift 2 ;;
  --commit-interval) commit_interval=$2; shift 2 ;;
  --serial-commits) pipeline=false; shift ;;
  --store-sync) store_sync=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  *) echo "usage: loadtest/run latency [--rate R] [--seconds S] [--warmup W] [--backlog N] [--delivery D] [--commit-interval T] [--serial-commits] [--store-sync always|interval] [--out DIR]" >&2; exit 2 ;;
  esac
done
if ! python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > float(sys.argv[2]) >= 0 else 1)' "$seconds" "$warmup"; then
  echo "latency: --seconds ($seconds) must be longer than --warmup ($warmup): the live phase is the warm-up plus what is measured" >&2
  exit 2
fi
# shellcheck source=../common/lib.sh
. "$(dirname "$0")/../common/lib.sh"
sl_lt_init latency
sl_build_release sluice sl_latency sl_drain_load

echo "latency: starting Kafka" >&2
# The broker's GC log: its pauses are reported next to the latency figures
# (a stop-the-world pause stalls every append).
export SLUICE_KAFKA_JVM_OPTS="${SLUICE_KAFKA_JVM_OPTS:-} -Xlog:gc:file=$work/kafka-gc.log:time"
sl_lt_kafka_start
topic=latency-readings
"$bin/loadtest/latency/sl_latency" --brokers "$brokers" --topic "$topic" --create-topic

cat >"$work/sluice.yaml" <<YAML
node:
  id: bench-latency
  data_dir: $work/data
store:
  sync: $store_sync
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: "127.0.0.1:0"
kafka:
  enabled: true
  brokers: "$brokers"
  delivery: $delivery
  commit_interval: $commit_interval
  commit_pipeline: $pipeline
streams:
  - name: readings
    topic: $topic
    compression: lz4 # the raw producer's codec (latency.c)
YAML

# start_daemon: starts sluice, waits for its ready line and for the uplink
# to be running; sets pid, port, admin.
start_daemon() {
  : >"$work/daemon.log"
  "$bin/daemon/sluice" run -c "$work/sluice.yaml" 2>"$work/daemon.log" &
  pid=$!
  port="" admin=""
  for _ in $(seq 1 600); do
    if grep -q ' ready: ' "$work/daemon.log"; then
      port=$(sed -n 's/.* ready: native tcp [^ ]* (port \([0-9]*\)).*/\1/p' "$work/daemon.log")
      admin=$(sed -n 's/.* admin [^ ]* (port \([0-9]*\)).*/\1/p' "$work/daemon.log")
      if curl -fsS "http://127.0.0.1:$admin/v1/status" 2>/dev/null |
        grep -q '"state": *"running"'; then
        return 0
      fi
    fi
    kill -0 "$pid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.05
  done
  echo "latency: daemon or uplink not ready in 30 s" >&2
  cat "$work/daemon.log" >&2
  exit 1
}
stop_daemon() {
  kill -TERM "$pid"
  wait "$pid" || { echo "latency: daemon exited $?" >&2; tail -20 "$work/daemon.log" >&2; exit 1; }
  pid=
}

echo "latency: live only, $rate events/s for $seconds s" >&2
live_t0=$(date +%s.%N)
start_daemon
# The disk's own fsync latency, same run, same file system as the store: a
# 4 KiB write + fdatasync 100 times a second while the live phase runs (a
# durable ack can be no faster than the fsync under it). Stops when
# $work/fsync.stop appears, or after seconds + 60.
python3 - "$work" "$warmup" "$((seconds + 60))" >"$work/fsync.json" <<'PY' &
import json, os, sys, time
w, warm, limit = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
fd = os.open(w + "/fsync-probe", os.O_WRONLY | os.O_CREAT, 0o600)
buf, lat, t0 = b"x" * 4096, [], time.monotonic()
i = 0
while not os.path.exists(w + "/fsync.stop") and time.monotonic() - t0 < limit:
    os.pwrite(fd, buf, (i % 256) * 4096)
    a = time.monotonic()
    os.fdatasync(fd)
    b = time.monotonic()
    if a - t0 >= warm:
        lat.append((b - a) * 1e3)
    i += 1
    time.sleep(max(0.0, t0 + i * 0.01 - time.monotonic()))
os.close(fd)
lat.sort()
n = len(lat)
print(json.dumps({"fsync_probes": n,
                  "fsync_p50_ms": round(lat[n // 2], 2) if n else -1,
                  "fsync_p99_ms": round(lat[int(n * 0.99)], 2) if n else -1,
                  "fsync_max_ms": round(lat[-1], 2) if n else -1,
                  "fsync_over_20ms": sum(1 for x in lat if x > 20)}))
PY
fsync_pid=$!
"$bin/loadtest/latency/sl_latency" --address "127.0.0.1:$port" --brokers "$brokers" \
  --topic "$topic" --rate "$rate" --seconds "$seconds" --warmup "$warmup" --dump "$work/live.dump" >"$work/live.json" ||
  { echo "latency: sl_latency failed: $(cat "$work/live.json")" >&2; exit 1; }
# Where the slow records were, per second of the run (stderr).
python3 - "$work/live.dump" >&2 <<'PY' || true
import collections, sys
rows = [l.split() for l in open(sys.argv[1])]
b = collections.defaultdict(list)
for ts, a, v in rows:
    b[int(ts) // 1000].append(float(a))
# Seconds as the wall clock's second of the minute (as sl_latency prints
# its ack latencies: publish -> durable ack, the store alone).
print("latency: live p99 per second:", " ".join("%d:%.0f" % (k % 60, sorted(x)[int(len(x) * 0.99)]) for k, x in sorted(b.items())))
PY
live_t1=$(date +%s.%N)
touch "$work/fsync.stop"
wait "$fsync_pid" || true
stop_daemon
if [[ -n $out ]]; then
  mkdir -p "$out"
  cp "$work/live.dump" "$work/daemon.log" "$out/"
fi

# The same-run baseline: the same readings at the same rate produced
# straight to Kafka by one librdkafka producer with the uplink's settings
# (no daemon, no transactions), on a topic of its own.
echo "latency: baseline: a raw librdkafka producer, $rate events/s for $seconds s" >&2
"$bin/loadtest/latency/sl_latency" --brokers "$brokers" --topic latency-raw --create-topic
"$bin/loadtest/latency/sl_latency" --raw-producer --brokers "$brokers" --topic latency-raw \
  --rate "$rate" --seconds "$seconds" --warmup "$warmup" >"$work/raw.json" ||
  { echo "latency: raw baseline failed: $(cat "$work/raw.json")" >&2; exit 1; }

echo "latency: storing a backlog of $backlog events" >&2
"$bin/loadtest/drain/sl_drain_load" --dir "$work/data" --events "$backlog" >/dev/null
echo "latency: live $rate events/s during the backlog drain" >&2
start_daemon
"$bin/loadtest/latency/sl_latency" --address "127.0.0.1:$port" --brokers "$brokers" \
  --topic "$topic" --rate "$rate" --warmup 1 --until-historical "$backlog" \
  --max-seconds 180 >"$work/drain.json" ||
  { echo "latency: sl_latency failed: $(cat "$work/drain.json")" >&2; exit 1; }
stop_daemon

python3 - "$work" "$rate" "$delivery" "$commit_interval" "$pipeline" "$live_t0" "$live_t1" "$warmup" "$store_sync" <<'PY'
import datetime, json, re, sys
w, rate, delivery, ci, pipeline = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5] == "true"
t0, t1 = float(sys.argv[6]) + float(sys.argv[8]), float(sys.argv[7])
# Broker stop-the-world pauses during the measured live phase.
pauses = []
try:
    for line in open(w + "/kafka-gc.log"):
        m = re.match(r"\[(\S+?)\].*Pause.* ([0-9.]+)ms$", line.strip())
        if m:
            ts = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
            if t0 <= ts <= t1:
                pauses.append(float(m.group(2)))
except OSError:
    pass
a = json.load(open(w + "/live.json"))
b = json.load(open(w + "/drain.json"))
r = json.load(open(w + "/raw.json"))
try:
    fs = json.load(open(w + "/fsync.json"))
except (OSError, ValueError):
    fs = {}
out = {
    "p50_ms": a["p50_ms"], "p99_ms": a["p99_ms"], "p999_ms": a["p999_ms"],
    "p99_ms_during_drain": b.get("p99_ms_during_drain", -1),
    "raw_producer_p50_ms": r["p50_ms"], "raw_producer_p99_ms": r["p99_ms"],
    "raw_producer_p999_ms": r["p999_ms"],
    "ack_p50_ms": a.get("ack_p50_ms", -1), "ack_p99_ms": a.get("ack_p99_ms", -1),
    "ack_p99_ms_during_drain": b.get("ack_p99_ms", -1),
    "p99_ratio_to_raw": round(a["p99_ms"] / r["p99_ms"], 3) if r["p99_ms"] > 0 else -1,
    "p50_ms_during_drain": b.get("p50_ms_during_drain", -1),
    "p999_ms_during_drain": b.get("p999_ms_during_drain", -1),
    "visible_p50_ms": a["visible_p50_ms"], "visible_p99_ms": a["visible_p99_ms"],
    "visible_p999_ms": a["visible_p999_ms"],
    "visible_p99_ms_during_drain": b.get("visible_p99_ms_during_drain", -1),
    "target_rate": rate, "rate": a["rate"], "rate_during_drain": b["rate"],
    "measured": a["measured"], "measured_during_drain": b["measured_during_drain"],
    "drain_seconds": b["drain_seconds"], "historical_seen": b["historical_seen"],
    "missing": a["missing"] + b["missing"], "failed": a["failed"] + b["failed"],
    "delivery": delivery, "commit_interval": ci, "commit_pipeline": pipeline,
    "store_sync": sys.argv[9],
    "disk_fsync_p50_ms": fs.get("fsync_p50_ms", -1), "disk_fsync_p99_ms": fs.get("fsync_p99_ms", -1),
    "disk_fsync_max_ms": fs.get("fsync_max_ms", -1), "disk_fsyncs_over_20ms": fs.get("fsync_over_20ms", -1),
    "disk_fsync_probes": fs.get("fsync_probes", 0),
    "broker_gc_pauses": len(pauses), "broker_gc_pause_max_ms": round(max(pauses, default=0), 1),
    "broker_gc_pauses_over_20ms": sum(1 for p in pauses if p > 20),
    "timestamp": "LogAppendTime" if not (a["create_time_records"] or b["create_time_records"]) else "CreateTime",
}
print(json.dumps(out))
PY
