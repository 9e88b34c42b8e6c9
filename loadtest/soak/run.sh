#!/usr/bin/env bash
# loadtest/run soak: a long run by hand. Steady ingest into a daemon with the
# uplink on while, cycle after cycle, one fault in turn strikes:
#   outage   Kafka stopped for --outage seconds, then started again
#   kill9    the daemon killed with SIGKILL and restarted (same ports)
#   broker   the Kafka broker killed with SIGKILL and restarted at once
# At the end of every cycle ingest pauses (SIGSTOP), the uplink delivers
# what is stored, and the invariants are checked: every stored offset in
# Kafka exactly once (read_committed, cumulative since the start), every
# acked event stored, the daemon's RSS anon under --rss-limit-mb. Bounded:
# no cycle starts unless it fits in --minutes. Progress on stderr, one JSON
# object on stdout (per-cycle results included); exit 1 on any violation.
#
#   loadtest/run soak [--minutes 10] [--rate 20000] [--outage 20]
#                     [--rss-limit-mb 64] [--out DIR]
set -euo pipefail
minutes=10 rate=20000 outage=20 rss_limit_mb=64 out=""
usage() {
  echo "usage: loadtest/run soak [--minutes N] [--rate EV/S] [--outage S] [--rss-limit-mb MB] [--out DIR]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case $1 in
  --minutes) minutes=$2; shift 2 ;;
  --rate) rate=$2; shift 2 ;;
  --outage) outage=$2; shift 2 ;;
  --rss-limit-mb) rss_limit_mb=$2; shift 2 ;;
  --out) out=$2; shift 2 ;;
  *) usage ;;
  esac
