#!/usr/bin/env bash
# Installs every Debian package that sluice's build, tests, demo and load tests
# need. Idempotent and quiet when everything is present. Runs apt-get as root,
# through sudo otherwise, and says clearly what to do when neither works.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake ninja-build pkg-config clang clang-format libclang-rt-14-dev
  # libraries (pkg-config names in CMakeLists.txt)
  librdkafka-dev libmosquitto-dev liblmdb-dev libzstd-dev libprotobuf-c-dev
  protobuf-c-compiler libssl-dev libuv1-dev libyaml-dev libxxhash-dev
  libmicrohttpd-dev libgnutls28-dev libjansson-dev libmodbus-dev libcmocka-dev
  # real brokers and tools for tests, demo and load tests (prometheus:
  # promtool and a real Prometheus for tests/monitoring, docs/MONITORING.md)
  mosquitto mosquitto-clients kcat default-jre-headless maven python3
  lmdb-utils strace iproute2 procps curl openssl gnuplot-nox prometheus
  # pip for scripts/deps.sh's PyPI packages (kubernetes-validate)
  python3-pip
  # moves the daemon's wall clock in tests/daemon/clock_test.c and the
  # daemon_store_clock test (issue 26)
  faketime
  # the container image: make image, tests/image (docs/deploy/image.md)
  buildah skopeo ca-certificates
  # deployment checks (tests/deploy, label deploy): systemd-analyze verify and
  # security, the flightctl JSON schema test, dpkg-deb/dpkg-shlibdeps for
  # `make deb`
  systemd python3-jsonschema python3-yaml dpkg-dev python3-seccomp
  # the OPC UA test servers (scripts/opcua-servers.sh): a venv for asyncua
  # from PyPI, Node.js for node-opcua from npm (npm: below)
  python3-venv nodejs
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Java may come from a non-Debian JDK already on PATH; accept any java >= 17.
if [[ " ${missing[*]-} " == *" default-jre-headless "* ]] && command -v java >/dev/null &&
   java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; then
  missing=("${missing[@]/default-jre-headless/}")
fi
read -ra missing <<<"${missing[*]-}"
# npm: Debian's own package, unless a Node.js with its npm is there already
# (NodeSource's nodejs bundles npm and conflicts with Debian's).
if ! command -v npm >/dev/null; then
  missing+=(npm)
fi

# Python packages from PyPI, pinned, for the python3 on PATH (the one CMake's
# SL_PYTHON3 finds): kubernetes-validate bundles the Kubernetes JSON schemas,
# so tests/deploy validates offline (issue 16); its dependencies PyYAML and
# jsonschema are what tests/monitoring uses. Installed after the Debian
# packages (python3 itself is one of them).
PIP_PACKAGES=(kubernetes-validate==1.37.0)
pip_deps() {
  python3 -c 'import kubernetes_validate, sys
from importlib.metadata import version
sys.exit(version("kubernetes-validate") != "1.37.0")' 2>/dev/null && return 0
  echo "scripts/deps.sh: pip installing ${PIP_PACKAGES[*]}" >&2
  local log
  log=$(mktemp)
  # PEP 668 (a distribution's own python3) refuses pip without the flag.
  if ! PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check \
       "${PIP_PACKAGES[@]}" >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    echo "scripts/deps.sh: pip install failed: the deploy_k8s_schema test will be skipped" >&2
    rm -f "$log"
    return 0
  fi
  rm -f "$log"
}
if [[ ${#missing[@]} -eq 0 ]]; then
  pip_deps
  exit $?
fi

if [[ $(id -u) -eq 0 ]]; then
  SUDO=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  SUDO=(sudo -n)
else
  echo "scripts/deps.sh: missing Debian packages: ${missing[*]}" >&2
  echo "scripts/deps.sh: run as root or with passwordless sudo, or install them:" >&2
  echo "  sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "scripts/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! { "${SUDO[@]}" apt-get update -qq && \
       "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 30 "$log" >&2
  echo "scripts/deps.sh: apt-get failed (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
pip_deps
