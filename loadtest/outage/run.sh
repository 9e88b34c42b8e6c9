#!/usr/bin/env bash
# loadtest/run outage: the store-and-forward story, measured. Steady ingest
# at a fixed rate into a daemon whose uplink forwards to a private Kafka;
# Kafka is stopped for --outage seconds (data and ports kept) and started
# again; ingest goes on until the backlog is delivered. Progress on stderr,
# one JSON object on stdout.
#
#   loadtest/run outage [--outage 60] [--rate 50000] [--warmup 15]
#                       [--tail 5] [--sources 500] [--kill-broker]
#                       [--cut stop|netns|netns-down]
#                       [--budget SIZE [--policy drop_oldest|evict_priority]]
#                       [--kafka-prop KEY=VALUE]... [--alerts] [--out DIR]
#
# How Kafka goes away (--cut):
#   stop        (default) the broker is stopped (SIGTERM, SIGKILL with
#               --kill-broker) and started again on its data and ports
#               (loadtest/common/kafka_cut.sh): connections are refused
#   netns       the broker keeps running in a network namespace of its own
#               (scripts/netns.sh) and the veth link to it is cut (blackhole
#               qdisc: packets vanish, connections hang, no RST), then
#               restored; needs root (exit 77 otherwise)
#   netns-down  the same, but the link is set down (sends fail at once)
# --budget SIZE (e.g. 64MiB): store.budget_bytes, with the stream's --policy
# (default drop_oldest), small enough that the outage fills it: the store
# evicts, and the check is that every offset of the stream arrived in Kafka
# exactly once as a record or inside exactly one gap record, that the gap
# records only cover evicted offsets (below the store's first offset at the
# end), and that the store's eviction counters match. "Caught up" and the
# backlog are then what is still stored and not delivered (sampler column
# undelivered_stored), since stored - delivered also counts what was evicted.
#
# Every second (loadtest/common/sampler.py): ingest and delivery rate,
# backlog, uplink state, RSS anon of the daemon, store bytes on disk, CPU.
# After the run a read_committed consumer (sl_kcheck) reads the topic from
# the beginning: live latency per second (Kafka CreateTime - event time of
# records without the `historical` header; the publisher sl_steady stamps
# each event with the wall clock) and every (stream, offset) exactly once
# against the store's offsets, which must cover what sl_steady saw acked.
#
# Times (all in the JSON): outage_s = from the cut until the restart is
# issued; kafka_restart_s = restart until the broker answers metadata;
# catch_up_s = from the restart until the backlog is back to its warm-up
# level (so Kafka's own start counts against sluice); drain_events_per_s =
# events delivered in that time / catch_up_s.
# --alerts: a Prometheus scrapes the daemon every second with
# deploy/monitoring/rules.yaml scaled down 60x in time
# (tests/monitoring/outage_alerts.py); the run fails unless the uplink and
# backlog alerts fire during the outage and are resolved at the end
# (alerts.json; docs/MONITORING.md#the-alerts-through-a-real-outage).
# --out DIR keeps samples.csv, latency.csv, phases.env and result.json for
# loadtest/outage/plot.sh.
set -euo pipefail
outage=60 rate=50000 warmup=15 tail_s=5 sources=500 kill_broker=0 out=""
cut=stop budget="" policy=drop_oldest alerts=0
props=()
usage() {
  echo "usage: loadtest/run outage [--outage S] [--rate EV/S] [--warmup S] [--tail S]" \
    "[--sources N] [--kill-broker] [--cut stop|netns|netns-down]" \
    "[--budget SIZE [--policy drop_oldest|evict_priority]] [--kafka-prop K=V]... [--alerts] [--out DIR]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case $1 in
  --outage) outage=$2; shift 2 ;;
  --rate) rate=$2; shift 2 ;;
  --warmup) warmup=$2; shift 2 ;;
  --tail) tail_s=$2; shift 2 ;;
  --sources) sources=$2; shift 2 ;;
  --kill-broker) kill_broker=1; shift ;;
  --cut) cut=$2; shift 2 ;;
  --budget) budget=$2; shift 2 ;;
  --policy) policy=$2; shift 2 ;;
  --kafka-prop) props+=("$2"); shift 2 ;;
  --alerts) alerts=1; shift ;;
  --out) out=$2; shift 2 ;;
  *) usage ;;
  esac
