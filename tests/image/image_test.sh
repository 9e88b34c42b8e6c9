#!/usr/bin/env bash
# The container image (scripts/image.sh, docs/deploy/image.md), checked here
# without a container engine:
#   1. builds it (or reuses it when its inputs are unchanged);
#   2. its config, read back from the OCI layout with `skopeo inspect
#      --config`: user 1001:0, entrypoint and command, SIGTERM, a state
#      volume, no port below 1024, the OCI labels (version = `sluice version`,
#      revision = git HEAD);
#   3. no file writable by group 0 or others but /var/lib/sluice and /tmp,
#      none setuid/setgid;
#   4. runs inside its root file system the way restricted-v2 runs it: a
#      random UID with GID 0 and no capabilities, the root mounted read-only,
#      only the state directory writable (a copy of the image's own
#      /var/lib/sluice, so its 1001:0 g=u ownership is what makes it
#      writable), in a private mount namespace: the connectors' --help (their
#      libraries resolve in the image), `sluice check-config` on the
#      image's default config, then the daemon (ports from its ready line;
#      admin on 0.0.0.0 as in the image) answering /healthz (also on the
#      machine's own address) and /readyz, refusing POST /v1/reload without a
#      credential, storing one HTTP event, stopping on SIGTERM with status 0,
#      and after a restart (a new namespace on the same state) reporting the
#      event in /v1/status; `sluice store dump` in the image shows it.
# Exit 77 (skipped) without root or without buildah/skopeo.
#
#   image_test.sh SOURCE_DIR BUILD_DIR
set -euo pipefail

SRC=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
skip() { echo "SKIPPED: $*"; exit 77; }
[[ $(id -u) -eq 0 ]] || skip "needs root (buildah vfs storage, mounts, chroot)"
for t in buildah skopeo unshare chroot mount curl python3; do
  command -v "$t" >/dev/null || skip "$t not installed (scripts/deps.sh)"
done

T0=$(date +%s%N)
elapsed() { echo "$(( ($(date +%s%N) - T0) / 1000000 )) ms"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $* ($(elapsed))"; }

# ---- 1. build (or reuse) -----------------------------------------------------
step "image"
"$SRC/scripts/image.sh" "$BUILD"
OUT=$BUILD/image
VERSION=$("$BUILD/daemon/sluice" version | awk '{print $2}')
TAG=$VERSION
BA=(buildah --root "$OUT/storage" --runroot "$OUT/run" --storage-driver vfs)

# ---- 2. the image config -------------------------------------------------------
step "config"
HEAD=$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)
skopeo inspect --config "oci:$OUT/oci:$TAG" >"$OUT/config.json"
python3 - "$OUT/config.json" "$VERSION" "$HEAD" <<'EOF'
import json, re, sys
cfg = json.load(open(sys.argv[1]))["config"]
version, head = sys.argv[2], sys.argv[3]
def want(cond, what):
    if not cond:
        sys.exit("FAIL: image config: %s\n%s" % (what, json.dumps(cfg, indent=1)))
want(cfg.get("User") == "1001:0", "User is 1001:0")
want(cfg.get("Entrypoint") == ["/usr/bin/sluice"], "Entrypoint /usr/bin/sluice")
want(cfg.get("Cmd") == ["run", "-c", "/etc/sluice/sluice.yaml"], "Cmd run -c")
want(cfg.get("StopSignal") == "SIGTERM", "StopSignal SIGTERM")
want("/var/lib/sluice" in (cfg.get("Volumes") or {}), "volume /var/lib/sluice")
ports = cfg.get("ExposedPorts") or {}
want(ports, "exposed ports")
for p in ports:
    want(int(p.split("/")[0]) >= 1024, "port %s is not below 1024" % p)
lab = cfg.get("Labels") or {}
o = "org.opencontainers.image."
want(lab.get(o + "version") == version, "label version == sluice version")
want(lab.get(o + "revision", "").split("-dirty")[0] == head, "label revision == HEAD")
want(lab.get(o + "source"), "label source set")
want(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lab.get(o + "created", "")),
     "label created is RFC 3339 UTC")
print("config ok: user %s, ports %s, revision %s" %
      (cfg["User"], sorted(ports), lab[o + "revision"]))
EOF

# ---- 3. run it -------------------------------------------------------------------
W=$(mktemp -d "${TMPDIR:-/tmp}/sl_image_XXXXXX")
ctr= pid=
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" || true; fi
  if [[ -n $ctr ]]; then "${BA[@]}" rm "$ctr" >/dev/null 2>&1 || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
