#!/usr/bin/env bash
# `make demo`: the store-and-forward story on one machine, in about three
# minutes. The harness's Kafka and Mosquitto; sluice with
# deploy/examples/demo.yaml (uplink on, pipelines: a deadband on the PLC
# stream, 10 s windows per production line); the simulators publishing
# natively and as MQTT JSON, a Sparkplug B edge node over MQTT, and
# sluice-modbus polling a simulated PLC. Kafka is cut in the middle, then
# the daemon is killed with -9; a live view shows events in, backlog, uplink
# state and the catch-up ETA. At the end a read_committed Kafka consumer
# proves that every stored event arrived exactly once. Cleans up everything
# it started; exits non-zero when the verdict fails.
#
#   scripts/demo.sh [BUILD_DIR]          (make demo)
#   SL_DEMO_OUTAGE=40 SL_DEMO_RATE=5000  the outage length (s) and the
#                                        native readings per second
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
outage=${SL_DEMO_OUTAGE:-40}
rate=${SL_DEMO_RATE:-5000}
bold=$(tput bold 2>/dev/null || true); off=$(tput sgr0 2>/dev/null || true)
tty=0; [[ -t 2 ]] && tty=1
# A story line; on a terminal, it first clears the live view's line.
say() {
  [[ $tty == 1 ]] && printf '\r\033[K' >&2
  printf '%s==> %s%s\n' "$bold" "$*" "$off" >&2
}
note() {
  [[ $tty == 1 ]] && printf '\r\033[K' >&2
  printf '    %s\n' "$*" >&2
}
die() { say "demo FAILED: $*"; exit 1; }

sluice=$build/daemon/sluice
sim=$build/connectors/sluice-sim
modbus=$build/connectors/sluice-modbus
plc=$build/tests/connectors/sl_test_modbus_server
kcheck=$build/loadtest/common/sl_kcheck
for b in "$sluice" "$sim" "$modbus" "$kcheck"; do
  [[ -x $b ]] || die "$b is missing: build first (make demo does)"
done

