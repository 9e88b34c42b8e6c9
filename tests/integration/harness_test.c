/*
 * harness_test: proves that the brokers scripts/harness starts give sluice's
 * forwarders what they rely on, with the client libraries sluice links:
 *
 *   harness_test kafka  idempotent producer (acks=all) -> fresh consumer
 *                       group: count, order and content of N messages.
 *   harness_test txn    transactional producer: one committed and one
 *                       aborted transaction (then a committed sentinel);
 *                       read_committed sees only the committed messages,
 *                       read_uncommitted sees all (so the abort is real).
 *   harness_test mqtt   QoS 1 subscriber and publisher on Mosquitto: all
 *                       messages arrive once, in order.
 *
 * Broker addresses come from SLUICE_TEST_KAFKA_BOOTSTRAP and
 * SLUICE_TEST_MQTT_HOST/PORT. Without them the test exits 77, which ctest
 * reports as skipped. Every wait is bounded by a deadline and waits for a
 * condition; every name is unique per run so reruns never see old data.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <mosquitto.h>

#include "common/common.h"

#define EXIT_SKIP 77
#define KAFKA_N 1000  /* messages in the idempotent test */
#define TXN_N 100     /* messages in each transaction */
#define MQTT_N 200    /* messages in the MQTT test */
#define STEP_MS 30000 /* bound on each step: a healthy run needs far less */

/* "sluice-it-<pid>-<wall ns>": prefix of every topic, group and client id. */
static char run_id[64];

static void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void failf(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "harness_test: FAIL: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static uint64_t deadline_in(int ms) {
  return sl_now_mono_ns() + (uint64_t)ms * 1000000u;
}

/* Milliseconds left before deadline, 0 once it has passed. */
static int ms_left(uint64_t deadline) {
  uint64_t now = sl_now_mono_ns();
  return now >= deadline ? 0 : (int)((deadline - now) / 1000000u);
}

/* Returns the variable's value, or NULL after saying why the test skips. */
static const char *need_env(const char *name) {
  const char *v = getenv(name);
  if (v && *v)
    return v;
  printf("harness_test: SKIP: %s is not set; run the integration tests "
         "under the broker harness: scripts/harness run -- ctest "
         "--test-dir build\n",
         name);
  return NULL;
}

/*
 * Expected messages, in log order, as runs of "<prefix>-<index>" payloads.
 * Value: "<prefix>-<index>-<topic>", key: "k-<prefix>-<index>".
 */
typedef struct run {
  const char *prefix; /* names the step that produced the run */
  int n;              /* messages in the run */
} run_t;

static void format_msg(char *buf, size_t len, bool key, const char *prefix,
                       int i, const char *topic) {
  if (key)
    snprintf(buf, len, "k-%s-%06d", prefix, i);
  else
    snprintf(buf, len, "%s-%06d-%s", prefix, i, topic);
}

/* ---- Kafka ------------------------------------------------------------ */

/* Delivery reports of one producer. */
typedef struct dr_state {
  int delivered;       /* successful reports */
  int failed;          /* failed reports */
  bool check_offsets;  /* report i must carry offset i (fresh topic) */
  int bad_offsets;     /* reports whose offset was not the expected one */
  char first_err[256]; /* the first failure, for the report */
} dr_state_t;

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  dr_state_t *dr = opaque;
  intptr_t i = (intptr_t)m->_private;
  if (m->err) {
    if (dr->failed++ == 0)
      snprintf(dr->first_err, sizeof(dr->first_err), "message %ld: %s", (long)i,
               rd_kafka_err2str(m->err));
    return;
  }
  if (dr->check_offsets && m->offset != (int64_t)i) {
    if (dr->bad_offsets++ == 0)
      snprintf(dr->first_err, sizeof(dr->first_err),
               "message %ld delivered at offset %" PRId64, (long)i, m->offset);
  }
  dr->delivered++;
}

/* A librdkafka property: name and value. */
typedef const char *kprop_t[2];

/* Returns a config with bootstrap.servers and the n props, NULL on error. */
static rd_kafka_conf_t *kconf_new(const char *bootstrap, const kprop_t *props,
                                  size_t n) {
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr,
                        sizeof(errstr)) != RD_KAFKA_CONF_OK)
    goto fail;
  for (size_t i = 0; i < n; i++) {
    if (rd_kafka_conf_set(conf, props[i][0], props[i][1], errstr,
                          sizeof(errstr)) != RD_KAFKA_CONF_OK)
      goto fail;
  }
  return conf;