done
[[ $outage =~ ^[0-9]+$ && $rate =~ ^[0-9]+$ && $warmup =~ ^[0-9]+$ ]] || usage
[[ $cut == stop || $cut == netns || $cut == netns-down ]] || usage
[[ $policy == drop_oldest || $policy == evict_priority ]] || usage
[[ -z $budget || $budget =~ ^[0-9]+(B|KiB|MiB|GiB)?$ ]] || usage
if [[ $cut != stop ]]; then
  [[ $kill_broker == 0 ]] || { echo "outage: --kill-broker goes with --cut stop only" >&2; exit 2; }
  if [[ $(id -u) -ne 0 ]]; then
    echo "outage: --cut $cut needs root: it makes a network namespace and a veth" \
      "pair and puts qdiscs on them (CAP_NET_ADMIN). Run it as root, or without" \
      "--cut (the default stops the broker instead)." >&2
    exit 77
  fi
fi
: "${SL_BUILD_RELEASE:?run through loadtest/run}"
src=$SL_SOURCE_DIR
sl_build_release sluice sl_steady sl_kcheck
bin=$SL_BUILD_RELEASE
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_outage.XXXXXX")
export SLUICE_HARNESS_DIR=$work/harness
export SLUICE_NETNS_DIR=$work/netns
dpid="" simpid="" kpid="" spid="" apid=""
log() { printf '[outage %s] %s\n' "$(date +%T)" "$*" >&2; }
now() { date +%s.%N; }
cleanup() {
  local rc=$?
  set +e
  touch "$work/stop"
  for p in $simpid $kpid $spid $apid $dpid; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in $simpid $kpid $spid $apid $dpid; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  if [[ $cut == stop ]]; then
    "$src/scripts/kafka.sh" clean >/dev/null 2>&1
  else
    # Kafka, the netns, the veth pair and its route: all of them, always.
    "$src/scripts/netns.sh" down >&2 || log "netns cleanup failed: check 'ip netns list'"
  fi
  if [[ $rc -ne 0 ]]; then
    log "failed: logs kept in $work"
    tail -n 20 "$work/daemon.log" >&2 2>/dev/null
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ $cut == stop ]]; then
  log "Kafka: private broker in $SLUICE_HARNESS_DIR"
  "$src/scripts/kafka.sh" start
  "$src/scripts/kafka.sh" wait-ready
  brokers=$("$src/scripts/kafka.sh" env | sed 's/^SLUICE_TEST_KAFKA_BOOTSTRAP=//')
  kafka_dir=$SLUICE_HARNESS_DIR/kafka
else
  log "Kafka: private broker in a network namespace (scripts/netns.sh, state in $SLUICE_NETNS_DIR)"
  # Run from this shell, so that the netns is owned by this script's pid
  # (a netns whose owner is gone is collected by the next run).
  nrc=0
  "$src/scripts/netns.sh" up >"$work/netns.out" || nrc=$?
  if [[ $nrc -ne 0 ]]; then
    cat "$work/netns.out" >&2
    log "no network namespace here (scripts/netns.sh up exited $nrc)"
    exit "$nrc"
  fi
  brokers=$(sed -n 's/^SLUICE_TEST_KAFKA_BOOTSTRAP=//p' "$work/netns.out")
  kafka_dir=$SLUICE_NETNS_DIR/kafka
  log "$("$src/scripts/netns.sh" status | head -1)"
fi
[[ -n $brokers ]] || { log "no Kafka bootstrap address"; exit 1; }

