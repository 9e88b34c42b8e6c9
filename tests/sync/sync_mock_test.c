/*
 * The uplink (sync/sync.h, in process) against librdkafka's mock cluster
 * (rdkafka_mock.h, 3 brokers) while faults are injected during a drain:
 *
 *   sync_mock_test errors [eos|alo]  Produce requests fail with
 *                                    NOT_LEADER_FOR_PARTITION,
 *                                    REQUEST_TIMED_OUT and
 *                                    OUT_OF_ORDER_SEQUENCE_NUMBER
 *   sync_mock_test rtt [eos|alo]     every broker's round trip rises above
 *                                    message.timeout.ms for a while
 *   sync_mock_test auth eos          InitProducerId is refused with
 *                                    TRANSACTIONAL_ID_AUTHORIZATION_FAILED
 *                                    at start: reported, the producers are
 *                                    dropped and made again only after the
 *                                    authentication backoff (2 s here)
 *   sync_mock_test endtxn eos        EndTxn requests fail: a retriable
 *                                    NOT_COORDINATOR, then an abortable
 *                                    UNKNOWN_PRODUCER_ID, with the next
 *                                    transaction already open on the
 *                                    other producer (pipelined commits)
 *
 * What can be checked, and what cannot: the mock cluster implements the
 * transactional producer's requests (InitProducerId, AddPartitionsToTxn,
 * EndTxn) but keeps no transaction markers, so its consumers also see the
 * records of aborted transactions. Exactly-once itself is checked against
 * the real broker (sync_test); here a consumer reads the topic to its end
 * and checks that every stored event arrived (zero loss) and that the
 * duplicates are bounded: in exactly-once mode by the records of the
 * aborted transactions (at most chunk_events per abort, the count the
 * uplink reports), in at-least-once mode by one chunk per retry. The
 * checkpoint the uplink committed must cover everything. Skips (77) only
 * when the mock cluster cannot be created.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "sync/sync.h"
#include "tests/sync/sync_inproc.h"

#define EVENTS 40000u
#define CHUNK 2000u
#define PRODUCE_API 0  /* ApiKey of ProduceRequest */
#define ENDTXN_API 26  /* ApiKey of EndTxnRequest */
#define INITPID_API 22 /* ApiKey of InitProducerIdRequest */
#define AUTH_BACKOFF_MS 2000
#define BASE_NS 1700000000000000000ll /* event time of offset 0 */

/* Stores readings from..from+n-1 (value = offset), 500 per batch, 16
 * sources. */
static void fill(sl_store_t *st, uint32_t id, uint32_t from, uint32_t n) {
  inproc_fill(st, id, from, n, BASE_NS);
}

/* Each record read back is the stored event of its offset. */
static void check_record(const rd_kafka_message_t *m, uint64_t off,
                         const Sluice__V1__Event *ev) {
  (void)m;
  CHECK(ev && ev->body_case == SLUICE__V1__EVENT__BODY_READING &&
            ev->reading->double_value == (double)off,
        "offset %" PRIu64 " carries the wrong event", off);
}

static void stats(sl_sync_t *up, sl_sync_stats_t *s) {
  sl_sync_stats(up, s);
}