fail:
  failf("librdkafka config: %s", errstr);
  rd_kafka_conf_destroy(conf);
  return NULL;
}

/* Creates a handle; conf is consumed either way. */
static rd_kafka_t *kafka_new(rd_kafka_type_t type, rd_kafka_conf_t *conf) {
  char errstr[512];
  rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
  if (!rk) {
    failf("rd_kafka_new: %s", errstr);
    rd_kafka_conf_destroy(conf);
  }
  return rk;
}

/* Creates topic with one partition through the Admin API. */
static int create_topic(const char *bootstrap, const char *topic) {
  char errstr[512];
  int ret = -1;
  rd_kafka_t *rk = NULL;
  rd_kafka_NewTopic_t *nt = NULL;
  rd_kafka_AdminOptions_t *opts = NULL;
  rd_kafka_queue_t *q = NULL;
  rd_kafka_event_t *ev = NULL;
  const rd_kafka_topic_result_t **res;
  size_t cnt = 0;
  rd_kafka_conf_t *conf = kconf_new(bootstrap, NULL, 0);

  if (!conf || !(rk = kafka_new(RD_KAFKA_PRODUCER, conf)))
    goto fail;
  nt = rd_kafka_NewTopic_new(topic, 1, 1, errstr, sizeof(errstr));
  if (!nt) {
    failf("NewTopic %s: %s", topic, errstr);
    goto fail;
  }
  opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  if (rd_kafka_AdminOptions_set_operation_timeout(opts, STEP_MS, errstr,
                                                  sizeof(errstr)) ||
      rd_kafka_AdminOptions_set_request_timeout(opts, STEP_MS, errstr,
                                                sizeof(errstr))) {
    failf("AdminOptions: %s", errstr);
    goto fail;
  }
  q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
  ev = rd_kafka_queue_poll(q, STEP_MS + 5000);
  if (!ev) {
    failf("CreateTopics %s: no result within %d ms", topic, STEP_MS + 5000);
    goto fail;
  }
  if (rd_kafka_event_error(ev)) {
    failf("CreateTopics %s: %s", topic, rd_kafka_event_error_string(ev));
    goto fail;
  }
  res = rd_kafka_CreateTopics_result_topics(
      rd_kafka_event_CreateTopics_result(ev), &cnt);
  if (cnt != 1 || rd_kafka_topic_result_error(res[0])) {
    failf("CreateTopics %s: %s", topic,
          cnt == 1 ? rd_kafka_topic_result_error_string(res[0])
                   : "no topic in the result");
    goto fail;
  }
  ret = 0;
fail:
  if (ev)
    rd_kafka_event_destroy(ev);
  if (q)
    rd_kafka_queue_destroy(q);
  if (opts)
    rd_kafka_AdminOptions_destroy(opts);
  if (nt)
    rd_kafka_NewTopic_destroy(nt);
  if (rk)
    rd_kafka_destroy(rk);
  return ret;
}

/* Produces run r to partition 0; index i rides along as the msg opaque. */
static int produce_run(rd_kafka_t *rk, const char *topic, run_t r,
                       uint64_t deadline) {
  char key[64], val[256];
  for (int i = 0; i < r.n; i++) {
    rd_kafka_resp_err_t err;
    format_msg(key, sizeof(key), true, r.prefix, i, topic);
    format_msg(val, sizeof(val), false, r.prefix, i, topic);
    for (;;) {
      err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
          RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, strlen(val)),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
          RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || ms_left(deadline) == 0)
        break;
      rd_kafka_poll(rk, 10); /* serves delivery reports, freeing room */
    }
    if (err) {
      failf("produce %s #%d to %s: %s", r.prefix, i, topic,
            rd_kafka_err2str(err));
      return -1;
    }
  }
  return 0;
}

/* Serves delivery reports until want have arrived or the deadline passes. */
static int await_delivery(rd_kafka_t *rk, dr_state_t *dr, int want,
                          uint64_t deadline) {
  int left;
  while (dr->delivered + dr->failed < want && (left = ms_left(deadline)) > 0)
    rd_kafka_poll(rk, SL_MIN(left, 100));
  if (dr->failed || dr->bad_offsets) {
    failf("%d of %d deliveries failed, %d at a wrong offset; first: %s",
          dr->failed, want, dr->bad_offsets, dr->first_err);
    return -1;
  }
  if (dr->delivered != want) {
    failf("%d of %d delivery reports after %d ms", dr->delivered, want,
          STEP_MS);
    return -1;
  }
  return 0;
}

