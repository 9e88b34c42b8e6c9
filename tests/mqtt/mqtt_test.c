/*
 * End-to-end tests of MQTT ingest: the real `sluice run`, the harness's
 * Mosquitto (SLUICE_TEST_MQTT_HOST/PORT; exit 77 = skipped without it),
 * publishers using mosquitto_pub and libmosquitto, and the store read back
 * read-only.
 *
 *   mqtt_test SLUICE basic      JSON (object, array, bare, paths), raw,
 *                               bad inputs counted and dead-lettered
 *   mqtt_test SLUICE restart    sluice stopped while a publisher goes on:
 *                               everything the broker queued arrives
 *   mqtt_test SLUICE kill9      kill -9 sluice in a loop under QoS 1 load:
 *                               every message the broker accepted is stored
 *                               (SL_MQTT_KILL_ROUNDS, default 12)
 *   mqtt_test SLUICE broker     a private Mosquitto restarted under sluice
 *   mqtt_test SLUICE sparkplug  births, aliases, seq gap, deaths, rebirth,
 *                               aliases from the store after a restart
 *
 * These start their own private Mosquitto on a free loopback port (no
 * harness needed; exit 77 only when a tool they need is missing):
 *
 *   mqtt_test SLUICE broker     a private Mosquitto restarted under sluice
 *   mqtt_test SLUICE tls        mutual TLS + password file: readings stored
 *                               exactly; a wrong password is refused, visible
 *                               in the log and /metrics, queued messages
 *                               arrive once the broker accepts it
 *   mqtt_test SLUICE v311       mqtt.version 3.1.1: clean session off, all
 *                               messages published while sluice is down
 *   mqtt_test SLUICE fanout     a window stream and the readings fanned out:
 *                               JSON equal to the store, QoS, retain, expiry,
 *                               retained status and its offline will
 */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include "process/process.h"
#include "sluice/v1/event.pb-c.h"
#include "sparkplug_b/sparkplug_b.pb-c.h"
#include "store/store.h"
#include "tests/common/daemon_fixture.h"

static const char *mqtt_host;
static int mqtt_port;
static char prefix[64];
static pid_t broker_pid;

/* The private broker goes when a check fails (fixture_on_fail). */
static void kill_broker(void) {
  if (broker_pid > 0)
    kill(broker_pid, SIGKILL);
}

/* ---- daemon ------------------------------------------------------------ */

static void write_mqtt_config(const char *subs, const char *extra) {
  write_config_fmt(
      "node:\n  id: mqtt-test\n  data_dir: %s\n"
      "listeners:\n  native:\n    tcp: \"\"\n  http:\n    address: \"\"\n"
      "admin:\n  address: \"127.0.0.1:0\"\n"
      "log:\n  level: info\n"
      "mqtt:\n  enabled: true\n  host: \"%s\"\n  port: %d\n"
      "  client_id: \"%s-sluice\"\n  reconnect_min: 50ms\n"
      "  reconnect_max: 500ms\n  dead_letter_stream: dlq\n"
      "  max_payload_bytes: 4KiB\n%s"
      "  subscriptions:\n%s"
      "streams:\n  - name: readings\n  - name: dlq\n",
      data_dir, mqtt_host, mqtt_port, prefix, extra ? extra : "", subs);
}

/* The daemon ready and subscribed. */
static const daemon_opts_t subscribed = {.until = "mqtt subscribed"};

#define EVENTS_MQTT(s)                                                         \
  "sluice_ingest_events_total{path=\"mqtt\",stream=\"" s "\"}"

/* ---- the store --------------------------------------------------------- */

typedef void (*event_cb)(const Sluice__V1__Event *ev, void *arg);

static uint64_t read_stream(const char *name, event_cb cb, void *arg) {
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint64_t n = 0;
  int rc;

  if (store_cursor(name, &st, &cur) < 0)
    return 0;
  while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
    CHECK(rec.status == 0, "record status %d", rec.status);
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b && b->n_events == rec.count, "batch at %llu",
          (unsigned long long)rec.first_offset);
    for (size_t i = 0; i < b->n_events; i++, n++)
      if (cb)
        cb(b->events[i], arg);
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  CHECK(rc == SL_ENOTFOUND, "cursor: %s", sl_strerror(rc));
  store_cursor_close(st, cur);
  return n;
}

static const char *attr(const Sluice__V1__Event *ev, const char *key) {
  for (size_t i = 0; i < ev->n_attributes; i++)
    if (!strcmp(ev->attributes[i]->key, key))
      return ev->attributes[i]->value;
  return NULL;
}

/* ---- the test's own clients --------------------------------------------- */

/* TLS files and credentials of the test's clients (scenario tls); NULL =
 * plain TCP, anonymous. */
static const char *cli_ca, *cli_cert, *cli_key, *cli_user, *cli_pass;

static void client_setup(struct mosquitto *m) {
  if (cli_user)
    CHECK(mosquitto_username_pw_set(m, cli_user, cli_pass) == 0, "user");
  if (cli_ca)
    CHECK(mosquitto_tls_set(m, cli_ca, NULL, cli_cert, cli_key, NULL) == 0,
          "tls_set");
}

/* ---- a libmosquitto QoS 1 publisher recording broker PUBACKs ----------- */

typedef struct pub {
  struct mosquitto *mosq;
  pthread_mutex_t lock;
  int *mid_id;    /* mid -> message id (65536 entries) */
  uint8_t *acked; /* by message id */
  uint64_t n_acked, n_sent, cap;
  int connected;
} pub_t;

static void pub_on_connect(struct mosquitto *m, void *o, int rc) {
  pub_t *p = o;
  (void)m;
  pthread_mutex_lock(&p->lock);
  p->connected = rc == 0;
  pthread_mutex_unlock(&p->lock);
}

static void pub_on_publish(struct mosquitto *m, void *o, int mid) {
  pub_t *p = o;
  (void)m;
  pthread_mutex_lock(&p->lock);
  int id = p->mid_id[mid & 0xffff];
  if (id >= 0 && (uint64_t)id < p->cap && !p->acked[id]) {
    p->acked[id] = 1;
    p->n_acked++;
  }
  pthread_mutex_unlock(&p->lock);
}

static void pub_init(pub_t *p, const char *id, uint64_t cap) {
  memset(p, 0, sizeof(*p));
  pthread_mutex_init(&p->lock, NULL);
  p->cap = cap;
  p->mid_id = malloc(65536 * sizeof(int));
  memset(p->mid_id, 0xff, 65536 * sizeof(int));
  p->acked = calloc(cap, 1);
  CHECK((p->mosq = mosquitto_new(id, true, p)), "mosquitto_new");
  mosquitto_connect_callback_set(p->mosq, pub_on_connect);
  mosquitto_publish_callback_set(p->mosq, pub_on_publish);
  mosquitto_max_inflight_messages_set(p->mosq, 200);
  client_setup(p->mosq);
  CHECK(mosquitto_connect(p->mosq, mqtt_host, mqtt_port, 30) == 0,
        "publisher connect");
  CHECK(mosquitto_loop_start(p->mosq) == 0, "loop_start");
}

/* Publishes payload as message id on topic. Returns 0 or the libmosquitto
 * error (the broker may be gone). */
static int pub_send_msg(pub_t *p, const char *topic, int id,
                        const char *payload) {
  int mid, rc;
  pthread_mutex_lock(&p->lock);
  rc = mosquitto_publish(p->mosq, &mid, topic, (int)strlen(payload), payload, 1,
                         false);
  if (rc == 0) {
    p->mid_id[mid & 0xffff] = id;
    p->n_sent++;
  }
  pthread_mutex_unlock(&p->lock);
  return rc;
}

/* Publishes message id as JSON {"value": id} on topic. */
static int pub_send(pub_t *p, const char *topic, int id) {
  char payload[64];
  snprintf(payload, sizeof(payload), "{\"value\":%d}", id);
  return pub_send_msg(p, topic, id, payload);
}

static void pub_await(pub_t *p, uint64_t want, int timeout_ms) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms, got;
  for (;;) {
    pthread_mutex_lock(&p->lock);
    got = p->n_acked;
    pthread_mutex_unlock(&p->lock);
    if (got >= want)
      return;
    CHECK(now_ms() < deadline, "publisher: %llu of %llu acked by the broker",
          (unsigned long long)got, (unsigned long long)want);
    usleep(5000);
  }
}

/* Publishes readings from..to-1 (ids) on topic and waits for every PUBACK
 * so far (to in all). */
static void publish_range(pub_t *p, const char *topic, int from, int to,
                          const char *what) {
  for (int i = from; i < to; i++)
    CHECK(pub_send(p, topic, i) == 0, "%s", what);
  pub_await(p, (uint64_t)to, 30000);
}

/* Waits until the daemon stored n MQTT readings, then stops it cleanly. */
static void store_and_stop(pid_t pid, uint64_t n) {
  await_metric_ge(EVENTS_MQTT("readings"), (double)n, 30000);
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
}

static void pub_free(pub_t *p) {
  mosquitto_disconnect(p->mosq);
  mosquitto_loop_stop(p->mosq, false);
  mosquitto_destroy(p->mosq);
  free(p->mid_id);
  free(p->acked);
  pthread_mutex_destroy(&p->lock);
}

/* ---- pipelines --------------------------------------------------------- */

typedef struct pl_seen {
  double v[32];
  int n;
} pl_seen_t;

static void pl_cb(const Sluice__V1__Event *ev, void *arg) {
  pl_seen_t *s = arg;
  if (s->n < 32 && ev->reading)
    s->v[s->n++] =
        ev->reading->value_case == SLUICE__V1__READING__VALUE_INT_VALUE
            ? (double)ev->reading->int_value
            : ev->reading->double_value;
}

