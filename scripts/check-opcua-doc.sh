#!/bin/sh
# Fails when the sluice-opcua config reference in docs/CONNECTORS.md (between
# the opcua-config markers) differs from what its tables generate
# (`sluice-opcua --config-docs`, connectors/opcua/schema.c).
# usage: scripts/check-opcua-doc.sh BUILD_DIR [--write]
set -eu
build=${1:?usage: $0 BUILD_DIR [--write]}
root=$(cd "$(dirname "$0")/.." && pwd)
doc="$root/docs/CONNECTORS.md"
gen=$(mktemp)
new=$(mktemp)
trap 'rm -f "$gen" "$new"' EXIT
"$build/connectors/sluice-opcua" --config-docs >"$gen"
awk -v gen="$gen" '
  /^<!-- opcua-config end/ { skip = 0 }
  !skip { print }
  /^<!-- opcua-config begin/ {
    while ((getline line < gen) > 0) print line
    skip = 1; found = 1
  }
  END { if (!found) exit 3 }' "$doc" >"$new" || {
  echo "docs/CONNECTORS.md has no opcua-config markers" >&2
  exit 1
}
if [ "${2:-}" = "--write" ]; then
  cat "$new" >"$doc"
  exit 0
fi
if ! diff -u "$doc" "$new"; then
  echo "docs/CONNECTORS.md is stale: run $0 $build --write" >&2
  exit 1
fi
echo "docs/CONNECTORS.md (sluice-opcua config) is up to date"