/*
 * Reads topic with a fresh consumer group from the beginning and checks that
 * it holds exactly the runs, in order (offsets too when check_offsets).
 */
static int consume_expect(const char *bootstrap, const char *topic,
                          const char *isolation, const run_t *runs,
                          size_t nruns, bool check_offsets) {
  char group[128], key[64], val[256];
  int ret = -1, want = 0, got = 0, left;
  size_t r = 0;
  int in_run = 0;
  rd_kafka_t *rk = NULL;
  rd_kafka_topic_partition_list_t *subs = NULL;
  rd_kafka_resp_err_t err;
  uint64_t deadline = deadline_in(STEP_MS);

  for (size_t k = 0; k < nruns; k++)
    want += runs[k].n;
  snprintf(group, sizeof(group), "%s-%s", topic, isolation);
  const kprop_t props[] = {
      {"group.id", group},
      {"client.id", group},
      {"auto.offset.reset", "earliest"},
      {"enable.auto.commit", "false"},
      {"isolation.level", isolation},
  };
  rd_kafka_conf_t *conf = kconf_new(bootstrap, props, SL_ARRAY_SIZE(props));
  if (!conf || !(rk = kafka_new(RD_KAFKA_CONSUMER, conf)))
    goto fail;
  rd_kafka_poll_set_consumer(rk);
  subs = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
  if ((err = rd_kafka_subscribe(rk, subs))) {
    failf("subscribe %s: %s", topic, rd_kafka_err2str(err));
    goto fail;
  }
  while (got < want && (left = ms_left(deadline)) > 0) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, SL_MIN(left, 200));
    if (!m)
      continue;
    if (m->err) {
      failf("consume %s (%s): %s", topic, isolation,
            rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      goto fail;
    }
    while (in_run == runs[r].n) {
      r++;
      in_run = 0;
    }
    format_msg(key, sizeof(key), true, runs[r].prefix, in_run, topic);
    format_msg(val, sizeof(val), false, runs[r].prefix, in_run, topic);
    bool same = m->len == strlen(val) && !memcmp(m->payload, val, m->len) &&
                m->key_len == strlen(key) && !memcmp(m->key, key, m->key_len);
    if (!same || (check_offsets && m->offset != got)) {
      failf("%s (%s): message #%d at offset %" PRId64
            " is '%.*s' (key '%.*s'), expected '%s' (key '%s')%s",
            topic, isolation, got, m->offset, (int)SL_MIN(m->len, 200),
            (const char *)m->payload, (int)SL_MIN(m->key_len, 60),
            (const char *)m->key, val, key, same ? " at its own offset" : "");
      rd_kafka_message_destroy(m);
      goto fail;
    }
    rd_kafka_message_destroy(m);
    got++;
    in_run++;
  }
  if (got != want) {
    failf("%s (%s): consumed %d of %d messages in %d ms", topic, isolation, got,
          want, STEP_MS);
    goto fail;
  }
  ret = 0;
fail:
  if (subs)
    rd_kafka_topic_partition_list_destroy(subs);
  if (rk) {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  return ret;
}

