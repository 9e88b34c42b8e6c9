/*
 * The uplink (sync/sync.h, in process) when the node's clock is wrong. The
 * uplink's wall clock is injected (sl_sync_opts_t.wall_clock_ns): real time
 * plus an offset the test moves, so only the uplink's clock steps (as with
 * libfaketime on the wall clock alone), never the monotonic one.
 *
 *   sync_clock_test ages       no Kafka needed: a broker that is not there
 *                              from the start, then librdkafka's mock
 *                              cluster going down while records wait.
 *                              Checks the backlog counts the stored events
 *                              before any connection, the oldest
 *                              undelivered age never goes negative when the
 *                              clock steps back 3 h (and says when it was
 *                              clamped), and the catch-up ETA is -1 (not a
 *                              finite, growing number) while nothing drains.
 *   sync_clock_test tsrefuse   a real Kafka (SLUICE_TEST_KAFKA_BOOTSTRAP,
 *                              scripts/harness run; 77 without): a topic
 *                              with message.timestamp.after.max.ms = 60 s
 *                              and a node clock 2 days ahead. Every record
 *                              is refused: the refusal is recognised
 *                              (INVALID_TIMESTAMP in last_error, counted,
 *                              blocked), the skew is estimated (~ +2 d);
 *                              then with record_timestamp broker_estimate
 *                              every event arrives exactly once
 *                              (read_committed), with a timestamp the broker
 *                              accepts and the event's own time in the value.
 *
 * Every wait polls a condition with a deadline.
 */
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/common.h"
#include "sync/sync.h"
#include "tests/sync/sync_inproc.h"

#define HOUR_NS 3600000000000ll
#define DAY_NS (24 * HOUR_NS)

static _Atomic int64_t clock_offset_ns; /* the uplink's clock - real time */
static int64_t base_ns;                 /* event time of offset 0 */

static int64_t node_clock(void *opaque) {
  (void)opaque;
  return sl_now_wall_ns() + atomic_load(&clock_offset_ns);
}

/* Stores readings from..from+n-1 (value = offset, time = base + k ms). */
static void fill(sl_store_t *st, uint32_t id, uint32_t from, uint32_t n) {
  inproc_fill(st, id, from, n, base_ns);
}

static sl_store_t *open_store(uint32_t *id) {
  return inproc_store_open("sync_clock", 1, id);
}

static sl_sync_t *uplink(sl_store_t *st, const char *brokers, const char *node,
                         const char *topic, const char *ckpt, int ts_mode,
                         const char *const *props, size_t nprops) {
  char e[256];
  sl_sync_opts_t o;
  static sl_sync_stream_conf_t stc;
  stc.name = "readings";
  stc.topic = topic;
  sl_sync_opts_init(&o);
  o.node_id = node;
  o.brokers = brokers;
  o.checkpoint_topic = ckpt;
  o.streams = &stc;
  o.nstreams = 1;
  o.txn_timeout_ms = 10000;
  o.props = props;
  o.nprops = nprops;
  o.backlog_threshold = 0;
  o.record_timestamp = ts_mode;
  o.wall_clock_ns = node_clock;
  sl_sync_t *up;
  CHECK(sl_sync_new(st, &o, &up, e, sizeof(e)) == 0, "sync: %s", e);
  CHECK(sl_sync_start(up) == 0, "start");
  return up;
}

/* A loopback port nothing listens on (bound, then closed). */
static int dead_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t al = sizeof(a);
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &al) == 0,
        "port");
  close(fd);
  return ntohs(a.sin_port);
}

/* ---- ages ------------------------------------------------------------- */