node=outage-$$
{
  cat <<YAML
node:
  id: $node
  data_dir: $work/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: "127.0.0.1:0"
store:
  sync: always
  budget_bytes: ${budget:-16GiB}
kafka:
  enabled: true
  brokers: "$brokers"
YAML
  if [[ ${#props[@]} -gt 0 ]]; then
    echo "  properties:"
    for p in "${props[@]}"; do echo "    - \"$p\""; done
  fi
  cat <<YAML
streams:
  - name: readings
    topic: $node.readings
YAML
  [[ -z $budget ]] || echo "    policy: $policy"
} >"$work/sluice.yaml"
"$bin/daemon/sluice" run -c "$work/sluice.yaml" 2>"$work/daemon.log" &
dpid=$!
echo "$dpid" >"$work/daemon.pid"
port="" aport=""
for _ in $(seq 1 200); do
  line=$(grep ' ready: ' "$work/daemon.log" || true)
  if [[ -n $line ]]; then
    port=$(sed -E 's/.*native tcp [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
    aport=$(sed -E 's/.*admin [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
    break
  fi
  kill -0 "$dpid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
  sleep 0.05
done
[[ -n $aport ]] || { log "daemon not ready"; exit 1; }
st() { curl -sf --max-time 2 "http://127.0.0.1:$aport/v1/status"; }
for _ in $(seq 1 300); do
  [[ $(st | python3 -c 'import json,sys; print(json.load(sys.stdin)["uplink"]["state"])' 2>/dev/null) == running ]] && break
  sleep 0.1
done
log "sluice: native :$port admin :$aport, uplink $(st | python3 -c 'import json,sys; print(json.load(sys.stdin)["uplink"]["state"])')"

echo warmup >"$work/phase"
python3 "$src/loadtest/common/sampler.py" --admin "127.0.0.1:$aport" \
  --pid-file "$work/daemon.pid" --data "$work/data" --out "$work/samples.csv" \
  --stop "$work/stop" --phase-file "$work/phase" --view --view-every 5 \
  --kafka-pid-file "$kafka_dir/kafka.pid" &
spid=$!
if [[ $alerts == 1 ]]; then
  python3 "$src/tests/monitoring/outage_alerts.py" --admin "127.0.0.1:$aport" \
    --rules "$src/deploy/monitoring/rules.yaml" --scale 60 --stop "$work/alerts.stop" \
    --phase-file "$work/phase" --out "$work/alerts.json" --png "$work/dashboard.png" &
  apid=$!
fi
: >"$work/control"
# Runs until SIGTERM; event time = the wall clock at publish.
"$bin/loadtest/outage/sl_steady" --address "127.0.0.1:$port" --rate "$rate" \
  --sources "$sources" >"$work/sim.out" 2>"$work/sim.log" &
simpid=$!
t_start=$(now)
log "ingest: $rate readings/s from $sources sources (native, acked after fsync); warm-up ${warmup}s"
sleep "$warmup"
# Steady-state backlog: what 'caught up' means after the outage.
# With a budget, evicted events stay in stored - delivered: count what is
# still stored and undelivered there.
bcol=backlog
[[ -z $budget ]] || bcol=undelivered_stored
steady=$(python3 - "$work/samples.csv" "$t_start" "$bcol" <<'PY'
import csv, sys
c = sys.argv[3]
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r[c] and float(r["t"]) > float(sys.argv[2]) + 3]
print(max([int(r[c]) for r in rows] + [1000]))
PY
)
log "warm-up backlog at most $steady events: caught up = back at or below that"

echo outage >"$work/phase"
t_cut=$(now)
case $cut in
stop)
  log "outage: stopping Kafka ($([[ $kill_broker == 1 ]] && echo SIGKILL || echo SIGTERM)) for ${outage}s"
  cut_args=(stop)
  [[ $kill_broker == 1 ]] && cut_args+=(--kill)
  "$src/loadtest/common/kafka_cut.sh" "${cut_args[@]}"
  ;;
netns)
  log "outage: link to Kafka's netns cut (blackhole qdisc, Kafka keeps running) for ${outage}s"
  "$src/scripts/netns.sh" cut
  ;;
netns-down)
  log "outage: link to Kafka's netns set down (Kafka keeps running) for ${outage}s"
  "$src/scripts/netns.sh" cut --down
  ;;
esac
t_down=$(now)
end=$(python3 -c "print(max(0, $t_cut + $outage - $(now)))")
sleep "$end"
echo restore >"$work/phase"
t_restore=$(now)
if [[ $cut == stop ]]; then
  log "restore: starting Kafka again (same data, same ports)"
  "$src/loadtest/common/kafka_cut.sh" start
else
  log "restore: link back up"
  "$src/scripts/netns.sh" restore
  # Ready = the broker answers metadata across the link again.
  for _ in $(seq 1 300); do
    kcat -L -b "$brokers" -m 2 2>/dev/null | grep -q '^ *broker 1 at' && break
    sleep 0.1
  done
fi
t_ready=$(now)
echo drain >"$work/phase"
log "Kafka ready after $(python3 -c "print(round($t_ready - $t_restore, 1))") s; draining"
deadline=$(python3 -c "print($t_ready + max(120, 4 * $outage))")
t_caught=""
while [[ -z $t_caught ]]; do
  t_caught=$(python3 - "$work/samples.csv" "$t_ready" "$steady" "$bcol" <<'PY'
import csv, sys
c = sys.argv[4]
for r in csv.DictReader(open(sys.argv[1])):
    if r[c] and float(r["t"]) > float(sys.argv[2]) and int(r[c]) <= int(sys.argv[3]):
        print(r["t"]); break
PY
)
  [[ -n $t_caught ]] && break
  if python3 -c "import sys; sys.exit(0 if $(now) > $deadline else 1)"; then
    log "backlog not drained by the deadline"
    break
  fi
  kill -0 "$dpid" || { log "daemon died"; exit 1; }
  sleep 0.5
done
echo tail >"$work/phase"
[[ -n $t_caught ]] && log "caught up $(python3 -c "print(round($t_caught - $t_restore, 1))") s after the restart"
sleep "$tail_s"
kill -TERM "$simpid"
wait "$simpid" || true
simpid=""
t_end=$(now)
echo idle >"$work/phase"
log "ingest stopped: $(cat "$work/sim.out")"
# Everything stored must reach Kafka: wait until the uplink is idle.
if [[ -z $budget ]]; then
  for _ in $(seq 1 600); do
    left=$(st | python3 -c 'import json,sys; d=json.load(sys.stdin); print(sum(s["next_offset"] for s in d["streams"]) - sum(s["delivered"] for s in d["uplink"]["streams"]))' || echo x)
    [[ $left == 0 ]] && break
    sleep 0.2
  done
else
  # Evicted events are never delivered: wait for the uplink's own backlog
  # (refreshed once a second) to read 0 twice, a second apart. Gap records
  # still owed are what sl_kcheck waits for below.
  zeros=0
  for _ in $(seq 1 300); do
    b=$(st | python3 -c 'import json,sys; print(sum(s["backlog_events"] for s in json.load(sys.stdin)["uplink"]["streams"]))' || echo x)
    if [[ $b == 0 ]]; then zeros=$((zeros + 1)); else zeros=0; fi
    [[ $zeros -ge 2 ]] && break
    sleep 1
  done
fi
st >"$work/status_end.json" || true
st | python3 -c '
import json, sys
for s in json.load(sys.stdin)["streams"]:
    print("expect", s["name"], s["next_offset"])' >>"$work/control"
from_ms=$(python3 -c "print(int($t_ready * 1000))")
to_ms=$(python3 -c "print(int(${t_caught:-$t_end} * 1000))")
echo "check $from_ms $to_ms" >>"$work/control"
echo quit >>"$work/control"
# The verifier is not part of the system under test: it starts only now and
# reads the topic from the beginning (latency comes from Kafka's timestamps,
# not from when it reads), so it takes no CPU from the drain.
log "verifying from Kafka (read_committed, every stream/offset)"
"$bin/loadtest/common/sl_kcheck" --brokers "$brokers" --node "$node" \
  --topic "$node.readings" --control "$work/control" \
  --csv "$work/latency.csv" --timeout 300 >"$work/kcheck.json" 2>"$work/kcheck.log" &
kpid=$!
krc=0
wait "$kpid" || krc=$?
kpid=""
touch "$work/stop"
wait "$spid" || true
spid=""
rss_idle=$(awk '/^RssAnon/ {print $2}' "/proc/$dpid/status")
kill -TERM "$dpid"
drc=0
wait "$dpid" || drc=$?
dpid=""
[[ $drc -eq 0 ]] || log "daemon exited $drc after SIGTERM"
# The store's own account (evictions per reason, first offset left, gap
# records not yet acknowledged), read with the daemon stopped.
if [[ -n $budget ]]; then
  "$bin/daemon/sluice" store stats -d "$work/data" >"$work/store_stats.txt" 2>&1 || true
  { "$bin/daemon/sluice" store inspect -d "$work/data" 2>/dev/null || true; } |
    grep -c '^gap ' >"$work/gaps_pending.txt" || true
fi

cat >"$work/phases.env" <<ENV
t_start=$t_start
t_cut=$t_cut
t_down=$t_down
t_restore=$t_restore
t_ready=$t_ready
t_caught=${t_caught:-}
t_end=$t_end
ENV
python3 - "$work" "$outage" "$rate" "$krc" "$drc" "$rss_idle" "$kill_broker" "$cut" \
  "$budget" "$policy" <<'PY' | tee "$work/result.json"
import csv, json, os, re, sys
w, outage, rate, krc, drc, rss_idle, killb, cut, budget, policy = sys.argv[1:]
ph = dict(l.strip().split("=", 1) for l in open(w + "/phases.env") if "=" in l)
f = lambda k: float(ph[k]) if ph.get(k) else None
rows = [r for r in csv.DictReader(open(w + "/samples.csv")) if r["stored"]]
num = lambda r, k: float(r[k]) if r[k] not in ("", None) else 0.0
sim = json.load(open(w + "/sim.out"))
acked, failed = sim["acked"], sim["failed"]
try:
    k = json.loads(open(w + "/kcheck.json").read().strip().splitlines()[-1])
except Exception:
    k = {}
t_restore, t_ready, t_caught = f("t_restore"), f("t_ready"), f("t_caught")
def at(t):  # the first sample at or after t
    return next((r for r in rows if float(r["t"]) >= t), rows[-1])
drain = None
catch = None
if t_caught:
    catch = t_caught - t_restore
    delivered = num(at(t_caught), "delivered") - num(at(t_restore), "delivered")
    drain = delivered / catch if catch > 0 else None
steady = [r for r in rows if f("t_start") + 3 < float(r["t"]) < f("t_cut")]
ingest = sum(num(r, "ingest_rate") for r in steady) / max(1, len(steady))
bcol = "undelivered_stored" if budget else "backlog"
backlog_max = max(num(r, bcol) for r in rows)
peak = max(num(r, "delivery_rate") for r in rows)
stored = sum(s["expected"] for s in k.get("streams", {}).values())
# Cores in use during the catch-up (who had the CPU), and the machine.
win = [r for r in rows if t_ready <= float(r["t"]) <= (t_caught or t_ready)]
avg = lambda key: round(sum(num(r, key) for r in win) / len(win), 2) if win else None
cpu_drain = {"daemon": avg("daemon_cpu"), "kafka": avg("kafka_cpu"),
             "machine": avg("machine_cpu")}
model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), "?")
machine = f"{os.cpu_count()} cores, {model}"
res = {
    "outage_s": round(f("t_restore") - f("t_cut"), 1),
    "kafka_restart_s": round(t_ready - t_restore, 1),
    "catch_up_s": round(catch, 1) if catch is not None else None,
    "catch_up_after_ready_s": round(t_caught - t_ready, 1) if t_caught else None,
    "catch_up_ratio": round(catch / (f("t_restore") - f("t_cut")), 3) if catch else None,
    "ingest_rate": round(ingest),
    "target_rate": int(rate),
    "drain_events_per_s": round(drain) if drain else None,
    "peak_delivery_events_per_s": round(peak),
    "backlog_max_events": int(backlog_max),
    "live_p50_ms_during_drain": k.get("window_live_p50_ms"),
    "live_p99_ms_during_drain": k.get("window_live_p99_ms"),
    "live_max_ms_during_drain": k.get("window_live_max_ms"),
    "live_records_during_drain": k.get("window_live_records"),
    "live_p50_ms": k.get("live_p50_ms"),
    "live_p99_ms": k.get("live_p99_ms"),
    "rss_anon_kb_max": int(max(num(r, "rss_anon_kb") for r in rows)),
    "rss_anon_kb_idle_end": int(rss_idle or 0),
    "disk_bytes_max": int(max(num(r, "disk_bytes") for r in rows)),
    "acked": acked,
    "ingest_failed": failed,
    "stored": stored,
    "kafka_records": k.get("records"),
    "missing": k.get("missing"),
    "duplicates": k.get("duplicates"),
    "order_errors": k.get("order_errors"),
    "historical_records": sum(s["historical"] for s in k.get("streams", {}).values()),
    "verify_timed_out": k.get("timed_out", True),
    "cpu_cores_during_drain": cpu_drain,
    "machine": machine,
    "cut": cut,
    "broker_stop": ("SIGKILL" if killb == "1" else "SIGTERM") if cut == "stop" else None,
    "backlog_column": bcol,
    "daemon_exit": int(drc),
}
res["ok"] = bool(res["missing"] == 0 and res["duplicates"] == 0 and stored >= acked
                 and not res["verify_timed_out"] and int(krc) == 0 and int(drc) == 0
                 and catch is not None)
