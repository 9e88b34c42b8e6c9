/*
 * What the uplink reports (sl_sync_stats(), the source of /v1/status and
 * /metrics) must be true (issue 23), in process against librdkafka's mock
 * cluster or a closed port:
 *
 *   sync_status_test outage [eos|alo]  delivering, then the only broker
 *                                      goes down and comes back while the
 *                                      uplink is idle: "running" never
 *                                      shows with connected false, the
 *                                      hint "incorrect security.protocol
 *                                      (SSL listener?)" is not the
 *                                      warning, and once the broker is
 *                                      back state, connected and
 *                                      last_error say so without a new
 *                                      event
 *   sync_status_test stop              brokers on a closed loopback port:
 *                                      sl_sync_stop() from inside
 *                                      init_transactions returns within
 *                                      2 s (docs/DELIVERY.md "Stopping")
 *   sync_status_test stopmid [eos|alo] delivering, then the broker goes
 *                                      down with records in flight: stop
 *                                      within 8 s (it waited for the
 *                                      commit, up to transaction.timeout.ms)
 *   sync_status_test explain           sl_sync_explain_error()'s words
 *
 * Skips (77) only when the mock cluster cannot be created.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/common.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"
#include "sync/sync.h"
#include "tests/sync/sync_inproc.h"

static const char HINT[] = "security.protocol is correctly";
static const char HINT2[] = "incorrect security.protocol";

/* Stores n readings in one batch. */
static void fill(sl_store_t *st, uint32_t id, uint32_t n) {
  Sluice__V1__EventBatch eb = SLUICE__V1__EVENT_BATCH__INIT;
  Sluice__V1__Event evs[100], *evp[100];
  Sluice__V1__Reading rd[100];
  CHECK(n <= 100, "n");
  for (uint32_t i = 0; i < n; i++) {
    sluice__v1__event__init(&evs[i]);
    sluice__v1__reading__init(&rd[i]);
    evs[i].source = "site/s1";
    evs[i].time_ns = sl_now_wall_ns();
    rd[i].value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    rd[i].double_value = i;
    evs[i].body_case = SLUICE__V1__EVENT__BODY_READING;
    evs[i].reading = &rd[i];
    evp[i] = &evs[i];
  }
  eb.n_events = n;
  eb.events = evp;
  size_t len = sluice__v1__event_batch__get_packed_size(&eb);
  uint8_t *buf = malloc(len);
  CHECK(buf, "malloc");
  sluice__v1__event_batch__pack(&eb, buf);
  sl_store_batch_t *bt;
  sl_store_group_t *g;
  CHECK(sl_store_batch_new(st, id, buf, len, n, evs[0].time_ns,
                           evs[n - 1].time_ns, &bt) == 0 &&
            sl_store_group_new(st, &g) == 0 && sl_store_group_add(g, bt) == 0 &&
            sl_store_group_commit(g, NULL, 0) == 0,
        "store batch");
  free(buf);
}

static sl_store_t *open_store(uint32_t *id) {
  return inproc_store_open("sync_status", 0, id);
}

/* The snapshot's state and connection agree; the warning tells no tale. */
static void check_agree(const sl_sync_stats_t *s) {
  CHECK(!(s->state == SL_SYNC_RUNNING && !s->connected),
        "state running while connected is false (%s)", s->last_error_text);
  CHECK(!strstr(s->last_error_text, HINT) && !strstr(s->last_error_text, HINT2),
        "librdkafka's security.protocol hint after a working connection: %s",
        s->last_error_text);
}

