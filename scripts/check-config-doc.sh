#!/bin/sh
# Fails when docs/CONFIGURATION.md differs from what the option table in
# config/schema/options.c generates (`sluice config-docs`).
# usage: scripts/check-config-doc.sh BUILD_DIR
set -eu
build=${1:?usage: $0 BUILD_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
doc="$root/docs/CONFIGURATION.md"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
"$build/daemon/sluice" config-docs >"$tmp"
if ! diff -u "$doc" "$tmp"; then
  echo "docs/CONFIGURATION.md is stale: run $build/daemon/sluice config-docs > docs/CONFIGURATION.md" >&2
  exit 1
fi
echo "docs/CONFIGURATION.md is up to date"
# The bootstrap file's table in docs/ENROLMENT.md (between the marker and
# the next blank line after the table).
"$build/daemon/sluice" config-docs --bootstrap >"$tmp"
if ! awk '/sl_config_bootstrap_doc/{on=1; next} on && /^\|/{print; seen=1; next} on && seen && !/^\|/{exit}' \
  "$root/docs/ENROLMENT.md" | diff -u - "$tmp"; then
  echo "docs/ENROLMENT.md's bootstrap table is stale: paste $build/daemon/sluice config-docs --bootstrap" >&2
  exit 1
fi
echo "docs/ENROLMENT.md's bootstrap table is up to date"