static int test_kafka(void) {
  const char *bootstrap = need_env("SLUICE_TEST_KAFKA_BOOTSTRAP");
  char topic[128];
  int ret = -1;
  int64_t lo = -1, hi = -1;
  rd_kafka_t *rk = NULL;
  rd_kafka_resp_err_t err;
  dr_state_t dr = {.check_offsets = true};
  const run_t runs[] = {{"idem", KAFKA_N}};
  uint64_t deadline = deadline_in(STEP_MS);

  if (!bootstrap)
    return EXIT_SKIP;
  printf("harness_test: librdkafka %s, Kafka at %s\n", rd_kafka_version_str(),
         bootstrap);
  snprintf(topic, sizeof(topic), "%s-idem", run_id);
  if (create_topic(bootstrap, topic))
    return -1;

  const kprop_t props[] = {
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"linger.ms", "5"},
      {"client.id", topic},
  };
  rd_kafka_conf_t *conf = kconf_new(bootstrap, props, SL_ARRAY_SIZE(props));
  if (!conf)
    goto fail;
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_opaque(conf, &dr);
  if (!(rk = kafka_new(RD_KAFKA_PRODUCER, conf)))
    goto fail;
  if (produce_run(rk, topic, runs[0], deadline) ||
      await_delivery(rk, &dr, KAFKA_N, deadline))
    goto fail;
  /* Idempotence must leave exactly N records: no duplicates from retries. */
  err = rd_kafka_query_watermark_offsets(rk, topic, 0, &lo, &hi, STEP_MS);
  if (err || lo != 0 || hi != KAFKA_N) {
    failf("%s: watermarks [%" PRId64 ", %" PRId64 ") (%s), expected [0, %d)",
          topic, lo, hi, rd_kafka_err2str(err), KAFKA_N);
    goto fail;
  }
  if (consume_expect(bootstrap, topic, "read_committed", runs, 1, true))
    goto fail;
  ret = 0;
fail:
  if (rk)
    rd_kafka_destroy(rk);
  return ret;
}

/* Calls a transaction API and reports its error; returns 0 or -1. */
static int txn_ok(rd_kafka_error_t *error, const char *what) {
  if (!error)
    return 0;
  failf("%s: %s%s", what, rd_kafka_error_string(error),
        rd_kafka_error_txn_requires_abort(error) ? " (requires abort)" : "");
  rd_kafka_error_destroy(error);
  return -1;
}

static int test_txn(void) {
  const char *bootstrap = need_env("SLUICE_TEST_KAFKA_BOOTSTRAP");
  char topic[128];
  int ret = -1;
  rd_kafka_t *rk = NULL;
  dr_state_t dr = {.check_offsets = false};
  const run_t committed = {"commit", TXN_N};
  const run_t aborted = {"abort", TXN_N};
  const run_t sentinel = {"sentinel", 1};
  uint64_t deadline = deadline_in(STEP_MS);

  if (!bootstrap)
    return EXIT_SKIP;
  snprintf(topic, sizeof(topic), "%s-txn", run_id);
  if (create_topic(bootstrap, topic))
    return -1;

  const kprop_t props[] = {
      {"transactional.id", topic},
      {"client.id", topic},
  };
  rd_kafka_conf_t *conf = kconf_new(bootstrap, props, SL_ARRAY_SIZE(props));
  if (!conf)
    goto fail;
  rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
  rd_kafka_conf_set_opaque(conf, &dr);
  if (!(rk = kafka_new(RD_KAFKA_PRODUCER, conf)))
    goto fail;
  if (txn_ok(rd_kafka_init_transactions(rk, ms_left(deadline)),
             "init_transactions"))
    goto fail;

  /* Transaction 1: committed. */
  if (txn_ok(rd_kafka_begin_transaction(rk), "begin 1") ||
      produce_run(rk, topic, committed, deadline) ||
      txn_ok(rd_kafka_commit_transaction(rk, ms_left(deadline)), "commit 1"))
    goto fail;
  /* Transaction 2: written to the log (all delivered), then aborted. */
  if (txn_ok(rd_kafka_begin_transaction(rk), "begin 2") ||
      produce_run(rk, topic, aborted, deadline) ||
      await_delivery(rk, &dr, 2 * TXN_N, deadline) ||
      txn_ok(rd_kafka_abort_transaction(rk, ms_left(deadline)), "abort 2"))
    goto fail;
  /*
   * Transaction 3: one committed sentinel. A reader that reaches it has
   * passed the aborted transaction's marker, so "exactly the committed
   * messages" needs no wait for markers to land.
   */
  if (txn_ok(rd_kafka_begin_transaction(rk), "begin 3") ||
      produce_run(rk, topic, sentinel, deadline) ||
      txn_ok(rd_kafka_commit_transaction(rk, ms_left(deadline)), "commit 3") ||
      await_delivery(rk, &dr, 2 * TXN_N + 1, deadline))
    goto fail;

  const run_t visible[] = {committed, sentinel};
  const run_t everything[] = {committed, aborted, sentinel};
  if (consume_expect(bootstrap, topic, "read_committed", visible,
                     SL_ARRAY_SIZE(visible), false) ||
      consume_expect(bootstrap, topic, "read_uncommitted", everything,
                     SL_ARRAY_SIZE(everything), false))
    goto fail;
  ret = 0;
fail:
  if (rk)
    rd_kafka_destroy(rk);
  return ret;
}