static int outage(bool alo, bool stop_mid) {
  char e[256];
  const char *const topics[] = {"mock-readings", "sluice.checkpoints", NULL};
  inproc_mock_t mock;
  int rc = inproc_mock_new(&mock, 1, topics, "sync_status_test");
  if (rc)
    return rc;
  rd_kafka_mock_cluster_t *mc = mock.mc;
  const char *brokers = mock.brokers;
  uint32_t id;
  sl_store_t *st = open_store(&id);
  fill(st, id, 100);

  sl_sync_opts_t o;
  sl_sync_stream_conf_t stc = {.name = "readings", .topic = "mock-readings"};
  const char *props[] = {"socket.timeout.ms=3000"};
  sl_sync_opts_init(&o);
  o.node_id = "status-node";
  o.brokers = brokers;
  o.at_least_once = alo;
  o.streams = &stc;
  o.nstreams = 1;
  o.txn_timeout_ms = stop_mid ? 60000 : 10000; /* the daemon's */
  o.props = props;
  o.nprops = SL_ARRAY_SIZE(props);
  sl_sync_t *up;
  CHECK(sl_sync_new(st, &o, &up, e, sizeof(e)) == 0, "sync: %s", e);
  CHECK(sl_sync_start(up) == 0, "start");

  sl_sync_stats_t *s = malloc(sizeof(*s));
  CHECK(s, "malloc");
  /* 1. Delivering. */
  uint64_t deadline = sl_now_mono_ns() + 30000000000ull;
  for (;;) {
    sl_sync_stats(up, s);
    check_agree(s);
    if (s->streams[0].delivered >= 100 && s->state == SL_SYNC_RUNNING)
      break;
    CHECK(sl_now_mono_ns() < deadline, "not delivered in 30 s (%s: %s)",
          sl_sync_state_name(s->state), s->last_error_text);
    usleep(20000); /* polling the uplink's snapshot, with a deadline */
  }
  CHECK(s->connected && !s->last_error && !*s->last_error_text,
        "delivering, yet connected %d, last_error '%s'", s->connected,
        s->last_error_text);
  if (stop_mid) {
    /* Records in flight when the broker goes away; the stop must not wait
     * for their transaction (transaction.timeout.ms, 60 s by default). */
    rd_kafka_mock_broker_set_down(mc, 1);
    fill(st, id, 100);
    sl_sync_kick(up);
    usleep(1500000); /* the records reach the producer: not a sync */
    uint64_t t0 = sl_now_mono_ns();
    sl_sync_stop(up, 5000);
    double ms = (double)(sl_now_mono_ns() - t0) / 1e6;
    sl_sync_stats(up, s);
    printf("stop with records in flight, broker down: %.0f ms (%s)\n", ms,
           s->last_error_text);
    CHECK(ms < 8000, "sl_sync_stop took %.0f ms", ms);
    CHECK(s->streams[0].delivered == 100, "delivered %llu",
          (unsigned long long)s->streams[0].delivered);
    sl_sync_free(up);
    free(s);
    inproc_store_remove(st);
    inproc_mock_free(&mock);
    printf("sync_status_test stopmid: ok\n");
    return 0;
  }

  /* 2. The broker goes away: disconnected is reported, never running. */
  rd_kafka_mock_broker_set_down(mc, 1);
  deadline = sl_now_mono_ns() + 20000000000ull;
  uint64_t seen_down = 0;
  for (;;) {
    sl_sync_stats(up, s);
    check_agree(s);
    if (!s->connected && !seen_down)
      seen_down = sl_now_mono_ns();
    /* Watch the down state for 3 s: the errors come and go. */
    if (seen_down && sl_now_mono_ns() - seen_down > 3000000000ull)
      break;
    CHECK(sl_now_mono_ns() < deadline, "the outage not seen in 20 s (%s)",
          sl_sync_state_name(s->state));
    usleep(20000); /* polling the uplink's snapshot, with a deadline */
  }
  printf("down: state %s, last_error '%s'\n", sl_sync_state_name(s->state),
         s->last_error_text);
  CHECK(s->state == SL_SYNC_DISCONNECTED && *s->last_error_text,
        "outage: state %s, last_error '%s'", sl_sync_state_name(s->state),
        s->last_error_text);

  /* 3. Back, while idle: no event needed to say so. */
  rd_kafka_mock_broker_set_up(mc, 1);
  deadline = sl_now_mono_ns() + 20000000000ull;
  for (;;) {
    sl_sync_stats(up, s);
    check_agree(s);
    if (s->state == SL_SYNC_RUNNING && s->connected && !s->last_error &&
        !*s->last_error_text)
      break;
    CHECK(sl_now_mono_ns() < deadline,
          "broker back 20 s, idle uplink says: state %s, connected %d, "
          "last_error '%s'",
          sl_sync_state_name(s->state), s->connected, s->last_error_text);
    usleep(20000); /* polling the uplink's snapshot, with a deadline */
  }
  /* And it delivers. */
  fill(st, id, 100);
  sl_sync_kick(up);
  deadline = sl_now_mono_ns() + 30000000000ull;
  for (;;) {
    sl_sync_stats(up, s);
    check_agree(s);
    if (s->streams[0].delivered >= 200)
      break;
    CHECK(sl_now_mono_ns() < deadline, "second batch not delivered (%s)",
          s->last_error_text);
    usleep(20000); /* polling the uplink's snapshot, with a deadline */
  }
  sl_sync_free(up);
  free(s);
  inproc_store_remove(st);
  inproc_mock_free(&mock);
  printf("sync_status_test outage %s: ok\n", alo ? "alo" : "eos");
  return 0;
}

