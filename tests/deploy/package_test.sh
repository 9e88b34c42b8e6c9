#!/bin/bash
# The install target and the Debian package (deploy/CMakeLists.txt,
# scripts/package-deb.sh): `cmake --install --prefix /usr` into a DESTDIR
# puts every file where the unit, greenboot and flightctl look for it; the
# .deb built from the same rules lists the same files (dpkg-deb --contents),
# marks the config as a conffile, depends on the libraries the binaries
# link and on curl (greenboot check); the installed binary runs and accepts
# the installed example config. lintian runs when installed (optional).
#
#   package_test.sh BUILD_DIR        exit 77 without dpkg-deb/dpkg-shlibdeps
set -u
build=$(cd "${1:?build dir}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
src=$here/../..
for t in dpkg-deb dpkg-shlibdeps cmake; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed (apt-get install dpkg-dev)"; exit 77; }
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

expected=(
  "-rwxr-xr-x usr/bin/sluice"
  "-rwxr-xr-x usr/bin/sluice-modbus"
  "-rwxr-xr-x usr/bin/sluice-sim"
  "-rw-r--r-- usr/lib/systemd/system/sluice.service"
  "-rwxr-xr-x usr/lib/greenboot/check/required.d/50_sluice_ready.sh"
  "-rw-r--r-- usr/lib/flightctl/hooks.d/afterupdating/50-sluice.yaml"
  "-rw-r--r-- etc/sluice/sluice.yaml"
  "-rw-r--r-- usr/share/doc/sluice/DEPLOY.md"
  "-rw-r--r-- usr/share/doc/sluice/deploy/systemd.md"
  "-rw-r--r-- usr/share/doc/sluice/deploy/flightctl.md"
)

# 1. make install DESTDIR=... (what the Makefile's install target runs).
if DESTDIR=$tmp/root cmake --install "$build" --prefix /usr >"$tmp/install.log" 2>&1; then
  ok "cmake --install --prefix /usr into DESTDIR"
else
  bad "cmake --install failed: $(tail -5 "$tmp/install.log")"
fi
for e in "${expected[@]}"; do
  mode=${e%% *} path=${e#* }
  got=$(stat -c %A "$tmp/root/$path" 2>/dev/null)
  [[ $got == "$mode" ]] && ok "installed $path ($mode)" || bad "installed $path: '${got:-missing}', want $mode"
done
cmp -s "$tmp/root/usr/lib/systemd/system/sluice.service" "$src/deploy/systemd/sluice.service" &&
  ok "installed unit is deploy/systemd/sluice.service" || bad "installed unit differs"
v=$("$tmp/root/usr/bin/sluice" version 2>&1) && ok "installed binary runs: $v" || bad "installed binary: $v"
# The example config the package installs must load (data_dir pointed at a
# scratch directory: the check creates nothing under /var/lib here).
out=$(SLUICE_NODE_DATA_DIR=$tmp/data "$tmp/root/usr/bin/sluice" check-config -c "$tmp/root/etc/sluice/sluice.yaml" 2>&1) &&
  ok "installed /etc/sluice/sluice.yaml passes check-config" || bad "installed config: $out"

# 2. The Debian package.
deb=$("$src/scripts/package-deb.sh" "$build" "$tmp/deb" 2>"$tmp/deb.log")
if [[ -f $deb ]]; then
  ok "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"
else
  bad "package-deb.sh: $(cat "$tmp/deb.log")"
  exit 1
fi
dpkg-deb --contents "$deb" >"$tmp/contents"
for e in "${expected[@]}"; do
  mode=${e%% *} path=${e#* }
  grep -Eq "^$(printf '%q' "$mode") root/root .* \./$path$" "$tmp/contents" &&
    ok "deb lists ./$path ($mode root/root)" || bad "deb lacks ./$path ($mode root/root)"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles 2>/dev/null | grep -qx /etc/sluice/sluice.yaml &&
  ok "conffiles: /etc/sluice/sluice.yaml" || bad "config is not a conffile"
dep=$(dpkg-deb -f "$deb" Depends)
for d in librdkafka1 liblmdb0 libmicrohttpd12 curl; do
  [[ $dep == *"$d"* ]] && ok "Depends has $d" || bad "Depends lacks $d: $dep"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./postinst 2>/dev/null | grep -q 'systemctl enable' &&
  bad "postinst enables the service (it must wait for a real config)" || ok "postinst does not enable the service"
if command -v lintian >/dev/null; then
  lintian --no-tag-display-limit "$deb" || echo "note: lintian findings above (informational)"
else
  echo "note: lintian not installed (optional)"
fi
exit $fail
