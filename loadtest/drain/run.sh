#!/usr/bin/env bash
# loadtest/run drain: a stored backlog forwarded to Kafka by the uplink,
# beside the raw librdkafka producer rate for the same records to the same
# broker, measured in the same run. Progress on stderr, one JSON object on
# stdout.
#
#   loadtest/run drain [--events 5000000] [--delivery exactly_once|at_least_once]
#                      [--raw-rounds 2] [--perf FILE]
#
# Steps: (1) start a private Kafka (scripts/kafka.sh, its own state dir and
# free ports) and warm it up; (2) fill a store with --events realistic readings straight
# through the store API (sl_drain_load: no daemon, no network); (3) raw
# baseline: sl_drain_raw produces the same records (same key, value and
# headers) with the uplink's producer settings; (4) start `sluice run` on
# that store with the uplink enabled and time the drain from the uplink's
# "running" state (producer up, checkpoints read back) until every event is
# committed, sampling the daemon's anon RSS every 50 ms; (5) the raw
# baseline again (--raw-rounds 2: before and after; the best counts, so the
# ratio is the conservative one). Wire bytes per event = the Kafka log
# segment bytes of the topic (record batches as sent, lz4, transaction
# markers included) over the events.
set -euo pipefail
events=5000000 delivery=exactly_once raw_rounds=2 perf_out=""
while [[ $# -gt 0 ]]; do
  case $1 in
  --events) events=$2; shift 2 ;;
  --delivery) delivery=$2; shift 2 ;;
  --raw-rounds) raw_rounds=$2; shift 2 ;;
  --perf) perf_out=$2; shift 2 ;;
  *) echo "usage: loadtest/run drain [--events N] [--delivery exactly_once|at_least_once] [--raw-rounds R] [--perf FILE]" >&2; exit 2 ;;
  esac
done
# shellcheck source=../common/lib.sh
. "$(dirname "$0")/../common/lib.sh"
sl_lt_init drain
sl_build_release sluice sl_drain_load sl_drain_raw

echo "drain: starting Kafka" >&2
sl_lt_kafka_start
kdata=$SLUICE_HARNESS_DIR/kafka/data

echo "drain: storing $events events" >&2
"$bin/loadtest/drain/sl_drain_load" --dir "$work/data" --events "$events" >"$work/load.json"

# The uplink's producer settings (sync/producer.c): the baseline uses the
# same, plus librdkafka's default queue (the uplink caps its own).
raw_props=(-X acks=all -X enable.idempotence=true -X linger.ms=1
  -X compression.type=lz4 -X batch.num.messages=10000)
raw_round() {
  echo "drain: raw librdkafka producer, round $1" >&2
  "$bin/loadtest/drain/sl_drain_raw" --dir "$work/data" --brokers "$brokers" \
    --topic "drain-raw-$1" "${raw_props[@]}" >"$work/raw$1.json"
}
# Kafka is a JVM: the first million records run colder code. Warm it up
# (untimed) so that no round pays for that.
echo "drain: warming Kafka up (1000000 records, untimed)" >&2
"$bin/loadtest/drain/sl_drain_raw" --dir "$work/data" --brokers "$brokers" \
  --topic drain-warmup --events 1000000 "${raw_props[@]}" >/dev/null
raw_round 1

cat >"$work/sluice.yaml" <<YAML
node:
  id: bench-drain
  data_dir: $work/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: "127.0.0.1:0"
store:
  sync: interval
  budget_bytes: 8GiB
kafka:
  enabled: true
  brokers: "$brokers"
  delivery: $delivery
streams:
  - name: readings
    topic: drain-sluice
    # The raw baseline's codec (lz4, the uplink's before zstd became the
    # default): the figures stay comparable with docs/BENCHMARKS.md.
    compression: lz4
YAML
echo "drain: sluice uplink ($delivery)" >&2
if [[ -n $perf_out ]]; then
  perf record -g -o "$perf_out" -- "$bin/daemon/sluice" run -c "$work/sluice.yaml" 2>"$work/daemon.log" &
else
  "$bin/daemon/sluice" run -c "$work/sluice.yaml" 2>"$work/daemon.log" &
fi
pid=$!
python3 - "$work/daemon.log" "$pid" "$events" "$perf_out" >"$work/drain.json" <<'PY'
import json, os, re, sys, time, urllib.request
log, pid, events, perf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def daemon_pid():
    # Under perf the daemon is perf's child.
    if not perf:
        return pid
    for _ in range(200):
        try:
            kids = open(f"/proc/{pid}/task/{pid}/children").read().split()
            if kids:
                return int(kids[0])
        except OSError:
            pass
        time.sleep(0.05)
    return pid
