#!/bin/sh
# Store benchmark scenario: builds sl_bench_store with the release preset if
# needed, runs it, prints progress on stderr and one JSON object on stdout.
# Extra arguments go to sl_bench_store (--seconds S, --producers N,
# --level L, --layout time|source, --dir DIR).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/build-release/loadtest/store/sl_bench_store"
if [ ! -x "$bin" ]; then
  echo "building sl_bench_store (release preset)..." >&2
  (cd "$root" && cmake --preset release >&2 &&
    cmake --build build-release --target sl_bench_store >&2)
fi
exec "$bin" "$@"