done
[[ $minutes =~ ^[0-9]+$ && $rate =~ ^[0-9]+$ && $outage =~ ^[0-9]+$ ]] || usage
: "${SL_BUILD_RELEASE:?run through loadtest/run}"
src=$SL_SOURCE_DIR
sl_build_release sluice sl_steady sl_kcheck
bin=$SL_BUILD_RELEASE
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_soak.XXXXXX")
export SLUICE_HARNESS_DIR=$work/harness
dpid="" gpid="" kpid="" spid=""
log() { printf '[soak %s] %s\n' "$(date +%T)" "$*" >&2; }
cleanup() {
  local rc=$?
  set +e
  touch "$work/stop"
  [[ -n $gpid ]] && kill -CONT "$gpid" 2>/dev/null
  for p in $gpid $kpid $spid $dpid; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in $gpid $kpid $spid $dpid; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  "$src/scripts/kafka.sh" clean >/dev/null 2>&1
  if [[ $rc -ne 0 ]]; then
    log "failed: logs kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
t_begin=$SECONDS
deadline=$((SECONDS + minutes * 60))

log "Kafka: private broker in $SLUICE_HARNESS_DIR"
"$src/scripts/kafka.sh" start
"$src/scripts/kafka.sh" wait-ready
brokers=$("$src/scripts/kafka.sh" env | sed 's/^SLUICE_TEST_KAFKA_BOOTSTRAP=//')
node=soak-$$
cat >"$work/sluice.yaml" <<YAML
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
  budget_bytes: 32GiB
kafka:
  enabled: true
  brokers: "$brokers"
streams:
  - name: readings
    topic: $node.readings
YAML

port="" aport="" starts=0
start_daemon() {
  local -a env=()
  starts=$((starts + 1))
  [[ -n $port ]] && env=(SLUICE_LISTENERS_NATIVE_TCP="127.0.0.1:$port"
    SLUICE_ADMIN_ADDRESS="127.0.0.1:$aport")
  env "${env[@]}" "$bin/daemon/sluice" run -c "$work/sluice.yaml" 2>>"$work/daemon.log" &
  dpid=$!
  echo "$dpid" >"$work/daemon.pid"
  local line=""
  for _ in $(seq 1 300); do
    line=$(grep ' ready: ' "$work/daemon.log" | sed -n "${starts}p" || true)
    [[ -n $line ]] && break
    kill -0 "$dpid" 2>/dev/null || { tail -20 "$work/daemon.log" >&2; exit 1; }
    sleep 0.05
  done
  [[ -n $line ]] || { log "daemon not ready"; exit 1; }
  port=$(sed -E 's/.*native tcp [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
  aport=$(sed -E 's/.*admin [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
}
st() { curl -sf --max-time 2 "http://127.0.0.1:$aport/v1/status"; }
# Waits (bounded) until the uplink reports nothing left to deliver twice in
# a row, a second apart.
await_delivered() {
  local zeros=0 b
  for _ in $(seq 1 "$1"); do
    b=$(st | python3 -c 'import json,sys; d=json.load(sys.stdin); u=d["uplink"]; print(sum(s["backlog_events"] for s in u["streams"]) if u["state"] == "running" else -1)' 2>/dev/null || echo -1)
    if [[ $b == 0 ]]; then zeros=$((zeros + 1)); else zeros=0; fi
    [[ $zeros -ge 2 ]] && return 0
    sleep 1
  done
  return 1
}

start_daemon
log "sluice: native :$port admin :$aport; ingest $rate events/s; ${minutes} min of cycles"
echo run >"$work/phase"
python3 "$src/loadtest/common/sampler.py" --admin "127.0.0.1:$aport" \
  --pid-file "$work/daemon.pid" --data "$work/data" --out "$work/samples.csv" \
  --stop "$work/stop" --phase-file "$work/phase" --view --view-every 10 \
  --kafka-pid-file "$SLUICE_HARNESS_DIR/kafka/kafka.pid" &
spid=$!
: >"$work/control"
nice -n 10 "$bin/loadtest/common/sl_kcheck" --brokers "$brokers" --node "$node" \
  --topic "$node.readings" --control "$work/control" --timeout 300 \
  >"$work/kcheck.jsonl" 2>"$work/kcheck.log" &
kpid=$!
"$bin/loadtest/outage/sl_steady" --address "127.0.0.1:$port" --rate "$rate" \
  >"$work/steady.json" 2>"$work/steady.log" &
gpid=$!

faults=(outage kill9 broker)
cycle_s=$((outage + 60)) # a cycle's length, generously: fault, recovery, check
cycle=0 failed=0
: >"$work/cycles.jsonl"
while ((SECONDS + cycle_s < deadline)); do
  fault=${faults[$((cycle % 3))]}
  cycle=$((cycle + 1))
  echo "$fault" >"$work/phase"
  sleep 10
  t0=$SECONDS
  case $fault in
  outage)
    log "cycle $cycle: Kafka stopped for ${outage}s"
    "$src/loadtest/common/kafka_cut.sh" stop
    sleep "$outage"
    "$src/loadtest/common/kafka_cut.sh" start
    ;;
  kill9)
    log "cycle $cycle: kill -9 the daemon, restart on the same ports"
    kill -9 "$dpid"
    wait "$dpid" 2>/dev/null || true
    echo "---- killed" >>"$work/daemon.log"
    sleep 1
    start_daemon
    ;;
  broker)
    log "cycle $cycle: kill -9 the Kafka broker, restart it at once"
    "$src/loadtest/common/kafka_cut.sh" stop --kill
    "$src/loadtest/common/kafka_cut.sh" start
    ;;
  esac
  sleep 10 # ingest goes on beside the recovery
  echo check >"$work/phase"
  kill -STOP "$gpid" # pause ingest: the stored set stops growing
  ok_deliv=1
  await_delivered 180 || { ok_deliv=0; log "cycle $cycle: backlog not delivered in 180 s"; }
  next=$(st | python3 -c 'import json,sys; print(json.load(sys.stdin)["streams"][0]["next_offset"])')
  rss=$(awk '/^RssAnon/ {print $2}' "/proc/$dpid/status")
  printf 'expect readings %s\ncheck\n' "$next" >>"$work/control"
  # sl_kcheck prints one JSON line per check.
  for _ in $(seq 1 330); do
    [[ $(wc -l <"$work/kcheck.jsonl") -ge $cycle ]] && break
    kill -0 "$kpid" 2>/dev/null || break
    sleep 1
  done
  res=$(sed -n "${cycle}p" "$work/kcheck.jsonl")
  [[ -n $res ]] || res='{"missing":-1,"duplicates":-1,"timed_out":true}'
  kill -CONT "$gpid"
  line=$(python3 - "$cycle" "$fault" "$next" "$rss" "$ok_deliv" "$((SECONDS - t0))" "$rss_limit_mb" "$res" <<'PY'
import json, sys
cycle, fault, nxt, rss, deliv, secs, lim = sys.argv[1:8]
k = json.loads(sys.argv[8])
ok = (k["missing"] == 0 and k["duplicates"] == 0 and not k["timed_out"]
      and deliv == "1" and int(rss) <= int(lim) * 1024)
print(json.dumps({"cycle": int(cycle), "fault": fault, "stored": int(nxt),
                  "missing": k["missing"], "duplicates": k["duplicates"],
                  "order_errors": k.get("order_errors"), "rss_anon_kb": int(rss),
                  "recovery_and_check_s": int(secs), "ok": ok}))
PY
)
  echo "$line" >>"$work/cycles.jsonl"
  log "cycle $cycle: $line"
  [[ $line == *'"ok": true'* ]] || failed=1
  echo run >"$work/phase"
