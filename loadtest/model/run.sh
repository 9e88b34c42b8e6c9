#!/usr/bin/env bash
# loadtest/run model: model distribution through the data plane, measured.
# A private Kafka; N real daemons (models.enabled, each its own store and
# models.dir) on this machine; a SIZE MiB model published once by
# `sluice model publish`; Kafka is stopped when the nodes have half of it
# (loadtest/common/kafka_cut.sh: same data, same ports) for --cut seconds
# and started again; the run waits until every node has activated it.
# Then a second version that no app acknowledges (ack timeout 3 s) is
# published: every node must roll back to the first. Progress on stderr,
# one JSON object on stdout:
#
#   distribute_s            publish start -> every node activated v1
#   bytes_fetched_per_node  mean chunk bytes a node took from Kafka (its
#                           consumer's messages, refetches included)
#   fetched_ratio           the largest node's chunk bytes / model size
#                           (1.0 = nothing fetched twice; target <= 1.05)
#   rx_ratio                the largest node's bytes received from the
#                           brokers (librdkafka rx_bytes: protocol and
#                           prefetch included) / model size
#   activated, rolled_back  nodes with v1 active; nodes that rolled v2 back
#
#   loadtest/run model [--nodes 20] [--size-mib 50] [--cut 5]
#                      [--cap-mib 8] [--chunk-kib 512]
set -euo pipefail
nodes=20 size_mib=50 cut_s=5 cap_mib=8 chunk_kib=512
usage() {
  echo "usage: loadtest/run model [--nodes N] [--size-mib M] [--cut S] [--cap-mib M] [--chunk-kib K]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case $1 in
  --nodes) nodes=$2; shift 2 ;;
  --size-mib) size_mib=$2; shift 2 ;;
  --cut) cut_s=$2; shift 2 ;;
  --cap-mib) cap_mib=$2; shift 2 ;;
  --chunk-kib) chunk_kib=$2; shift 2 ;;
  *) usage ;;
  esac