static void mosq_pub(const char *topic, const char *msg);

/* MQTT ingest goes through the edge pipelines too (docs/PROCESSING.md): a
 * deadband stores 1, 2, 5 of 1 1 1 1 2 2 2 5 5 5 and counts 7 drops. */
SL_SCENARIO(pipelines) {
  static const int vals[] = {1, 1, 1, 1, 2, 2, 2, 5, 5, 5};
  char subs[512], t[256], msg[64];
  pl_seen_t seen = {0};
  snprintf(subs, sizeof(subs),
           "    - filter: %s/pl/+id\n      stream: readings\n"
           "      source: \"pl/{id}\"\n",
           prefix);
  write_mqtt_config(subs, NULL);
  append_config("pipelines:\n  - name: db\n    match: {stream: readings}\n"
                "    steps:\n      - deadband: \"0.5\"\n");
  pid_t pid = daemon_start(&subscribed);
  snprintf(t, sizeof(t), "%s/pl/m7", prefix);
  for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
    snprintf(msg, sizeof(msg), "{\"value\":%d}", vals[i]);
    mosq_pub(t, msg);
  }
  await_metric_ge(EVENTS_MQTT("readings"), 10, 30000);
  await_metric_ge("sluice_pipeline_dropped_total{pipeline=\"db\","
                  "reason=\"deadband\"}",
                  7, 10000);
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  read_stream("readings", pl_cb, &seen);
  CHECK(seen.n == 3 && seen.v[0] == 1 && seen.v[1] == 2 && seen.v[2] == 5,
        "stored %d readings %g %g %g (want 1 2 5)", seen.n, seen.v[0],
        seen.v[1], seen.v[2]);
  printf("pipelines: 10 MQTT readings, deadband kept 1 2 5\n");
}

/* ---- decoder: event ----------------------------------------------------- */

typedef struct ev_seen {
  int ints, infer, total;
  int64_t int_time;
} ev_seen_t;

static void ev_cb(const Sluice__V1__Event *ev, void *arg) {
  ev_seen_t *s = arg;
  s->total++;
  if (ev->reading &&
      ev->reading->value_case == SLUICE__V1__READING__VALUE_INT_VALUE &&
      ev->reading->int_value == 42) {
    s->ints++;
    s->int_time = ev->time_ns;
  }
  if (ev->body_case == SLUICE__V1__EVENT__BODY_INFERENCE &&
      ev->inference->n_labels == 1)
    s->infer++;
}

/* The HTTP event shape over MQTT (what sluice-sim --output mqtt sends):
 * integers, the event's own time_ns, inference objects, arrays. */
SL_SCENARIO(event) {
  char subs[512], t[256];
  ev_seen_t seen = {0};
  snprintf(subs, sizeof(subs),
           "    - filter: %s/ev/#\n      stream: readings\n"
           "      decoder: event\n",
           prefix);
  write_mqtt_config(subs, NULL);
  pid_t pid = daemon_start(&subscribed);
  snprintf(t, sizeof(t), "%s/ev/a", prefix);
  mosq_pub(t, "{\"source\":\"c1\",\"int_value\":42,"
              "\"time_ns\":1700000000000000123}");
  mosq_pub(t, "{\"source\":\"cam\",\"inference\":{\"model\":\"m\","
              "\"labels\":[{\"name\":\"dent\",\"score\":0.9}]}}");
  mosq_pub(t, "[{\"source\":\"x\",\"value\":1},{\"source\":\"y\","
              "\"value\":true}]");
  mosq_pub(t, "{\"source\":\"x\",\"vaule\":1}"); /* refused: typo */
  await_metric_ge(EVENTS_MQTT("readings"), 4, 30000);
  await_metric_ge(EVENTS_MQTT("dlq"), 1, 30000);
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  read_stream("readings", ev_cb, &seen);
  CHECK(seen.total == 4 && seen.ints == 1 && seen.infer == 1,
        "stored %d events, %d ints, %d inference", seen.total, seen.ints,
        seen.infer);
  CHECK(seen.int_time == 1700000000000000123ll, "event time kept: %lld",
        (long long)seen.int_time);
  printf("event: sluice's event JSON over MQTT stored (ints, time, "
         "inference, arrays), a typo dead-lettered\n");
}

/* ---- decoder: inference, through a model_aggregate ----------------------- */

typedef struct inf_seen {
  int raw_results, aggs, oip;
  uint64_t events, ok, empty, error, det_label3;
} inf_seen_t;

static void inf_cb(const Sluice__V1__Event *ev, void *arg) {
  inf_seen_t *s = arg;
  if (ev->body_case == SLUICE__V1__EVENT__BODY_INFERENCE)
    s->raw_results++;
  if (ev->body_case == SLUICE__V1__EVENT__BODY_INFERENCE &&
      !strcmp(ev->source, "cam7") && !strcmp(ev->inference->model, "ae") &&
      ev->inference->anomaly_score == 0.625)
    s->oip++;
  if (ev->body_case != SLUICE__V1__EVENT__BODY_RAW ||
      strcmp(ev->raw->content_type, SL_PROCESS_MA_CONTENT_TYPE))
    return;
  Sluice__V1__InferenceAggregate *a = sluice__v1__inference_aggregate__unpack(
      NULL, ev->raw->data.len, ev->raw->data.data);
  CHECK(a && a->n_status_counts == 5, "aggregate unpacks");
  if (!strcmp(a->source, "cam1") && !strcmp(a->model_version, "2")) {
    s->aggs++;
    s->events += a->events;
    s->ok += a->status_counts[1];
    s->empty += a->status_counts[2];
    s->error += a->status_counts[3];
    for (size_t i = 0; i < a->n_labels; i++)
      if (!a->labels[i]->other && a->labels[i]->label_id == 3)
        s->det_label3 += a->labels[i]->count;
  }
  sluice__v1__inference_aggregate__free_unpacked(a, NULL);
}

/* Inference JSON over MQTT (decoder inference), aggregated per model
 * version by a model_aggregate pipeline in the real daemon: the aggregate
 * of the closed window is stored with the raw results; a bad payload is
 * dead-lettered. */
SL_SCENARIO(inference) {
  char subs[512], t[256], msg[512];
  inf_seen_t seen = {0};
  snprintf(subs, sizeof(subs),
           "    - filter: %s/inf/+cam\n      stream: readings\n"
           "      source: \"{cam}\"\n      decoder: inference\n"
           "    - filter: %s/oip/+cam\n      stream: readings\n"
           "      source: \"{cam}\"\n      decoder: oip\n      oip: ad\n",
           prefix, prefix);
  write_mqtt_config(subs, NULL);
  append_config("  - name: models\n"
                "pipelines:\n  - name: ai\n"
                "    match: {stream: readings, kinds: [inference]}\n"
                "    steps:\n      - model_aggregate: true\n"
                "        window: 10s\n        into: models\n"
                "        keep_raw: true\n"
                "oip:\n  - name: ad\n    task: anomaly\n    model: ae\n");
  pid_t pid = daemon_start(&subscribed);
  snprintf(t, sizeof(t), "%s/inf/cam1", prefix);
  /* A window an hour ago (event times within limits.max_future). */
  long long w0 = ((long long)time(NULL) - 3600) / 10 * 10 * 1000000000LL;
  static const char *const res[] = {
      "\"status\":\"ok\",\"detections\":[{\"label_id\":3,\"score\":0.9},"
      "{\"label_id\":1,\"score\":0.4}]",
      "\"status\":\"ok\",\"detections\":[{\"label_id\":3,\"score\":0.8}]",
      "\"detections\":[{\"label_id\":3,\"score\":0.7}]", /* ok: implied */
      "\"status\":\"empty\"", "\"status\":\"error\",\"error\":\"timeout\""};
  for (int i = 0; i < 5; i++) {
    snprintf(msg, sizeof(msg),
             "{\"model\":\"det\",\"model_version\":\"2\",\"sequence\":%d,"
             "\"capture_time_ns\":%lld,\"latency_us\":%d,%s}",
             i, w0 + i * 1000000000LL, 1000 + i, res[i]);
    mosq_pub(t, msg);
  }
  /* The next window's first result closes the first. */
  snprintf(msg, sizeof(msg),
           "{\"model\":\"det\",\"model_version\":\"2\",\"sequence\":9,"
           "\"capture_time_ns\":%lld,\"status\":\"empty\"}",
           w0 + 30000000000LL);
  mosq_pub(t, msg);
  mosq_pub(t, "{\"model\":\"det\",\"role\":\"boss\"}"); /* refused */
  /* An OIP v2 anomaly model's response, read with profile ad; stamped now
   * (last: it moves the step's watermark to the present). */
  snprintf(t, sizeof(t), "%s/oip/cam7", prefix);
  mosq_pub(t, "{\"outputs\":[{\"name\":\"s\",\"shape\":[1],"
              "\"datatype\":\"FP32\",\"data\":[0.625]}]}");
  await_metric_ge(EVENTS_MQTT("readings"), 7, 30000);
  await_metric_ge(EVENTS_MQTT("dlq"), 1, 30000);
  await_metric_ge("sluice_pipeline_emitted_total{pipeline=\"ai\"}", 2, 30000);
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  read_stream("readings", inf_cb, &seen);
  read_stream("models", inf_cb, &seen);
  CHECK(seen.raw_results == 7 && seen.oip == 1,
        "stored %d raw inference results (want 7), %d OIP (want 1)",
        seen.raw_results, seen.oip);
  /* Both windows of cam1 closed: the first by the closing result, the
   * second by the OIP result stamped now. */
  CHECK(seen.aggs == 2 && seen.events == 6 && seen.ok == 3 && seen.empty == 2 &&
            seen.error == 1 && seen.det_label3 == 3,
        "aggregates %d: events %llu ok %llu empty %llu error %llu label3 "
        "%llu (want 2: 6 3 2 1 3)",
        seen.aggs, (unsigned long long)seen.events, (unsigned long long)seen.ok,
        (unsigned long long)seen.empty, (unsigned long long)seen.error,
        (unsigned long long)seen.det_label3);
  printf("inference: 6 results and an OIP v2 response over MQTT, windows "
         "aggregated per model version (3 ok, 2 empty, 1 error), a bad role "
         "dead-lettered\n");
}

