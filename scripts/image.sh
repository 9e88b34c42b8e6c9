#!/usr/bin/env bash
# Builds the sluice OCI image with buildah, FROM scratch (no base image is
# pulled): the binaries, exactly the shared libraries they load (ldd) and the
# dynamic loader, CA certificates, /etc/passwd and /etc/group for uid 1001
# gid 0, /var/lib/sluice writable by GID 0, the default config
# deploy/image/sluice.yaml in /etc/sluice. docs/deploy/image.md.
#
#   scripts/image.sh [BUILD_DIR]         (default: build; make image)
#
# Outputs, under BUILD_DIR/image/:
#   oci/             OCI image layout, tag $TAG (skopeo/podman: oci:DIR:TAG)
#   sluice.oci.tar   the same as one archive (podman load -i, skopeo copy)
#   storage/         buildah's private vfs storage holding localhost/sluice:TAG
#   inputs.sha256    what was built; an unchanged input set reuses the image
# Environment: SOURCE_URL (label org.opencontainers.image.source), TAG
# (default: the version from `sluice version`), FORCE=1
# rebuilds even when the inputs are unchanged.
# Needs root (buildah with the vfs driver and chroot isolation; no Docker
# engine, no daemon) and the Debian packages buildah and skopeo.
set -euo pipefail

BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
OUT=$BUILD/image
NAME=localhost/sluice
BINS=("$BUILD/daemon/sluice" "$BUILD/connectors/sluice-sim"
      "$BUILD/connectors/sluice-modbus")
CONFIG=$SRC/deploy/image/sluice.yaml

die() { echo "scripts/image.sh: $*" >&2; exit 1; }
for t in buildah skopeo ldd strip sha256sum; do
  command -v "$t" >/dev/null || die "$t not found (scripts/deps.sh installs it)"
done
[[ $(id -u) -eq 0 ]] || die "needs root (buildah vfs storage, chroot isolation)"
for b in "${BINS[@]}"; do [[ -x $b ]] || die "$b missing: run make build first"; done
[[ -f /etc/ssl/certs/ca-certificates.crt ]] ||
  die "/etc/ssl/certs/ca-certificates.crt missing (Debian package ca-certificates)"

VERSION=$("$BUILD/daemon/sluice" version | awk '{print $2}')
TAG=${TAG:-$VERSION}
REVISION=$(git -C "$SRC" rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $REVISION != unknown ]] && ! git -C "$SRC" diff --quiet HEAD 2>/dev/null; then
  REVISION="$REVISION-dirty"
fi
# The repository URL: SOURCE_URL, else the git remote "origin", else "unknown"
# (a checkout without a remote; CI should set SOURCE_URL).
SOURCE=${SOURCE_URL:-$(git -C "$SRC" remote get-url origin 2>/dev/null || echo unknown)}
BA=(buildah --root "$OUT/storage" --runroot "$OUT/run" --storage-driver vfs)