res["acceptance_catch_up"] = bool(catch is not None and catch <= res["outage_s"] / 4)
if budget:
    # Every offset [0, next) arrived once as a record or inside one gap
    # record (missing = duplicates = 0 above; a gap over a delivered offset
    # counts as a duplicate and a gap_overlap). Here: the gaps cover only
    # what the store evicted (below its first offset at the end), and the
    # store's counters agree: evicted = first offset (one stream, evicted
    # from its head), of which gap_events were undelivered.
    txt = open(w + "/store_stats.txt").read() if os.path.exists(w + "/store_stats.txt") else ""
    m = re.search(r"stream readings \(id \d+\): offsets (\d+)\.\.(\d+)", txt)
    first = int(m.group(1)) if m else None
    ev = {r: int(n) for r, n in re.findall(r"evicted (\w+): (\d+) events", txt)}
    evicted = sum(ev.values())
    ks = k.get("streams", {}).get("readings", {})
    gap_events, gap_max = ks.get("gap_events", 0), ks.get("gap_max_offset", -1)
    try:
        pending = int(open(w + "/gaps_pending.txt").read().split()[0])
    except Exception:
        pending = None
    res.update({
        "budget_bytes": budget,
        "policy": policy,
        "store_first_offset_end": first,
        "evicted_events": evicted,
        "evicted_by_reason": ev,
        "gap_records": ks.get("gap_records"),
        "gap_events": gap_events,
        "gap_min_offset": ks.get("gap_min_offset"),
        "gap_max_offset": gap_max,
        "gap_overlaps": ks.get("gap_overlaps"),
        "gap_overlap_offsets": [ks.get("gap_overlap_min_offset"), ks.get("gap_overlap_max_offset")],
        "evicted_after_delivery": (evicted - gap_events) if first is not None else None,
        "gaps_pending_in_store": pending,
        "ingest_failed": failed,
    })
    res["gaps_ok"] = bool(first is not None and evicted > 0 and evicted == first
                          and gap_events > 0 and gap_max < first
                          and ks.get("gap_overlaps") == 0 and pending == 0)
    res["ok"] = res["ok"] and res["gaps_ok"]
print(json.dumps(res))
PY
arc=0
if [[ -n $apid ]]; then
  touch "$work/alerts.stop"
  wait "$apid" || arc=$?
  apid=""
fi
if [[ -n $out ]]; then
  mkdir -p "$out"
  for f in alerts.json dashboard.png; do [[ ! -f $work/$f ]] || cp "$work/$f" "$out/"; done
  cp "$work/samples.csv" "$work/latency.csv" "$work/phases.env" "$work/result.json" \
    "$work/daemon.log" "$work/kcheck.json" "$out/"
  for f in store_stats.txt status_end.json; do
    [[ ! -f $work/$f ]] || cp "$work/$f" "$out/"
  done
  log "results kept in $out (loadtest/outage/plot.sh $out)"
fi
[[ $arc == 0 ]] || { log "alerts: the uplink/backlog alerts did not fire and resolve (alerts.json)"; exit 1; }
python3 -c "import json,sys; sys.exit(0 if json.load(open('$work/result.json'))['ok'] else 1)"
