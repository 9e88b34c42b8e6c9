#!/bin/sh
# Store benchmark scenario: builds sl_bench_store with the release preset
# (incrementally, so a stale binary never reports old fields), runs it,
# prints progress on stderr and one JSON object on stdout. Extra arguments go
# to sl_bench_store (--seconds S, --producers N, --level L,
# --layout time|source, --dir DIR). The JSON includes encrypted_events_per_s
# and encrypted_ratio (AES-256-GCM sealed appends over plain ones, paired
# runs in the same invocation).
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
bin="$root/build-release/loadtest/store/sl_bench_store"
if [ ! -f "$root/build-release/build.ninja" ]; then
  echo "configuring the release preset..." >&2
  (cd "$root" && cmake --preset release >&2)
fi
(cd "$root" && cmake --build build-release --target sl_bench_store >&2)
exec "$bin" "$@"
