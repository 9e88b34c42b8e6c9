#!/usr/bin/env bash
# Routes reach the uplink: a stream kept on the node by `route: local` is
# never sent to Kafka, while its window results, routed to Kafka with a
# topic of their own, are. Real daemon, real Kafka (the harness's).
#   route_local.sh SLUICE_BINARY SLUICE_SIM_BINARY
set -euo pipefail
sluice=$1 sim=$2
if [[ -z ${SLUICE_TEST_KAFKA_BOOTSTRAP:-} ]]; then
  echo "SLUICE_TEST_KAFKA_BOOTSTRAP not set: run under scripts/harness run" >&2
  exit 77
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_route.XXXXXX")
pid=
cleanup() { [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -n 20 "$work/log" >&2; exit 1; }
id="route$$-$(date +%s%N)"
raw_topic="$id-raw" agg_topic="$id-agg"

cat >"$work/sluice.yaml" <<YAML
node:
  id: $id
  data_dir: $work/data
listeners:
  native:
    tcp: "127.0.0.1:0"
  http:
    address: ""
admin:
  address: ""
kafka:
  enabled: true
  brokers: "$SLUICE_TEST_KAFKA_BOOTSTRAP"
  checkpoint_topic: "$id-ckpt"
streams:
  - name: raw
    topic: "$raw_topic"
  - name: agg
pipelines:
  - name: keep-raw-local
    match: {stream: raw}
    steps:
      - route: local
  - name: summaries
    match: {stream: raw}
    steps:
      - aggregate: [count, mean]
        window: 1s
        into: agg
        keep_raw: true
  - name: summaries-upstream
    match: {stream: agg}
    steps:
      - route: kafka
        topic: "$agg_topic"
YAML
"$sluice" check-config -c "$work/sluice.yaml" >/dev/null || fail "config refused"
"$sluice" run -c "$work/sluice.yaml" 2>"$work/log" &
pid=$!
port=
for _ in $(seq 1 200); do
  port=$(grep -o ' ready: native tcp [^ ]* (port [0-9]*' "$work/log" | grep -o '[0-9]*$' || true)
  [[ -n $port ]] && break
  kill -0 "$pid" 2>/dev/null || fail "daemon died"
  sleep 0.05
done
[[ -n $port ]] || fail "daemon not ready"
# 3 s of readings in event time: windows close as the watermark passes.
"$sim" --address "127.0.0.1:$port" --stream raw --sources 5 --rate 1000 --count 3000 \
  --inference_sources 0 --inference_rate 0 --log_level warn >/dev/null ||
  fail "simulator"
# Await the window results in Kafka (bounded).
n=0
for _ in $(seq 1 300); do
  n=$(kcat -C -b "$SLUICE_TEST_KAFKA_BOOTSTRAP" -t "$agg_topic" -o beginning -e -q \
    -X isolation.level=read_committed -f '%o\n' 2>/dev/null | wc -l || true)
  [[ $n -gt 0 ]] && break
  sleep 0.1
done
[[ $n -gt 0 ]] || fail "no window results reached Kafka topic $agg_topic"
# The raw stream is stored (3000 events) but has no topic in Kafka at all.
stored=$("$sluice" store stats -d "$work/data" | awk '/^stream raw /{print $7}')
[[ $stored -eq 3000 ]] || fail "raw stream holds $stored events, want 3000"
if kcat -L -b "$SLUICE_TEST_KAFKA_BOOTSTRAP" 2>/dev/null | grep -q "topic \"$raw_topic\""; then
  fail "the local stream reached Kafka ($raw_topic exists)"
fi
kill -TERM "$pid"
wait "$pid" || fail "daemon exit status $?"
pid=
echo "route_local: raw kept local (3000 stored, no topic), $n window results in $agg_topic"
