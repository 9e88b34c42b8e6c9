#!/usr/bin/env bash
# Single-node Apache Kafka 4.x (KRaft, combined broker+controller) on free
# loopback ports, for sluice's integration tests. The broker jars come from
# Maven Central through deploy/kafka/pom.xml and are cached outside the tree.
#
# Environment (all optional):
#   SLUICE_HARNESS_DIR         state root (default /tmp/sluice-harness-$USER)
#   SLUICE_KAFKA_DIR           this broker's state dir (default $root/kafka)
#   SLUICE_KAFKA_CACHE         jar cache (default $XDG_CACHE_HOME/sluice/kafka-V-POMHASH)
#   SLUICE_KAFKA_READY_TIMEOUT seconds wait-ready waits (default 120)
#   SLUICE_KAFKA_STOP_TIMEOUT  seconds stop waits before SIGKILL (default 30)
#   SLUICE_KAFKA_HOST          address the client listener binds and
#                              advertises (default 127.0.0.1; scripts/netns.sh
#                              sets the netns side of its veth pair). The
#                              controller listener stays on 127.0.0.1.
#   SLUICE_KAFKA_SASL          1: a second client listener, SASL_PLAINTEXT
#                              with PLAIN and one user, sluice / sluice-test
#                              (a test credential), for the authentication
#                              tests; its host:port is in $DIR/sasl_bootstrap
#                              and `env` prints SLUICE_TEST_KAFKA_SASL_BOOTSTRAP
#   SLUICE_KAFKA_SSL           1: a client listener SSL with client
#                              certificates required, the StandardAuthorizer
#                              (allow.everyone.if.no.acl.found=false) and
#                              ssl.principal.mapping.rules CN -> User:<CN>
#                              (docs/ENROLMENT.md). The PLAINTEXT listener
#                              stays the admin's (User:ANONYMOUS is a super
#                              user), so tests that do not use SSL are
#                              unaffected. A test CA (ECDSA P-256, openssl
#                              CLI) in $DIR/ssl signs the broker's
#                              certificate and is the one CA the listener
#                              trusts for clients: tests use it as the fleet
#                              CA. `env` prints SLUICE_TEST_KAFKA_SSL_BOOTSTRAP,
#                              SLUICE_TEST_KAFKA_SSL_CA (certificate) and
#                              SLUICE_TEST_KAFKA_SSL_CA_KEY. With
#                              SLUICE_KAFKA_SSL_CA_CERT and _CA_KEY set, that
#                              CA is used instead of a new one.
#   SLUICE_KAFKA_DATA          where the broker's log lives: tmpfs (default
#                              where /dev/shm has 4 GiB free) or disk. Why
#                              tmpfs: this Kafka stands in for the central
#                              cluster, which in production has disks of its
#                              own, so the edge store's disk carries only the
#                              edge's writes here too. (It did not remove the
#                              store's cold-start fsync stalls: those are the
#                              VM's disk; docs/BENCHMARKS.md, latency.)
#                              `clean` (or the next `start`) frees it.
set -euo pipefail

# shellcheck disable=SC2034 # read by lib/common.sh
SL_PROG=kafka.sh
# shellcheck source-path=SCRIPTDIR source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

usage() {
  echo "usage: scripts/kafka.sh start|stop|clean|restart|status|wait-ready|env|topics|fetch|log|classpath" >&2
  echo "       scripts/kafka.sh acls KAFKA-ACLS-ARGS... (kafka-acls.sh on the admin listener)" >&2
  exit 2
}

POM=$SL_ROOT/deploy/kafka/pom.xml
LOG4J=$SL_ROOT/deploy/kafka/log4j2.properties
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$POM")
[[ -n $KAFKA_VERSION ]] || sl_die "no <kafka.version> in $POM"
# One cache per pom (its hash in the name): checkouts with different poms
# on one machine (worktrees, branches) never refetch over each other.
POM_ID=$(sha256sum "$POM" | cut -c1-12)
CACHE=${SLUICE_KAFKA_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/sluice/kafka-$KAFKA_VERSION-$POM_ID}
DIR=${SLUICE_KAFKA_DIR:-$(sl_harness_dir)/kafka}
PIDFILE=$DIR/kafka.pid
ADDRFILE=$DIR/bootstrap
SASLFILE=$DIR/sasl_bootstrap
SSLFILE=$DIR/ssl_bootstrap
SSLDIR=$DIR/ssl
PROPS=$DIR/server.properties
LOGDIR=$DIR/logs
LOG=$LOGDIR/server.log
OUT=$LOGDIR/kafka.out
# Our broker's command line ends with this, which tells it from other JVMs.
PATTERN="kafka.Kafka $PROPS"
HOST=${SLUICE_KAFKA_HOST:-127.0.0.1}