/* ---- basic ------------------------------------------------------------- */

/* mosquitto_pub's arguments for cli_*: TLS files and credentials. */
static const char *mosq_pub_auth(void) {
  static char a[1200];
  int n = 0;
  a[0] = 0;
  if (cli_ca)
    n += snprintf(a + n, sizeof(a) - (size_t)n, " --cafile '%s'", cli_ca);
  if (cli_cert)
    n += snprintf(a + n, sizeof(a) - (size_t)n, " --cert '%s' --key '%s'",
                  cli_cert, cli_key);
  if (cli_user)
    snprintf(a + n, sizeof(a) - (size_t)n, " -u '%s' -P '%s'", cli_user,
             cli_pass ? cli_pass : "");
  return a;
}

static void mosq_pub(const char *topic, const char *msg) {
  char cmd[8192];
  snprintf(cmd, sizeof(cmd),
           "mosquitto_pub -h %s -p %d -q 1 -t '%s' -m '%s' -i %s-pub%s",
           mqtt_host, mqtt_port, topic, msg, prefix, mosq_pub_auth());
  CHECK(system(cmd) == 0, "mosquitto_pub %s", topic);
}

typedef struct basic_seen {
  int json_obj, json_arr, bare, nested, raw, iso, s2_next;
  char dlq_reasons[512];
} basic_seen_t;

static void basic_cb(const Sluice__V1__Event *ev, void *arg) {
  basic_seen_t *s = arg;
  if (ev->body_case == SLUICE__V1__EVENT__BODY_RAW) {
    CHECK(!strncmp(ev->source, prefix, strlen(prefix)), "raw source %s",
          ev->source);
    CHECK(ev->raw->data.len == 5 && !memcmp(ev->raw->data.data, "hello", 5),
          "raw payload");
    CHECK(!strcmp(ev->raw->content_type, "text/plain"), "content type %s",
          ev->raw->content_type);
    s->raw++;
    return;
  }
  CHECK(ev->body_case == SLUICE__V1__EVENT__BODY_READING, "kind %d",
        ev->body_case);
  const Sluice__V1__Reading *r = ev->reading;
  if (!strcmp(ev->source, "s2/l1/m1")) {
    CHECK(r->value_case == SLUICE__V1__READING__VALUE_INT_VALUE &&
              r->int_value == s->s2_next,
          "s2 event %d holds %lld", s->s2_next, (long long)r->int_value);
    s->s2_next++;
  } else if (!strcmp(ev->source, "s1/l1/m1")) {
    CHECK(r->value_case == SLUICE__V1__READING__VALUE_DOUBLE_VALUE &&
              r->double_value == 21.5 && !strcmp(r->unit, "degC") &&
              ev->time_ns == 1700000000123000000ll,
          "object event");
    s->json_obj++;
  } else if (!strcmp(ev->source, "s1/l2/m9")) {
    CHECK(r->value_case == SLUICE__V1__READING__VALUE_INT_VALUE, "array kind");
    CHECK(r->int_value == s->json_arr + 1, "array order: %lld",
          (long long)r->int_value);
    if (r->int_value == 2)
      CHECK(r->quality == SLUICE__V1__QUALITY__QUALITY_BAD, "quality");
    s->json_arr++;
  } else if (!strcmp(ev->source, "bare/b1")) {
    CHECK(r->value_case == SLUICE__V1__READING__VALUE_BOOL_VALUE &&
              r->bool_value,
          "bare");
    s->bare++;
  } else if (!strcmp(ev->source, "nested/n1")) {
    CHECK(r->value_case == SLUICE__V1__READING__VALUE_DOUBLE_VALUE &&
              r->double_value == 3.25 && ev->time_ns == 1700000000500000000ll,
          "nested paths");
    s->nested++;
  } else if (!strcmp(ev->source, "s1/l1/iso")) {
    CHECK(ev->time_ns == 1795651200000000000ll, "RFC 3339 time %lld",
          (long long)ev->time_ns);
    s->iso++;
  } else {
    CHECK(0, "unexpected source %s", ev->source);
  }
}

static void dlq_cb(const Sluice__V1__Event *ev, void *arg) {
  basic_seen_t *s = arg;
  const char *reason = attr(ev, "reason");
  CHECK(reason && ev->body_case == SLUICE__V1__EVENT__BODY_RAW, "dlq event");
  CHECK(strlen(s->dlq_reasons) + strlen(reason) + 2 < sizeof(s->dlq_reasons),
        "too many dlq events");
  strcat(s->dlq_reasons, reason);
  strcat(s->dlq_reasons, ",");
}

SL_SCENARIO(basic) {
  char subs[2048], t[256], big[6000], deep[2100];
  basic_seen_t seen = {0};
  pub_t p;
  snprintf(subs, sizeof(subs),
           "    - filter: %s/plant/+site/+line/+machine\n"
           "      stream: readings\n      source: \"{site}/{line}/{machine}\"\n"
           "    - filter: %s/bare/+id\n      source: \"bare/{id}\"\n"
           "      json_value: \"\"\n"
           "    - filter: %s/nested/+id\n      source: \"nested/{id}\"\n"
           "      json_value: data.v\n      json_time: data.ts\n"
           "      json_time_unit: s\n"
           "    - filter: %s/raw/#\n      decoder: raw\n"
           "      content_type: text/plain\n",
           prefix, prefix, prefix, prefix);
  write_mqtt_config(subs, NULL);
  pid_t pid = daemon_start(&subscribed);

  snprintf(t, sizeof(t), "%s/plant/s1/l1/m1", prefix);
  mosq_pub(t, "{\"value\":21.5,\"unit\":\"degC\",\"time\":1700000000123}");
  snprintf(t, sizeof(t), "%s/plant/s1/l2/m9", prefix);
  mosq_pub(t,
           "[{\"value\":1},{\"value\":2,\"quality\":\"bad\"},{\"value\":3}]");
  snprintf(t, sizeof(t), "%s/plant/s1/l1/iso", prefix);
  mosq_pub(t, "{\"value\":1,\"time\":\"2026-11-26T00:00:00Z\"}");
  snprintf(t, sizeof(t), "%s/bare/b1", prefix);
  mosq_pub(t, "true");
  snprintf(t, sizeof(t), "%s/nested/n1", prefix);
  mosq_pub(t, "{\"data\":{\"v\":3.25,\"ts\":1700000000.5}}");
  snprintf(t, sizeof(t), "%s/raw/x", prefix);
  mosq_pub(t, "hello");
  /* Bad inputs: each rejected with a reason, nothing else lost. */
  snprintf(t, sizeof(t), "%s/plant/s1/l1/bad", prefix);
  mosq_pub(t, "{\"value\":{}}");                       /* bad_type */
  mosq_pub(t, "{\"value\":1e999}");                    /* bad_number */
  mosq_pub(t, "{\"value\":NaN}");                      /* bad_json */
  mosq_pub(t, "{\"temp\":1}");                         /* no_value */
  mosq_pub(t, "{\"value\":1,\"time\":\"yesterday\"}"); /* bad_time */
  memset(deep, '[', 2050);
  deep[2050] = 0;
  mosq_pub(t, deep); /* too_deep */
  memset(big, 'x', sizeof(big) - 1);
  big[sizeof(big) - 1] = 0;
  mosq_pub(t, big); /* too_big (limit 4 KiB) */

  /* A libmosquitto publisher: 2000 QoS 1 messages, order kept. */
  pub_init(&p, "basic-pub", 2000);
  snprintf(t, sizeof(t), "%s/plant/s2/l1/m1", prefix);
  for (int i = 0; i < 2000; i++)
    CHECK(pub_send(&p, t, i) == 0, "publish %d", i);
  pub_await(&p, 2000, 30000);
  pub_free(&p);
  await_metric_ge(EVENTS_MQTT("readings"), 2000 + 8, 30000);
  await_metric_ge(EVENTS_MQTT("dlq"), 7, 30000);
  CHECK(metric("sluice_mqtt_decode_errors_total{reason=\"too_big\"}") == 1,
        "too_big counted");
  CHECK(metric("sluice_mqtt_decode_errors_total{reason=\"bad_type\"}") == 1,
        "bad_type counted");
  CHECK(metric("sluice_mqtt_connected{link=\"ingest\"}") == 1, "connected");
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);

  /* Every event checked; the s2 ones in publish order, each once. */
  uint64_t n = read_stream("readings", basic_cb, &seen);
  CHECK(n == 2008, "readings holds %llu events, want 2008",
        (unsigned long long)n);
  CHECK(seen.s2_next == 2000 && seen.json_obj == 1 && seen.json_arr == 3 &&
            seen.bare == 1 && seen.nested == 1 && seen.raw == 1 &&
            seen.iso == 1,
        "events seen: s2 %d obj %d arr %d bare %d nested %d raw %d iso %d",
        seen.s2_next, seen.json_obj, seen.json_arr, seen.bare, seen.nested,
        seen.raw, seen.iso);
  read_stream("dlq", dlq_cb, &seen);
  const char *want[] = {"bad_type", "bad_number", "bad_json", "no_value",
                        "bad_time", "too_deep",   "too_big"};
  for (size_t i = 0; i < 7; i++)
    CHECK(strstr(seen.dlq_reasons, want[i]), "dead letter %s missing in %s",
          want[i], seen.dlq_reasons);
  printf("basic: 2008 events stored, dead letters: %s\n", seen.dlq_reasons);
}