static int scenario_ages(void) {
  uint32_t id;
  sl_store_t *st = open_store(&id);
  sl_sync_stats_t s;
  char brokers[64];
  base_ns = sl_now_wall_ns() - 60 * 1000000000ll; /* a minute old */
  fill(st, id, 0, 1000);

  /* 1. The broker is unreachable from the start. */
  snprintf(brokers, sizeof(brokers), "127.0.0.1:%d", dead_port());
  sl_sync_t *up =
      uplink(st, brokers, "clock-node", "clock", "clock.ckpt", 0, NULL, 0);
  uint64_t deadline = sl_now_mono_ns() + 10000000000ull;
  for (;;) {
    sl_sync_stats(up, &s);
    if (s.streams[0].backlog_events == 1000 && s.streams[0].oldest_age_s > 0)
      break;
    CHECK(sl_now_mono_ns() < deadline,
          "unreachable broker: backlog_events %" PRIu64
          " of 1000 stored, oldest age %.1f s",
          s.streams[0].backlog_events, s.streams[0].oldest_age_s);
    usleep(50000); /* polling the counters, with a deadline */
  }
  double age0 = s.streams[0].oldest_age_s;
  printf("unreachable: backlog %" PRIu64 ", age %.1f s, eta %.0f\n",
         s.streams[0].backlog_events, age0, s.streams[0].eta_s);
  CHECK(age0 >= 59 && age0 < 120, "age %.1f s, the events are a minute old",
        age0);
  CHECK(s.streams[0].eta_s == -1, "eta %.1f while nothing is delivered",
        s.streams[0].eta_s);

  /* 2. The node's clock steps back 3 h: the age keeps growing. */
  atomic_store(&clock_offset_ns, -3 * HOUR_NS);
  uint64_t until = sl_now_mono_ns() + 1500000000ull;
  double last = age0;
  while (sl_now_mono_ns() < until) {
    sl_sync_stats(up, &s);
    CHECK(s.streams[0].oldest_age_s >= last,
          "after a -3 h step the oldest age went from %.1f to %.1f s", last,
          s.streams[0].oldest_age_s);
    CHECK(s.streams[0].eta_s == -1, "eta %.1f", s.streams[0].eta_s);
    last = s.streams[0].oldest_age_s;
    usleep(100000); /* sampling the gauge over 1.5 s */
  }
  printf("after -3 h: age %.1f s (clamped %d)\n", last,
         s.streams[0].age_clamped);
  sl_sync_free(up);

  /* 3. An uplink started after the step: the events' times are 3 h ahead
   * of its clock. Age 0, and it says it was clamped. */
  up = uplink(st, brokers, "clock-node", "clock", "clock.ckpt", 0, NULL, 0);
  deadline = sl_now_mono_ns() + 10000000000ull;
  for (;;) {
    sl_sync_stats(up, &s);
    CHECK(s.streams[0].oldest_age_s >= 0 && s.streams[0].oldest_age_s < 60,
          "a fresh uplink after the step: oldest age %.1f s",
          s.streams[0].oldest_age_s);
    if (s.streams[0].backlog_events == 1000 && s.streams[0].age_clamped)
      break;
    CHECK(sl_now_mono_ns() < deadline, "age not reported as clamped");
    usleep(50000); /* polling the counters, with a deadline */
  }
  sl_sync_free(up);
  atomic_store(&clock_offset_ns, 0);

  /* 4. Delivering to the mock cluster, which then goes down while 1000
   * more events wait: the ETA turns -1 and stays there. */
  const char *const topics[] = {"clock", "clock.ckpt", NULL};
  inproc_mock_t mock;
  int rc = inproc_mock_new(&mock, 3, topics, "sync_clock_test");
  if (rc)
    return rc;
  rd_kafka_mock_cluster_t *mc = mock.mc;
  const char *props[] = {"message.timeout.ms=3000", "retry.backoff.ms=50",
                         "socket.timeout.ms=3000"};
  up = uplink(st, mock.brokers, "clock-node", "clock", "clock.ckpt", 0, props,
              SL_ARRAY_SIZE(props));
  deadline = sl_now_mono_ns() + 60000000000ull;
  for (;;) {
    sl_sync_stats(up, &s);
    if (s.streams[0].live_next >= 1000 && s.streams[0].backlog_events == 0)
      break;
    CHECK(sl_now_mono_ns() < deadline, "mock: %" PRIu64 " delivered (%s)",
          s.streams[0].live_next, s.last_error_text);
    usleep(50000); /* polling the counters, with a deadline */
  }
  CHECK(s.streams[0].eta_s == 0 && s.streams[0].oldest_age_s == 0,
        "caught up: eta %.1f, age %.1f", s.streams[0].eta_s,
        s.streams[0].oldest_age_s);
  for (int b = 1; b <= 3; b++)
    rd_kafka_mock_broker_set_down(mc, b);
  fill(st, id, 1000, 1000);
  uint64_t t_down = sl_now_mono_ns();
  double eta_max = -1;
  deadline = t_down + 10000000000ull;
  for (;;) { /* -1 within 10 s, after the stall window */
    sl_sync_stats(up, &s);
    if (s.streams[0].eta_s > eta_max)
      eta_max = s.streams[0].eta_s;
    /* The stall window is 3 s: a delivery just before the brokers went
     * down may give an ETA until then. */
    if (s.streams[0].eta_s == -1 && s.streams[0].backlog_events == 1000 &&
        sl_now_mono_ns() - t_down > 3500000000ull)
      break;
    CHECK(sl_now_mono_ns() < deadline,
          "brokers down for 10 s: eta %.1f s, backlog %" PRIu64
          ", drain %.1f/s",
          s.streams[0].eta_s, s.streams[0].backlog_events,
          s.streams[0].drain_rate);
    usleep(100000); /* polling the counters, with a deadline */
  }
  printf("down: eta -1 after %.1f s (highest before: %.1f)\n",
         (double)(sl_now_mono_ns() - t_down) / 1e9, eta_max);
  until = sl_now_mono_ns() + 4000000000ull;
  while (sl_now_mono_ns() < until) { /* and stays -1 */
    sl_sync_stats(up, &s);
    CHECK(s.streams[0].eta_s == -1 && s.streams[0].oldest_age_s >= 0,
          "stalled: eta %.3g s, age %.1f s, drain %.3g/s", s.streams[0].eta_s,
          s.streams[0].oldest_age_s, s.streams[0].drain_rate);
    usleep(200000); /* sampling the gauge over 4 s */
  }
  for (int b = 1; b <= 3; b++)
    rd_kafka_mock_broker_set_up(mc, b);
  deadline = sl_now_mono_ns() + 60000000000ull;
  for (;;) {
    sl_sync_stats(up, &s);
    if (s.streams[0].live_next >= 2000 && s.streams[0].backlog_events == 0)
      break;
    CHECK(sl_now_mono_ns() < deadline, "mock back: %" PRIu64 " delivered (%s)",
          s.streams[0].live_next, s.last_error_text);
    usleep(50000); /* polling the counters, with a deadline */
  }
  sl_sync_free(up);
  inproc_mock_free(&mock);
  inproc_store_remove(st);
  printf("sync_clock_test ages: ok\n");
  return 0;
}

