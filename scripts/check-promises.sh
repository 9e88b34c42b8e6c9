#!/usr/bin/env bash
# The "what an ack means" block must be the same in README.md,
# docs/DELIVERY.md and docs/MQTT.md (issue 23: claims that match the code,
# the same words in each). Exit 1 and show the difference otherwise.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
block() {
  sed -n '/^<!-- promises/,/^<!-- \/promises -->/p' "$root/$1"
}
ref=$(block README.md)
[[ -n $ref ]] || { echo "check-promises: no promises block in README.md" >&2; exit 1; }
rc=0
for f in docs/DELIVERY.md docs/MQTT.md; do
  if [[ $(block "$f") != "$ref" ]]; then
    echo "check-promises: the promises block in $f differs from README.md:" >&2
    diff <(printf '%s\n' "$ref") <(block "$f") >&2 || true
    rc=1
  fi
done
exit $rc