/* ---- restart: sluice away while publishers go on ----------------------- */

typedef struct idset {
  uint8_t *seen;
  uint64_t cap, distinct, dups;
  uint8_t *count; /* copies per id (saturating), NULL: not kept */
} idset_t;

static void id_cb(const Sluice__V1__Event *ev, void *arg) {
  idset_t *s = arg;
  CHECK(ev->body_case == SLUICE__V1__EVENT__BODY_READING &&
            ev->reading->value_case == SLUICE__V1__READING__VALUE_INT_VALUE,
        "event kind");
  int64_t id = ev->reading->int_value;
  CHECK(id >= 0 && (uint64_t)id < s->cap, "id %lld out of range",
        (long long)id);
  if (s->seen[id])
    s->dups++;
  else
    s->distinct++;
  s->seen[id] = 1;
  if (s->count && s->count[id] < 255)
    s->count[id]++;
}

static void ids_read(idset_t *s) {
  memset(s->seen, 0, s->cap);
  if (s->count)
    memset(s->count, 0, s->cap);
  s->distinct = s->dups = 0;
  read_stream("readings", id_cb, s);
}

static const char *id_subs(void) {
  static char subs[512];
  snprintf(
      subs, sizeof(subs),
      "    - filter: %s/plant/+site/+line/+machine\n"
      "      stream: readings\n      source: \"{site}/{line}/{machine}\"\n",
      prefix);
  return subs;
}

SL_SCENARIO(restart) {
  const int N = 3000;
  char t[256];
  idset_t ids = {.seen = calloc(3 * (size_t)N, 1), .cap = 3 * (uint64_t)N};
  pub_t p;

  write_mqtt_config(id_subs(), NULL);
  pid_t pid = daemon_start(&subscribed); /* creates the persistent session */
  snprintf(t, sizeof(t), "%s/plant/s1/l1/m1", prefix);
  pub_init(&p, "restart-pub", 3 * (uint64_t)N);
  publish_range(&p, t, 0, N, "publish");
  store_and_stop(pid, N);

  /* sluice is away: the broker queues for its session. */
  publish_range(&p, t, N, 2 * N, "publish while away");

  pid = daemon_start(&subscribed);
  /* And publishers go on while it catches up. */
  publish_range(&p, t, 2 * N, 3 * N, "publish after restart");
  store_and_stop(pid, 2 * (uint64_t)N);
  pub_free(&p);
  ids_read(&ids);
  CHECK(ids.distinct == 3 * (uint64_t)N,
        "%llu of %d distinct messages stored (%llu duplicates)",
        (unsigned long long)ids.distinct, 3 * N, (unsigned long long)ids.dups);
  printf("restart: %d messages, all stored, %llu duplicates\n", 3 * N,
         (unsigned long long)ids.dups);
  free(ids.seen);
}

/* ---- kill -9 in a loop -------------------------------------------------- */

typedef struct killpub {
  pub_t p;
  char topic[256];
  volatile int stop;
  int next;
} killpub_t;

static void *killpub_run(void *arg) {
  killpub_t *k = arg;
  while (!k->stop && (uint64_t)k->next < k->p.cap) {
    /* Stay within a bounded backlog at the publisher. */
    pthread_mutex_lock(&k->p.lock);
    uint64_t outstanding = k->p.n_sent - k->p.n_acked;
    pthread_mutex_unlock(&k->p.lock);
    if (outstanding > 2000) {
      usleep(1000); /* rate limit, not synchronisation */
      continue;
    }
    if (pub_send(&k->p, k->topic, k->next) == 0)
      k->next++;
  }
  return NULL;
}

SL_SCENARIO(kill9) {
  const char *env = getenv("SL_MQTT_KILL_ROUNDS");
  int rounds = env ? atoi(env) : 12;
  const uint64_t cap = 4000000;
  idset_t ids = {.seen = calloc(cap, 1), .cap = cap};
  killpub_t k;
  pthread_t th;
  uint64_t missing = 0;

  memset(&k, 0, sizeof(k));
  write_mqtt_config(id_subs(), NULL);
  srand((unsigned)getpid());
  snprintf(k.topic, sizeof(k.topic), "%s/plant/s1/l1/m1", prefix);
  pid_t pid = daemon_start(&subscribed);
  pub_init(&k.p, "kill9-pub", cap);
  CHECK(pthread_create(&th, NULL, killpub_run, &k) == 0, "thread");
  for (int r = 0; r < rounds; r++) {
    if (r)
      pid = daemon_start(&subscribed);
    /* Kill at a random point of the ingest. */
    usleep((useconds_t)(20000 + rand() % 300000));
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    daemon_pid = 0;
  }
  k.stop = 1;
  pthread_join(th, NULL);
  pthread_mutex_lock(&k.p.lock);
  uint64_t sent = k.p.n_sent;
  pthread_mutex_unlock(&k.p.lock);
  pub_await(&k.p, sent, 60000);
  /* Every message the broker accepted must reach the store: sluice
   * PUBACKed it durably, or the broker still has it for the session. */
  pid = daemon_start(&subscribed);
  uint64_t deadline = now_ms() + 60000;
  for (;;) {
    ids_read(&ids);
    missing = 0;
    for (uint64_t i = 0; i < (uint64_t)k.next; i++)
      missing += k.p.acked[i] && !ids.seen[i];
    if (!missing)
      break;
    CHECK(now_ms() < deadline,
          "%llu messages accepted by the broker never reached the store",
          (unsigned long long)missing);
    usleep(100000); /* re-read the store until it caught up */
  }
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
  ids_read(&ids);
  missing = 0;
  for (uint64_t i = 0; i < (uint64_t)k.next; i++)
    missing += k.p.acked[i] && !ids.seen[i];
  CHECK(missing == 0, "%llu PUBACKed messages missing",
        (unsigned long long)missing);
  printf("kill9: %d rounds, %llu messages acked by the broker, %llu stored, "
         "0 missing, %llu duplicates (redelivered after a kill)\n",
         rounds, (unsigned long long)k.p.n_acked,
         (unsigned long long)ids.distinct, (unsigned long long)ids.dups);
  pub_free(&k.p);
  free(ids.seen);
}

/* ---- a private broker restarted under sluice ---------------------------- */

static int free_port(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t sl = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind");
  getsockname(fd, (struct sockaddr *)&sa, &sl);
  port = ntohs(sa.sin_port);
  close(fd);
  return port;
}