done

log "stopping ingest"
kill -TERM "$gpid"
wait "$gpid" || true
gpid=""
await_delivered 180 || { log "final backlog not delivered"; failed=1; }
next=$(st | python3 -c 'import json,sys; print(json.load(sys.stdin)["streams"][0]["next_offset"])')
printf 'expect readings %s\ncheck\nquit\n' "$next" >>"$work/control"
krc=0
wait "$kpid" || krc=$?
kpid=""
touch "$work/stop"
wait "$spid" || true
spid=""
kill -TERM "$dpid"
drc=0
wait "$dpid" || drc=$?
dpid=""
python3 - "$work" "$krc" "$drc" "$failed" "$((SECONDS - t_begin))" "$rss_limit_mb" <<'PY' | tee "$work/result.json"
import csv, json, sys
w, krc, drc, failed, secs, lim = sys.argv[1:]
cycles = [json.loads(l) for l in open(w + "/cycles.jsonl") if l.strip()]
final = json.loads(open(w + "/kcheck.jsonl").read().strip().splitlines()[-1])
steady = json.load(open(w + "/steady.json"))
rows = [r for r in csv.DictReader(open(w + "/samples.csv")) if r["rss_anon_kb"]]
rss = [int(r["rss_anon_kb"]) for r in rows]
stored = final["streams"].get("readings", {}).get("expected", 0)
res = {
    "seconds": int(secs),
    "cycles": len(cycles),
    "faults": {f: sum(1 for c in cycles if c["fault"] == f) for f in ("outage", "kill9", "broker")},
    "cycles_failed": sum(1 for c in cycles if not c["ok"]),
    "acked": steady["acked"],
    "stored": stored,
    "kafka_records": final["records"],
    "missing": final["missing"],
    "duplicates": final["duplicates"],
    "order_errors": final["order_errors"],
    "rss_anon_kb_max": max(rss) if rss else None,
    "rss_anon_kb_cycle_ends": [c["rss_anon_kb"] for c in cycles],
    "rss_limit_kb": int(lim) * 1024,
    "daemon_exit": int(drc),
    "per_cycle": cycles,
}
res["ok"] = bool(res["cycles"] > 0 and res["cycles_failed"] == 0 and int(failed) == 0
                 and res["missing"] == 0 and res["duplicates"] == 0
                 and stored >= res["acked"] and int(krc) == 0 and int(drc) == 0
                 and (res["rss_anon_kb_max"] or 0) <= res["rss_limit_kb"])
print(json.dumps(res))
PY
if [[ -n $out ]]; then
  mkdir -p "$out"
  cp "$work/samples.csv" "$work/cycles.jsonl" "$work/result.json" "$work/daemon.log" "$out/"
fi
python3 -c "import json,sys; sys.exit(0 if json.load(open('$work/result.json'))['ok'] else 1)"