running() {
  sl_pid_alive "$PIDFILE" "$PATTERN"
}

# fetch: download the broker jars once. The marker holds the pom's hash, so
# editing the pom (say, a log4j bump) refetches and nothing else does.
fetch() {
  local marker=$CACHE/.complete stamp
  stamp=$(sha256sum "$POM" | cut -d' ' -f1)
  if [[ -f $marker && $(<"$marker") == "$stamp" ]]; then
    return 0
  fi
  mkdir -p "$CACHE"
  exec 8>"$CACHE/.lock"
  flock -w 600 8 || sl_die "timed out waiting for $CACHE/.lock"
  if [[ -f $marker && $(<"$marker") == "$stamp" ]]; then
    exec 8>&-
    return 0
  fi
  sl_need mvn
  rm -rf "$CACHE/libs" "$CACHE/libs.tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
    -DoutputDirectory="$CACHE/libs.tmp" >"$CACHE/mvn.log" 2>&1; then
    sl_log_tail "$CACHE/mvn.log"
    sl_die "could not fetch Kafka $KAFKA_VERSION jars (log: $CACHE/mvn.log)"
  fi
  mv "$CACHE/libs.tmp" "$CACHE/libs"
  printf '%s\n' "$stamp" >"$marker"
  exec 8>&-
}

# java_run CLASS ARGS...: run a Kafka main class with the harness's logging.
java_run() {
  java -Dkafka.logs.dir="$LOGDIR" -Dlog4j2.configurationFile="$LOG4J" \
    -cp "$CACHE/libs/*" "$@"
}

write_props() {
  local host=$1 port=$2 cport=$3 sport=${4:-} tport=${5:-}
  local listeners="PLAINTEXT://$host:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="PLAINTEXT://$host:$port"
  local protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [[ -n $sport ]]; then
    listeners+=",SASL_PLAINTEXT://$host:$sport"
    advertised+=",SASL_PLAINTEXT://$host:$sport"
    protomap+=",SASL_PLAINTEXT:SASL_PLAINTEXT"
  fi
  if [[ -n $tport ]]; then
    listeners+=",SSL://$host:$tport"
    advertised+=",SSL://$host:$tport"
    protomap+=",SSL:SSL"
  fi
  cat >"$PROPS" <<PROPS
# Generated by scripts/kafka.sh: single-node KRaft, combined mode.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$DIR/data
num.partitions=1
default.replication.factor=1
auto.create.topics.enable=true
# One replica everywhere: the internal topics would never be created otherwise.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Few internal partitions: creating 50 of them slows the first group or
# transaction on a 2-core machine, and one node gains nothing from them.
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
group.initial.rebalance.delay.ms=0
PROPS
  if [[ -n $sport ]]; then
    cat >>"$PROPS" <<PROPS
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_sluice="sluice-test";
PROPS
  fi
  if [[ -n $tport ]]; then
    # PLAINTEXT (clients and inter-broker) and CONTROLLER connections are
    # User:ANONYMOUS: the admin's and the broker's own, hence super users.
    cat >>"$PROPS" <<PROPS
listener.name.ssl.ssl.client.auth=required
listener.name.ssl.ssl.keystore.type=PEM
listener.name.ssl.ssl.keystore.location=$SSLDIR/broker.pem
listener.name.ssl.ssl.truststore.type=PEM
listener.name.ssl.ssl.truststore.location=$SSLDIR/ca.pem
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
super.users=User:ANONYMOUS
allow.everyone.if.no.acl.found=false
ssl.principal.mapping.rules=RULE:^CN=([^,]+).*\$/\$1/,DEFAULT
PROPS
  fi
}