/* A loopback port that refuses connections: bound, then closed. */
static int closed_port(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t sl = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
            getsockname(fd, (struct sockaddr *)&sa, &sl) == 0,
        "bind");
  close(fd);
  return ntohs(sa.sin_port);
}

static int stop(void) {
  char e[256], brokers[64];
  uint32_t id;
  sl_store_t *st = open_store(&id);
  fill(st, id, 10);
  snprintf(brokers, sizeof(brokers), "127.0.0.1:%d", closed_port());
  sl_sync_opts_t o;
  sl_sync_stream_conf_t stc = {.name = "readings", .topic = "t"};
  sl_sync_opts_init(&o);
  o.node_id = "stop-node";
  o.brokers = brokers;
  o.streams = &stc;
  o.nstreams = 1;
  sl_sync_t *up;
  CHECK(sl_sync_new(st, &o, &up, e, sizeof(e)) == 0, "sync: %s", e);
  CHECK(sl_sync_start(up) == 0, "start");
  sl_sync_stats_t *s = malloc(sizeof(*s));
  CHECK(s, "malloc");
  /* Into init_transactions (it waits up to 30 s for a coordinator). */
  uint64_t deadline = sl_now_mono_ns() + 10000000000ull;
  do {
    sl_sync_stats(up, s);
    CHECK(sl_now_mono_ns() < deadline, "never connecting");
    usleep(20000); /* polling the uplink's snapshot, with a deadline */
  } while (s->state != SL_SYNC_CONNECTING);
  usleep(2500000); /* inside init_transactions, not a synchronisation */
  sl_sync_stats(up, s);
  CHECK(!s->connected && s->state == SL_SYNC_CONNECTING,
        "unreachable: state %s connected %d", sl_sync_state_name(s->state),
        s->connected);
  uint64_t t0 = sl_now_mono_ns();
  sl_sync_stop(up, 2000);
  double ms = (double)(sl_now_mono_ns() - t0) / 1e6;
  printf("stop with the brokers unreachable: %.0f ms\n", ms);
  CHECK(ms < 2000, "sl_sync_stop took %.0f ms", ms);
  sl_sync_free(up);
  free(s);
  inproc_store_remove(st);
  printf("sync_status_test stop: ok\n");
  return 0;
}

static int explain(void) {
  char out[512];
  const char *r = "127.0.0.1:9092/1: Disconnected while requesting "
                  "ApiVersion: might be caused by incorrect "
                  "security.protocol configuration (connecting to a SSL "
                  "listener?) or broker version is < 0.10 (see "
                  "api.version.request) (after 0ms in state "
                  "APIVERSION_QUERY)";
  sl_sync_explain_error(r, 1, out, sizeof(out));
  printf("%s\n", out);
  CHECK(!strstr(out, HINT2) && !strstr(out, "SSL"), "hint kept: %s", out);
  CHECK(strstr(out, "Disconnected while requesting ApiVersion") &&
            strstr(out, "closed the connection"),
        "what is known is lost: %s", out);
  sl_sync_explain_error(r, 0, out, sizeof(out));
  printf("%s\n", out);
  CHECK(strstr(out, "security.protocol") && !strstr(out, "SSL listener?"),
        "never connected: %s", out);
  sl_sync_explain_error("127.0.0.1:1/1: Disconnected: verify that "
                        "security.protocol is correctly configured, broker "
                        "might require SASL authentication (after 620ms in "
                        "state UP)",
                        1, out, sizeof(out));
  printf("%s\n", out);
  CHECK(!strstr(out, "security.protocol") && !strstr(out, "SASL") &&
            strstr(out, "Disconnected: the broker closed") &&
            strstr(out, "(after 620ms in state UP)"),
        "UP hint kept: %s", out);
  const char *plain = "Connect to ipv4#127.0.0.1:1 failed: Connection refused";
  sl_sync_explain_error(plain, 1, out, sizeof(out));
  CHECK(!strcmp(out, plain), "changed: %s", out);
  printf("sync_status_test explain: ok\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "outage"))
    return outage(argc > 2 && !strcmp(argv[2], "alo"), false);
  if (argc > 1 && !strcmp(argv[1], "stopmid"))
    return outage(argc > 2 && !strcmp(argv[2], "alo"), true);
  if (argc > 1 && !strcmp(argv[1], "stop"))
    return stop();
  if (argc > 1 && !strcmp(argv[1], "explain"))
    return explain();
  fprintf(stderr,
          "usage: sync_status_test outage|stopmid [eos|alo]|stop|explain\n");
  return 2;
}