# Working containers a killed run (ctest timeout) left behind.
"${BA[@]}" rm --all >/dev/null 2>&1 || true
ctr=$("${BA[@]}" from --pull-never "localhost/sluice:$TAG")
MNT=$("${BA[@]}" mount "$ctr")
mkdir "$W/root"
# The state volume starts as the image's directory (podman copies it into a
# new volume the same way): owned by 1001:0, g=u.
cp -a "$MNT/var/lib/sluice" "$W/state"
[[ $(stat -c '%u:%g %A' "$W/state") == "1001:0 drwxrwx---" ]] ||
  fail "image /var/lib/sluice is $(stat -c '%u:%g %A' "$W/state"), want 1001:0 drwxrwx---"
# Group 0 is the running group: no file of the image but the state
# directory (and /tmp) may be writable by it or by others, none setuid/setgid.
bad=$(cd "$MNT" && find . ! -type l \( -perm -g+w -o -perm -o+w -o -perm /6000 \) \
  ! -path ./var/lib/sluice ! -path ./tmp | head -5)
[[ -z $bad ]] || fail "writable by group 0 or others, or set-id, in the image: $bad"
# A UID from the top of OpenShift's ranges (1000000000 + ...), never 1001.
RUID=$((1000000000 + (RANDOM << 15 | RANDOM) % 100000000))
echo "running as uid $RUID gid 0, read-only root"

# Runs `sluice ARGS...` in the image: a private mount namespace, the image's
# root bind-mounted read-only, the state directory writable, /proc and a
# minimal /dev, then chroot as RUID:0 (no capabilities left after setuid).
# Environment: only PATH and what the caller passes in SLUICE_*.
INNER='set -e
r=$1 mnt=$2 state=$3 uid=$4; shift 4
mount --bind "$mnt" "$r"
mount -o remount,bind,ro "$r"
mount --bind "$state" "$r/var/lib/sluice"
mount -t proc proc "$r/proc"
mount -t tmpfs -o mode=0755,size=64k tmpfs "$r/dev"
for d in null zero random urandom; do
  : >"$r/dev/$d"; mount --bind "/dev/$d" "$r/dev/$d"
done
exec chroot --userspec="$uid:0" "$r" "$@"'
# The command line in CMD (a simple command started with & is exec'd, so
# $! is the daemon's pid: env, unshare, bash and chroot each exec the next).
img_cmd() { # img_cmd [VAR=VALUE...] -- PROGRAM ARGS...
  CMD=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin)
  while [[ $1 != -- ]]; do CMD+=("$1"); shift; done
  shift
  CMD+=(unshare --mount --propagation private bash -c "$INNER" inner
        "$W/root" "$MNT" "$W/state" "$RUID" "$@")
}
sluice_cmd() { # sluice_cmd [VAR=VALUE...] -- ARGS...: /usr/bin/sluice ARGS
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  img_cmd "${envs[@]}" -- /usr/bin/sluice "$@"
}

step "check-config"
# Every program in the image finds its libraries there (and nothing else).
for p in sluice-sim sluice-modbus; do
  img_cmd -- "/usr/bin/$p" --help
  "${CMD[@]}" >"$W/$p.log" 2>&1 || { cat "$W/$p.log"; fail "$p --help in the image"; }
done
sluice_cmd -- check-config -c /etc/sluice/sluice.yaml
"${CMD[@]}" >"$W/check.log" 2>&1 ||
  { cat "$W/check.log"; fail "check-config of the image's default config"; }

