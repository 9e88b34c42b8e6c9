/*
 * Sparkplug B state is bounded (issue 14: 60 forged node ids grew the
 * daemon by 12 MB, without end): mqtt.sparkplug_max_nodes nodes and
 * devices, mqtt.sparkplug_max_table_bytes of alias tables. Past either,
 * the message goes to the dead letters (reason sparkplug_limit) and what
 * is tracked already keeps working.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ingest/mqtt/mqtt.h"
#include "sparkplug_b/sparkplug_b.pb-c.h"

typedef Org__Eclipse__Tahu__Protobuf__Payload sp_payload_t;
typedef Org__Eclipse__Tahu__Protobuf__Payload__Metric sp_metric_t;

static sl_mqtt_t *mq;
static sl_ingest_t ic;
static char dir[] = "/tmp/sl_sp_limits_XXXXXX";

static int setup(void **state) {
  static const char yaml[] =
      "node:\n  id: t\n  data_dir: /tmp\n"
      "mqtt:\n  enabled: true\n  sparkplug_max_nodes: 3\n"
      "  sparkplug_max_table_bytes: 64KiB\n"
      "  subscriptions:\n"
      "    - filter: spBv1.0/+/+/#\n      decoder: sparkplug\n"
      "streams:\n  - name: readings\n";
  char err[256];
  sl_store_opts_t so;
  (void)state;
  assert_non_null(mkdtemp(dir));
  sl_store_opts_init(&so);
  assert_int_equal(sl_store_env_open(dir, &so, &ic.st, err, sizeof(err)), 0);
  assert_int_equal(sl_metrics_new(&ic.mx), 0);
  assert_int_equal(sl_config_load_string("t", yaml, sizeof(yaml) - 1, NULL,
                                         &ic.cfg, err, sizeof(err)),
                   0);
  ic.streams = calloc(1, sizeof(*ic.streams));
  ic.nstreams = 1;
  ic.streams[0].name = "readings";
  static const sl_store_stream_conf_t conf = {0};
  assert_int_equal(
      sl_store_stream_create(ic.st, "readings", &conf, &ic.streams[0].id), 0);
  mq = calloc(1, sizeof(*mq));
  mq->ic = &ic;
  mq->cfg = ic.cfg;
  mq->dlq = SIZE_MAX;
  mq->max_events = 100000;
  mq->sb = calloc(1, sizeof(*mq->sb));
  assert_int_equal(mqtt__rules_init(mq, err, sizeof(err)), 0);
  assert_int_equal(sl_sp_new(mq, &mq->sp), 0);
  return 0;
}

static double limit_errors(void) {
  return (double)sl_metric_count(sl_metrics_counter(
      ic.mx, "sluice_mqtt_decode_errors_total",
      "MQTT payloads rejected, by reason", "reason=\"sparkplug_limit\""));
}

/* Sends one message with n metrics named "m<i>" with alias i (a birth) or
 * alias-only (data); returns the events it built. */
static uint32_t sp_send(const char *topic, size_t n, bool names, uint64_t seq) {
  sp_payload_t pl = ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__INIT;
  sp_metric_t *ms = calloc(n, sizeof(*ms));
  sp_metric_t **pm = calloc(n, sizeof(*pm));
  char(*names_buf)[32] = calloc(n, 32);
  for (size_t i = 0; i < n; i++) {
    org__eclipse__tahu__protobuf__payload__metric__init(&ms[i]);
    snprintf(names_buf[i], 32, "metric-with-a-name-%zu", i);
    ms[i].name = names ? names_buf[i] : NULL;
    ms[i].has_alias = 1;
    ms[i].alias = i;
    ms[i].has_datatype = 1;
    ms[i].datatype = ORG__ECLIPSE__TAHU__PROTOBUF__DATA_TYPE__Double;
    ms[i].value_case =
        ORG__ECLIPSE__TAHU__PROTOBUF__PAYLOAD__METRIC__VALUE_DOUBLE_VALUE;
    ms[i].double_value = (double)i;
    pm[i] = &ms[i];
  }
  pl.n_metrics = n;
  pl.metrics = pm;
  pl.has_seq = 1;
  pl.seq = seq;
  size_t len = org__eclipse__tahu__protobuf__payload__get_packed_size(&pl);
  uint8_t *buf = malloc(len);
  org__eclipse__tahu__protobuf__payload__pack(&pl, buf);
  uint32_t before = mq->built_events;
  sl_sp_handle(mq, &mq->rules[0], topic, buf, len, 1000);
  free(buf);
  free(names_buf);
  free(pm);
  free(ms);
  return mq->built_events - before;
}

static void test_node_cap(void **state) {
  (void)state;
  /* Three nodes fit (each birth: a status event and 2 readings). */
  assert_int_equal(sp_send("spBv1.0/g/NBIRTH/n1", 2, true, 0), 3);
  assert_int_equal(sp_send("spBv1.0/g/NBIRTH/n2", 2, true, 0), 3);
  assert_int_equal(sp_send("spBv1.0/g/NBIRTH/n3", 2, true, 0), 3);
  assert_true(limit_errors() == 0);
  /* A fourth node id, or a device (they count too), is refused. */
  assert_int_equal(sp_send("spBv1.0/g/NBIRTH/forged", 2, true, 0), 0);
  assert_int_equal(sp_send("spBv1.0/g/DBIRTH/n1/dev", 2, true, 1), 0);
  assert_true(limit_errors() == 2);
  /* The tracked ones still resolve their aliases. */
  assert_int_equal(sp_send("spBv1.0/g/NDATA/n2", 2, false, 1), 2);
}

static void test_table_bytes(void **state) {
  (void)state;
  double before = limit_errors();
  /* ~60 bytes an alias: 2000 aliases pass 64 KiB. The old table stays. */
  assert_int_equal(sp_send("spBv1.0/g/NBIRTH/n3", 2000, true, 0), 0);
  assert_true(limit_errors() == before + 1);
  assert_int_equal(sp_send("spBv1.0/g/NDATA/n3", 2, false, 1), 2);
  /* A birth that fits replaces it. */
  assert_int_equal(sp_send("spBv1.0/g/NBIRTH/n3", 500, true, 0), 501);
  assert_int_equal(sp_send("spBv1.0/g/NDATA/n3", 500, false, 1), 500);
  /* Room is given back by a rebirth: a smaller table, then another big one
   * for another node fits again. */
  assert_int_equal(sp_send("spBv1.0/g/NBIRTH/n3", 1, true, 0), 2);
  assert_int_equal(sp_send("spBv1.0/g/NBIRTH/n1", 500, true, 0), 501);
}

static int teardown(void **state) {
  char cmd[64];
  (void)state;
  sl_sp_free(mq->sp);
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_node_cap),
      cmocka_unit_test(test_table_bytes),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
