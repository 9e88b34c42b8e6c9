/*
 * No duplicate from a broker restart (issue 23), end to end: a PRIVATE
 * Mosquitto (persistence on, started and restarted on its port with
 * scripts/mosquitto.sh), the harness's Kafka (exit 77 = skipped without it):
 *
 *   redeliver_test SLUICE MOSQUITTO_SH redeliver
 *       rounds of QoS 1 load queued for sluice's persistent session; while
 *       sluice drains each round, Mosquitto is restarted (same port, data
 *       kept) and sluice is killed -9. Every published id must reach Kafka
 *       exactly once (read_committed consumer), and the redeliveries sluice
 *       recognised are counted.
 *
 *   redeliver_test SLUICE MOSQUITTO_SH dedupe
 *       streams[].dedupe_key attr.msg_id with a 10 s window: ids replayed
 *       within the window (over HTTP, and over MQTT after a kill -9 of
 *       sluice) are dropped and counted in sluice_ingest_duplicates_total;
 *       replayed after the window they are kept. Checked in the store.
 *
 * Every loop is bounded in count and time.
 */
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <mosquitto.h>

#include "sluice/v1/event.pb-c.h"
#include "tests/common/daemon_fixture.h"
#include "tests/mqtt/private_mosquitto.h"

#define ROUNDS 6       /* restart + kill -9 rounds */
#define PER_ROUND 4000 /* ids queued per round */
#define TOTAL (ROUNDS * PER_ROUND + PER_ROUND)

