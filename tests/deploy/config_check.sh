#!/usr/bin/env bash
# The ConfigMap's sluice.yaml is a valid configuration as the pod sees it:
# laid out like the kubelet's ConfigMap volume (sluice.yaml -> ..data/ ->
# ..<timestamp>/, mode 0444), Secret files mode 0440, node.id only from
# SLUICE_NODE_ID (the downward-API node name). Only the mount points are
# moved into a temp dir. Also: without SLUICE_NODE_ID it is refused (so the
# env really is what names the node), and a node name sluice cannot use as
# node.id is refused with the variable's name.
#
#   config_check.sh SLUICE PYTHON
set -euo pipefail
sluice=${1:?usage: config_check.sh SLUICE PYTHON}
py=${2:-python3}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
command -v "${KUBECTL:-kubectl}" >/dev/null || { echo "SKIPPED: kubectl not found"; exit 77; }
"$py" -c 'import yaml' 2>/dev/null || { echo "SKIPPED: PyYAML missing"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/sl_deploycfg.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$root/deploy/kustomize/render.sh" base >"$work/base.yaml"
"$py" - "$work/base.yaml" "$work" >"$work/sluice.yaml.in" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "sluice-config")
text = cm["data"]["sluice.yaml"]
for mount in ("/run/secrets/sluice", "/var/lib/sluice"):
    assert mount in text, mount
    text = text.replace(mount, sys.argv[2] + mount)
sys.stdout.write(text)
PY

# The kubelet's layout of a ConfigMap volume.
cfg=$work/etc/sluice
mkdir -p "$cfg/..2026_12_07_00_00_00.000000001" "$work/var/lib/sluice"
mv "$work/sluice.yaml.in" "$cfg/..2026_12_07_00_00_00.000000001/sluice.yaml"
chmod 0444 "$cfg/..2026_12_07_00_00_00.000000001/sluice.yaml"
ln -s ..2026_12_07_00_00_00.000000001 "$cfg/..data"
ln -s ..data/sluice.yaml "$cfg/sluice.yaml"

# Secrets: sluice-tls (service CA: tls.crt, tls.key), sluice-credentials.
s=$work/run/secrets/sluice
mkdir -p "$s/tls" "$s/credentials"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=sluice.sluice.svc -keyout "$s/tls/tls.key" -out "$s/tls/tls.crt" 2>/dev/null
cp "$s/tls/tls.crt" "$s/credentials/kafka-ca.crt"
cp "$s/tls/tls.crt" "$s/credentials/kafka-client.crt"
cp "$s/tls/tls.key" "$s/credentials/kafka-client.key"
chmod 0440 "$s"/*/*

fail=0
check() { # expect(ok|fail) description env...
  local expect=$1 what=$2; shift 2
  if env -u SLUICE_NODE_ID "$@" "$sluice" check-config -c "$cfg/sluice.yaml" >"$work/out" 2>&1; then got=ok; else got=fail; fi
  if [[ $got == "$expect" ]]; then
    echo "ok: $what ($got)"
  else
    echo "FAIL: $what: expected $expect, got $got"; sed 's/^/  /' "$work/out"; fail=1
  fi
}
check ok "pod config with SLUICE_NODE_ID=<node name>" SLUICE_NODE_ID=worker-1.site-3.example.com
check fail "pod config without SLUICE_NODE_ID (node.id is required)"
grep -q "node.id" "$work/out" || { echo "FAIL: the refusal does not name node.id"; cat "$work/out"; fail=1; }
check fail "a node name longer than node.id allows" SLUICE_NODE_ID="$(printf 'n%.0s' {1..70})"
grep -q "SLUICE_NODE_ID" "$work/out" || { echo "FAIL: the refusal does not name SLUICE_NODE_ID"; cat "$work/out"; fail=1; }
# The modes the manifests set are the ones sluice accepts: a group-writable
# ConfigMap file (defaultMode 0664) would be refused.
chmod 0664 "$cfg/..data/sluice.yaml"
check fail "config file mode 0664" SLUICE_NODE_ID=worker-1
chmod 0444 "$cfg/..data/sluice.yaml"
chmod 0444 "$s/credentials/kafka-client.key"
check fail "Kafka client key readable by others (Secret defaultMode 0444)" SLUICE_NODE_ID=worker-1
chmod 0440 "$s/credentials/kafka-client.key"
((fail == 0)) || exit 1

# The daemon itself on this config, as the probes see it: only the listen
# addresses are moved to free loopback ports (env, like any override).
SLUICE_NODE_ID=worker-1 SLUICE_LISTENERS_NATIVE_TCP=127.0.0.1:0 \
  SLUICE_LISTENERS_HTTP_ADDRESS=127.0.0.1:0 SLUICE_ADMIN_ADDRESS=127.0.0.1:0 \
  SLUICE_LOG_FORMAT=plain "$sluice" run -c "$cfg/sluice.yaml" 2>"$work/daemon.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
line=
for _ in $(seq 1 300); do
  line=$(grep -m1 ' ready: ' "$work/daemon.log" || true)
  [[ -n $line ]] && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
[[ -n $line ]] || { echo "FAIL: daemon not ready"; cat "$work/daemon.log"; exit 1; }
admin=$(sed -n 's/.*, admin [^ ]* (port \([0-9]*\)).*/\1/p' <<<"$line")
http=$(sed -n 's/.*, http[^,]*port \([0-9]*\).*/\1/p' <<<"$line")
for path in /healthz /readyz; do
  # The kubelet's HTTPS probe: TLS without verification; 200..399 passes.
  code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$admin$path" || true)
  [[ $code == 200 ]] || { echo "FAIL: $path answered $code over HTTPS"; cat "$work/daemon.log"; exit 1; }
  echo "ok: probe $path over HTTPS: 200"
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin$path" || true)
  [[ $code != 200 ]] || { echo "FAIL: $path answered 200 over plain HTTP (probe scheme would not matter)"; exit 1; }
done
# Secure by default: the placeholder client list admits nobody.
code=$(curl -sk -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
  -H 'Authorization: Bearer anything' --data '{"source":"s","value":1}' \
  "https://127.0.0.1:$http/v1/events" || true)
[[ $code == 401 || $code == 403 ]] || { echo "FAIL: ingest with an unknown token answered $code"; exit 1; }
echo "ok: ingest with an unlisted token refused ($code)"
kill -TERM $pid
rc=0; wait $pid || rc=$?
[[ $rc == 0 ]] || { echo "FAIL: exit $rc after SIGTERM"; cat "$work/daemon.log"; exit 1; }
echo "ok: SIGTERM -> exit 0"