# make_ssl HOST: the test CA (or SLUICE_KAFKA_SSL_CA_CERT/_KEY) and the
# broker's certificate for HOST in $SSLDIR, with the openssl CLI. The
# keystore is PEM (Kafka >= 2.7): the unencrypted PKCS#8 key, then the
# certificate and the CA's.
make_ssl() {
  local host=$1
  sl_need openssl
  rm -rf "$SSLDIR"
  mkdir -m 700 "$SSLDIR"
  if [[ -n ${SLUICE_KAFKA_SSL_CA_CERT:-} ]]; then
    cp "$SLUICE_KAFKA_SSL_CA_CERT" "$SSLDIR/ca.pem"
    cp "$SLUICE_KAFKA_SSL_CA_KEY" "$SSLDIR/ca.key"
  else
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
      -keyout "$SSLDIR/ca.key" -out "$SSLDIR/ca.pem" -days 30 \
      -subj "/CN=sluice test fleet CA" \
      -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign 2>>"$OUT" ||
      sl_die "openssl: could not make the test CA (log: $OUT)"
  fi
  chmod 600 "$SSLDIR/ca.key"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$SSLDIR/broker.key" -out "$SSLDIR/broker.csr" \
    -subj "/CN=kafka-broker" 2>>"$OUT" ||
    sl_die "openssl: could not make the broker's key (log: $OUT)"
  printf 'subjectAltName=IP:%s,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$host" >"$SSLDIR/broker.ext"
  openssl x509 -req -in "$SSLDIR/broker.csr" -CA "$SSLDIR/ca.pem" \
    -CAkey "$SSLDIR/ca.key" -CAcreateserial -days 30 \
    -extfile "$SSLDIR/broker.ext" -out "$SSLDIR/broker.crt" 2>>"$OUT" ||
    sl_die "openssl: could not sign the broker's certificate (log: $OUT)"
  { openssl pkcs8 -topk8 -nocrypt -in "$SSLDIR/broker.key"
    cat "$SSLDIR/broker.crt" "$SSLDIR/ca.pem"; } >"$SSLDIR/broker.pem"
  chmod 600 "$SSLDIR/broker.pem" "$SSLDIR/broker.key"
}

# The tmpfs copies of broker logs live in /dev/shm/sluice-kafka.XXXXXX/data,
# with $DIR/data a symbolic link to it and the owner file naming $DIR.
SHM_ROOT=/dev/shm

use_tmpfs() {
  case ${SLUICE_KAFKA_DATA:-auto} in
    disk) return 1 ;;
    tmpfs) [[ -d $SHM_ROOT && -w $SHM_ROOT ]] || sl_die "SLUICE_KAFKA_DATA=tmpfs: $SHM_ROOT is not writable" ;;
    auto)
      [[ -d $SHM_ROOT && -w $SHM_ROOT ]] || return 1
      local avail
      avail=$(df -Pk "$SHM_ROOT" 2>/dev/null | awk 'NR == 2 { print $4 }')
      [[ -n $avail ]] && ((avail >= 4 * 1024 * 1024)) || return 1
      ;;
    *) sl_die "SLUICE_KAFKA_DATA must be tmpfs or disk" ;;
  esac
}

# remove_data: the broker's log, wherever it lives.
remove_data() {
  local target
  if [[ -L $DIR/data ]]; then
    target=$(readlink "$DIR/data")
    [[ $target == "$SHM_ROOT"/sluice-kafka.*/data ]] && rm -rf "${target%/data}"
    rm -f "$DIR/data"
  else
    rm -rf "$DIR/data"
  fi
}

# sweep_shm: tmpfs logs whose broker directory is gone (a run that was
# killed, or removed its directory without `clean`) would hold RAM until
# reboot. The link is made before the owner file, so a directory with an
# owner file whose link no longer points back is an orphan; one without an
# owner file is only removed after an hour (someone may be creating it).
sweep_shm() {
  local d owner
  for d in "$SHM_ROOT"/sluice-kafka.*; do
    [[ -d $d ]] || continue
    if [[ -f $d/owner ]]; then
      owner=$(<"$d/owner")
      [[ $(readlink "$owner/data" 2>/dev/null) == "$d/data" ]] && continue
    elif [[ -z $(find "$d" -maxdepth 0 -mmin +60 2>/dev/null) ]]; then
      continue
    fi
    rm -rf "$d"
  done
}

make_data() {
  local d
  if use_tmpfs; then
    sweep_shm
    d=$(mktemp -d "$SHM_ROOT/sluice-kafka.XXXXXX")
    mkdir "$d/data"
    ln -s "$d/data" "$DIR/data"
    printf '%s\n' "$DIR" >"$d/owner"
  else
    mkdir -p "$DIR/data"
  fi
}

