#!/usr/bin/env bash
# loadtest/run enrol [--nodes N] [--delivery exactly_once|at_least_once]
#                    [--timeout S]
#
# N fresh daemons with only a bootstrap file start at once against a
# private Kafka with an SSL listener, client certificates and ACLs
# (scripts/kafka.sh, SLUICE_KAFKA_SSL=1) and the enrolment service
# (`sluice fleet enroll serve`, auto-approval by rule). Each daemon is sent
# one event as soon as it is up (stored while it is not enrolled); the
# figure per node is the time from the start of all daemons to its first
# record in Kafka (header `node`), read by kcat over the admin listener.
# Prints one JSON object: nodes, enrolled, failures, p50_s, p99_s, max_s,
# delivery, daemons_rss_anon_kb_total. docs/BENCHMARKS.md "enrol".
set -euo pipefail
. "$SL_SOURCE_DIR/loadtest/common/lib.sh"
nodes=50 delivery=exactly_once timeout=300
while [[ $# -gt 0 ]]; do
  case $1 in
    --nodes) nodes=$2; shift 2 ;;
    --delivery) delivery=$2; shift 2 ;;
    --timeout) timeout=$2; shift 2 ;;
    *) echo "usage: loadtest/run enrol [--nodes N] [--delivery D] [--timeout S]" >&2; exit 2 ;;
  esac
done
sl_build_release sluice sl_topics
sl_lt_init enrol
pids=()
svc=
kc=
cleanup() {
  set +e
  # SL_LT_KEEP_LOGS=DIR: the service's and each node's log survive the run.
  if [[ -n ${SL_LT_KEEP_LOGS:-} ]]; then
    mkdir -p "$SL_LT_KEEP_LOGS"
    cp "$work/service.log" "$SL_LT_KEEP_LOGS/" 2>/dev/null
    for d in "$work"/n*; do cp "$d/log" "$SL_LT_KEEP_LOGS/$(basename "$d").log" 2>/dev/null; done
  fi
  for p in "${pids[@]}" $svc $kc; do kill -TERM "$p" 2>/dev/null; done
  # A service blocked on a broker that is gone: do not wait for it.
  [[ -n $svc ]] && { sleep 2; kill -KILL "$svc" 2>/dev/null; }
  wait 2>/dev/null
  SLUICE_KAFKA_SSL=1 SLUICE_KAFKA_DIR=$work/kafka "$src/scripts/kafka.sh" stop >/dev/null 2>&1
  sl_lt_cleanup
}
trap cleanup EXIT

echo "enrol: private Kafka with SSL and ACLs" >&2
export SLUICE_KAFKA_SSL=1 SLUICE_KAFKA_DIR=$work/kafka
"$src/scripts/kafka.sh" start >&2
"$src/scripts/kafka.sh" wait-ready >&2
plain=$(<"$work/kafka/bootstrap")
ssl=$(<"$work/kafka/ssl_bootstrap")
ca=$work/kafka/ssl/ca.pem
cakey=$work/kafka/ssl/ca.key
sluice=$bin/daemon/sluice

cd "$work"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout claim.key \
  -out claim.csr -subj /CN=claim-bench 2>/dev/null
openssl x509 -req -in claim.csr -CA "$ca" -CAkey "$cakey" -CAcreateserial \
  -out claim.crt -days 2 2>/dev/null
chmod 600 claim.key
openssl genpkey -algorithm ed25519 -out fleet.key 2>/dev/null
openssl pkey -in fleet.key -pubout -out fleet.pub
"$bin/loadtest/common/sl_topics" "$plain" sluice.default:6 \
  sluice.checkpoints:1:compact >&2
"$sluice" fleet enroll init --brokers "$plain" >&2
"$sluice" fleet acl apply --claim bench --brokers "$plain" >&2
printf 'auto_approve: true\nclaims: [bench]\nlabels:\n  - key: site\n' >rules.yaml
"$sluice" fleet enroll serve --ca-cert "$ca" --ca-key "$cakey" --rules rules.yaml \
  --brokers "$plain" \
  --txn-acl-helper "exec java -cp \"\$($src/scripts/kafka.sh classpath)\" $src/deploy/kafka/TxnAclHelper.java $plain" \
  >service.log 2>&1 &
