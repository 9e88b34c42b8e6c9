#!/usr/bin/env bash
# Builds the Debian package of sluice from a build tree: installs it with
# `cmake --install --prefix /usr` into a staging root (the same rules as
# `make install`, deploy/CMakeLists.txt), adds the control files and runs
# dpkg-deb. Library dependencies come from dpkg-shlibdeps.
#
#   scripts/package-deb.sh [BUILD_DIR=build] [OUT_DIR=BUILD_DIR]
#
# Prints the path of the .deb. No debhelper: the package is a plain
# dpkg-deb archive (the unit uses DynamicUser, so no account is created;
# the service is not enabled on install: set node.id and the Kafka
# brokers in /etc/sluice/sluice.yaml first, then `systemctl enable --now
# sluice`). docs/deploy/systemd.md.
set -euo pipefail
build=${1:-build}
out=${2:-$build}
root=$(cd "$(dirname "$0")/.." && pwd)
for t in dpkg-deb dpkg-shlibdeps cmake; do
  command -v "$t" >/dev/null || { echo "package-deb: $t not found (apt-get install dpkg-dev cmake)" >&2; exit 1; }
done
[[ -x $build/daemon/sluice ]] || { echo "package-deb: $build/daemon/sluice not built (make build)" >&2; exit 1; }

version=$(sed -n 's/^project(sluice VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
[[ -n $version ]] || { echo "package-deb: no version in CMakeLists.txt" >&2; exit 1; }
arch=$(dpkg --print-architecture)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/sluice_${version}_${arch}

DESTDIR=$stage cmake --install "$build" --prefix /usr --strip >/dev/null

# Library dependencies of the binaries (dpkg-shlibdeps wants debian/control).
mkdir -p "$work/debian"
printf 'Source: sluice\n\nPackage: sluice\nArchitecture: any\n' >"$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O -e"$stage/usr/bin/sluice" \
  -e"$stage/usr/bin/sluice-modbus" -e"$stage/usr/bin/sluice-sim" 2>/dev/null |
  sed -n 's/^shlibs:Depends=//p')

size=$(du -sk "$stage" | cut -f1)
mkdir -p "$stage/DEBIAN"
cat >"$stage/DEBIAN/control" <<CONTROL
Package: sluice
Version: $version
Architecture: $arch
Maintainer: sluice maintainers <sluice@example.org>
Installed-Size: $size
Depends: $shlibs, curl
Recommends: systemd (>= 252)
Section: net
Priority: optional
Homepage: https://example.org/sluice
Description: store-and-forward edge data plane
 sluice ingests events over its native protocol, HTTP and MQTT, stores them
 durably in an LMDB log and forwards them to Kafka. This package installs
 the daemon and connectors, a hardened systemd unit (Type=notify, watchdog,
 DynamicUser), an example config in /etc/sluice, a greenboot readiness check
 and a flightctl afterUpdating hook rule.
CONTROL
echo /etc/sluice/sluice.yaml >"$stage/DEBIAN/conffiles"
cat >"$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
# Pick up the unit; do not start it: the example config needs a node.id
# and Kafka brokers first (docs/DEPLOY.md).
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
POSTINST
cat >"$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
  systemctl stop sluice.service || true
fi
exit 0
PRERM
cat >"$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
# The store in /var/lib/private/sluice is kept on remove and purge alike:
# it may hold events not yet delivered. Delete it by hand when it is empty.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
exit 0
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"

mkdir -p "$out"
deb=$out/sluice_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