static const char *kafka;
static int mqtt_port;
static char prefix[64];
static int seen[TOTAL];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int sh(const char *fmt, ...) {
  char cmd[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  return system(cmd);
}

/* The daemon (log appended) ready and subscribed. */
static const daemon_opts_t subscribed = {
    .until = "mqtt subscribed", .append_log = 1, .timeout_ms = 30000};

#define EVENTS "sluice_ingest_events_total{path=\"mqtt\",stream=\"readings\"}"
#define REDELIVERED "sluice_mqtt_redeliveries_dropped_total"

static double redelivered_now(void) {
  double v = metric(REDELIVERED);
  return v > 0 ? v : 0;
}

/* Waits until this daemon process stored at least n MQTT events (polled
 * every 2 ms: the broker restart is meant to fall mid-drain). */
static void await_events(double n, int timeout_ms) {
  await_metric_ge_every(EVENTS, n, timeout_ms, 2);
}

/* ---- the publisher; the broker is stable while it runs ------------------ */

/* It publishes at QoS 2 so that the broker accepts every id exactly once
 * (sluice subscribes at QoS 1 and gets them at QoS 1): a QoS 1 publisher
 * may send a message again (seen here: 20 ids twice in about one run of
 * six under ASan), a new message for sluice, which is the dedupe window's
 * case and not what this test is about. */

#define WINDOW 100 /* publisher flows outstanding at most */
static _Atomic int acked;
static int pub_from;                      /* id of the first message, mid 1 */
static unsigned char broker_acked[TOTAL]; /* the broker completed its QoS 2 */
static void on_pub(struct mosquitto *m, void *o, int mid) {
  (void)m;
  (void)o;
  /* A fresh client numbers its messages 1, 2, ... (checked below). */
  if (mid >= 1 && pub_from + mid - 1 < TOTAL)
    broker_acked[pub_from + mid - 1] = 1;
  acked++;
}

static void publish_ids(int from, int to) {
  /* QoS 2: see above. */
  char topic[128], msg[64];
  struct mosquitto *m = mosquitto_new(NULL, true, NULL);
  CHECK(m, "mosquitto_new");
  mosquitto_publish_callback_set(m, on_pub);
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  CHECK(mosquitto_connect(m, "127.0.0.1", mqtt_port, 30) == 0, "connect");
  CHECK(mosquitto_loop_start(m) == 0, "loop_start");
  acked = 0;
  pub_from = from;
  snprintf(topic, sizeof(topic), "%s/ids/m1", prefix);
  uint64_t deadline = now_ms() + 60000;
  for (int i = from; i < to; i++) {
    int mid = 0;
    /* At most WINDOW flows outstanding: libmosquitto's own queue beyond the
     * broker's receive maximum is where flows once stalled. */
    while (i - from - acked >= WINDOW && now_ms() < deadline)
      usleep(1000); /* polling a counter, with a deadline */
    snprintf(msg, sizeof(msg), "{\"v\":%d}", i);
    CHECK(mosquitto_publish(m, &mid, topic, (int)strlen(msg), msg, 2, false) ==
              0,
          "publish %d", i);
    CHECK(mid == i - from + 1, "message %d got mid %d", i, mid);
  }
  /* The publisher's QoS 2 flows with the broker: in CI a few (10 of 4000)
   * once never completed within 60 s, a matter between this test's client
   * and Mosquitto. Ids the broker never acknowledged may or may not reach
   * sluice; the check below requires every acknowledged one exactly once,
   * and no id twice. */
  while (acked < to - from && now_ms() < deadline)
    usleep(5000); /* polling a counter, with a deadline */
  if (acked < to - from)
    printf("publisher: %d of %d acknowledged by the broker after 60 s; the "
           "others are not required to arrive\n",
           acked, to - from);
  mosquitto_disconnect(m);
  mosquitto_loop_stop(m, false);
  mosquitto_destroy(m);
}

/* ---- Kafka ----------------------------------------------------------------
 */

/* Returns 1 when the record carries a broker-acknowledged id not seen
 * before. */
static int consume_one(const rd_kafka_message_t *m) {
  int fresh = 0;
  Sluice__V1__Event *e = sluice__v1__event__unpack(NULL, m->len, m->payload);
  CHECK(e, "protobuf record");
  if (e->body_case == SLUICE__V1__EVENT__BODY_READING) {
    Sluice__V1__Reading *r = e->reading;
    int64_t id = r->value_case == SLUICE__V1__READING__VALUE_INT_VALUE
                     ? r->int_value
                     : (int64_t)r->double_value;
    CHECK(id >= 0 && id < TOTAL, "id %lld", (long long)id);
    fresh = seen[id]++ == 0 && broker_acked[id];
  }
  sluice__v1__event__free_unpacked(e, NULL);
  return fresh;
}

/* True when the consumer's position is at the high watermark of every
 * assigned partition (read_committed: past the last transaction). */
static bool at_end(rd_kafka_t *rk) {
  rd_kafka_topic_partition_list_t *parts = NULL;
  bool end = true;
  if (rd_kafka_assignment(rk, &parts) || !parts || parts->cnt == 0 ||
      rd_kafka_position(rk, parts)) {
    if (parts)
      rd_kafka_topic_partition_list_destroy(parts);
    return false;
  }
  for (int i = 0; i < parts->cnt && end; i++) {
    int64_t lo, hi;
    if (rd_kafka_query_watermark_offsets(rk, parts->elems[i].topic,
                                         parts->elems[i].partition, &lo, &hi,
                                         5000) ||
        parts->elems[i].offset < hi)
      end = false;
  }
  rd_kafka_topic_partition_list_destroy(parts);
  return end;
}

static void consume(const char *topic) {
  char err[512], group[128];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  snprintf(group, sizeof(group), "%s-check", prefix);
  CHECK(rd_kafka_conf_set(conf, "bootstrap.servers", kafka, err, sizeof(err)) ==
                RD_KAFKA_CONF_OK &&
            rd_kafka_conf_set(conf, "group.id", group, err, sizeof(err)) ==
                RD_KAFKA_CONF_OK &&
            rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", err,
                              sizeof(err)) == RD_KAFKA_CONF_OK &&
            rd_kafka_conf_set(conf, "enable.partition.eof", "true", err,
                              sizeof(err)) == RD_KAFKA_CONF_OK &&
            rd_kafka_conf_set(conf, "isolation.level", "read_committed", err,
                              sizeof(err)) == RD_KAFKA_CONF_OK,
        "conf: %s", err);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  CHECK(rk, "consumer: %s", err);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t *tl = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(tl, topic, RD_KAFKA_PARTITION_UA);
  CHECK(rd_kafka_subscribe(rk, tl) == 0, "subscribe");
  rd_kafka_topic_partition_list_destroy(tl);
  /* Done at the first end of the partition reached after every id was seen
   * and sluice's backlog was empty: a duplicate stored by sluice is before
   * that end. */
  uint64_t deadline = now_ms() + 120000;
  int distinct = 0, need = 0;
  bool drained = false;
  for (int i = 0; i < TOTAL; i++)
    need += broker_acked[i];
  for (;;) {
    CHECK(now_ms() < deadline,
          "%d of %d broker-acknowledged ids in Kafka %s after 120 s", distinct,
          need, topic);
    if (!drained && distinct == need &&
        metric("sluice_uplink_backlog_events{stream=\"readings\"}") == 0)
      drained = true;
    if (drained && at_end(rk))
      break;
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      rd_kafka_message_destroy(m);
      continue;
    }
    if (!m->err)
      distinct += consume_one(m);
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

static void write_config_dedupe(void) {
  write_config_fmt(
      "node:\n  id: dedupe-test\n  data_dir: %s\n"
      "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
      "  http:\n    address: \"127.0.0.1:0\"\n"
      "admin:\n  address: \"127.0.0.1:0\"\n"
      "log:\n  level: info\n"
      "mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: %d\n"
      "  client_id: \"%s-sluice\"\n  reconnect_min: 50ms\n"
      "  reconnect_max: 300ms\n"
      "  subscriptions:\n    - filter: %s/ev\n      stream: readings\n"
      "      decoder: event\n"
      "streams:\n  - name: readings\n    dedupe_key: attr.msg_id\n"
      "    dedupe_window: 10s\n    dedupe_max_keys: 1000\n",
      data_dir, mqtt_port, prefix, prefix);
}

static void write_config_ids(const char *topic) {
  write_config_fmt(
      "node:\n  id: redeliver-test\n  data_dir: %s\n"
      "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
      "  http:\n    address: \"127.0.0.1:0\"\n"
      "admin:\n  address: \"127.0.0.1:0\"\n"
      "log:\n  level: info\n"
      "kafka:\n  enabled: true\n  brokers: \"%s\"\n"
      "  checkpoint_topic: %s-ckpt\n"
      "mqtt:\n  enabled: true\n  host: 127.0.0.1\n  port: %d\n"
      "  client_id: \"%s-sluice\"\n  reconnect_min: 50ms\n"
      "  reconnect_max: 300ms\n"
      "  subscriptions:\n    - filter: %s/ids/+m\n      stream: readings\n"
      "      source: \"{m}\"\n      json_value: v\n      qos: 1\n"
      "streams:\n  - name: readings\n    topic: %s\n    format: protobuf\n",
      data_dir, kafka, prefix, mqtt_port, prefix, prefix, topic);
}

SL_SCENARIO(redeliver) {
  char topic[128];
  snprintf(topic, sizeof(topic), "%s-ids", prefix);
  mqtt_port = private_mosq_start();
  write_config_ids(topic);
  daemon_start(&subscribed); /* creates the persistent session */
  double redelivered = 0;
  for (int r = 0; r < ROUNDS; r++) {
    /* sluice is away: the broker queues the round for its session. */
    stop_daemon(daemon_pid, r == 0 ? SIGTERM : SIGKILL);
    publish_ids(r * PER_ROUND, (r + 1) * PER_ROUND);
    daemon_start(&subscribed);
    /* Mid-drain: the broker goes down with PUBACKs in flight... */
    await_events(PER_ROUND / 8, 30000);
    private_mosq("restart");
    /* ...and sluice dies with committed messages not yet acknowledged. */
    await_events(PER_ROUND / 2, 30000);
    redelivered += redelivered_now();
  }
  stop_daemon(daemon_pid, SIGKILL);
  publish_ids(ROUNDS * PER_ROUND, TOTAL);
  daemon_start(&subscribed);
  consume(topic);
  redelivered += redelivered_now();
  int st = stop_daemon(daemon_pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
  private_mosq("stop");
  int missing = 0, dups = 0, unacked = 0;
  for (int i = 0; i < TOTAL; i++) {
    missing += seen[i] == 0 && broker_acked[i];
    unacked += !broker_acked[i];
    dups += seen[i] > 1 ? seen[i] - 1 : 0;
  }
  CHECK(unacked <= TOTAL / 100, "%d ids not acknowledged by the broker",
        unacked);
  printf("redeliver: %d rounds (Mosquitto restart + kill -9 each), %d ids, "
         "%d missing, %d duplicates in Kafka, %.0f redeliveries recognised\n",
         ROUNDS, TOTAL, missing, dups, redelivered);
  CHECK(missing == 0 && dups == 0, "%d missing, %d duplicates", missing, dups);
}

/* ---- the dedupe window ----------------------------------------------------
 */

/* Events with ids [from, to) as JSON lines, attribute msg_id = id. */
static char *events_json(int from, int to) {
  size_t cap = (size_t)(to - from) * 128 + 1, len = 0;
  char *b = malloc(cap);
  CHECK(b, "malloc");
  b[0] = 0;
  for (int i = from; i < to; i++)
    len += (size_t)snprintf(b + len, cap - len,
                            "{\"source\":\"dd/m1\",\"value\":%d,"
                            "\"attributes\":{\"msg_id\":\"id-%d\"}}\n",
                            i, i);
  return b;
}

static void post_http(int from, int to) {
  char path[400];
  char *body = events_json(from, to);
  FILE *f;
  snprintf(path, sizeof(path), "%s/body.jsonl", dir);
  CHECK((f = fopen(path, "w")) && fputs(body, f) >= 0, "body");
  fclose(f);
  free(body);
  CHECK(sh("curl -sS -f -o /dev/null -H 'Content-Type: application/x-ndjson' "
           "--data-binary @%s 'http://127.0.0.1:%d/v1/events?stream=readings'",
           path, http_port) == 0,
        "POST ids %d..%d", from, to - 1);
}

/* One QoS 1 message carrying ids [from, to) (decoder event). */
static void publish_events(int from, int to) {
  char topic[128];
  char *body = events_json(from, to);
  struct mosquitto *m = mosquitto_new(NULL, true, NULL);
  CHECK(m, "mosquitto_new");
  mosquitto_publish_callback_set(m, on_pub);
  CHECK(mosquitto_connect(m, "127.0.0.1", mqtt_port, 30) == 0, "connect");
  CHECK(mosquitto_loop_start(m) == 0, "loop_start");
  acked = 0;
  snprintf(topic, sizeof(topic), "%s/ev", prefix);
  CHECK(mosquitto_publish(m, NULL, topic, (int)strlen(body), body, 1, false) ==
            0,
        "publish");
  uint64_t deadline = now_ms() + 30000;
  while (acked < 1) {
    CHECK(now_ms() < deadline, "publisher: not acked by the broker");
    usleep(5000);
  }
  mosquitto_disconnect(m);
  mosquitto_loop_stop(m, false);
  mosquitto_destroy(m);
  free(body);
}

#define DUPS "sluice_ingest_duplicates_total{stream=\"readings\"}"
#define EVENTS_HTTP                                                            \
  "sluice_ingest_events_total{path=\"http\",stream=\"readings\"}"

SL_SCENARIO(dedupe) {
  int counts[100] = {0};
  char line[512];
  FILE *p;
  mqtt_port = private_mosq_start();
  write_config_dedupe();
  daemon_start(&subscribed);
  uint64_t t0 = now_ms();
  post_http(0, 100);
  /* Within the window: HTTP replays of 0..49 are dropped. */
  post_http(0, 50);
  await_metric_ge_every(DUPS, 50, 10000, 5);
  /* The window survives kill -9: MQTT replays of 50..99 are dropped. */
  stop_daemon(daemon_pid, SIGKILL);
  daemon_start(&subscribed);
  publish_events(50, 100);
  await_metric_ge_every(DUPS, 50, 10000, 5);
  uint64_t within = now_ms() - t0;
  CHECK(within < 10000,
        "the replays took %llu ms, longer than the window: machine too slow",
        (unsigned long long)within);
  /* After the window (10 s from the first post; the node clock is the
   * window's clock): everything is kept again. */
  while (now_ms() < t0 + 11000)
    usleep(50000); /* waiting for time to pass, not for a condition */
  post_http(0, 100);
  await_metric_ge_every(EVENTS_HTTP, 100, 10000, 5);
  CHECK(metric(DUPS) == 50, "%g duplicates counted after the window",
        metric(DUPS));
  int st = stop_daemon(daemon_pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
  private_mosq("stop");
  snprintf(line, sizeof(line), "%s store dump -d %s --stream readings",
           sluice_bin, data_dir);
  CHECK((p = popen(line, "r")), "store dump");
  while (fgets(line, sizeof(line), p)) {
    const char *v = strstr(line, "\"value\":");
    int id;
    if (v && sscanf(v, "\"value\":%d", &id) == 1 && id >= 0 && id < 100)
      counts[id]++;
  }
  pclose(p);
  for (int i = 0; i < 100; i++)
    CHECK(counts[i] == 2,
          "id %d stored %d times (want 2: once, and again "
          "after the window)",
          i, counts[i]);
  printf("dedupe: 100 ids; 50 HTTP replays and (after kill -9) 50 MQTT "
         "replays within the window dropped and counted; 100 replays after "
         "the window kept\n");
}

/* PROG SLUICE MOSQUITTO_SH SCENARIO: skips (77) without what the scenario
 * needs. */
static int setup(int argc, char **argv) {
  (void)argc;
  int dedupe = !strcmp(fixture_scenario, "dedupe");
  kafka = getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (dedupe && system("curl --version >/dev/null") != 0) {
    printf("SKIP: no curl\n");
    return 77;
  }
  if ((!dedupe && (!kafka || !*kafka)) ||
      access("/usr/sbin/mosquitto", X_OK) != 0) {
    printf(
        "SKIP: no harness Kafka or no mosquitto (run under scripts/harness)\n");
    return 77;
  }
  private_mosq_init(argv[2], "mosquitto");
  snprintf(prefix, sizeof(prefix), "rd%d-%ld", (int)getpid(), (long)time(NULL));
  fixture_on_fail = private_mosq_stop_quiet;
  mosquitto_lib_init();
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "redeliver", "MOSQUITTO_SH", setup);
}