work=$(mktemp -d /tmp/sluice-demo.XXXXXX)
export SLUICE_HARNESS_DIR=$work/harness
pids=() dpid=""
cleanup() {
  local rc=$?
  set +e
  touch "$work/stop"
  if [[ -n $dpid ]]; then
    kill -9 "$dpid" 2>/dev/null
    wait "$dpid" 2>/dev/null
  fi
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  scripts/harness stop >/dev/null 2>&1
  if [[ $rc -ne 0 ]]; then
    printf 'logs: %s (sluice.log, kcheck.log, the connectors'"'"' logs)\n' "$work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
status() { curl -sf --max-time 2 "http://127.0.0.1:$aport/v1/status"; }
wait_for() { # wait_for SECONDS CMD...: poll CMD every 0.2 s until it succeeds
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.2
  done
}

# Starts the daemon: the first time on free ports, later on the same ones
# (the connectors reconnect to them); its Nth ready line gives them.
start_sluice() {
  local -a ports=()
  [[ $1 -gt 1 ]] && ports=(SLUICE_LISTENERS_NATIVE_TCP="127.0.0.1:$nport"
    SLUICE_LISTENERS_HTTP_ADDRESS="127.0.0.1:$hport" SLUICE_ADMIN_ADDRESS="127.0.0.1:$aport")
  env "${ports[@]}" SLUICE_NODE_DATA_DIR="$work/data" \
    SLUICE_KAFKA_BROKERS="$SLUICE_TEST_KAFKA_BOOTSTRAP" SLUICE_MQTT_HOST="$SLUICE_TEST_MQTT_HOST" \
    SLUICE_MQTT_PORT="$SLUICE_TEST_MQTT_PORT" \
    "$sluice" run -c deploy/examples/demo.yaml 2>>"$work/sluice.log" &
  dpid=$!
  echo "$dpid" >"$work/sluice.pid"
  local line=""
  for _ in $(seq 1 300); do
    line=$(grep ' ready: ' "$work/sluice.log" | sed -n "${1}p" || true)
    [[ -n $line ]] && break
    kill -0 "$dpid" 2>/dev/null || { tail -20 "$work/sluice.log" >&2; die "sluice did not start"; }
    sleep 0.05
  done
  [[ -n $line ]] || die "sluice not ready"
  nport=$(sed -E 's/.*native tcp [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
  hport=$(sed -E 's/.*http port ([0-9]+).*/\1/' <<<"$line")
  aport=$(sed -E 's/.*admin [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
}
uplink_running() { [[ $(status | json 'd["uplink"]["state"]' 2>/dev/null) == running ]]; }
# Stored minus delivered by this daemon process (exact while the first
# process runs; the uplink's own figure is refreshed once a second).
owed() {
  status | json 'sum(s["next_offset"] for s in d["streams"]) - sum(s["delivered"] for s in d["uplink"]["streams"])'
}
uplink_backlog() { status | json 'sum(s["backlog_events"] for s in d["uplink"]["streams"])'; }
caught_up() { local b; b=$(owed 2>/dev/null) && ((b < rate / 2)); }

say "sluice $("$sluice" version | awk '{print $2}'): the outage demo (about 3 minutes)"
say "starting Kafka (KRaft) and Mosquitto on loopback"
scripts/harness start
while IFS= read -r line; do export "${line?}"; done < <(scripts/harness env)
note "Kafka $SLUICE_TEST_KAFKA_BOOTSTRAP, Mosquitto $SLUICE_TEST_MQTT_HOST:$SLUICE_TEST_MQTT_PORT"

say "sluice with deploy/examples/demo.yaml: 5 streams, a deadband and 10 s windows, uplink to Kafka"
start_sluice 1
wait_for 60 uplink_running || die "the uplink did not reach Kafka"
note "native :$nport  http :$hport  admin :$aport  store $work/data (fsync per commit)"

# The verifier reads every topic from the start, read_committed.
: >"$work/control"
"$kcheck" --brokers "$SLUICE_TEST_KAFKA_BOOTSTRAP" --node demo-gateway \
  --topic sluice.readings,sluice.inference,sluice.plc,sluice.line-10s,sluice.mqtt-dlq \
  --control "$work/control" --timeout 120 >"$work/kcheck.json" 2>"$work/kcheck.log" &
pids+=($!)
kpid=$!

say "connectors: simulators (native, MQTT JSON), a Sparkplug B node, sluice-modbus on a simulated PLC"
duration=$((outage + 70))
"$sim" --output native --address "127.0.0.1:$nport" --client_id sim-native --sources 500 \
  --rate "$rate" --inference_sources 4 --inference_rate 20 --duration "${duration}s" \
  --log_level warn >"$work/sim-native.out" 2>"$work/sim-native.log" &
pids+=($!)
sim_native=$!
"$sim" --output mqtt --address "$SLUICE_TEST_MQTT_HOST:$SLUICE_TEST_MQTT_PORT" \
  --client_id sim-mqtt --topic_prefix demo/sim --sources 50 --rate 200 --seed 2 \
  --inference_sources 2 --inference_rate 4 --duration "${duration}s" \
  --log_level warn >"$work/sim-mqtt.out" 2>"$work/sim-mqtt.log" &
pids+=($!)
sim_mqtt=$!
note "sluice-sim: 500 sensors at $rate/s + 4 ML models natively; 50 sensors + 2 models as MQTT JSON"

# Sparkplug B: an edge node "press-cell" of group "plant1" (birth, then
# data every 0.5 s by alias), QoS 1 through Mosquitto.
python3 - "$SLUICE_TEST_MQTT_HOST" "$SLUICE_TEST_MQTT_PORT" "$duration" "$work/sparkplug.count" \
  >"$work/sparkplug.log" 2>&1 <<'PY' &
import random, struct, subprocess, sys, tempfile, time
host, port, duration, countfile = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def varint(v):
    out = b""
    while True:
        b = v & 0x7F; v >>= 7
        if v: out += bytes([b | 0x80])
        else: return out + bytes([b])
def field(num, wire, payload):
    return varint(num << 3 | wire) + payload
def ld(num, data):
    return field(num, 2, varint(len(data)) + data)
def metric(alias, value, name=None, dtype=None):
    m = b""
    if name: m += ld(1, name.encode())
    m += field(2, 0, varint(alias))
    if dtype: m += field(4, 0, varint(dtype))
    if isinstance(value, float): m += field(13, 1, struct.pack("<d", value))
    else: m += field(10, 0, varint(value & 0xFFFFFFFF))
    return m
def payload(seq, metrics):
    p = field(1, 0, varint(int(time.time() * 1000)))
    for m in metrics: p += ld(2, m)
    return p + field(3, 0, varint(seq))
sent = 0
def pub(kind, body):
    global sent
    with tempfile.NamedTemporaryFile() as f:
        f.write(body); f.flush()
        subprocess.run(["mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-i", "demo-sparkplug",
                        "-t", f"spBv1.0/plant1/{kind}/press-cell", "-f", f.name], check=True)
    sent += 1
    open(countfile, "w").write(f"{sent}\n")
temp, rpm, seq = 40.0, 1200, 0
pub("NBIRTH", payload(seq, [metric(1, temp, "spindle/temp", 10), metric(2, rpm, "spindle/rpm", 3)]))
end = time.time() + duration
while time.time() < end:
    time.sleep(0.5)
    seq = (seq + 1) % 256
    temp += random.uniform(-0.4, 0.45)
    if random.random() < 0.05: rpm = random.choice([0, 1200, 1500])
    pub("NDATA", payload(seq, [metric(1, round(temp, 2)), metric(2, rpm)]))
PY
pids+=($!)
sparkplug=$!
note "Sparkplug B: spBv1.0/plant1/NDATA/press-cell, spindle temp and rpm by alias every 0.5 s"

if [[ -x $plc ]]; then
  "$plc" --port 0 >"$work/plc.port" 2>"$work/plc.log" &
  pids+=($!)
  wait_for 10 grep -q '^port ' "$work/plc.port" || die "the simulated PLC did not start"
  plc_port=$(awk '/^port / {print $2}' "$work/plc.port")
  cat >"$work/modbus.yaml" <<YAML
address: 127.0.0.1:$nport
client_id: demo-modbus
stream: plc
status_stream: plc
log_level: warn
devices:
  - name: press07
    source: plant1/line3/press07
    host: 127.0.0.1
    port: $plc_port
    points:
      - {name: temp, table: holding, address: 0, type: int16, scale: 0.1, unit: C, interval: 200ms}
      - {name: pressure, table: holding, address: 6, type: float32, unit: bar, interval: 200ms}
      - {name: energy, table: holding, address: 4, type: uint32, word_order: little, scale: 0.001, unit: kWh, interval: 1s}
      - {name: oil_temp, table: input, address: 0, type: int16, scale: 0.1, offset: -10, unit: C, interval: 200ms}
      - {name: running, table: coil, address: 3, interval: 200ms}
YAML
  "$modbus" -c "$work/modbus.yaml" >"$work/modbus.log" 2>&1 &
  pids+=($!)
  modbus_pid=$!
  note "sluice-modbus: press07 (5 points, every 200 ms) on the simulated PLC at :$plc_port"
else
  modbus_pid=""
  note "(no $plc: build with tests for the Modbus part; skipped)"
fi

say "HTTP ingest: JSON lines, 2xx only after the commit; a typo is refused"
printf '%s\n' '{"source":"plant1/line1/press01/temp","value":61.5,"unit":"C"}' \
  '{"source":"plant1/line1/press01/state","value":"RUNNING"}' \
  '{"source":"plant1/line1/cam1","inference":{"model":"scratch-detector","model_version":"3.1","labels":[{"name":"scratch","score":0.93}]}}' |
  curl -sS -H 'Content-Type: application/x-ndjson' --data-binary @- \
    "http://127.0.0.1:$hport/v1/events?stream=readings" | sed 's/^/    /' >&2
typo=$(printf '%s' '{"source":"x","vaule":1}' |
  curl -sS -w ' (HTTP %{http_code})' -H 'Content-Type: application/json' \
    --data-binary @- "http://127.0.0.1:$hport/v1/events" | tr -d '\n')
note "refused: $typo"

say "live view: events in, delivered, backlog, uplink state, catch-up ETA (from /v1/status every second)"
echo normal >"$work/phase"
python3 loadtest/common/sampler.py --admin "127.0.0.1:$aport" --pid-file "$work/sluice.pid" \
  --data "$work/data" --out "$work/samples.csv" --stop "$work/stop" \
  --phase-file "$work/phase" --view --view-every 2 &
pids+=($!)
sleep 20

say "Kafka outage: the broker is stopped for ${outage} s; sluice keeps acknowledging and storing"
echo OUTAGE >"$work/phase"
loadtest/common/kafka_cut.sh stop
sleep "$outage"
say "Kafka is back (same data, same ports): the backlog drains beside the live data"
echo restore >"$work/phase"
loadtest/common/kafka_cut.sh start
echo catch-up >"$work/phase"
t0=$SECONDS
wait_for 120 caught_up || die "the backlog did not drain in 120 s"
say "caught up $((SECONDS - t0)) s after Kafka came back"
echo normal >"$work/phase"
sleep 5

say "power cut: kill -9 sluice while everything publishes, then start it again"
echo CRASH >"$work/phase"
kill -9 "$dpid"
wait "$dpid" 2>/dev/null || true
echo "---- killed" >>"$work/sluice.log"
sleep 2
start_sluice 2
note "restarted: the uplink resumes from the checkpoints in Kafka; the connectors resend what was not acked"
echo normal >"$work/phase"

say "waiting for the connectors to finish"
wait "$sim_native" || die "sluice-sim (native) failed: $(cat "$work/sim-native.out")"
wait "$sim_mqtt" || die "sluice-sim (MQTT) failed: $(cat "$work/sim-mqtt.out")"
wait "$sparkplug" || die "the Sparkplug publisher failed: $(tail -3 "$work/sparkplug.log")"
if [[ -n $modbus_pid ]]; then
  kill -TERM "$modbus_pid"
  wait "$modbus_pid" || die "sluice-modbus failed: $(tail -3 "$work/modbus.log")"
fi
echo drain >"$work/phase"
# Mosquitto may still hold MQTT messages for sluice's session, and the
# uplink its last chunk: wait until nothing is owed for 3 s in a row.
quiet=0
for _ in $(seq 1 300); do
  b=$(uplink_backlog 2>/dev/null || echo x)
  if [[ $b == 0 ]]; then quiet=$((quiet + 1)); else quiet=0; fi
  [[ $quiet -ge 15 ]] && break
  sleep 0.2
done
[[ $quiet -ge 15 ]] || die "sluice still had $b events to deliver after 60 s"
touch "$work/stop"
sleep 1.2
[[ $tty == 1 ]] && printf '\r\033[K' >&2

say "verdict from Kafka: a read_committed consumer counts every node/stream/offset"
status >"$work/status.json"
{
  json '"\n".join("expect %s %d" % (s["name"], s["next_offset"]) for s in d["streams"])' \
    <"$work/status.json"
  echo check
  echo quit
} >>"$work/control"
krc=0
wait "$kpid" || krc=$?
[[ -s $work/kcheck.json ]] || die "no verdict from the Kafka consumer (log: $work/kcheck.log)"
python3 - "$work" "$krc" <<'PY'
import json, re, sys
w, krc = sys.argv[1], int(sys.argv[2])
k = json.loads(open(w + "/kcheck.json").read().splitlines()[-1])
def acked(f):
    m = re.search(r"acked (\d+)", open(f).read())
    return int(m.group(1)) if m else 0
native, mqtt = acked(w + "/sim-native.out"), acked(w + "/sim-mqtt.out")
try:
    sp = int(open(w + "/sparkplug.count").read())
except OSError:
    sp = 0
print(f"    {'stream':<10} {'stored':>9} {'in Kafka':>9} {'missing':>8} {'dups':>6} {'historical':>11}")
for name, s in k["streams"].items():
    print(f"    {name:<10} {s['expected']:>9,} {s['distinct']:>9,} {s['missing']:>8} "
          f"{s['duplicates']:>6} {s['historical']:>11,}")
# Every acknowledged event must be stored: native and HTTP acks come from
# sluice after its commit; MQTT ones from Mosquitto, which hands each message
# to sluice's persistent session until sluice acks it after storing it (or
# its dead letter). The PLC streams are thinned by the deadband on purpose.
stored = sum(k["streams"].get(n, {}).get("expected", 0)
             for n in ("readings", "inference", "mqtt-dlq"))
acked = native + mqtt + 3
dlq = k["streams"].get("mqtt-dlq", {}).get("expected", 0)
print(f"    acknowledged to the connectors: native {native:,}, MQTT {mqtt:,} (by Mosquitto), "
      f"HTTP 3 = {acked:,}; stored in readings + inference + mqtt-dlq: {stored:,} "
      f"({dlq:,} MQTT payloads the JSON decoder could not map are in mqtt-dlq)")
print(f"    Sparkplug B: {sp} messages; PLC readings kept after the deadband: "
      f"{k['streams'].get('plc', {}).get('expected', 0):,}")
ok = (k["missing"] == 0 and k["duplicates"] == 0 and not k["timed_out"] and krc == 0
      and stored >= acked)
if stored < acked:
    print(f"    {acked - stored:,} acknowledged events are missing from the store")
print(f"    {k['records']:,} records read from Kafka: {k['missing']} missing, "
      f"{k['duplicates']} duplicated, {k['order_errors']} out of order per source and lane")
sys.exit(0 if ok else 1)
PY
kill -TERM "$dpid"
drc=0
wait "$dpid" || drc=$?
dpid=""
[[ $drc -eq 0 ]] || die "sluice exited $drc after SIGTERM"
say "demo ok in $SECONDS s: every stored event is in Kafka exactly once, through an outage and a kill -9"