start() {
  sl_lock "$DIR"
  if running; then
    return 0
  fi
  sl_need java python3 kcat setsid
  fetch
  remove_data
  rm -rf "$LOGDIR" "$ADDRFILE" "$PIDFILE"
  mkdir -p "$LOGDIR"
  make_data
  local ports port cport sport='' tport='' cluster_id
  rm -f "$SASLFILE" "$SSLFILE"
  if [[ $HOST == 127.0.0.1 ]]; then
    ports=$(sl_free_ports 4)
    port=$(sed -n 1p <<<"$ports")
    cport=$(sed -n 2p <<<"$ports")
    [[ ${SLUICE_KAFKA_SASL:-0} == 1 ]] && sport=$(sed -n 3p <<<"$ports")
    [[ ${SLUICE_KAFKA_SSL:-0} == 1 ]] && tport=$(sed -n 4p <<<"$ports")
  else
    port=$(sl_free_ports 1 "$HOST")
    cport=$(sl_free_ports 1)
    [[ ${SLUICE_KAFKA_SASL:-0} == 1 ]] && sport=$(sl_free_ports 1 "$HOST")
    [[ ${SLUICE_KAFKA_SSL:-0} == 1 ]] && tport=$(sl_free_ports 1 "$HOST")
  fi
  [[ -n $tport ]] && make_ssl "$HOST"
  write_props "$HOST" "$port" "$cport" "$sport" "$tport"
  [[ -n $sport ]] && printf '%s\n' "$HOST:$sport" >"$SASLFILE"
  [[ -n $tport ]] && printf '%s\n' "$HOST:$tport" >"$SSLFILE"
  cluster_id=$(java_run kafka.tools.StorageTool random-uuid 2>>"$OUT") ||
    { sl_log_tail "$OUT"; sl_die "StorageTool random-uuid failed (log: $OUT)"; }
  java_run kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" \
    >>"$OUT" 2>&1 ||
    { sl_log_tail "$OUT"; sl_die "StorageTool format failed (log: $OUT)"; }
  launch "$HOST:$port"
}

# restart: stop the broker and start it again with the same config, ports
# and data (fault-injection tests: "Kafka down, then back"). start, by
# contrast, wipes the data and picks new ports.
restart() {
  [[ -f $PROPS && -d $DIR/data ]] || sl_die "kafka was never started in $DIR"
  stop
  sl_lock "$DIR"
  local addr
  addr=$(sed -n 's/^advertised.listeners=PLAINTEXT:\/\/\([^,]*:[0-9]*\).*$/\1/p' "$PROPS")
  [[ -n $addr ]] || sl_die "no PLAINTEXT address in $PROPS"
  mkdir -p "$LOGDIR"
  launch "$addr"
}

# launch HOST:PORT: start the broker whose client listener is HOST:PORT.
launch() {
  local addr=$1
  # setsid: a Ctrl-C meant for the caller's foreground job must not reach
  # the broker; scripts/harness stops it in order. fd 9 holds our lock and
  # must not live on in the broker.
  # The JVM options Kafka's own scripts use by default (kafka-server-start.sh:
  # a 1 GiB heap; kafka-run-class.sh: G1 with a 20 ms pause goal): with the
  # JVM's defaults young collections on this 2-core box paused the broker
  # for 100-170 ms every few seconds, which the latency benchmarks measured
  # as the uplink's p99. One GC worker thread (the JVM takes one per core):
  # with two on two cores shared with sluice and the load generators, a
  # preempted worker left the other spinning, and 1 young collection in 5
  # took 80-120 ms of CPU to evacuate ~50 MB (GC log: User = Real, Sys 0);
  # with one, every pause was 7-23 ms. SLUICE_KAFKA_JVM_OPTS: extra options
  # (GC logging) by hand.
  # shellcheck disable=SC2086
  setsid java -Xms1g -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:ParallelGCThreads=1 -XX:ConcGCThreads=1 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
    -XX:MaxInlineLevel=15 -Djava.awt.headless=true -XX:+ExitOnOutOfMemoryError \
    ${SLUICE_KAFKA_JVM_OPTS:-} -Dkafka.logs.dir="$LOGDIR" -Dlog4j2.configurationFile="$LOG4J" \
    -cp "$CACHE/libs/*" kafka.Kafka "$PROPS" \
    </dev/null >>"$OUT" 2>&1 9>&- &
  printf '%s\n' "$!" >"$PIDFILE"
  printf '%s\n' "$addr" >"$ADDRFILE"
  sl_wait_exec "$PIDFILE" "$PATTERN"
}