# ---- the libraries: every path ldd resolves, plus the loader ---------------
libs() {
  local b
  for b in "${BINS[@]}"; do
    ldd "$b" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}'
  done | sort -u
}
mapfile -t LIBS < <(libs)
[[ ${#LIBS[@]} -gt 0 ]] || die "ldd found no libraries"

# ---- reuse: the image is rebuilt only when an input changed ----------------
inputs() {
  sha256sum "$0" "$CONFIG" "${BINS[@]}" "${LIBS[@]}" /etc/ssl/certs/ca-certificates.crt
  echo "tag $TAG revision $REVISION source $SOURCE"
}
HASH=$(inputs | sha256sum | cut -d' ' -f1)
if [[ ${FORCE:-0} != 1 && -f $OUT/inputs.sha256 && $(cat "$OUT/inputs.sha256") == "$HASH" ]] &&
   "${BA[@]}" inspect --type image "$NAME:$TAG" >/dev/null 2>&1 && [[ -f $OUT/oci/index.json ]]; then
  echo "scripts/image.sh: $NAME:$TAG up to date (inputs unchanged: $HASH)"
  echo "scripts/image.sh: size $(cat "$OUT/size.txt" 2>/dev/null || echo unknown)"
  exit 0
fi

# ---- the root file system, staged as plain files ---------------------------
ROOT=$OUT/rootfs
rm -rf "$ROOT" "$OUT/oci" "$OUT/sluice.oci.tar" "$OUT/inputs.sha256"
mkdir -p "$ROOT"/{usr/bin,etc/sluice,etc/ssl,var/lib/sluice,tmp,proc,sys,dev,run}

# Merged /usr like the host (Debian 12): /lib, /lib64, /bin are symlinks.
for d in bin lib lib64 sbin; do
  if [[ -L /$d ]]; then ln -s "$(readlink "/$d")" "$ROOT/$d"; fi
done

# Each library at its real path; the name ldd gave, when it differs (a
# soname link, the loader's /lib64 path), as a symlink to it.
for l in "${LIBS[@]}"; do
  real=$(readlink -f "$l")
  name=$(readlink -f "$(dirname "$l")")/$(basename "$l")
  mkdir -p "$ROOT$(dirname "$real")"
  [[ -e $ROOT$real ]] || cp "$real" "$ROOT$real"
  if [[ $name != "$real" && ! -e $ROOT$name && ! -L $ROOT$name ]]; then
    mkdir -p "$ROOT$(dirname "$name")"
    ln -s "$real" "$ROOT$name"
  fi
done
for b in "${BINS[@]}"; do
  # Debug info stays in the build tree; the image gets stripped copies.
  strip --strip-unneeded -o "$ROOT/usr/bin/$(basename "$b")" "$b"
done

# CA certificates as the ca-certificates package lays them out: the bundle
# and hashed directory under /etc/ssl/certs (links into
# /usr/share/ca-certificates), and OpenSSL's default paths pointing there.
cp -a /etc/ssl/certs "$ROOT/etc/ssl/certs"
mkdir -p "$ROOT/usr/share"
cp -a /usr/share/ca-certificates "$ROOT/usr/share/ca-certificates"
mkdir -p "$ROOT/usr/lib/ssl"
ln -s /etc/ssl/certs "$ROOT/usr/lib/ssl/certs"
ln -s /etc/ssl/certs/ca-certificates.crt "$ROOT/usr/lib/ssl/cert.pem"

# Users: uid 1001 in group 0. Any other UID (OpenShift's restricted-v2 picks
# one from a range) runs with GID 0 too, without an entry: sluice does not
# look itself up.
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
  'sluice:x:1001:0:sluice:/var/lib/sluice:/sbin/nologin' \
  'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' >"$ROOT/etc/passwd"
printf '%s\n' 'root:x:0:sluice' 'nogroup:x:65534:' >"$ROOT/etc/group"
# glibc >= 2.34 has the files and dns modules built in: no libnss_* needed.
printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' >"$ROOT/etc/nsswitch.conf"

install -m 0644 "$CONFIG" "$ROOT/etc/sluice/sluice.yaml"
chown -R 0:0 "$ROOT"
# State: owned by 1001, group 0 with the owner's rights (g=u), so an
# arbitrary UID with GID 0 writes it.
chown 1001:0 "$ROOT/var/lib/sluice"
chmod 0770 "$ROOT/var/lib/sluice"
chmod 1777 "$ROOT/tmp"

# ---- the image ---------------------------------------------------------------
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
ctr=$("${BA[@]}" from --pull-never scratch)
trap '"${BA[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
mnt=$("${BA[@]}" mount "$ctr")
cp -a "$ROOT/." "$mnt/"
"${BA[@]}" umount "$ctr" >/dev/null
"${BA[@]}" config \
  --user 1001:0 \
  --entrypoint '["/usr/bin/sluice"]' \
  --cmd '["run", "-c", "/etc/sluice/sluice.yaml"]' \
  --workingdir /var/lib/sluice \
  --volume /var/lib/sluice \
  --stop-signal SIGTERM \
  --port 7000/tcp --port 8080/tcp --port 9100/tcp \
  --env PATH=/usr/bin \
  --label org.opencontainers.image.title=sluice \
  --label org.opencontainers.image.description="sluice store-and-forward edge daemon" \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.revision="$REVISION" \
  --label org.opencontainers.image.source="$SOURCE" \
  --label org.opencontainers.image.created="$CREATED" \
  "$ctr"
"${BA[@]}" commit --quiet --format oci --rm "$ctr" "$NAME:$TAG" >/dev/null
trap - EXIT
"${BA[@]}" rmi --prune >/dev/null 2>&1 || true # the image this tag named before
"${BA[@]}" push --quiet "$NAME:$TAG" "oci:$OUT/oci:$TAG" >/dev/null
"${BA[@]}" push --quiet "$NAME:$TAG" "oci-archive:$OUT/sluice.oci.tar:$NAME:$TAG" >/dev/null

# ---- size ------------------------------------------------------------------
unpacked=$(du -sb "$ROOT" | cut -f1)
layers=$(skopeo inspect --raw "oci:$OUT/oci:$TAG" |
  python3 -c 'import json,sys; print(sum(l["size"] for l in json.load(sys.stdin)["layers"]))')
size="$((unpacked / 1024)) KiB unpacked, $((layers / 1024)) KiB compressed layers"
echo "$size" >"$OUT/size.txt"
echo "$HASH" >"$OUT/inputs.sha256"
echo "scripts/image.sh: built $NAME:$TAG (revision $REVISION, ${#LIBS[@]} libraries)"
echo "scripts/image.sh: size $size"
echo "scripts/image.sh: oci:$OUT/oci:$TAG and oci-archive:$OUT/sluice.oci.tar"