ADMIN= HTTP=
start() { # start LOG: the daemon in the background; sets pid, ADMIN, HTTP
  sluice_cmd SLUICE_NODE_ID=image-test SLUICE_ADMIN_ADDRESS=0.0.0.0:0 \
    SLUICE_LISTENERS_HTTP_ADDRESS=127.0.0.1:0 \
    SLUICE_LISTENERS_NATIVE_TCP=127.0.0.1:0 -- run -c /etc/sluice/sluice.yaml
  "${CMD[@]}" >"$1" 2>&1 &
  pid=$!
  local deadline=$(( $(date +%s) + 30 )) line=
  while :; do
    line=$(grep -m1 ' ready: ' "$1" || true)
    [[ -n $line ]] && break
    kill -0 "$pid" 2>/dev/null || { cat "$1"; fail "daemon exited before ready"; }
    (( $(date +%s) < deadline )) || { cat "$1"; fail "daemon not ready in 30 s"; }
    sleep 0.05 # poll interval; the deadline bounds the wait
  done
  HTTP=$(sed -n 's/.*http [^ ]* (port \([0-9]*\)).*/\1/p; s/.*http port \([0-9]*\).*/\1/p' <<<"$line" | head -1)
  ADMIN=$(sed -n 's/.*admin [^ ]* (port \([0-9]*\)).*/\1/p; s/.*admin port \([0-9]*\).*/\1/p' <<<"$line" | head -1)
  [[ -n $HTTP && -n $ADMIN ]] || fail "no ports in: $line"
  # Who it runs as: the random UID, GID 0, no capabilities.
  local st
  st=$(grep -E '^(Uid|Gid|CapEff):' "/proc/$pid/status" | tr -s '\t ' ' ')
  grep -q "^Uid: $RUID $RUID $RUID $RUID" <<<"$st" || fail "daemon uid: $st"
  grep -q '^Gid: 0 0 0 0' <<<"$st" || fail "daemon gid: $st"
  grep -q '^CapEff: 0000000000000000' <<<"$st" || fail "daemon capabilities: $st"
  # Its root is mounted read-only; its state directory read-write.
  local opts
  opts=$(awk '$5 == "/" {print $6}' "/proc/$pid/mountinfo")
  [[ $opts == ro,* || $opts == ro ]] || fail "daemon's root mounted $opts, want ro"
  opts=$(awk '$5 == "/var/lib/sluice" {print $6}' "/proc/$pid/mountinfo")
  [[ $opts == rw,* || $opts == rw ]] || fail "state mounted '$opts', want rw"
}
stop() { # SIGTERM, bounded wait, exit status 0 required
  kill -TERM "$pid"
  local deadline=$(( $(date +%s) + 30 ))
  while kill -0 "$pid" 2>/dev/null; do
    (( $(date +%s) < deadline )) || fail "daemon still running 30 s after SIGTERM"
    sleep 0.05
  done
  local rc=0
  wait "$pid" || rc=$?
  pid=
  [[ $rc -eq 0 ]] || { cat "$1"; fail "daemon exit status $rc after SIGTERM"; }
}
code() { curl -s -o "$W/body" -w '%{http_code}' --max-time 10 "$@"; }

step "run 1"
start "$W/run1.log"
[[ $(code "http://127.0.0.1:$ADMIN/healthz") == 200 ]] || fail "/healthz"
# The admin server binds every interface as the image's config does (probes
# come to the pod IP): reachable on this machine's first non-loopback address.
IP=$({ hostname -I 2>/dev/null || true; } | awk '{print $1}')
if [[ -n $IP ]]; then
  [[ $(code "http://$IP:$ADMIN/healthz") == 200 ]] || fail "/healthz on $IP"
fi
deadline=$(( $(date +%s) + 20 ))
until [[ $(code "http://127.0.0.1:$ADMIN/readyz") == 200 ]]; do
  (( $(date +%s) < deadline )) || fail "/readyz not 200 in 20 s: $(cat "$W/body")"
  sleep 0.05
done
[[ $(code -X POST "http://127.0.0.1:$ADMIN/v1/reload") == 403 ]] ||
  fail "POST /v1/reload without a credential: want 403"
MARK="image-test/$RUID"
c=$(code -X POST -H 'Content-Type: application/json' \
  --data "{\"source\":\"$MARK\",\"value\":42.5,\"unit\":\"C\"}" \
  "http://127.0.0.1:$HTTP/v1/events?stream=telemetry")
[[ $c == 2* ]] || fail "POST /v1/events: $c $(cat "$W/body")"
stop "$W/run1.log"

step "run 2 (restart on the same state)"
start "$W/run2.log"
[[ $(code "http://127.0.0.1:$ADMIN/v1/status") == 200 ]] || fail "/v1/status"
python3 - "$W/body" <<'EOF'
import json, sys
st = {s["name"]: s for s in json.load(open(sys.argv[1]))["streams"]}
if st.get("telemetry", {}).get("events") != 1:
    sys.exit("FAIL: after the restart, /v1/status streams: %s" % st)
print("after restart: telemetry holds %d event" % st["telemetry"]["events"])
EOF
stop "$W/run2.log"

step "store dump"
sluice_cmd -- store dump -d /var/lib/sluice
"${CMD[@]}" >"$W/dump.txt" 2>&1 ||
  { cat "$W/dump.txt"; fail "store dump in the image"; }
grep -q "$MARK" "$W/dump.txt" || { cat "$W/dump.txt"; fail "event $MARK not in the dump"; }
# Everything the daemon wrote is in the state directory, as the random UID.
bad=$(find "$W/state" ! -uid "$RUID" ! -path "$W/state" | head -3)
[[ -z $bad ]] || fail "state files not owned by $RUID: $bad"

step "passed"
