#!/bin/bash
# deploy/systemd/sluice.service, checked offline (no PID-1 systemd here).
#
#   systemd_test.sh verify   SLUICE_BINARY
#   systemd_test.sh security SLUICE_BINARY [MAX_SCORE, default 2.5]
#
# verify: `systemd-analyze verify` exits 0 on unknown keys and bad values,
# so ANY output on stderr fails the test. The unit is checked in a temporary
# copy whose /usr/bin/sluice is the built binary (verify wants an executable
# ExecStart); a deliberately broken copy must produce output, or the check
# would not bite. Also asserts the settings the deployment relies on.
# security: `systemd-analyze security --offline=true` exposure score printed
# and at or under MAX_SCORE. Exit 77 (skipped) without systemd-analyze.
set -u
mode=${1:?verify|security}
sluice=${2:?sluice binary}
max=${3:-2.5}
here=$(cd "$(dirname "$0")" && pwd)
unit=$here/../../deploy/systemd/sluice.service

command -v systemd-analyze >/dev/null || { echo "SKIP: systemd-analyze not installed (apt-get install systemd)"; exit 77; }
[[ -x $sluice ]] || { echo "FAIL: $sluice is not executable"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fail=1; }

mkdir -p "$tmp/good" "$tmp/broken"
sluice_abs=$(cd "$(dirname "$sluice")" && pwd)/$(basename "$sluice")
sed "s#/usr/bin/sluice#$sluice_abs#g" "$unit" >"$tmp/good/sluice.service"

case $mode in
verify)
  # Settings the deployment relies on (docs/deploy/systemd.md).
  for want in '^Type=notify$' '^WatchdogSec=' '^ExecReload=/bin/kill -HUP \$MAINPID$' \
    '^DynamicUser=yes$' '^StateDirectory=sluice$' '^ConfigurationDirectory=sluice$' \
    '^ExecStart=/usr/bin/sluice run -c /etc/sluice/sluice.yaml$' \
    '^RestartPreventExitStatus=2 3 4 5$' '^Restart=on-failure$' '^ProtectSystem=strict$' \
    '^CapabilityBoundingSet=$' '^SystemCallFilter=@system-service$' '^MemoryMax=' \
    '^TimeoutStopSec=' '^NoNewPrivileges=yes$' '^PrivateTmp=yes$' '^PrivateDevices=yes$'; do
    grep -Eq "$want" "$unit" && ok "unit has $want" || bad "unit lacks $want"
  done
  # The drain on SIGTERM is bounded at a few seconds (docs/OPERATIONS.md
  # "Signals"): the stop timeout must be well above it.
  stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$unit")
  [[ -n $stop ]] && ((stop >= 30)) && ok "TimeoutStopSec=${stop}s >= 30 s" || bad "TimeoutStopSec not >= 30s"

  out=$(cd "$tmp/good" && systemd-analyze verify ./sluice.service 2>&1 >/dev/null)
  rc=$?
  [[ $rc -eq 0 && -z $out ]] && ok "systemd-analyze verify: exit 0, no output" ||
    bad "systemd-analyze verify: exit $rc, output: $out"

  # A misspelt key and a bad value: verify still exits 0, but prints them.
  sed -e 's/^ProtectSystem=strict/ProtectSytem=strict/' -e 's/^WatchdogSec=.*/WatchdogSec=soon/' \
    "$tmp/good/sluice.service" >"$tmp/broken/sluice.service"
  out=$(cd "$tmp/broken" && systemd-analyze verify ./sluice.service 2>&1 >/dev/null)
  [[ $out == *ProtectSytem* && $out == *soon* ]] &&
    ok "broken copy: verify reports the misspelt key and the bad value" ||
    bad "broken copy not reported: '$out'"
  ;;
security)
  out=$(cd "$tmp/good" && systemd-analyze security --offline=true ./sluice.service 2>&1)
  score=$(sed -n 's/.*Overall exposure level for sluice.service: \([0-9.]*\).*/\1/p' <<<"$out")
  if [[ -z $score ]]; then
    bad "no exposure score in: $out"
  else
    echo "exposure score $score (threshold $max; a unit without sandboxing scores 9.6)"
    awk -v s="$score" -v m="$max" 'BEGIN { exit !(s <= m) }' &&
      ok "score $score <= $max" || bad "score $score > $max"
    # The same unit without its sandbox must score worse: the check bites.
    grep -Ev '^(Protect|Private|Restrict|SystemCall|Capability|NoNewPriv|MemoryDeny|LockPers|DynamicUser|UMask|RemoveIPC|KeyringMode|DevicePolicy|AmbientCap)' \
      "$tmp/good/sluice.service" >"$tmp/broken/sluice.service"
    out=$(cd "$tmp/broken" && systemd-analyze security --offline=true ./sluice.service 2>&1)
    bare=$(sed -n 's/.*Overall exposure level for sluice.service: \([0-9.]*\).*/\1/p' <<<"$out")
    awk -v s="${bare:-0}" -v m="$max" 'BEGIN { exit !(s > m) }' &&
      ok "unit without its sandbox scores $bare > $max" || bad "unsandboxed copy scored '$bare'"
  fi
  ;;
*) echo "usage: $0 verify|security SLUICE_BINARY [MAX]"; exit 2 ;;
esac
exit $fail
