# loadtest/common/lib.sh: the set-up every Kafka scenario shares (sourced by
# loadtest/<scenario>/run.sh, which runs through loadtest/run).
#
#   sl_lt_init NAME       bin, src; work (a private directory, removed at
#                         exit) with its own harness directory; pid (the
#                         scenario's daemon, killed at exit if still set);
#                         the private Kafka is stopped at exit.
#   sl_lt_kafka_start     starts that Kafka, waits until it answers, sets
#                         brokers.

sl_lt_cleanup() {
  set +e
  [[ -n ${pid:-} ]] && kill -KILL "$pid" 2>/dev/null
  "$src/scripts/kafka.sh" clean >/dev/null 2>&1
  wait 2>/dev/null
  rm -rf "$work"
}

sl_lt_init() {
  : "${SL_BUILD_RELEASE:?run through loadtest/run}"
  bin=$SL_BUILD_RELEASE
  src=$SL_SOURCE_DIR
  work=$(mktemp -d "${TMPDIR:-/tmp}/sl_$1.XXXXXX")
  export SLUICE_HARNESS_DIR=$work/harness
  pid=
  trap sl_lt_cleanup EXIT
}

sl_lt_kafka_start() {
  "$src/scripts/kafka.sh" start >&2
  "$src/scripts/kafka.sh" wait-ready >&2
  brokers=$("$src/scripts/kafka.sh" env | sed -n 's/^SLUICE_TEST_KAFKA_BOOTSTRAP=//p')
}