static void broker_start(const char *conf) {
  uint64_t deadline = now_ms() + 20000;
  char blog[400];
  snprintf(blog, sizeof(blog), "%s/mosquitto.out", dir);
  broker_pid = fork();
  CHECK(broker_pid >= 0, "fork");
  if (broker_pid == 0) {
    int fd = open(blog, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl("/usr/sbin/mosquitto", "mosquitto", "-c", conf, (char *)NULL);
    _exit(127);
  }
  for (;;) {
    struct sockaddr_in sa = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
    sa.sin_port = htons((uint16_t)mqtt_port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    if (ok)
      return;
    CHECK(now_ms() < deadline, "private mosquitto not listening");
    usleep(20000);
  }
}

static void broker_stop(void) {
  int st;
  kill(broker_pid, SIGTERM);
  waitpid(broker_pid, &st, 0);
  broker_pid = 0;
}

SL_SCENARIO(broker) {
  char conf[400], t[256];
  idset_t ids = {.seen = calloc(1000, 1), .cap = 1000};
  FILE *f;
  pub_t p;

  mqtt_host = "127.0.0.1";
  mqtt_port = free_port();
  snprintf(conf, sizeof(conf), "%s/mosquitto.conf", dir);
  CHECK((f = fopen(conf, "w")), "conf");
  fprintf(f,
          "%slistener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
          "persistence_location %s/\nmax_inflight_messages 1000\n"
          "max_queued_messages 100000\n",
          getuid() == 0 ? "user root\n" : "", mqtt_port, dir);
  fclose(f);
  broker_start(conf);
  write_mqtt_config(id_subs(), NULL);
  pid_t pid = daemon_start(&subscribed);
  snprintf(t, sizeof(t), "%s/plant/s1/l1/m1", prefix);
  pub_init(&p, "broker-pub-1", 1000);
  for (int i = 0; i < 300; i++)
    CHECK(pub_send(&p, t, i) == 0, "publish");
  pub_await(&p, 300, 30000);
  await_metric_ge(EVENTS_MQTT("readings"), 300, 30000);
  pub_free(&p);

  broker_stop();
  broker_start(conf);
  /* sluice reconnects by itself (backoff 50..500 ms) and resubscribes. */
  uint64_t deadline = now_ms() + 20000;
  while (log_count("mqtt subscribed") < 2) {
    CHECK(now_ms() < deadline, "no resubscription after the broker restart");
    usleep(20000);
  }
  pub_init(&p, "broker-pub-2", 1000);
  for (int i = 300; i < 600; i++)
    CHECK(pub_send(&p, t, i) == 0, "publish");
  pub_await(&p, 300, 30000);
  await_metric_ge(EVENTS_MQTT("readings"), 600, 30000);
  CHECK(metric("sluice_mqtt_reconnects_total{link=\"ingest\"}") >= 1,
        "reconnect counted");
  pub_free(&p);
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
  broker_stop();
  ids_read(&ids);
  CHECK(ids.distinct == 600, "%llu of 600 stored",
        (unsigned long long)ids.distinct);
  printf("broker: restarted under sluice, 600 of 600 stored\n");
  free(ids.seen);
}

/* ---- private brokers: TLS and passwords, MQTT 3.1.1, fan-out ----------- */

/* True when the shell finds cmd. */
static int have_tool(const char *cmd) {
  char c[200];
  snprintf(c, sizeof(c), "command -v %s >/dev/null 2>&1", cmd);
  return system(c) == 0;
}

/* Runs a shell command built from fmt; returns its exit status. */
static int sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  int st = system(cmd);
  return st < 0 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Writes the private broker's config to dir/mosquitto.conf: a listener on a
 * free loopback port (mqtt_port) followed by the listener's extra lines,
 * persistence and a log in dir (dir/mosquitto.log). */
static void broker_conf(char *conf, size_t cap, const char *extra) {
  FILE *f;
  mqtt_host = "127.0.0.1";
  mqtt_port = free_port();
  snprintf(conf, cap, "%s/mosquitto.conf", dir);
  CHECK((f = fopen(conf, "w")), "conf");
  fprintf(f,
          "%slistener %d 127.0.0.1\n%s"
          "persistence true\npersistence_location %s/\n"
          "log_dest file %s/mosquitto.log\nlog_type error\nlog_type warning\n"
          "log_type notice\nlog_type information\nconnection_messages true\n"
          "max_inflight_messages 1000\nmax_queued_messages 100000\n",
          getuid() == 0 ? "user root\n" : "", mqtt_port, extra, dir, dir);
  fclose(f);
}

static int broker_log_count(const char *what) {
  char p[400];
  snprintf(p, sizeof(p), "%s/mosquitto.log", dir);
  return file_count(p, what);
}

/* A throwaway CA, a server certificate for 127.0.0.1 and a client
 * certificate, all made by the openssl CLI in dir. */
static void tls_files(void) {
  CHECK(
      sh("set -e; cd '%s'; exec >>openssl.log 2>&1; "
         "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
         "-nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=sluice-test-ca; "
         "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' >san.ext; "
         "for n in server client; do "
         "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 "
         "-nodes -keyout $n.key -out $n.csr -subj /CN=sluice-test-$n; "
         "openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key "
         "-CAcreateserial -days 2 -extfile san.ext -out $n.crt; done; "
         "chmod 600 ca.key server.key client.key",
         dir) == 0,
      "openssl (see %s/openssl.log)", dir);
}

/* Mutual TLS and a password file on a private Mosquitto (anonymous
 * refused): readings published over TLS by libmosquitto and mosquitto_pub
 * are stored exactly once each. Then sluice's password is wrong: the
 * daemon keeps running, says so in its log and /metrics, and once the
 * broker's password file accepts it (SIGHUP reload) it reconnects and
 * stores what the broker queued for its session meanwhile. */
SL_SCENARIO(tls) {
  char conf[400], extra[2048], t[256], ca[300], cert[300], key[300];
  idset_t ids = {.seen = calloc(1000, 1), .cap = 1000};
  pub_t p;

  tls_files();
  CHECK(sh("cd '%s' && mosquitto_passwd -c -b passwd sluice right-pw && "
           "mosquitto_passwd -b passwd pub pub-pw && chmod 600 passwd",
           dir) == 0,
        "mosquitto_passwd");
  snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
  snprintf(cert, sizeof(cert), "%s/client.crt", dir);
  snprintf(key, sizeof(key), "%s/client.key", dir);
  snprintf(extra, sizeof(extra),
           "cafile %s\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
           "require_certificate true\nallow_anonymous false\n"
           "password_file %s/passwd\n",
           ca, dir, dir, dir);
  broker_conf(conf, sizeof(conf), extra);
  broker_start(conf);

  /* The broker really asks for all three: no client certificate, a wrong
   * password, or plain TCP are refused. */
  cli_ca = ca;
  cli_user = "pub";
  cli_pass = "pub-pw";
  snprintf(t, sizeof(t), "%s/plant/s1/l1/m1", prefix);
  CHECK(sh("mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t '%s' -m x%s "
           ">/dev/null 2>&1",
           mqtt_port, t, mosq_pub_auth()) != 0,
        "accepted without a client certificate");
  cli_cert = cert;
  cli_key = key;
  cli_pass = "nope";
  CHECK(sh("mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t '%s' -m x%s "
           ">/dev/null 2>&1",
           mqtt_port, t, mosq_pub_auth()) != 0,
        "accepted a wrong password");
  cli_pass = "pub-pw";
  CHECK(sh("mosquitto_pub -h 127.0.0.1 -p %d -q 1 -t '%s' -m x -u pub "
           "-P pub-pw >/dev/null 2>&1",
           mqtt_port, t) != 0,
        "accepted plain TCP");

  snprintf(extra, sizeof(extra),
           "  tls_ca: \"%s\"\n  tls_cert: \"%s\"\n  tls_keyfile: \"%s\"\n"
           "  username: sluice\n  password: right-pw\n",
           ca, cert, key);
  write_mqtt_config(id_subs(), extra);
  pid_t pid = daemon_start(&subscribed);
  CHECK(log_count("(session new)") == 1, "a new session");
  CHECK(broker_log_count("u'sluice'") >= 1, "broker log: sluice's user");

  pub_init(&p, "tls-pub", 1000);
  for (int i = 0; i < 500; i++)
    CHECK(pub_send(&p, t, i) == 0, "publish %d", i);
  pub_await(&p, 500, 30000);
  for (int i = 500; i < 503; i++) {
    char msg[64];
    snprintf(msg, sizeof(msg), "{\"value\":%d}", i);
    mosq_pub(t, msg); /* mosquitto_pub --cafile --cert --key -u -P */
  }
  await_metric_ge(EVENTS_MQTT("readings"), 503, 30000);
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
  ids_read(&ids);
  CHECK(ids.distinct == 503 && ids.dups == 0,
        "%llu of 503 stored over TLS, %llu duplicates",
        (unsigned long long)ids.distinct, (unsigned long long)ids.dups);

  /* A wrong password: refused on every attempt, the daemon stays up. */
  snprintf(extra, sizeof(extra),
           "  tls_ca: \"%s\"\n  tls_cert: \"%s\"\n  tls_keyfile: \"%s\"\n"
           "  username: sluice\n  password: changed-pw\n",
           ca, cert, key);
  write_mqtt_config(id_subs(), extra);
  pid = daemon_start(NULL);
  await_log_count("refused the connection", 2, 20000);
  CHECK(log_count("Bad user name or password") + log_count("not authorised") +
                log_count("Not authorized") >=
            1,
        "the refusal names the reason");
  await_metric_ge("sluice_mqtt_reconnects_total{link=\"ingest\"}", 2, 20000);
  CHECK(metric("sluice_mqtt_connected{link=\"ingest\"}") == 0,
        "ingest link reported connected");
  CHECK(log_count("mqtt subscribed") == 0, "subscribed with a wrong password");
  CHECK(!log_count("changed-pw"), "the password is in the log");
  /* The broker queues for the session sluice made before. */
  for (int i = 503; i < 703; i++)
    CHECK(pub_send(&p, t, i) == 0, "publish %d", i);
  pub_await(&p, 700, 30000);
  CHECK(waitpid(pid, NULL, WNOHANG) == 0, "daemon exited");

  /* The site fixes the broker's side: sluice gets in by itself. */
  CHECK(sh("mosquitto_passwd -b '%s/passwd' sluice changed-pw", dir) == 0,
        "mosquitto_passwd");
  kill(broker_pid, SIGHUP);
  await_log_count("mqtt subscribed", 1, 20000);
  CHECK(log_count("(session resumed)") == 1, "session resumed");
  await_metric_ge(EVENTS_MQTT("readings"), 200, 30000);
  CHECK(metric("sluice_mqtt_connected{link=\"ingest\"}") == 1, "connected");
  pub_free(&p);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
  broker_stop();
  ids_read(&ids);
  CHECK(ids.distinct == 703 && ids.dups == 0,
        "%llu of 703 stored, %llu duplicates", (unsigned long long)ids.distinct,
        (unsigned long long)ids.dups);
  printf("tls: mutual TLS + password, 703 of 703 stored once; a wrong "
         "password refused (%d attempts logged), then accepted after the "
         "broker's reload\n",
         log_count("refused the connection"));
  cli_ca = cli_cert = cli_key = cli_user = cli_pass = NULL;
  free(ids.seen);
}

/* Before v311 fails: what tells a duplicate's origin apart (a copy seen
 * once under a full CI run's load, not reproduced in 16 runs since): which ids
 * came twice, the connections of both clients in the broker's log (a publisher
 * that reconnected resends on its own), sluice's redelivery warnings. */
static void v311_explain(const idset_t *ids) {
  char cmd[1200];
  int shown = 0;
  fprintf(stderr, "v311: ids stored more than once:");
  for (uint64_t i = 0; i < ids->cap && shown < 40; i++)
    if (ids->count[i] > 1) {
      fprintf(stderr, " %llu(x%u)", (unsigned long long)i, ids->count[i]);
      shown++;
    }
  fprintf(stderr, "\nv311: connections in the broker's log:\n");
  snprintf(cmd, sizeof(cmd),
           "grep -E 'New client|disconnect|Client .* closed|timeout' "
           "%s/mosquitto.log | tail -n 20 >&2",
           dir);
  if (system(cmd) < 0)
    perror("system");
  fprintf(stderr, "v311: sluice's redelivery and link lines:\n");
  snprintf(cmd, sizeof(cmd),
           "grep -E 'packet id|redeliver|link lost|connected to' %s | "
           "tail -n 20 >&2",
           log_path);
  if (system(cmd) < 0)
    perror("system");
}

/* mqtt.version 3.1.1: the ingest session is kept (clean session off), so
 * what is published while sluice is stopped arrives after its restart. */
SL_SCENARIO(v311) {
  const int N = 1000;
  char conf[400], t[256], want[200];
  idset_t ids = {.seen = calloc(2 * (size_t)N, 1),
                 .cap = 2 * (uint64_t)N,
                 .count = calloc(2 * (size_t)N, 1)};
  pub_t p;

  broker_conf(conf, sizeof(conf), "allow_anonymous true\n");
  broker_start(conf);
  write_mqtt_config(id_subs(), "  version: \"3.1.1\"\n");
  pid_t pid = daemon_start(&subscribed);
  CHECK(log_count("(session new)") == 1, "a new session");
  snprintf(t, sizeof(t), "%s/plant/s1/l1/m1", prefix);
  pub_init(&p, "v311-pub", 2 * (uint64_t)N);
  publish_range(&p, t, 0, N, "publish");
  store_and_stop(pid, N);

  publish_range(&p, t, N, 2 * N, "publish while sluice is down");
  pid = daemon_start(&subscribed);
  CHECK(log_count("(session resumed)") == 1, "session resumed");
  store_and_stop(pid, N);
  pub_free(&p);
  /* Mosquitto logs the protocol (p2 = 3.1.1, p5 = 5) and clean session. */
  snprintf(want, sizeof(want), "as %s-sluice (p2, c0,", prefix);
  CHECK(broker_log_count(want) == 2, "broker log: %d connects with '%s'",
        broker_log_count(want), want);
  broker_stop();
  ids_read(&ids);
  if (ids.dups || ids.distinct != 2 * (uint64_t)N)
    v311_explain(&ids);
  CHECK(ids.distinct == 2 * (uint64_t)N && ids.dups == 0,
        "%llu of %d stored, %llu duplicates", (unsigned long long)ids.distinct,
        2 * N, (unsigned long long)ids.dups);
  printf("v311: MQTT 3.1.1, clean session off, %d of %d stored (half "
         "published while sluice was down)\n",
         2 * N, 2 * N);
  free(ids.seen);
  free(ids.count);
}

/* A subscriber (MQTT 5) keeping every message with its QoS, retain flag
 * and message expiry. */
typedef struct sub_msg {
  char topic[256];
  char *payload;
  int qos, retain;
  uint32_t expiry; /* 0 = none */
} sub_msg_t;

typedef struct sub {
  struct mosquitto *mosq;
  pthread_mutex_t lock;
  sub_msg_t msgs[512];
  int n, subacked;
} sub_t;

static void sub_on_message(struct mosquitto *m, void *o,
                           const struct mosquitto_message *msg,
                           const mosquitto_property *props) {
  sub_t *s = o;
  uint32_t exp = 0;
  (void)m;
  mosquitto_property_read_int32(props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL, &exp,
                                false);
  pthread_mutex_lock(&s->lock);
  if (s->n < 512) {
    sub_msg_t *sm = &s->msgs[s->n++];
    snprintf(sm->topic, sizeof(sm->topic), "%s", msg->topic);
    sm->payload = calloc(1, (size_t)msg->payloadlen + 1);
    memcpy(sm->payload, msg->payload, (size_t)msg->payloadlen);
    sm->qos = msg->qos;
    sm->retain = msg->retain;
    sm->expiry = exp;
  }
  pthread_mutex_unlock(&s->lock);
}

static void sub_on_subscribe(struct mosquitto *m, void *o, int mid, int n,
                             const int *granted) {
  sub_t *s = o;
  (void)m;
  (void)mid;
  (void)n;
  (void)granted;
  __atomic_store_n(&s->subacked, 1, __ATOMIC_SEQ_CST);
}

static sub_t *sub_new(const char *filter) {
  sub_t *s = calloc(1, sizeof(*s));
  uint64_t deadline = now_ms() + 10000;
  pthread_mutex_init(&s->lock, NULL);
  CHECK((s->mosq = mosquitto_new(NULL, true, s)), "sub");
  mosquitto_int_option(s->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_message_v5_callback_set(s->mosq, sub_on_message);
  mosquitto_subscribe_callback_set(s->mosq, sub_on_subscribe);
  CHECK(mosquitto_connect(s->mosq, mqtt_host, mqtt_port, 30) == 0, "connect");
  CHECK(mosquitto_subscribe(s->mosq, NULL, filter, 1) == 0, "subscribe");
  CHECK(mosquitto_loop_start(s->mosq) == 0, "loop");
  while (!__atomic_load_n(&s->subacked, __ATOMIC_SEQ_CST)) {
    CHECK(now_ms() < deadline, "no SUBACK for %s", filter);
    usleep(5000);
  }
  return s;
}

/* Messages received on topics starting with tprefix. */
static int sub_count(sub_t *s, const char *tprefix) {
  int n = 0;
  pthread_mutex_lock(&s->lock);
  for (int i = 0; i < s->n; i++)
    n += !strncmp(s->msgs[i].topic, tprefix, strlen(tprefix));
  pthread_mutex_unlock(&s->lock);
  return n;
}

static void sub_await(sub_t *s, const char *tprefix, int want, int timeout_ms) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  while (sub_count(s, tprefix) < want) {
    CHECK(now_ms() < deadline, "%d messages on %s*, want %d",
          sub_count(s, tprefix), tprefix, want);
    usleep(10000);
  }
}

/* The last message on exactly topic, or NULL (after the subscriber
 * stopped: no lock needed). */
static const sub_msg_t *sub_last(sub_t *s, const char *topic) {
  for (int i = s->n - 1; i >= 0; i--)
    if (!strcmp(s->msgs[i].topic, topic))
      return &s->msgs[i];
  return NULL;
}

static void sub_free(sub_t *s) {
  mosquitto_disconnect(s->mosq);
  mosquitto_loop_stop(s->mosq, false);
  mosquitto_destroy(s->mosq);
  for (int i = 0; i < s->n; i++)
    free(s->msgs[i].payload);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

typedef struct fan_check {
  sub_t *s;
  const char *topic_prefix; /* fan-out topic up to {source} */
  int qos;
  uint32_t expiry_max; /* 0 = no expiry expected */
  int checked, windows;
  double means[8]; /* window results of source s1/l1/m1, in order */
} fan_check_t;

/* One stored event against the fan-out message carrying it: same source,
 * time, value, quality, unit and attributes, nothing else. */
static void fan_cb(const Sluice__V1__Event *ev, void *arg) {
  fan_check_t *c = arg;
  char topic[400];
  const sub_msg_t *m = NULL;
  json_t *o = NULL;
  json_error_t jerr;
  size_t nkeys = 4;

  CHECK(ev->body_case == SLUICE__V1__EVENT__BODY_READING, "kind");
  snprintf(topic, sizeof(topic), "%s%s", c->topic_prefix, ev->source);
  for (int i = 0; i < c->s->n && !m; i++) {
    if (strcmp(c->s->msgs[i].topic, topic))
      continue;
    json_t *x = json_loads(c->s->msgs[i].payload, 0, &jerr);
    CHECK(x, "payload not JSON: %s", c->s->msgs[i].payload);
    if (json_integer_value(json_object_get(x, "time_ns")) == ev->time_ns) {
      m = &c->s->msgs[i];
      o = x;
    } else {
      json_decref(x);
    }
  }
  CHECK(m, "no fan-out message on %s for time_ns %lld", topic,
        (long long)ev->time_ns);
  CHECK(m->qos == c->qos && !m->retain, "%s: qos %d retain %d", topic, m->qos,
        m->retain);
  CHECK(c->expiry_max ? m->expiry > 0 && m->expiry <= c->expiry_max
                      : m->expiry == 0,
        "%s: message expiry %u", topic, m->expiry);
  CHECK(!strcmp(json_string_value(json_object_get(o, "source")), ev->source),
        "source");
  const Sluice__V1__Reading *r = ev->reading;
  json_t *v = json_object_get(o, "value");
  if (r->value_case == SLUICE__V1__READING__VALUE_INT_VALUE)
    CHECK(json_is_integer(v) && json_integer_value(v) == r->int_value,
          "%s: int value %s", topic, m->payload);
  else
    CHECK(r->value_case == SLUICE__V1__READING__VALUE_DOUBLE_VALUE &&
              json_is_real(v) && json_real_value(v) == r->double_value,
          "%s: value %s", topic, m->payload);
  CHECK(!strcmp(json_string_value(json_object_get(o, "quality")), "good"),
        "quality");
  if (r->unit && *r->unit) {
    CHECK(!strcmp(json_string_value(json_object_get(o, "unit")), r->unit),
          "unit");
    nkeys++;
  }
  for (size_t i = 0; i < ev->n_attributes; i++) {
    const char *js =
        json_string_value(json_object_get(o, ev->attributes[i]->key));
    CHECK(js && !strcmp(js, ev->attributes[i]->value), "%s: attribute %s: %s",
          topic, ev->attributes[i]->key, m->payload);
  }
  CHECK(json_object_size(o) == nkeys + ev->n_attributes, "extra keys: %s",
        m->payload);
  if (attr(ev, "window_end_ns") && !strcmp(ev->source, "s1/l1/m1") &&
      c->windows < 8)
    c->means[c->windows++] = r->double_value;
  json_decref(o);
  c->checked++;
}

/* Fan-out of a derived stream (10 s window results, QoS 1, retained,
 * message expiry) and of the raw readings (QoS 0): a subscriber's JSON
 * equals the stored events; a late subscriber gets the retained last
 * result per source and the retained status; the status turns "offline"
 * when sluice is stopped and when it is killed. */
SL_SCENARIO(fanout) {
  const int64_t t0 = 1700000000000; /* ms, on a 10 s boundary */
  char conf[400], extra[1024], subs[512], t[256], all[200], apps[200], raw[200],
      status[200];
  pub_t p;

  broker_conf(conf, sizeof(conf), "allow_anonymous true\n");
  broker_start(conf);
  snprintf(status, sizeof(status), "%s/status", prefix);
  snprintf(extra, sizeof(extra),
           "  status_topic: \"%s\"\n  status_interval: 1s\n"
           "  fanout:\n"
           "    - stream: stats\n      topic: \"%s/apps/{stream}/{source}\"\n"
           "      qos: 1\n      retain: true\n      message_expiry: 10m\n"
           "    - stream: readings\n      topic: \"%s/raw/{source}\"\n",
           status, prefix, prefix);
  snprintf(subs, sizeof(subs),
           "    - filter: %s/plant/+site/+line/+machine\n"
           "      stream: readings\n      source: \"{site}/{line}/{machine}\"\n"
           "      json_unit: u\n",
           prefix);
  write_mqtt_config(subs, extra);
  append_config("  - name: stats\n"
                "pipelines:\n  - name: win\n    match: {stream: readings}\n"
                "    steps:\n      - aggregate: [count, mean, min, max]\n"
                "        window: 10s\n        into: stats\n"
                "        keep_raw: true\n");

  snprintf(all, sizeof(all), "%s/#", prefix);
  snprintf(apps, sizeof(apps), "%s/apps/stats/", prefix);
  snprintf(raw, sizeof(raw), "%s/raw/", prefix);
  sub_t *live = sub_new(all);
  pid_t pid = daemon_start(&subscribed);
  sub_await(live, status, 1, 10000); /* the publish link is up */

  /* Readings 0..30 s of two machines, interleaved: windows [0,10), [10,20),
   * [20,30) close (count 10 each); the one at 30 s stays open. */
  pub_init(&p, "fanout-pub", 100);
  for (int i = 0; i <= 30; i++) {
    char msg[160];
    snprintf(t, sizeof(t), "%s/plant/s1/l1/m1", prefix);
    snprintf(msg, sizeof(msg), "{\"value\":%d,\"time\":%lld}", i,
             (long long)(t0 + i * 1000));
    CHECK(pub_send_msg(&p, t, 2 * i, msg) == 0, "publish");
    snprintf(t, sizeof(t), "%s/plant/s1/l1/m2", prefix);
    snprintf(msg, sizeof(msg), "{\"value\":%.2f,\"u\":\"bar\",\"time\":%lld}",
             100 + i * 0.25, (long long)(t0 + i * 1000));
    CHECK(pub_send_msg(&p, t, 2 * i + 1, msg) == 0, "publish");
  }
  pub_await(&p, 62, 30000);
  pub_free(&p);
  await_metric_ge(EVENTS_MQTT("readings"), 62, 30000);
  sub_await(live, raw, 62, 20000);
  sub_await(live, apps, 6, 20000);

  /* A late subscriber: the retained last window per source and status. */
  sub_t *late = sub_new(all);
  sub_await(late, apps, 2, 10000);
  sub_await(late, status, 1, 10000);
  {
    char topic[300];
    const sub_msg_t *m;
    snprintf(topic, sizeof(topic), "%ss1/l1/m1", apps);
    pthread_mutex_lock(&late->lock);
    m = sub_last(late, topic);
    CHECK(m && m->retain && m->qos == 1 &&
              strstr(m->payload, "\"mean\":\"24.5\""),
          "retained last window of m1: %s", m ? m->payload : "none");
    m = sub_last(late, status);
    CHECK(m && m->retain && strstr(m->payload, "\"state\":\"online\"") &&
              strstr(m->payload, "\"node\":\"mqtt-test\""),
          "retained status: %s", m ? m->payload : "none");
    pthread_mutex_unlock(&late->lock);
  }
  sub_free(late);

  /* The live status reports the ingest link and the derived stream. */
  uint64_t deadline = now_ms() + 10000;
  for (;;) {
    int ok = 0;
    pthread_mutex_lock(&live->lock);
    const sub_msg_t *m = sub_last(live, status);
    ok = m && strstr(m->payload, "\"mqtt_ingest\":\"connected\"") &&
         strstr(m->payload, "{\"name\":\"stats\",\"next_offset\":6,");
    pthread_mutex_unlock(&live->lock);
    if (ok)
      break;
    CHECK(now_ms() < deadline, "status never showed stats at offset 6");
    usleep(50000);
  }

  /* Graceful stop: the retained status must not stay "online". */
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
  late = sub_new(status);
  sub_await(late, status, 1, 10000);
  pthread_mutex_lock(&late->lock);
  CHECK(late->msgs[0].retain &&
            strstr(late->msgs[0].payload, "\"state\":\"offline\""),
        "retained status after SIGTERM: %s", late->msgs[0].payload);
  pthread_mutex_unlock(&late->lock);
  sub_free(late);

  /* kill -9: the broker publishes the will. */
  pid = daemon_start(&subscribed);
  int before = sub_count(live, status);
  sub_await(live, status, before + 1, 10000); /* online again */
  kill(pid, SIGKILL);
  waitpid(pid, &st, 0);
  daemon_pid = 0;
  deadline = now_ms() + 10000;
  for (;;) {
    pthread_mutex_lock(&live->lock);
    const sub_msg_t *m = sub_last(live, status);
    int off = m && strstr(m->payload, "\"state\":\"offline\"");
    pthread_mutex_unlock(&live->lock);
    if (off)
      break;
    CHECK(now_ms() < deadline, "no offline will after kill -9");
    usleep(20000);
  }
  /* Stop its thread before reading its messages without the lock. */
  mosquitto_disconnect(live->mosq);
  mosquitto_loop_stop(live->mosq, false);

  /* Every stored event, in both streams, against what the subscriber got. */
  fan_check_t fc = {
      .s = live, .topic_prefix = apps, .qos = 1, .expiry_max = 600};
  uint64_t n = read_stream("stats", fan_cb, &fc);
  CHECK(n == 6 && fc.checked == 6, "%llu window results",
        (unsigned long long)n);
  CHECK(fc.windows == 3 && fc.means[0] == 4.5 && fc.means[1] == 14.5 &&
            fc.means[2] == 24.5,
        "m1 window means %g %g %g", fc.means[0], fc.means[1], fc.means[2]);
  CHECK(sub_count(live, apps) == 6, "%d window messages, want 6",
        sub_count(live, apps));
  fan_check_t fr = {.s = live, .topic_prefix = raw, .qos = 0};
  n = read_stream("readings", fan_cb, &fr);
  CHECK(n == 62 && fr.checked == 62, "%llu readings", (unsigned long long)n);
  CHECK(sub_count(live, raw) == 62, "%d reading messages, want 62",
        sub_count(live, raw));
  sub_free(live);
  broker_stop();
  printf("fanout: 6 window results (QoS 1, retained, expiry) and 62 readings "
         "(QoS 0) equal to the store; retained status online, offline after "
         "SIGTERM and kill -9\n");
}

/* ---- Sparkplug B ------------------------------------------------------- */

typedef Org__Eclipse__Tahu__Protobuf__Payload sp_payload_t;
typedef Org__Eclipse__Tahu__Protobuf__Payload__Metric sp_metric_t;

/* A metric: name may be NULL (alias only); dt a DataType. */
static sp_metric_t sp_m(const char *name, int alias, uint32_t dt, double v) {
  sp_metric_t m = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__INIT;
  m.name = (char *)name;
  if (alias >= 0) {
    m.has_alias = 1;
    m.alias = (uint64_t)alias;
  }
  if (name) {
    m.has_datatype = 1;
    m.datatype = dt;
  }
  if (dt == ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__Double) {
    m.value_case =
        ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_DOUBLE_VALUE;
    m.double_value = v;
  } else {
    m.value_case =
        ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_INT_VALUE;
    m.int_value = (uint32_t)(int32_t)v; /* two's complement carrier */
  }
  return m;
}

static void sp_pub(struct mosquitto *mosq, const char *type, const char *device,
                   int seq, sp_metric_t *ms, size_t n) {
  sp_payload_t pl = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__INIT;
  sp_metric_t *pm[8];
  uint8_t buf[1024];
  char topic[256];
  pl.has_timestamp = 1;
  pl.timestamp = 1700000000000ull;
  if (seq >= 0) {
    pl.has_seq = 1;
    pl.seq = (uint64_t)seq;
  }
  for (size_t i = 0; i < n; i++)
    pm[i] = &ms[i];
  pl.metrics = pm;
  pl.n_metrics = n;
  size_t len = org__eclipse__tahu__protobuf__payload__pack(&pl, buf);
  snprintf(topic, sizeof(topic), "spBv1.0/%s/%s/n1%s%s", prefix, type,
           device ? "/" : "", device ? device : "");
  CHECK(mosquitto_publish(mosq, NULL, topic, (int)len, buf, 1, false) == 0,
        "publish %s", topic);
}

typedef struct sp_seen {
  int rebirths;
  int temp, count, rpm, hist, online, offline, gaps;
  double temps[8];
} sp_seen_t;

static void sp_on_message(struct mosquitto *m, void *o,
                          const struct mosquitto_message *msg) {
  sp_seen_t *s = o;
  (void)m;
  sp_payload_t *pl = org__eclipse__tahu__protobuf__payload__unpack(
      NULL, (size_t)msg->payloadlen, msg->payload);
  if (pl && pl->n_metrics == 1 && pl->metrics[0]->name &&
      !strcmp(pl->metrics[0]->name, "Node Control/Rebirth") &&
      pl->metrics[0]->boolean_value)
    __atomic_add_fetch(&s->rebirths, 1, __ATOMIC_SEQ_CST);
  if (pl)
    org__eclipse__tahu__protobuf__payload__free_unpacked(pl, NULL);
}

static void sp_cb(const Sluice__V1__Event *ev, void *arg) {
  sp_seen_t *s = arg;
  char base[128];
  snprintf(base, sizeof(base), "%s/n1", prefix);
  CHECK(!strncmp(ev->source, base, strlen(base)), "source %s", ev->source);
  const char *rest = ev->source + strlen(base);
  if (ev->body_case == SLUICE__V1__EVENT__BODY_STATUS) {
    if (!strcmp(ev->status->state, "online"))
      s->online++;
    else if (!strcmp(ev->status->state, "offline"))
      s->offline++;
    else if (!strcmp(ev->status->state, "seq_gap"))
      s->gaps++;
    return;
  }
  CHECK(ev->body_case == SLUICE__V1__EVENT__BODY_READING, "kind");
  const Sluice__V1__Reading *r = ev->reading;
  if (!strcmp(rest, "/temp")) {
    CHECK(r->value_case == SLUICE__V1__READING__VALUE_DOUBLE_VALUE, "temp");
    if (attr(ev, "historical")) {
      s->hist++;
      CHECK(ev->time_ns == 1600000000000000000ll, "historical time");
    }
    if (s->temp < 8)
      s->temps[s->temp] = r->double_value;
    s->temp++;
  } else if (!strcmp(rest, "/count")) {
    CHECK(r->value_case == SLUICE__V1__READING__VALUE_INT_VALUE, "count kind");
    CHECK(r->int_value == (s->count == 0 ? -5 : 7), "count %lld",
          (long long)r->int_value);
    s->count++;
  } else if (!strcmp(rest, "/d1/rpm")) {
    CHECK(r->int_value == (s->rpm == 0 ? 1200 : 1500), "rpm %lld",
          (long long)r->int_value);
    s->rpm++;
  } else {
    CHECK(0, "unexpected metric source %s", ev->source);
  }
}

SL_SCENARIO(sparkplug) {
  const uint32_t D = ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__Double,
                 I = ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__Int32;
  char subs[512], filt[200];
  sp_seen_t seen = {0}, ncmd = {0};
  struct mosquitto *pubc, *cmd;

  snprintf(subs, sizeof(subs),
           "    - filter: spBv1.0/%s/+/+/#\n      stream: readings\n"
           "      decoder: sparkplug\n",
           prefix);
  write_mqtt_config(subs, NULL);
  pid_t pid = daemon_start(&subscribed);

  /* An application watching for the rebirth command. */
  CHECK((cmd = mosquitto_new(NULL, true, &ncmd)), "cmd client");
  mosquitto_message_callback_set(cmd, sp_on_message);
  CHECK(mosquitto_connect(cmd, mqtt_host, mqtt_port, 30) == 0, "connect");
  snprintf(filt, sizeof(filt), "spBv1.0/%s/NCMD/#", prefix);
  CHECK(mosquitto_subscribe(cmd, NULL, filt, 0) == 0, "subscribe");
  CHECK(mosquitto_loop_start(cmd) == 0, "loop");

  CHECK((pubc = mosquitto_new(NULL, true, NULL)), "pub client");
  CHECK(mosquitto_connect(pubc, mqtt_host, mqtt_port, 30) == 0, "connect");
  CHECK(mosquitto_loop_start(pubc) == 0, "loop");
  {
    sp_metric_t m[] = {sp_m("temp", 1, D, 20.0), sp_m("count", 2, I, -5)};
    sp_pub(pubc, "NBIRTH", NULL, 0, m, 2);
  }
  {
    sp_metric_t m[] = {sp_m(NULL, 1, D, 21.5)};
    sp_pub(pubc, "NDATA", NULL, 1, m, 1);
  }
  {
    sp_metric_t m[] = {sp_m("rpm", 10, I, 1200)};
    sp_pub(pubc, "DBIRTH", "d1", 2, m, 1);
  }
  {
    sp_metric_t m[] = {sp_m(NULL, 10, I, 1500)};
    sp_pub(pubc, "DDATA", "d1", 3, m, 1);
  }
  {
    sp_metric_t m[] = {sp_m(NULL, 2, I, 7)}; /* seq 5 after 3: a gap */
    sp_pub(pubc, "NDATA", NULL, 5, m, 1);
  }
  {
    sp_metric_t m[] = {sp_m(NULL, 99, D, 1)}; /* unknown alias */
    sp_pub(pubc, "NDATA", NULL, 6, m, 1);
  }
  {
    sp_metric_t m[] = {sp_m(NULL, 1, D, 19.0)};
    m[0].has_is_historical = 1;
    m[0].is_historical = 1;
    m[0].has_timestamp = 1;
    m[0].timestamp = 1600000000000ull;
    sp_pub(pubc, "NDATA", NULL, 7, m, 1);
  }
  sp_pub(pubc, "DDEATH", "d1", 8, NULL, 0);
  sp_pub(pubc, "NDEATH", NULL, -1, NULL, 0);
  /* NBIRTH 3 (status + 2 values), NDATA 1, DBIRTH 2, DDATA 1, the gap's
   * status + value 2, historical 1, deaths 2 = 12 events; the unknown
   * alias goes to the dead letters. */
  await_metric_ge(EVENTS_MQTT("readings"), 12, 30000);
  await_metric_ge(EVENTS_MQTT("dlq"), 1, 30000);
  uint64_t deadline = now_ms() + 10000;
  while (__atomic_load_n(&ncmd.rebirths, __ATOMIC_SEQ_CST) < 1) {
    CHECK(now_ms() < deadline, "no rebirth NCMD seen");
    usleep(10000);
  }
  CHECK(metric("sluice_mqtt_sparkplug_seq_gaps_total") == 1, "gap counted");
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);

  /* After a restart the aliases come from the store, not a new birth. */
  pid = daemon_start(&subscribed);
  {
    sp_metric_t m[] = {sp_m(NULL, 1, D, 30.0)};
    sp_pub(pubc, "NDATA", NULL, 9, m, 1);
  }
  await_metric_ge(EVENTS_MQTT("readings"), 1, 30000);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit %d", st);
  mosquitto_disconnect(pubc);
  mosquitto_loop_stop(pubc, false);
  mosquitto_destroy(pubc);
  mosquitto_disconnect(cmd);
  mosquitto_loop_stop(cmd, false);
  mosquitto_destroy(cmd);

  uint64_t n = read_stream("readings", sp_cb, &seen);
  CHECK(n == 13, "%llu events, want 13", (unsigned long long)n);
  CHECK(seen.temp == 4 && seen.temps[0] == 20.0 && seen.temps[1] == 21.5 &&
            seen.temps[2] == 19.0 && seen.temps[3] == 30.0,
        "temp values (%d)", seen.temp);
  CHECK(seen.count == 2 && seen.rpm == 2 && seen.hist == 1, "metrics");
  CHECK(seen.online == 2 && seen.offline == 2 && seen.gaps == 1,
        "status: online %d offline %d gaps %d", seen.online, seen.offline,
        seen.gaps);
  printf("sparkplug: 13 events, aliases resolved (also from the store after "
         "a restart), 1 seq gap, %d rebirth request(s)\n",
         ncmd.rebirths);
}

/* Skips (77) without the harness's Mosquitto, or for the scenarios with a
 * private broker without the tools they need. */
static int setup(int argc, char **argv) {
  (void)argc;
  (void)argv;
  const char *port = getenv("SLUICE_TEST_MQTT_PORT"), *sc = fixture_scenario;
  mqtt_host = getenv("SLUICE_TEST_MQTT_HOST");
  int private_broker = !strcmp(sc, "broker") || !strcmp(sc, "tls") ||
                       !strcmp(sc, "v311") || !strcmp(sc, "fanout");
  if (!private_broker && (!mqtt_host || !port)) {
    printf("SKIP: no SLUICE_TEST_MQTT_HOST/PORT (run under scripts/harness)\n");
    return 77;
  }
  if (port)
    mqtt_port = atoi(port);
  if (private_broker && access("/usr/sbin/mosquitto", X_OK) != 0) {
    printf("SKIP: no /usr/sbin/mosquitto\n");
    return 77;
  }
  if (!strcmp(sc, "tls") &&
      (!have_tool("openssl") || !have_tool("mosquitto_passwd"))) {
    printf("SKIP: openssl or mosquitto_passwd not found\n");
    return 77;
  }
  snprintf(prefix, sizeof(prefix), "t%d-%s", (int)getpid(), sc);
  fixture_on_fail = kill_broker;
  mosquitto_lib_init();
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "mqtt", NULL, setup);
}