fail_with_logs() {
  sl_log_tail "$LOG"
  sl_log_tail "$OUT" 20
  sl_die "$* (broker log: $LOG, stdout: $OUT)"
}

wait_ready() {
  local timeout=${SLUICE_KAFKA_READY_TIMEOUT:-120} deadline addr
  [[ -s $ADDRFILE ]] || sl_die "kafka was not started (no $ADDRFILE)"
  sl_need kcat
  addr=$(<"$ADDRFILE")
  deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    running || fail_with_logs "broker exited before it was ready"
    # Ready = the broker answers metadata and lists itself (it is
    # registered and unfenced with its controller).
    if kcat -L -b "$addr" -m 2 2>/dev/null | grep -q '^ *broker 1 at'; then
      return 0
    fi
    sleep 0.5
  done
  fail_with_logs "broker at $addr not ready after ${timeout}s"
}

stop() {
  [[ -d $DIR ]] || return 0
  sl_lock "$DIR"
  sl_stop_pid "$PIDFILE" "$PATTERN" kafka "${SLUICE_KAFKA_STOP_TIMEOUT:-30}"
  rm -f "$ADDRFILE"
}

# clean: stop, and free the broker's log (tmpfs: its RAM).
clean() {
  [[ -d $DIR ]] || return 0
  stop
  sl_lock "$DIR"
  remove_data
}

status() {
  if running; then
    echo "kafka $KAFKA_VERSION: running, pid $(<"$PIDFILE"), bootstrap $(<"$ADDRFILE"), log $LOG"
    return 0
  fi
  echo "kafka: not running"
  return 1
}

env_lines() {
  running || sl_die "kafka is not running (scripts/kafka.sh start)"
  printf 'SLUICE_TEST_KAFKA_BOOTSTRAP=%s\n' "$(<"$ADDRFILE")"
  # The broker's log dir: tests read the stored record batches (codecs).
  printf 'SLUICE_TEST_KAFKA_DATA=%s\n' "$DIR/data"
  if [[ -s $SASLFILE ]]; then
    printf 'SLUICE_TEST_KAFKA_SASL_BOOTSTRAP=%s\n' "$(<"$SASLFILE")"
  fi
  if [[ -s $SSLFILE ]]; then
    printf 'SLUICE_TEST_KAFKA_SSL_BOOTSTRAP=%s\n' "$(<"$SSLFILE")"
    printf 'SLUICE_TEST_KAFKA_SSL_CA=%s\n' "$SSLDIR/ca.pem"
    printf 'SLUICE_TEST_KAFKA_SSL_CA_KEY=%s\n' "$SSLDIR/ca.key"
  fi
}

topics() {
  running || sl_die "kafka is not running (scripts/kafka.sh start)"
  kcat -L -b "$(<"$ADDRFILE")" -m 5 |
    sed -n 's/^  topic "\([^"]*\)".*/\1/p'
}

# acls ARGS...: Kafka's kafka-acls.sh (AclCommand) against this broker's
# PLAINTEXT (admin) listener: what `sluice fleet enroll
# --txn-acl-command` runs for transactional ids on the test broker.
acls() {
  running || sl_die "kafka is not running (scripts/kafka.sh start)"
  fetch
  java_run org.apache.kafka.tools.AclCommand --bootstrap-server \
    "$(<"$ADDRFILE")" "$@"
}

if [[ ${1:-} == acls ]]; then
  shift
  acls "$@"
  exit
fi
[[ $# -eq 1 ]] || usage
case $1 in
  start) start ;;
  stop) stop ;;
  clean) clean ;;
  restart) restart ;;
  status) status ;;
  wait-ready) wait_ready ;;
  env) env_lines ;;
  log) printf '%s\n' "$LOG" ;;
  topics) topics ;;
  fetch) fetch ;;
  # The broker's jars (kafka-clients among them), for Java helpers such as
  # deploy/kafka/TxnAclHelper.java: java -cp "$(scripts/kafka.sh classpath)"
  classpath) fetch && printf '%s\n' "$CACHE/libs/*" ;;
  *) usage ;;
esac