/* ---- MQTT ------------------------------------------------------------- */

/* Both MQTT clients of the test and what their callbacks saw. */
typedef struct mqtt_test {
  struct mosquitto *sub; /* QoS 1 subscriber */
  struct mosquitto *pub; /* QoS 1 publisher */
  const char *topic;     /* unique to this run */
  int sub_connack;       /* -1 until CONNACK, then its return code */
  int pub_connack;       /* -1 until CONNACK, then its return code */
  int granted_qos;       /* -1 until SUBACK, then the granted QoS */
  int received;          /* messages received, all as expected */
  int acked;             /* PUBACKs received by the publisher */
  char err[512];         /* first unexpected message, empty if none */
} mqtt_test_t;

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
  mqtt_test_t *t = obj;
  if (mosq == t->sub)
    t->sub_connack = rc;
  else
    t->pub_connack = rc;
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid,
                         int qos_count, const int *granted_qos) {
  mqtt_test_t *t = obj;
  t->granted_qos = qos_count == 1 ? granted_qos[0] : 0x80;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid) {
  mqtt_test_t *t = obj;
  t->acked++;
}

static void on_message(struct mosquitto *mosq, void *obj,
                       const struct mosquitto_message *msg) {
  mqtt_test_t *t = obj;
  char want[256];
  if (t->err[0])
    return;
  format_msg(want, sizeof(want), false, "mqtt", t->received, t->topic);
  if (strcmp(msg->topic, t->topic) || msg->qos != 1 || msg->retain ||
      msg->payloadlen != (int)strlen(want) ||
      memcmp(msg->payload, want, (size_t)msg->payloadlen)) {
    snprintf(t->err, sizeof(t->err),
             "message #%d: topic '%s' qos %d retain %d payload '%.*s', "
             "expected '%s' at qos 1",
             t->received, msg->topic, msg->qos, (int)msg->retain,
             SL_MIN(msg->payloadlen, 200), (const char *)msg->payload, want);
    return;
  }
  t->received++;
}

/* Runs both clients' network loops once; -1 when either has failed. */
static int mqtt_pump(mqtt_test_t *t) {
  struct mosquitto *clients[] = {t->sub, t->pub};
  for (size_t i = 0; i < SL_ARRAY_SIZE(clients); i++) {
    int rc = mosquitto_loop(clients[i], 5, 1);
    if (rc != MOSQ_ERR_SUCCESS) {
      failf("mqtt %s client: %s", i == 0 ? "subscriber" : "publisher",
            mosquitto_strerror(rc));
      return -1;
    }
  }
  return 0;
}

/* Pumps both clients until *flag != -1 or the deadline; -1 on timeout. */
static int mqtt_await(mqtt_test_t *t, const int *flag, const char *what) {
  uint64_t deadline = deadline_in(STEP_MS);
  while (*flag == -1 && ms_left(deadline) > 0) {
    if (mqtt_pump(t))
      return -1;
  }
  if (*flag == -1) {
    failf("mqtt: no %s within %d ms", what, STEP_MS);
    return -1;
  }
  return 0;
}

static struct mosquitto *mqtt_client_new(mqtt_test_t *t, const char *role) {
  char id[128];
  snprintf(id, sizeof(id), "%s-%s", run_id, role);
  struct mosquitto *mosq = mosquitto_new(id, true, t);
  if (!mosq) {
    failf("mosquitto_new %s failed", id);
    return NULL;
  }
  mosquitto_connect_callback_set(mosq, on_connect);
  return mosq;
}

