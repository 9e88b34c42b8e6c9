#!/bin/sh
# Tests scripts/check-layering.py on the fixture tree: the clean manifest
# passes, the bad one fails naming each crossing include by file and line.
# usage: tests/layering/run.sh PYTHON3 CHECKER
set -u
py=${1:?usage: $0 PYTHON3 CHECKER}
checker=${2:?usage: $0 PYTHON3 CHECKER}
fix=$(cd "$(dirname "$0")/fixture" && pwd)
fail() { echo "FAIL: $*" >&2; echo "$out" >&2; exit 1; }

out=$("$py" "$checker" --root "$fix" "$fix/clean.manifest" 2>&1) ||
  fail "the clean fixture did not pass"

out=$("$py" "$checker" --root "$fix" "$fix/bad.manifest" 2>&1)
rc=$?
[ "$rc" -eq 1 ] || fail "the bad fixture exited $rc, not 1"
for want in \
  'process/leak.c:3: process includes "store/store_int.h", an internal header of store' \
  'process/leak.c:4: process includes "../store/store_int.h", an internal header of store' \
  'store/upward.c:2: store includes "process/process.h" of process, which is not in its DEPS' \
  'leaky/leaky.h:2: leaky includes "leaky/leaky_int.h": a public header exposes an internal one'; do
  printf '%s\n' "$out" | grep -qF "$want" || fail "missing: $want"
done
n=$(printf '%s\n' "$out" | grep -c '^[a-z/_.]*:[0-9]*: ')
[ "$n" -eq 4 ] || fail "expected 4 violations, got $n"
echo "check-layering: the fixture's 4 crossing includes are reported, the clean tree passes"