/* ---- tsrefuse ----------------------------------------------------------- */

static void create_topic(const char *brokers, const char *topic) {
  char e[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  CHECK(!rd_kafka_conf_set(conf, "bootstrap.servers", brokers, e, sizeof(e)),
        "%s", e);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
  CHECK(rk, "admin: %s", e);
  rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, 1, 1, e, sizeof(e));
  CHECK(nt, "%s", e);
  /* Records stamped more than a minute ahead of the broker are refused. */
  rd_kafka_NewTopic_set_config(nt, "message.timestamp.after.max.ms", "60000");
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
  CHECK(ev && !rd_kafka_event_error(ev), "create topic %s: %s", topic,
        ev ? rd_kafka_event_error_string(ev) : "timed out");
  size_t n = 0;
  const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
      rd_kafka_event_CreateTopics_result(ev), &n);
  CHECK(n == 1 && !rd_kafka_topic_result_error(res[0]), "create topic %s: %s",
        topic, n ? rd_kafka_topic_result_error_string(res[0]) : "no result");
  rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_destroy(rk);
}

/* A record read back (read_committed): the stored event with its own time
 * in the value, a timestamp near the broker's clock. */
static void check_record(const rd_kafka_message_t *m, uint64_t off,
                         const Sluice__V1__Event *ev) {
  CHECK(ev && ev->reading && ev->reading->double_value == (double)off &&
            ev->time_ns == base_ns + (int64_t)off * 1000000,
        "offset %" PRIu64 ": not the stored event with its own time", off);
  int64_t ts = rd_kafka_message_timestamp(m, NULL);
  int64_t real_ms = sl_now_wall_ns() / 1000000;
  CHECK(llabs(ts - real_ms) < 600000,
        "offset %" PRIu64 ": record timestamp %" PRId64
        " ms, %.0f s from the broker's clock",
        off, ts, (double)(ts - real_ms) / 1e3);
}

