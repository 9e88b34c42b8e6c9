#!/usr/bin/env bash
# `sluice fleet` refuses bad input with exit code 2 and a message naming the
# problem, before it needs a broker (docs/FLEET.md, exit codes).
set -u
sluice=$1
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
fails=0
expect() { # expect CODE PATTERN CMD...
  local code=$1 pat=$2 out rc
  shift 2
  out=$("$@" 2>&1)
  rc=$?
  if [[ $rc != "$code" ]] || ! grep -q -- "$pat" <<<"$out"; then
    echo "FAIL: $* -> exit $rc (want $code), output: $out (want /$pat/)"
    fails=$((fails + 1))
  fi
}
expect 2 "usage: sluice fleet" "$sluice" fleet
expect 0 "usage: sluice fleet" "$sluice" fleet help
expect 2 "unknown command" "$sluice" fleet frobnicate --brokers x:1
expect 2 "no brokers" env -u SLUICE_FLEET_BROKERS "$sluice" fleet status
expect 2 "expected NAME=VALUE" "$sluice" fleet status --brokers x:1 --kafka-property nonsense
expect 2 "Invalid value \"bogus\"" "$sluice" fleet status --brokers x:1 --kafka-property compression.type=bogus
expect 2 "expected a duration" "$sluice" fleet render --brokers x:1 --interval soon
expect 2 "signing-key PEM is required" "$sluice" fleet render --brokers x:1
echo "not a key" >"$dir/k.pem"
expect 2 "not a PEM" "$sluice" fleet render --brokers x:1 --signing-key "$dir/k.pem"
expect 2 "No such file" "$sluice" fleet policy apply "$dir/none.yaml" --brokers x:1
printf 'name: a\nselector: "site="\npatch: {}\n' >"$dir/p.yaml"
expect 2 "selector: selector column 6: expected a value" \
  "$sluice" fleet policy apply "$dir/p.yaml" --brokers x:1
printf 'name: a\npatch: {node: {id: x}}\n' >"$dir/p.yaml"
expect 2 "'node' is not a remote-owned key" \
  "$sluice" fleet policy apply "$dir/p.yaml" --brokers x:1
printf 'name: a\npatch: {}\nrollout: {steps: [1]}\n' >"$dir/p.yaml"
expect 2 "rollout: unknown key 'steps'" \
  "$sluice" fleet policy apply "$dir/p.yaml" --brokers x:1
expect 2 "usage: sluice fleet rollout" "$sluice" fleet rollout pause --brokers x:1
[[ $fails == 0 ]] && echo "PASS fleet cli errors"
exit $((fails > 0))
