#!/usr/bin/env bash
# loadtest/run pipeline: filter + deadband + 10 s tumbling window over 500
# sources, in process (no daemon, no network), beside a raw scan baseline
# of the same events. Progress on stderr, one JSON object on stdout.
#
#   loadtest/run pipeline [--seconds S]      (default 5)
set -euo pipefail
: "${SL_BUILD_RELEASE:?run through loadtest/run}"
sl_build_release sl_bench_pipeline
# One core: the target is per core, and the box is shared.
exec taskset -c 0 "$SL_BUILD_RELEASE/loadtest/pipeline/sl_bench_pipeline" "$@"
