#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan: the 'fuzz' preset) and
# runs each for a while from its seed corpus in tests/fuzz/corpus/<name>/.
# New inputs go to a scratch directory, never into the committed corpus.
# A crash makes this exit non-zero and leaves the reproducer in the scratch
# directory (printed).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 20 s, all)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
shift || true
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  mapfile -t targets < <(ls tests/fuzz/fuzz_*.c | sed -E 's#.*/(fuzz_[a-z_]+)\.c#\1#')
fi
cmake --preset fuzz >/dev/null
cmake --build build-fuzz --target "${targets[@]}" >/dev/null
scratch=$(mktemp -d "${TMPDIR:-/tmp}/sl_fuzz.XXXXXX")
rc=0
for t in "${targets[@]}"; do
  name=${t#fuzz_}
  mkdir -p "$scratch/$name"
  if ./build-fuzz/tests/fuzz/"$t" -max_total_time="$secs" -print_final_stats=1 \
      -artifact_prefix="$scratch/$name/" "$scratch/$name" "tests/fuzz/corpus/$name" \
      >"$scratch/$name.log" 2>&1; then
    runs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$scratch/$name.log" | grep -Eo '[0-9]+$' || echo "?")
    echo "fuzz $t: ok, $runs runs in ${secs}s"
  else
    echo "fuzz $t: FAILED, see $scratch/$name.log and reproducers in $scratch/$name/" >&2
    tail -n 30 "$scratch/$name.log" >&2
    rc=1
  fi
done
[[ $rc -eq 0 ]] && rm -rf "$scratch"
exit "$rc"