svc=$!
# The service runs before the boxes power on (as in a fleet): wait until it
# serves (its transactional-id helper's JVM starts first).
for _ in $(seq 1 240); do
  grep -q '^enroll: serving' service.log 2>/dev/null && break
  kill -0 "$svc" 2>/dev/null || { cat service.log >&2; exit 1; }
  sleep 0.5 # waiting for the service's start, bounded (120 s)
done
grep -q '^enroll: serving' service.log || { echo "enrol: the service did not start" >&2; exit 1; }
cat >bootstrap.yaml <<EOF
brokers: $ssl
ca: $ca
claim:
  cert: $work/claim.crt
  key: $work/claim.key
  name: bench
labels: [site=bench]
verify_key: $work/fleet.pub
properties: [ssl.endpoint.identification.algorithm=none]
EOF
chmod 644 bootstrap.yaml

# Every record's CreateTime (ms: the node's clock when it produced) and
# headers; the first one per node is what counts.
kcat -C -b "$plain" -t sluice.default -o beginning -u -q \
  -X isolation.level=read_committed -f '%T %h\n' >kafka.out 2>/dev/null &
kc=$!

echo "enrol: starting $nodes daemons at once (delivery $delivery)" >&2
t0=$(date +%s%3N) # ms, as CreateTime
for i in $(seq 1 "$nodes"); do
  d=$work/n$i
  mkdir -p "$d"
  cat >"$d/sluice.yaml" <<EOF
node:
  data_dir: $d/data
listeners:
  native:
    tcp: ""
  http:
    address: "127.0.0.1:0"
admin:
  address: "127.0.0.1:0"
kafka:
  enabled: true
  delivery: $delivery
enrol:
  bootstrap: $work/bootstrap.yaml
  retry: 5s
EOF
  chmod 600 "$d/sluice.yaml"
  "$sluice" run -c "$d/sluice.yaml" >"$d/log" 2>&1 &
  pids+=($!)
done
# One event per daemon once its HTTP listener is up (stored, then sent).
posted=0
deadline=$(($(date +%s) + 120))
declare -A done_post=()
while ((posted < nodes && $(date +%s) < deadline)); do
  for i in $(seq 1 "$nodes"); do
    [[ -n ${done_post[$i]:-} ]] && continue
    port=$(sed -n 's/.* ready: .* http port \([0-9]*\).*/\1/p' "$work/n$i/log" | head -1)
    [[ -z $port ]] && continue
    if curl -fsS -o /dev/null -X POST -H 'Content-Type: application/json' \
      --data '{"source":"s","value":1}' "http://127.0.0.1:$port/v1/events"; then
      done_post[$i]=1
      posted=$((posted + 1))
    fi
  done
  sleep 0.2 # polling the daemons' logs for their ports, with a deadline
done
echo "enrol: $posted events posted; waiting for them in Kafka" >&2
deadline=$(($(date +%s) + timeout))
while (($(date +%s) < deadline)); do
  got=$(sed -n 's/.*\bnode=\([^,]*\).*/\1/p' kafka.out 2>/dev/null | sort -u | wc -l)
  printf 'enrol: %d/%d nodes delivered\n' "$got" "$nodes" >&2
  ((got >= nodes)) && break
  sleep 1 # progress display and deadline, not synchronisation
done
echo >&2
rss=0
for p in "${pids[@]}"; do
  r=$(awk '/^RssAnon:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
  rss=$((rss + ${r:-0}))
done
# Latency of each node's first record, sorted (mawk has no asort).
sed -n 's/^\([0-9]*\) .*\bnode=\([^,]*\).*/\1 \2/p' kafka.out |
  awk -v t0="$t0" '!seen[$2]++ { printf "%.3f\n", ($1 - t0) / 1000 }' |
  sort -n >lat
awk -v n="$nodes" -v rss="$rss" -v d="$delivery" '
  { lat[++k] = $1 }
  END {
    p50 = k ? lat[int((k - 1) * 0.50) + 1] : -1
    p99 = k ? lat[int((k - 1) * 0.99) + 1] : -1
    mx = k ? lat[k] : -1
    printf "{\"nodes\": %d, \"enrolled\": %d, \"failures\": %d, \"p50_s\": %.2f, \"p99_s\": %.2f, \"max_s\": %.2f, \"delivery\": \"%s\", \"daemons_rss_anon_kb_total\": %d}\n", n, k, n - k, p50, p99, mx, d, rss
  }' lat
