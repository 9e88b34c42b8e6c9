#!/usr/bin/env bash
# Installs the two independent OPC UA servers the sluice-opcua tests run
# against, into a cache directory (never system-wide):
#   python: asyncua (PyPI) in a venv        -> $dir/venv/bin/python
#   node:   node-opcua-server (npm)          -> $dir/node/node_modules
# Prints nothing on success except, with --print, the cache directory.
# Idempotent: a finished install leaves a stamp and is not repeated.
#
#   scripts/opcua-servers.sh [python|node|all] [--print]
#
# Exit: 0 installed; 1 the install failed (the reason on stderr). Tests call
# this and exit 77 (skipped, with the reason) when it fails.
set -euo pipefail
what=all
print=0
for a in "$@"; do
  case $a in
  python | node | all) what=$a ;;
  --print) print=1 ;;
  *) echo "usage: $0 [python|node|all] [--print]" >&2; exit 2 ;;
  esac
done
dir=${SL_OPCUA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice/opcua}
mkdir -p "$dir"
# Pinned: the tests know these servers' address-space behaviour.
ASYNCUA_VERSION=2.1.0
NODE_OPCUA_VERSION=2.186.4

install_python() {
  local stamp="$dir/venv/.asyncua-$ASYNCUA_VERSION"
  [[ -f $stamp ]] && return 0
  command -v python3 >/dev/null || { echo "python3 not found" >&2; return 1; }
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv" >&2 || { echo "python3 -m venv failed (python3-venv missing?)" >&2; return 1; }
  "$dir/venv/bin/pip" install -q --disable-pip-version-check \
    "asyncua==$ASYNCUA_VERSION" >&2 || { echo "pip install asyncua==$ASYNCUA_VERSION failed" >&2; return 1; }
  touch "$stamp"
}

install_node() {
  local stamp="$dir/node/.node-opcua-$NODE_OPCUA_VERSION"
  [[ -f $stamp ]] && return 0
  command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "node or npm not found" >&2; return 1; }
  mkdir -p "$dir/node"
  (cd "$dir/node" && [[ -f package.json ]] || echo '{"private":true}' >package.json)
  (cd "$dir/node" && npm install --no-audit --no-fund --loglevel=error \
    "node-opcua-server@$NODE_OPCUA_VERSION" >&2) ||
    { echo "npm install node-opcua-server@$NODE_OPCUA_VERSION failed" >&2; return 1; }
  touch "$stamp"
}

rc=0
case $what in
python) install_python || rc=1 ;;
node) install_node || rc=1 ;;
all) install_python || rc=1; install_node || rc=1 ;;
esac
[[ $print -eq 1 && $rc -eq 0 ]] && echo "$dir"
exit $rc
