/*
 * libFuzzer target: MQTT payload decoders (ingest/mqtt/sparkplug.c and
 * sl_json_decode_mapped() in decode/decode_json.c). The first byte picks
 * the message: bit 7 set = a JSON payload through the mapped decoder, else
 * a Sparkplug message type (NBIRTH, NDATA, DBIRTH, DDATA, NDEATH, DDEATH)
 * handled with alias tables that persist across inputs, against a real
 * store in a temporary directory (alias lookups read its state db).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/mqtt/mqtt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sl_mqtt_t *mq;
static char dir[] = "/tmp/sl_fuzz_sp_XXXXXX";

static void cleanup(void) {
  char cmd[64];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
}

static void setup(void) {
  static sl_ingest_t ic;
  static const char yaml[] =
      "node:\n  id: fuzz\n  data_dir: /tmp\n"
      "mqtt:\n  enabled: true\n  dead_letter_stream: dlq\n"
      "  subscriptions:\n"
      "    - filter: spBv1.0/+/+/#\n      decoder: sparkplug\n"
      "    - filter: j/+a/#\n      source: \"x/{a}\"\n"
      "      json_value: d.v\n      json_time: t\n"
      "streams:\n  - name: readings\n  - name: dlq\n";
  char err[256];
  sl_store_opts_t so;
  if (!mkdtemp(dir))
    abort();
  atexit(cleanup);
  sl_store_opts_init(&so);
  if (sl_store_env_open(dir, &so, &ic.st, err, sizeof(err)) < 0 ||
      sl_metrics_new(&ic.mx) < 0 ||
      sl_config_load_string("fuzz", yaml, sizeof(yaml) - 1, NULL, &ic.cfg, err,
                            sizeof(err)) < 0)
    abort();
  ic.streams = calloc(2, sizeof(*ic.streams));
  ic.nstreams = 2;
  ic.streams[0].name = "readings";
  ic.streams[1].name = "dlq";
  static const sl_store_stream_conf_t conf = {0};
  for (size_t i = 0; i < 2; i++)
    if (sl_store_stream_create(ic.st, ic.streams[i].name, &conf,
                               &ic.streams[i].id) < 0)
      abort();
  mq = calloc(1, sizeof(*mq));
  mq->ic = &ic;
  mq->cfg = ic.cfg;
  mq->dlq = SIZE_MAX;
  mq->max_events = 1000;
  mq->sb = calloc(2, sizeof(*mq->sb));
  if (mqtt__rules_init(mq, err, sizeof(err)) < 0 || sl_sp_new(mq, &mq->sp) < 0)
    abort();
}

static void reset(void) {
  for (size_t i = 0; i < mq->ic->nstreams; i++)
    if (mq->sb[i].used)
      sl_json_batch_reset(&mq->sb[i].jb);
  mq->built_events = 0;
  while (mq->puts) {
    mqtt_state_put_t *p = mq->puts;
    mq->puts = p->next;
    free(p->key);
    free(p->val);
    free(p);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char *const topics[] = {
      "spBv1.0/g/NBIRTH/n",    "spBv1.0/g/NDATA/n",  "spBv1.0/g/DBIRTH/n/d",
      "spBv1.0/g/DDATA/n/d",   "spBv1.0/g/NDEATH/n", "spBv1.0/g/DDEATH/n/d",
      "spBv1.0/g/NDATA/n/x/y", "spBv1.0/g/NCMD/n"};
  if (!mq)
    setup();
  if (size < 1)
    return 0;
  if (data[0] & 0x80) {
    const char *reason;
    char err[256];
    sl_json_decode_mapped((const char *)data + 1, size - 1, &mq->rules[1].map,
                          "x/a", NULL, 0, 0, 100, mqtt__batch(mq, 0), &reason,
                          err, sizeof(err));
  } else {
    sl_sp_handle(mq, &mq->rules[0], topics[data[0] & 7], data + 1, size - 1, 0);
  }
  reset();
  return 0;
}