static int scenario_tsrefuse(void) {
  const char *brokers = getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (!brokers || !*brokers) {
    printf("sync_clock_test: SKIP: no SLUICE_TEST_KAFKA_BOOTSTRAP "
           "(scripts/harness run)\n");
    return 77;
  }
  char topic[64], ckpt[64], node[64];
  snprintf(topic, sizeof(topic), "tsref.%d", (int)getpid());
  snprintf(ckpt, sizeof(ckpt), "tsref.ckpt.%d", (int)getpid());
  snprintf(node, sizeof(node), "tsref-%d", (int)getpid());
  create_topic(brokers, topic);
  enum { N = 2000 };
  uint32_t id;
  sl_store_t *st = open_store(&id);
  base_ns = sl_now_wall_ns();
  fill(st, id, 0, N);
  atomic_store(&clock_offset_ns, 2 * DAY_NS); /* the node runs 2 days ahead */

  /* 1. Records stamped with the node's clock: refused, and said so. */
  sl_sync_t *up =
      uplink(st, brokers, node, topic, ckpt, SL_SYNC_TS_NODE, NULL, 0);
  sl_sync_stats_t s;
  uint64_t deadline = sl_now_mono_ns() + 90000000000ull;
  for (;;) {
    sl_sync_stats(up, &s);
    CHECK(s.streams[0].delivered == 0, "%" PRIu64 " delivered at +2 d",
          s.streams[0].delivered);
    if (s.ts_refused > 0 && s.ts_blocked && s.skew_known &&
        strstr(s.last_error_text, "INVALID_TIMESTAMP"))
      break;
    CHECK(sl_now_mono_ns() < deadline,
          "refusal not recognised in 90 s: refused %" PRIu64
          ", blocked %d, skew known %d, last error: %s",
          s.ts_refused, s.ts_blocked, s.skew_known, s.last_error_text);
    usleep(100000); /* polling the counters, with a deadline */
  }
  printf("node clock +2 d: %" PRIu64 " refused, skew %.1f s, \"%s\"\n",
         s.ts_refused, s.skew_s, s.last_error_text);
  CHECK(fabs(s.skew_s - 2 * 86400) < 120, "skew %.1f s, not about +2 d",
        s.skew_s);
  CHECK(s.streams[0].backlog_events == N, "backlog %" PRIu64 " of %d",
        s.streams[0].backlog_events, N);
  sl_sync_free(up);

  /* 2. broker_estimate: the same clock, everything arrives once. */
  up = uplink(st, brokers, node, topic, ckpt, SL_SYNC_TS_BROKER, NULL, 0);
  deadline = sl_now_mono_ns() + 90000000000ull;
  for (;;) {
    sl_sync_stats(up, &s);
    if (s.streams[0].live_next >= N && s.streams[0].backlog_events == 0)
      break;
    CHECK(sl_now_mono_ns() < deadline,
          "broker_estimate: %" PRIu64 " of %d delivered in 90 s (%s)",
          s.streams[0].live_next, N, s.last_error_text);
    usleep(100000); /* polling the counters, with a deadline */
  }
  CHECK(!s.ts_blocked, "still blocked after delivering");
  printf("broker_estimate: %" PRIu64 " delivered, skew %.1f s\n",
         s.streams[0].delivered, s.skew_s);
  sl_sync_free(up);

  uint32_t *count = calloc(N, sizeof(uint32_t));
  CHECK(count, "calloc");
  inproc_consume(brokers, topic, 1, N, count, check_record);
  uint32_t missing = 0, dups = 0;
  for (uint32_t k = 0; k < N; k++) {
    missing += count[k] == 0;
    dups += count[k] > 1 ? count[k] - 1 : 0;
  }
  CHECK(!missing && !dups, "%u missing, %u duplicates", missing, dups);
  free(count);
  inproc_store_remove(st);
  printf("sync_clock_test tsrefuse: %d events exactly once: ok\n", N);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "ages"))
    return scenario_ages();
  if (argc > 1 && !strcmp(argv[1], "tsrefuse"))
    return scenario_tsrefuse();
  fprintf(stderr, "usage: sync_clock_test ages|tsrefuse\n");
  return 2;
}