dpid = daemon_pid()
open(os.path.dirname(log) + "/daemon.pid", "w").write(str(dpid))
port = None
deadline = time.time() + 60
while port is None:
    if time.time() > deadline:
        sys.exit("daemon not ready in 60 s")
    try:
        m = re.search(r"admin \S+ \(port (\d+)\)", open(log).read())
        port = m and int(m.group(1))
    except OSError:
        pass
    time.sleep(0.05)
url = f"http://127.0.0.1:{port}/v1/status"
def ticks():
    f = open(f"/proc/{dpid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) + int(f[12])
def rss():
    for line in open(f"/proc/{dpid}/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1])
    return 0
t_ready = time.time()
t_run = None
rss_max = 0
samples = []
deadline = time.time() + 1200
while True:
    if time.time() > deadline:
        sys.exit("drain did not finish in 20 minutes")
    st = json.load(urllib.request.urlopen(url, timeout=10))
    now = time.time()
    up = st["uplink"]
    r = rss()
    delivered = up["streams"][0]["delivered"]
    if t_run is None and up["state"] == "running":
        t_run = now
        c_run = ticks()
    if t_run is not None:
        rss_max = max(rss_max, r)
        samples.append((round(now - t_run, 3), delivered, r))
    if delivered >= events:
        break
    time.sleep(0.05)
t_done = now
cpu = (ticks() - c_run) / os.sysconf("SC_CLK_TCK")
print(json.dumps({
    "seconds": round(t_done - t_run, 3),
    "startup_seconds": round(t_run - t_ready, 3),
    "events_per_s": round(delivered / (t_done - t_run)),
    "delivered": delivered,
    "cpu_s_per_million": round(cpu / (delivered / 1e6), 3),
    "rss_anon_kb_max": rss_max,
    "commits": up["txn_commits"],
    "aborts": up["txn_aborts"],
    "commit_ms_last": up["txn_commit_ms"],
    "samples": samples[:: max(1, len(samples) // 40)],
}))
PY
# The daemon (under --perf, perf's child) exits cleanly on SIGTERM.
kill -TERM "$(cat "$work/daemon.pid")"
wait "$pid" || { echo "daemon exited $?" >&2; tail -20 "$work/daemon.log" >&2; exit 1; }
pid=
if ((raw_rounds > 1)); then raw_round 2; fi

topic_bytes() { cat "$kdata/$1"-*/*.log 2>/dev/null | wc -c; }
python3 - "$work" "$events" "$raw_rounds" "$delivery" \
  "$(topic_bytes drain-sluice)" "$(topic_bytes drain-raw-1)" <<'PY'
import json, sys
w, events, rounds, delivery, sl_bytes, raw_bytes = sys.argv[1:]
events = int(events)
load = json.load(open(w + "/load.json"))
drain = json.load(open(w + "/drain.json"))
raws = [json.load(open(f"{w}/raw{i}.json")) for i in range(1, int(rounds) + 1)]
raw_best = max(r["events_per_s"] for r in raws)
out = {
    "drain_events_per_s": drain["events_per_s"],
    "raw_producer_events_per_s": raw_best,
    "raw_rounds_events_per_s": [r["events_per_s"] for r in raws],
    "ratio": round(drain["events_per_s"] / raw_best, 3),
    "rss_anon_kb_max": drain["rss_anon_kb_max"],
    "wire_bytes_per_event": round(int(sl_bytes) / events, 2),
    "raw_wire_bytes_per_event": round(int(raw_bytes) / events, 2),
    "events": events,
    "drain_seconds": drain["seconds"],
    "startup_seconds": drain["startup_seconds"],
    "cpu_s_per_million": drain["cpu_s_per_million"],
    "raw_cpu_s_per_million": [r["cpu_s_per_million"] for r in raws],
    "txn_commits": drain["commits"],
    "txn_aborts": drain["aborts"],
    "delivery": delivery,
    "stored_bytes_per_event": load["stored_bytes_per_event"],
    "value_key_bytes_per_event": round(raws[0]["value_key_bytes"] / raws[0]["events"], 1),
    "load_events_per_s": load["events_per_s"],
    "rss_samples_s_delivered_kb": drain["samples"],
}
print(json.dumps(out))
PY
