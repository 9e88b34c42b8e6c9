/*
 * ingest/mqtt/burst.c: what every MQTT decoder (JSON in acks.c, Sparkplug
 * in sparkplug.c) adds to: the per-stream batches of the burst being read,
 * the state puts that commit with them, the dead-letter stream and the
 * decode-error counter.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/log.h"
#include "ingest/mqtt/mqtt.h"
#include "sluice/v1/event.pb-c.h"

sl_json_batch_t *mqtt__batch(sl_mqtt_t *mq, size_t idx) {
  mqtt_stream_batch_t *b = &mq->sb[idx];
  if (!b->used) {
    sl_json_batch_init(&b->jb);
    b->jb.rules = &mq->ev_rules;
    b->used = true;
  }
  return &b->jb;
}

void mqtt__count_error(sl_mqtt_t *mq, const char *reason) {
  char labels[80];
  snprintf(labels, sizeof(labels), "reason=\"%s\"", reason);
  sl_metric_add(sl_metrics_counter(mq->ic->mx,
                                   "sluice_mqtt_decode_errors_total",
                                   "MQTT payloads rejected, by reason", labels),
                1);
}

int mqtt__state_put(sl_mqtt_t *mq, const char *key, void *val, size_t vlen) {
  mqtt_state_put_t *p = calloc(1, sizeof(*p)), **tail;
  if (!p || !(p->key = strdup(key))) {
    free(p);
    free(val);
    return -ENOMEM;
  }
  p->val = val;
  p->vlen = vlen;
  /* A later put of the same key wins: replace it in place (Sparkplug puts
   * each node's seq per message). */
  for (tail = &mq->puts; *tail; tail = &(*tail)->next)
    if (!strcmp((*tail)->key, key)) {
      free((*tail)->val);
      (*tail)->val = val;
      (*tail)->vlen = vlen;
      free(p->key);
      free(p);
      return 0;
    }
  *tail = p;
  return 0;
}

void mqtt__dead_letter(sl_mqtt_t *mq, const char *topic, const void *payload,
                       size_t len, const char *decoder, const char *reason,
                       const char *detail) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  Sluice__V1__Attribute a[4], *pa[4];
  char size[24];
  const char *kv[4][2] = {{"reason", reason},
                          {"decoder", decoder},
                          {"detail", detail ? detail : ""},
                          {"size", size}};

  mqtt__count_error(mq, reason);
  sl_debug(SL_LOG_CTX_MQTT, topic, "rejected (%s): %s", reason,
           detail ? detail : "");
  if (mq->dlq == SIZE_MAX)
    return;
  snprintf(size, sizeof(size), "%zu", len);
  for (int i = 0; i < 4; i++) {
    sluice__v1__attribute__init(&a[i]);
    a[i].key = (char *)kv[i][0];
    a[i].value = (char *)kv[i][1];
    pa[i] = &a[i];
  }
  ev.source = (char *)(mqtt__utf8_ok(topic, strlen(topic)) ? topic : "?");
  ev.time_ns = sl_now_wall_ns();
  ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
  ev.raw = &raw;
  raw.content_type = "application/octet-stream";
  /* Oversized payloads are recorded without their bytes. */
  if (payload && len <= mq->cfg->mqtt.max_payload_bytes) {
    raw.data.data = (uint8_t *)payload;
    raw.data.len = len;
  }
  ev.n_attributes = 4;
  ev.attributes = pa;
  if (sl_json_batch_add(mqtt__batch(mq, mq->dlq), &ev) == 0)
    mq->built_events++;
}
