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
cleanup() { scripts/harness stop >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

say "sluice $("$build"/broker/sluice version | awk '{print $2}')"
say "starting Kafka (KRaft, loopback) and Mosquitto"
scripts/harness start
eval "$(scripts/harness env | sed 's/^/export /')"
echo "    Kafka     $SLUICE_TEST_KAFKA_BOOTSTRAP"
echo "    Mosquitto $SLUICE_TEST_MQTT_HOST:$SLUICE_TEST_MQTT_PORT"

topic="demo.readings.$$"
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
  say "demo ok: the harness's Kafka and Mosquitto work on loopback"
else
  echo "demo FAILED: expected 5 Kafka records, got $n" >&2
  exit 1
fi
