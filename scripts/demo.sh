#!/usr/bin/env bash
# `make demo`: starts the harness's real Kafka and Mosquitto, shows data
# flowing through each, and cleans up everything it started. It grows into the
# full outage story as the daemon, MQTT ingest and the uplink land.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bold=$(tput bold 2>/dev/null || true); off=$(tput sgr0 2>/dev/null || true)
say() { printf '%s==> %s%s\n' "$bold" "$*" "$off"; }

export SLUICE_HARNESS_DIR=${SLUICE_HARNESS_DIR:-$(mktemp -d /tmp/sluice-demo.XXXXXX)}
work=$(mktemp -d /tmp/sluice-demo-node.XXXXXX)
dpid=
cleanup() {
  [[ -n $dpid ]] && kill -9 "$dpid" 2>/dev/null
  scripts/harness stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
sluice=$build/broker/sluice
loadgen=$build/loadtest/ingest/sl_loadgen
sim=$build/connectors/sluice-sim
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# Starts the daemon on free ports; sets dpid, nport, hport, aport.
start_sluice() {
  "$sluice" run -c "$work/sluice.yaml" 2>>"$work/sluice.log" &
  dpid=$!
  local line=
  for _ in $(seq 1 200); do
    # The Nth start's own ready line (the log is appended across starts).
    line=$(grep ' ready: ' "$work/sluice.log" | sed -n "${1}p" || true)
    [[ -n $line ]] && break
    kill -0 "$dpid" 2>/dev/null || { cat "$work/sluice.log" >&2; exit 1; }
    sleep 0.05
  done
  nport=$(sed -E 's/.*native tcp [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
  hport=$(sed -E 's/.*http port ([0-9]+).*/\1/' <<<"$line")
  aport=$(sed -E 's/.*admin [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
}

say "sluice $("$build"/broker/sluice version | awk '{print $2}')"
say "starting Kafka (KRaft, loopback) and Mosquitto"
scripts/harness start
eval "$(scripts/harness env | sed 's/^/export /')"
echo "    Kafka     $SLUICE_TEST_KAFKA_BOOTSTRAP"
echo "    Mosquitto $SLUICE_TEST_MQTT_HOST:$SLUICE_TEST_MQTT_PORT"

topic="demo.readings.$$"
cat >"$work/sluice.yaml" <<YAML
node:
  id: demo-gateway
  data_dir: $work/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: "127.0.0.1:0"
admin:
  address: "127.0.0.1:0"
store:
  sync: always
streams:
  - name: readings
  - name: inference
YAML
say "sluice: the daemon, its store in $work/data (an fsync per group commit)"
start_sluice 1
echo "    native :$nport   http :$hport   admin :$aport"

say "simulators: 500 sensors (8 profiles) and 4 ML models publish natively, then over HTTP"
"$sim" --output native --address "127.0.0.1:$nport" --sources 500 --rate 50000 --count 50000 \
  --inference_sources 4 --inference_rate 500 --log_level warn 2>&1 | sed 's/^/    /'
"$sim" --output http --address "127.0.0.1:$hport" --sources 50 --rate 5000 --count 5000 \
  --seed 2 --log_level warn 2>&1 | sed 's/^/    /'
"$sluice" store dump -d "$work/data" --stream inference --to 1 2>/dev/null | cut -c1-200 | sed 's/^/    /'

say "native ingest: 300,000 readings from 500 sources over 4 connections; an ack = durably committed"
"$loadgen" --address "127.0.0.1:$nport" --events 300000 --connections 4 2>/dev/null >"$work/run1.json"
json '"    %d acked at %.0f events/s, ack latency p50 %.1f ms, p99 %.1f ms" % (d["acked"], d["events_per_s"], d["ack_latency_p50_ms"], d["ack_latency_p99_ms"])' <"$work/run1.json"

say "HTTP ingest: POST /v1/events with JSON lines (2xx only after the commit)"
printf '%s\n' '{"source":"plant1/line1/press01/temp","value":61.5,"unit":"C"}' \
  '{"source":"plant1/line1/press01/state","value":"RUNNING"}' \
  '{"source":"cam1","inference":{"model":"scratch-detector","model_version":"3.1","labels":[{"name":"scratch","score":0.93}]}}' |
  curl -sS -H 'Content-Type: application/x-ndjson' --data-binary @- \
    "http://127.0.0.1:$hport/v1/events?stream=readings" | sed 's/^/    /'
typo=$(printf '%s' '{"source":"x","vaule":1}' |
  curl -sS -w ' (HTTP %{http_code})' -H 'Content-Type: application/json' \
    --data-binary @- "http://127.0.0.1:$hport/v1/events" | tr -d '\n')
echo "    a typo is refused: $typo"

echo "    /metrics:"
curl -sS "http://127.0.0.1:$aport/metrics" | grep -E '^sluice_ingest_events_total\{path="(native|http)"' | sed 's/^/      /'

say "power cut: kill -9 the daemon while 1,000,000 readings are being published"
"$loadgen" --address "127.0.0.1:$nport" --events 1000000 --connections 4 --max-seconds 4 \
  2>/dev/null >"$work/run2.json" &
lg=$!
sleep 0.4
kill -9 "$dpid"
wait "$dpid" 2>/dev/null || true
dpid=
wait "$lg" || true
acked2=$(json 'd["acked"]' <"$work/run2.json")
echo "    acked before the crash: $acked2"
start_sluice 2
total_acked=$(( 50000 + 5000 + $(json 'd["acked"]' <"$work/run1.json") + 3 + acked2 ))
events=$(curl -sS "http://127.0.0.1:$aport/v1/status" | json 'sum(s["events"] for s in d["streams"])')
echo "    after restart the store holds $events events; acknowledged in all: $total_acked"
if [[ $events -lt $total_acked ]]; then
  echo "demo FAILED: acknowledged events are missing" >&2
  exit 1
fi
echo "    nothing acknowledged was lost (unacked events may or may not be there)"
kill -TERM "$dpid"
wait "$dpid"
dpid=
say "sluice stopped cleanly (SIGTERM drains, exit 0)"

say "MQTT: five QoS 1 readings queued by Mosquitto for a persistent subscriber"
mq=(-h "$SLUICE_TEST_MQTT_HOST" -p "$SLUICE_TEST_MQTT_PORT")
out=$(mktemp)
# -E: subscribe (clean session off) and exit once the SUBACK arrives, so the
# broker queues what follows for this client id.
mosquitto_sub "${mq[@]}" -i "demo-sub-$$" -c -q 1 -t 'plant1/#' -E
for i in 1 2 3 4 5; do
  mosquitto_pub "${mq[@]}" -q 1 -t "plant1/line1/press0$i/temp" \
    -m "{\"value\":$((60 + i)).5,\"unit\":\"C\"}"
done
mosquitto_sub "${mq[@]}" -i "demo-sub-$$" -c -q 1 -t 'plant1/#' -C 5 -W 20 -v >"$out"
sed 's/^/    /' "$out"
[[ $(wc -l <"$out") -eq 5 ]] || { echo "demo FAILED: MQTT delivered $(wc -l <"$out")/5" >&2; exit 1; }

say "Kafka: five records produced to $topic and consumed back"
for i in 1 2 3 4 5; do echo "press0$i:{\"value\":$((70 + i)).25}"; done |
  kcat -P -b "$SLUICE_TEST_KAFKA_BOOTSTRAP" -t "$topic" -K: -X acks=all
kcat -C -b "$SLUICE_TEST_KAFKA_BOOTSTRAP" -t "$topic" -o beginning -c 5 -e \
  -f '    key=%k value=%s offset=%o\n'
n=$(kcat -C -b "$SLUICE_TEST_KAFKA_BOOTSTRAP" -t "$topic" -o beginning -e -q -f '%o\n' | wc -l)
rm -f "$out"
if [[ "$n" -eq 5 ]]; then
  say "demo ok: durable ingest, crash recovery, and the harness's Kafka and Mosquitto on loopback"
else
  echo "demo FAILED: expected 5 Kafka records, got $n" >&2
  exit 1
fi