static int test_mqtt(void) {
  const char *host = need_env("SLUICE_TEST_MQTT_HOST");
  const char *port_s = host ? need_env("SLUICE_TEST_MQTT_PORT") : NULL;
  char topic[128], payload[256];
  int ret = -1, rc, major, minor, rev;
  mqtt_test_t t = {.sub_connack = -1, .pub_connack = -1, .granted_qos = -1};

  if (!host || !port_s)
    return EXIT_SKIP;
  int port = atoi(port_s);
  if (port <= 0 || port > 65535) {
    failf("SLUICE_TEST_MQTT_PORT '%s' is not a port", port_s);
    return -1;
  }
  mosquitto_lib_version(&major, &minor, &rev);
  printf("harness_test: libmosquitto %d.%d.%d, Mosquitto at %s:%d\n", major,
         minor, rev, host, port);
  snprintf(topic, sizeof(topic), "sluice/it/%s", run_id);
  t.topic = topic;
  mosquitto_lib_init();
  if (!(t.sub = mqtt_client_new(&t, "sub")) ||
      !(t.pub = mqtt_client_new(&t, "pub")))
    goto fail;
  mosquitto_subscribe_callback_set(t.sub, on_subscribe);
  mosquitto_message_callback_set(t.sub, on_message);
  mosquitto_publish_callback_set(t.pub, on_publish);

  if ((rc = mosquitto_connect(t.sub, host, port, 30)) ||
      (rc = mosquitto_connect(t.pub, host, port, 30))) {
    failf("mqtt connect %s:%d: %s", host, port, mosquitto_strerror(rc));
    goto fail;
  }
  if (mqtt_await(&t, &t.sub_connack, "subscriber CONNACK") ||
      mqtt_await(&t, &t.pub_connack, "publisher CONNACK"))
    goto fail;
  if (t.sub_connack || t.pub_connack) {
    failf("mqtt CONNACK: subscriber %s, publisher %s",
          mosquitto_connack_string(t.sub_connack),
          mosquitto_connack_string(t.pub_connack));
    goto fail;
  }
  if ((rc = mosquitto_subscribe(t.sub, NULL, topic, 1))) {
    failf("mqtt subscribe %s: %s", topic, mosquitto_strerror(rc));
    goto fail;
  }
  /* Publishing before the SUBACK could lose messages: not a broker fault. */
  if (mqtt_await(&t, &t.granted_qos, "SUBACK"))
    goto fail;
  if (t.granted_qos != 1) {
    failf("mqtt subscribe %s: granted QoS %d, wanted 1", topic, t.granted_qos);
    goto fail;
  }
  for (int i = 0; i < MQTT_N; i++) {
    format_msg(payload, sizeof(payload), false, "mqtt", i, topic);
    rc = mosquitto_publish(t.pub, NULL, topic, (int)strlen(payload), payload, 1,
                           false);
    if (rc) {
      failf("mqtt publish #%d: %s", i, mosquitto_strerror(rc));
      goto fail;
    }
  }
  uint64_t deadline = deadline_in(STEP_MS);
  while ((t.received < MQTT_N || t.acked < MQTT_N) && !t.err[0] &&
         ms_left(deadline) > 0) {
    if (mqtt_pump(&t))
      goto fail;
  }
  if (t.err[0]) {
    failf("mqtt %s: %s", topic, t.err);
    goto fail;
  }
  if (t.received != MQTT_N || t.acked != MQTT_N) {
    failf("mqtt %s: %d of %d received, %d PUBACKs, after %d ms", topic,
          t.received, MQTT_N, t.acked, STEP_MS);
    goto fail;
  }
  ret = 0;
fail:
  if (t.pub) {
    mosquitto_disconnect(t.pub);
    mosquitto_destroy(t.pub);
  }
  if (t.sub) {
    mosquitto_disconnect(t.sub);
    mosquitto_destroy(t.sub);
  }
  mosquitto_lib_cleanup();
  return ret;
}

/* ---- main ------------------------------------------------------------- */

static const struct {
  const char *name;
  int (*run)(void);
} tests[] = {
    {"kafka", test_kafka},
    {"txn", test_txn},
    {"mqtt", test_mqtt},
};

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc == 2) {
    for (size_t i = 0; i < SL_ARRAY_SIZE(tests); i++) {
      if (strcmp(argv[1], tests[i].name))
        continue;
      snprintf(run_id, sizeof(run_id), "sluice-it-%ld-%" PRId64, (long)getpid(),
               sl_now_wall_ns());
      uint64_t t0 = sl_now_mono_ns();
      int rc = tests[i].run();
      if (rc == EXIT_SKIP)
        return EXIT_SKIP;
      printf("harness_test %s: %s in %.1f s\n", tests[i].name,
             rc ? "FAILED" : "passed", (sl_now_mono_ns() - t0) / 1e9);
      return rc ? 1 : 0;
    }
  }
  fprintf(stderr, "usage: harness_test kafka|txn|mqtt\n");
  return 2;
}
