#!/usr/bin/env bash
# Measures what the Kubernetes manifests are sized from: the daemon's peak RSS
# (VmHWM) under ~20 s of ingest load, and its drain-on-stop time (SIGTERM ->
# exit) under the same load. Not a ctest test (it takes about a minute); run
# by hand after changes that may move memory or shutdown time, then update
# deploy/kustomize/base/statefulset/statefulset.yaml, tests/deploy/policy.py
# (MEASURED_*) and docs/deploy/kubernetes.md#measured.
#
#   tests/deploy/measure.sh [BUILD_DIR] [SECONDS] [STOPS]
#
# The daemon runs with the Kubernetes config (deploy/kustomize/base/common/
# sluice.yaml) with only what cannot work outside a pod changed: paths to a
# temp dir, free loopback ports, a self-signed certificate, the Kafka uplink
# pointed at a closed port (the uplink is down: everything stays in the store,
# the worst case for the store and librdkafka's retries), and the native
# listener without TLS and client list (sl_loadgen speaks neither). Under
# `scripts/harness run -- tests/deploy/measure.sh` the uplink goes to the
# harness's Kafka instead (plaintext), delivering while ingesting. Load: 4
# native connections through sl_loadgen at full speed plus HTTPS posts of 100
# events (Bearer token) by 2 curl loops.
set -euo pipefail
build=${1:-build}
secs=${2:-20}
stops=${3:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "$build" && pwd)
sluice=$build/daemon/sluice
loadgen=$build/loadtest/ingest/sl_loadgen
for b in "$sluice" "$loadgen"; do
  [[ -x $b ]] || { echo "measure.sh: $b not built" >&2; exit 2; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_measure.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/secrets/tls" "$work/secrets/credentials" "$work/data"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
  -keyout "$work/secrets/tls/tls.key" -out "$work/secrets/tls/tls.crt" 2>/dev/null
for f in kafka-ca.crt kafka-client.crt; do cp "$work/secrets/tls/tls.crt" "$work/secrets/credentials/$f"; done
cp "$work/secrets/tls/tls.key" "$work/secrets/credentials/kafka-client.key"
chmod 0440 "$work"/secrets/*/*
token=measure-$$-$RANDOM
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

python3 - "$root/deploy/kustomize/base/common/sluice.yaml" "$work" "$hash" "$closed" >"$work/sluice.yaml" <<'PY'
import os, sys, yaml
src, work, h, closed = sys.argv[1:]
c = yaml.safe_load(open(src))
c["node"]["data_dir"] = f"{work}/data"
c["listeners"]["native"] = {"tcp": "127.0.0.1:0"}
c["listeners"]["http"]["address"] = "127.0.0.1:0"
c["listeners"]["http"]["clients"][0]["token_sha256"] = h
c["admin"]["address"] = "127.0.0.1:0"
c["log"]["format"] = "plain"  # the ready line is parsed below
if os.environ.get("SLUICE_TEST_KAFKA_BOOTSTRAP"):  # uplink up (scripts/harness run)
    c["kafka"]["brokers"] = os.environ["SLUICE_TEST_KAFKA_BOOTSTRAP"]
    c["kafka"]["properties"] = []
else:
    c["kafka"]["brokers"] = f"127.0.0.1:{closed}"
print(yaml.safe_dump(c).replace("/run/secrets/sluice", f"{work}/secrets"))
PY
chmod 0600 "$work/sluice.yaml"

start() {
  : >"$work/daemon.log"
  SLUICE_NODE_ID=measure "$sluice" run -c "$work/sluice.yaml" 2>"$work/daemon.log" &
  dpid=$!
  pids+=("$dpid")
  local line=
  for _ in $(seq 1 300); do
    line=$(grep -m1 ' ready: ' "$work/daemon.log" || true)
    [[ -n $line ]] && break
    kill -0 "$dpid" 2>/dev/null || { cat "$work/daemon.log" >&2; exit 1; }
    sleep 0.1
  done
  [[ -n $line ]] || { echo "measure.sh: daemon not ready" >&2; cat "$work/daemon.log" >&2; exit 1; }
  # "... ready: native tcp 127.0.0.1:0 (port N), unix off, http port N,
  # admin 127.0.0.1:0 (port N), ..."
  native=127.0.0.1:$(sed -n 's/.* ready: native tcp [^ ]* (port \([0-9]*\)).*/\1/p' <<<"$line")
  http=127.0.0.1:$(sed -n 's/.*, http[^,]*port \([0-9]*\).*/\1/p' <<<"$line")
  admin=127.0.0.1:$(sed -n 's/.*, admin [^ ]* (port \([0-9]*\)).*/\1/p' <<<"$line")
}

body=$(python3 -c 'import json; print("\n".join(json.dumps({"source": f"m/{i}", "value": i * 0.5}) for i in range(100)))')
load() { # seconds
  "$loadgen" --address "$native" --connections 4 --events 100000000 --max-seconds "$1" \
    --stream telemetry >"$work/loadgen.json" 2>/dev/null &
  pids+=($!)
  for _ in 1 2; do
    (end=$((SECONDS + $1)); n=0
     while ((SECONDS < end)); do
       curl -sk --max-time 5 -o /dev/null -w '%{http_code}\n' -H "Authorization: Bearer $token" \
         -H 'Content-Type: application/x-ndjson' --data-binary "$body" \
         "https://$http/v1/events?stream=telemetry" >>"$work/http.codes" || true
     done) &
    pids+=($!)
  done
}

start
echo "daemon ready: native $native http $http admin $admin" >&2
curl -skf "https://$admin/readyz" >/dev/null
load "$secs"
sleep "$secs"
wait "${pids[@]:1}" 2>/dev/null || true
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$dpid/status")
rss=$(awk '/VmRSS/ {print $2}' "/proc/$dpid/status")
anon=$(awk '/RssAnon/ {print $2}' "/proc/$dpid/status")
file=$(awk '/RssFile/ {print $2}' "/proc/$dpid/status")
events=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("acked", "?"))' "$work/loadgen.json" 2>/dev/null || echo "?")
ok=$(grep -c '^20' "$work/http.codes" || true)
echo "peak RSS (VmHWM): $((hwm / 1024)) MiB; RSS now $((rss / 1024)) MiB (anon $((anon / 1024)), file $((file / 1024))); native events acked: $events; HTTP 2xx requests: $ok"

worst=0
for i in $(seq 1 "$stops"); do
  ((i == 1)) || start
  pids=("$dpid")
  load 30
  sleep 5
  t0=$(date +%s%N)
  kill -TERM "$dpid"
  wait "$dpid"; rc=$?
  t1=$(date +%s%N)
  ms=$(((t1 - t0) / 1000000))
  ((ms > worst)) && worst=$ms
  echo "stop $i: SIGTERM -> exit $rc in $ms ms ($(grep -o 'draining ([0-9]* batches in flight)' "$work/daemon.log" || echo '?'))"
  for p in "${pids[@]:1}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
done
echo "drain on stop under load: worst $worst ms of $stops"