done
: "${SL_BUILD_RELEASE:?run through loadtest/run}"
src=$SL_SOURCE_DIR
CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} sl_build_release sluice
bin=$SL_BUILD_RELEASE/daemon/sluice
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_model.XXXXXX")
export SLUICE_HARNESS_DIR=$work/harness
pids=()
log() { printf '[model %s] %s\n' "$(date +%T)" "$*" >&2; }
cleanup() {
  local rc=$?
  set +e
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 1
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
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

log "Kafka: private broker in $SLUICE_HARNESS_DIR"
"$src/scripts/kafka.sh" start
"$src/scripts/kafka.sh" wait-ready
brokers=$("$src/scripts/kafka.sh" env | sed -n 's/^SLUICE_TEST_KAFKA_BOOTSTRAP=//p')
prefix="bench$$."
openssl genpkey -algorithm ed25519 -out "$work/fleet.key" 2>/dev/null
openssl pkey -in "$work/fleet.key" -pubout -out "$work/fleet.pub"
head -c $((size_mib << 20)) /dev/urandom >"$work/model-1.bin"
head -c $((1 << 20)) /dev/urandom >"$work/model-2.bin"

log "starting $nodes nodes (cap $cap_mib MiB/s each)"
for i in $(seq 1 "$nodes"); do
  d=$work/n$i
  mkdir -p "$d"
  cat >"$d/sluice.yaml" <<YAML
node:
  id: bench-node-$i
  data_dir: $d/data
listeners:
  native:
    tcp: "127.0.0.1:0"
    unix: ""
  http:
    address: ""
admin:
  address: "127.0.0.1:0"
models:
  enabled: true
  dir: $d/models
  brokers: "$brokers"
  topic_prefix: "$prefix"
  verify_key: $work/fleet.pub
  bandwidth_bytes_per_s: ${cap_mib}MiB
YAML
  "$bin" run -c "$d/sluice.yaml" 2>"$d/daemon.log" &
  pids+=($!)
done
ports=()
for i in $(seq 1 "$nodes"); do
  d=$work/n$i
  p=""
  for _ in $(seq 1 400); do
    line=$(grep ' ready: ' "$d/daemon.log" || true)
    if [[ -n $line ]]; then
      p=$(sed -E 's/.*admin [^ ]* \(port ([0-9]+)\).*/\1/' <<<"$line")
      break
    fi
    sleep 0.05
  done
  [[ -n $p ]] || { log "node $i not ready"; tail -5 "$d/daemon.log" >&2; exit 1; }
  ports+=("$p")
done
echo "${ports[*]}" >"$work/ports"

# Polls the nodes: prints "have_share activated rolled_back" or the JSON.
poll() {
  python3 - "$work/ports" "$1" "$size_mib" <<'PY'
import json, sys, urllib.request
ports = open(sys.argv[1]).read().split()
what, size = sys.argv[2], int(sys.argv[3]) << 20
have = total = act = rb = 0
fetched, rx = [], []
for p in ports:
    try:
        models = json.load(urllib.request.urlopen(f"http://127.0.0.1:{p}/v1/models", timeout=3))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{p}/metrics", timeout=3).read().decode()
    except Exception:
        continue
    m = {}
    for line in metrics.splitlines():
        if line.startswith("sluice_model_"):
            k, _, v = line.rpartition(" ")
            m[k] = float(v)
    fetched.append(m.get("sluice_model_bytes_fetched_total", 0))
    rx.append(m.get("sluice_model_rx_bytes", 0))
    for e in models:
        if e["name"] != "det":
            continue
        have += e["chunks_have"]
        total += e["chunks_total"]
        if e["active_version"] == "1.0.0":
            act += 1
        if e["phase"] == "ROLLED_BACK" and e["active_version"] == "1.0.0":
            rb += 1
if what == "state":
    print(f"{(have / total) if total else 0:.3f} {act} {rb}")
else:
    n = len(fetched) or 1
    print(json.dumps({"fetched_mean": sum(fetched) / n,
                      "fetched_max": max(fetched or [0]),
                      "rx_max": max(rx or [0])}))
PY
}

now() { date +%s.%N; }
log "publishing a ${size_mib} MiB model (chunks of ${chunk_kib} KiB)"
t0=$(now)
"$bin" model publish "$work/model-1.bin" --name det --version 1.0.0 \
  --signing-key "$work/fleet.key" --brokers "$brokers" --topic-prefix "$prefix" \
  --chunk-size $((chunk_kib << 10)) --file-name det.onnx >"$work/publish-1.json"
t_pub=$(now)
log "published in $(python3 -c "print(round($t_pub - $t0, 1))") s: $(cat "$work/publish-1.json")"

cut_done=0 t_cut=0 t_back=0
deadline=$(($(date +%s) + 900))
while :; do
  read -r share act rb < <(poll state)
  if [[ $cut_done == 0 ]] && python3 -c "import sys; sys.exit(0 if $share >= 0.5 else 1)"; then
    log "nodes hold ${share} of the chunks: stopping Kafka for ${cut_s}s"
    t_cut=$(now)
    "$src/loadtest/common/kafka_cut.sh" stop
    sleep "$cut_s"
    "$src/loadtest/common/kafka_cut.sh" start
    t_back=$(now)
    log "Kafka back after $(python3 -c "print(round($t_back - $t_cut, 1))") s"
    cut_done=1
  fi
  [[ $act == "$nodes" ]] && break
  (($(date +%s) < deadline)) || { log "not every node activated: $act of $nodes"; exit 1; }
  sleep 0.5
done
t_act=$(now)
activated=$act
log "every node activated v1 after $(python3 -c "print(round($t_act - $t0, 1))") s"
bytes=$(poll bytes)

log "publishing v2 that no app acknowledges (ack timeout 3 s)"
"$bin" model publish "$work/model-2.bin" --name det --version 2.0.0 \
  --signing-key "$work/fleet.key" --brokers "$brokers" --topic-prefix "$prefix" \
  --chunk-size $((chunk_kib << 10)) --file-name det.onnx \
  --gate ack_timeout_ms=3000 >/dev/null
deadline=$(($(date +%s) + 300))
while :; do
  read -r share act rb < <(poll state)
  [[ $rb == "$nodes" ]] && break
  (($(date +%s) < deadline)) || { log "rolled back: $rb of $nodes"; break; }
  sleep 0.5
done
log "rolled back on $rb of $nodes nodes"

python3 - "$t0" "$t_pub" "$t_act" "$t_cut" "$t_back" "$activated" "$rb" \
  "$nodes" "$size_mib" "$bytes" "$chunk_kib" "$cap_mib" <<'PY'
import json, sys
t0, tp, ta, tc, tb = map(float, sys.argv[1:6])
act, rb, nodes, size_mib = map(int, sys.argv[6:10])
b = json.loads(sys.argv[10])
size = size_mib << 20
print(json.dumps({
    "nodes": nodes, "model_bytes": size, "chunk_bytes": int(sys.argv[11]) << 10,
    "cap_bytes_per_s": int(sys.argv[12]) << 20,
    "publish_s": round(tp - t0, 2), "distribute_s": round(ta - t0, 2),
    "cut_s": round(tb - tc, 2),
    "bytes_fetched_per_node": round(b["fetched_mean"]),
    "fetched_ratio": round(b["fetched_max"] / size, 4),
    "rx_ratio": round(b["rx_max"] / size, 4),
    "activated": act, "rolled_back": rb}))
PY