int main(int argc, char **argv) {
  if (argc < 2 || (strcmp(argv[1], "errors") && strcmp(argv[1], "rtt") &&
                   strcmp(argv[1], "endtxn") && strcmp(argv[1], "auth"))) {
    fprintf(stderr, "usage: sync_mock_test errors|rtt|endtxn|auth [eos|alo]\n");
    return 2;
  }
  bool rtt = !strcmp(argv[1], "rtt");
  bool endtxn = !strcmp(argv[1], "endtxn");
  bool auth = !strcmp(argv[1], "auth");
  bool alo = argc > 2 && !strcmp(argv[2], "alo");

  /* The mock cluster does not implement CreateTopics: the checkpoint
   * topic is made here, as an operator would where that is not allowed. */
  char e[256];
  const char *topic = "mock-readings";
  const char *const topics[] = {topic, "sluice.checkpoints", NULL};
  inproc_mock_t mock;
  int rc = inproc_mock_new(&mock, 3, topics, "sync_mock_test");
  if (rc)
    return rc;
  rd_kafka_mock_cluster_t *mc = mock.mc;
  const char *brokers = mock.brokers;

  uint32_t id;
  sl_store_t *st = inproc_store_open("sync_mock", 1, &id);
  fill(st, id, 0, EVENTS / 4);

  sl_sync_opts_t o;
  sl_sync_stream_conf_t stc = {.name = "readings", .topic = topic};
  /* A short message timeout so that the RTT scenario exceeds it; the
   * transaction timeout must not be shorter. */
  const char *props[] = {"message.timeout.ms=3000", "retry.backoff.ms=50",
                         "socket.timeout.ms=3000"};
  sl_sync_opts_init(&o);
  o.node_id = "mock-node";
  o.brokers = brokers;
  o.at_least_once = alo;
  o.streams = &stc;
  o.nstreams = 1;
  o.chunk_events = CHUNK;
  o.txn_timeout_ms = 10000;
  o.props = props;
  o.nprops = SL_ARRAY_SIZE(props);
  o.backlog_threshold = 0; /* one lane: one order to reason about */
  o.auth_backoff_ms = AUTH_BACKOFF_MS;
  sl_sync_t *up;
  CHECK(sl_sync_new(st, &o, &up, e, sizeof(e)) == 0, "sync: %s", e);
  if (auth)
    rd_kafka_mock_push_request_errors(
        mc, INITPID_API, 1,
        RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
  uint64_t t_start = sl_now_mono_ns(), t_first = 0;
  CHECK(sl_sync_start(up) == 0, "start");

  /* Four parts: the first is a backlog at start; before each of the
   * others a fault is set up, so that the part's drain meets it. */
  sl_sync_stats_t s;
  uint64_t deadline = sl_now_mono_ns() + 150000000000ull, faults = 0;
  for (uint32_t part = 1; part <= 4; part++) {
    uint32_t stored = part * (EVENTS / 4) - EVENTS / 4;
    for (;;) { /* until everything stored so far is committed */
      stats(up, &s);
      CHECK(s.state != SL_SYNC_FAILED && s.state != SL_SYNC_FENCED,
            "uplink %s: %s", sl_sync_state_name(s.state), s.last_error_text);
      if (!t_first && s.txn_commits)
        t_first = sl_now_mono_ns();
      if (s.streams[0].live_next >= stored + EVENTS / 4 ||
          (part > 1 && s.streams[0].live_next >= stored))
        break;
      CHECK(sl_now_mono_ns() < deadline,
            "part %u: %" PRIu64 " committed in 150 s (state %s, %s)", part,
            s.streams[0].live_next, sl_sync_state_name(s.state),
            s.last_error_text);
      usleep(20000); /* polling the uplink's counters, with a deadline */
    }
    if (part == 4)
      break;
    if (auth) {
      fill(st, id, part * (EVENTS / 4),
           EVENTS / 4); /* the fault was at start */
    } else if (rtt) {
      for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_rtt(mc, b, 4000);
      fill(st, id, part * (EVENTS / 4), EVENTS / 4);
      usleep(5000000); /* the fault's duration, not a synchronisation */
      for (int b = 1; b <= 3; b++)
        rd_kafka_mock_broker_set_rtt(mc, b, 0);
    } else if (endtxn) {
      rd_kafka_mock_push_request_errors(mc, ENDTXN_API, 3,
                                        RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
                                        RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
                                        RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
      fill(st, id, part * (EVENTS / 4), EVENTS / 4);
    } else {
      rd_kafka_mock_push_request_errors(
          mc, PRODUCE_API, 7, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
          RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
          RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
          RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
          RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
          RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
          RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT);
      fill(st, id, part * (EVENTS / 4), EVENTS / 4);
    }
    faults++;
  }
  for (;;) { /* the last part */
    stats(up, &s);
    if (s.streams[0].live_next >= EVENTS)
      break;
    CHECK(sl_now_mono_ns() < deadline, "%" PRIu64 " committed in 150 s (%s)",
          s.streams[0].live_next, s.last_error_text);
    usleep(20000); /* polling the uplink's counters, with a deadline */
  }
  sl_sync_stop(up, 10000);
  stats(up, &s);

  uint32_t *count = calloc(EVENTS, sizeof(uint32_t));
  uint64_t records, missing = 0, dups = 0;
  CHECK(count, "calloc");
  records = inproc_consume(brokers, topic, 0, EVENTS, count, check_record);
  for (uint32_t k = 0; k < EVENTS; k++) {
    missing += count[k] == 0;
    dups += count[k] > 1 ? count[k] - 1 : 0;
  }
  /* With pipelined commits a failure resends two transactions: the one
   * whose commit failed and the one open on the other producer. */
  uint64_t bound =
      (s.txn_aborts + s.retries + s.producer_restarts) * CHUNK * (alo ? 1 : 2);
  printf("%s %s: %u stored, %" PRIu64 " records, %" PRIu64 " missing, %" PRIu64
         " duplicates (bound %" PRIu64 "), %" PRIu64 " commits, %" PRIu64
         " aborts, %" PRIu64 " retries, %" PRIu64 " producer restarts, %" PRIu64
         " faults\n",
         argv[1], alo ? "at-least-once" : "exactly-once", EVENTS, records,
         missing, dups, bound, s.txn_commits, s.txn_aborts, s.retries,
         s.producer_restarts, faults);
  CHECK(faults == 3, "only %" PRIu64 " faults injected", faults);
  if (auth) {
    double first_s = (double)(t_first - t_start) / 1e9;
    printf("auth: %" PRIu64 " failures, first commit after %.2f s\n",
           s.auth_failures, first_s);
    CHECK(s.auth_failures >= 1, "the authorization failure was not counted");
    CHECK(first_s >= AUTH_BACKOFF_MS / 2 / 1e3,
          "retried after %.2f s, before the authentication backoff", first_s);
  }
  CHECK(missing == 0, "%" PRIu64 " stored events never arrived", missing);
  CHECK(dups <= bound, "%" PRIu64 " duplicates, more than %" PRIu64, dups,
        bound);
  /* The refused InitProducerId is not a chunk retry: the auth checks above
   * are what show that fault reached the uplink. */
  CHECK(auth || s.retries > 0, "no retry: the faults never reached the uplink");
  sl_sync_free(up);
  inproc_store_remove(st);
  inproc_mock_free(&mock);
  free(count);
  printf("sync_mock_test %s: ok\n", argv[1]);
  return 0;
}
