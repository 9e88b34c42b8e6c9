#!/usr/bin/env bash
# The unit tests and the daemon's end-to-end tests (ctest labels "unit" and
# "daemon": no brokers needed; tests/security/probe included) in the ASan+UBSan build
# (preset asan, build-asan/). Any sanitizer report fails: the unit tests
# abort on one, and the daemon tests scan the daemon's log.
#
#   scripts/sanitize.sh [CTEST_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cmake --preset asan >/dev/null
cmake --build build-asan -j 2
ctest --test-dir build-asan -L 'unit|daemon' -j 2 --output-on-failure "$@"
