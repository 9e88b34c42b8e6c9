#!/bin/bash
# greenboot required check: the boot is healthy only when sluice answers
# /readyz with 200 within a bounded wait. Sorts after MicroShift's
# 40_microshift_running_check.sh. A non-zero exit marks the boot failed;
# after greenboot's boot_counter failed boots rpm-ostree/bootc rolls the OS
# back (docs/deploy/systemd.md "greenboot"). Under flightctl, third-party
# greenboot checks are disabled and flightctl decides OS rollbacks.
#
# Settings (environment, or KEY=VALUE lines in /etc/sluice/greenboot.env):
#   SLUICE_READYZ_URL      default http://127.0.0.1:9100/readyz (admin.address)
#   SLUICE_READY_TIMEOUT   seconds to wait in total, default 300
#   SLUICE_READY_INTERVAL  seconds between attempts, default 2
#   SLUICE_READYZ_CACERT   CA file when the admin server speaks HTTPS
set -u

env_file=${SLUICE_GREENBOOT_ENV:-/etc/sluice/greenboot.env}
if [[ -r $env_file ]]; then
  while IFS='=' read -r key value; do
    case $key in
      SLUICE_READYZ_URL | SLUICE_READY_TIMEOUT | SLUICE_READY_INTERVAL | SLUICE_READYZ_CACERT)
        # The environment wins over the file.
        [[ -z ${!key-} ]] && printf -v "$key" '%s' "$value" ;;
    esac
  done <"$env_file"
fi
url=${SLUICE_READYZ_URL:-http://127.0.0.1:9100/readyz}
timeout=${SLUICE_READY_TIMEOUT:-300}
interval=${SLUICE_READY_INTERVAL:-2}
for v in timeout interval; do
  if ! [[ ${!v} =~ ^[0-9]+$ ]] || ((${!v} < 1)); then
    echo "50_sluice_ready: $v must be a positive whole number of seconds, not '${!v}'" >&2
    exit 1
  fi
done
if ! command -v curl >/dev/null; then
  echo "50_sluice_ready: curl not found" >&2
  exit 1
fi

curl_args=(--silent --show-error --output /dev/null --write-out '%{http_code}'
  --max-time "$interval" --connect-timeout "$interval")
[[ -n ${SLUICE_READYZ_CACERT-} ]] && curl_args+=(--cacert "$SLUICE_READYZ_CACERT")

start=$SECONDS
last="no answer"
while :; do
  code=$(curl "${curl_args[@]}" "$url" 2>/dev/null) || code=${code:-000}
  if [[ $code == 200 ]]; then
    echo "50_sluice_ready: sluice ready ($url) after $((SECONDS - start)) s"
    exit 0
  fi
  if [[ $code == 000 ]]; then last="no answer"; else last="HTTP $code"; fi
  if ((SECONDS - start + interval > timeout)); then
    break
  fi
  # Each attempt is bounded by --max-time; pause only when it came back early.
  sleep "$interval"
done
echo "50_sluice_ready: sluice not ready after ${timeout} s ($url: $last)" >&2
exit 1
