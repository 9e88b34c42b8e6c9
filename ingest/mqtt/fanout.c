/*
 * Local fan-out: events of configured streams published to MQTT topics for
 * local apps, and the node's status as a retained message (with a retained
 * "offline" will), on the publish link (its own client id, clean session,
 * so its output never waits for the ingest link's commits).
 *
 * Each fan-out rule reads its stream with a store cursor from the stream's
 * end at start: local apps get live data, not the backlog. Publishing is
 * at most once per event from the daemon's side: a publish link that is
 * down skips nothing (the cursor waits), but events queued inside
 * libmosquitto when the connection drops are lost for local apps (they
 * stay in the store and go to Kafka as usual).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "schemas/event_json.h"
#include "telemetry/log.h"
#include "ingest/mqtt/mqtt.h"
#include "sluice/v1/event.pb-c.h"

/* Events published per rule per call, so a backlog cannot hold the loop. */
#define FANOUT_BURST 2000

struct mqtt_fanout {
  const sl_config_mqtt_fanout_t *conf;
  size_t stream; /* index in ic->streams */
  sl_store_cursor_t *cur;
  uint64_t next; /* next offset to publish */
};

int mqtt__fanout_init(sl_mqtt_t *mq, char *errstr, size_t errlen) {
  const sl_config_t *cfg = mq->cfg;
  sl_ingest_t *ic = mq->ic;
  int rc;

  mq->nfan = cfg->mqtt.fanout.n;
  if (!mq->nfan)
    return 0;
  if (!(mq->fan = calloc(mq->nfan, sizeof(*mq->fan))))
    return -ENOMEM;
  for (size_t i = 0; i < mq->nfan; i++) {
    mqtt_fanout_t *f = &mq->fan[i];
    sl_store_stream_stats_t ss;
    f->conf = &cfg->mqtt.fanout.v[i];
    if (sl_ingest_stream(ic, f->conf->stream, &f->stream) < 0) {
      snprintf(errstr, errlen,
               "mqtt.fanout[%zu].stream: '%s' is not a configured stream", i,
               f->conf->stream);
      return SL_ECONFIG;
    }
    if ((rc = sl_store_stream_stats(ic->st, ic->streams[f->stream].id, &ss)) <
            0 ||
        (rc = sl_store_cursor_open(ic->st, ic->streams[f->stream].id,
                                   ss.next_offset, SL_STORE_OFFSET_END,
                                   &f->cur)) < 0) {
      snprintf(errstr, errlen, "mqtt.fanout[%zu]: %s", i, sl_strerror(rc));
      return rc;
    }
    f->next = ss.next_offset;
  }
  return 0;
}

void mqtt__fanout_free(sl_mqtt_t *mq) {
  for (size_t i = 0; mq->fan && i < mq->nfan; i++)
    sl_store_cursor_close(mq->fan[i].cur);
  free(mq->fan);
  mq->fan = NULL;
}

int mqtt__publish(sl_mqtt_t *mq, const char *topic, const void *payload,
                  size_t len, int qos, bool retain, uint32_t expiry_s) {
  sl_mqtt_link_t *l = &mq->out;
  mosquitto_property *props = NULL;
  int rc;
  if (!mq->have_out || l->state != LINK_ACTIVE)
    return SL_ECLOSED;
  if (expiry_s && mq->cfg->mqtt.version == SL_CONFIG_MQTT_V5)
    mosquitto_property_add_int32(&props, MQTT_PROP_MESSAGE_EXPIRY_INTERVAL,
                                 expiry_s);
  rc = mosquitto_publish_v5(l->mosq, NULL, topic, (int)len, payload, qos,
                            retain, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) {
    sl_debug(SL_LOG_CTX_MQTT, topic, "publish: %s", mosquitto_strerror(rc));
    return SL_EMQTT;
  }
  sl_metric_add(mq->published, 1);
  mqtt__link_flush(l);
  mqtt__link_update(l);
  return 0;
}

int sl_mqtt_publish_retained(sl_mqtt_t *mq, const char *topic,
                             const void *payload, size_t len) {
  return mq ? mqtt__publish(mq, topic, payload, len, 1, true, 0) : SL_ECLOSED;
}

/* Topic levels from event sources: '+', '#' and NUL cannot appear. */
static void topic_expand(const char *tmpl, const char *stream,
                         const char *source, char *out, size_t cap) {
  size_t n = 0;
  for (const char *p = tmpl; *p && n + 1 < cap;) {
    const char *val = NULL;
    if (!strncmp(p, "{stream}", 8))
      val = stream, p += 8;
    else if (!strncmp(p, "{source}", 8))
      val = source, p += 8;
    if (!val) {
      out[n++] = *p++;
      continue;
    }
    for (; *val && n + 1 < cap; val++)
      out[n++] = (*val == '+' || *val == '#') ? '_' : *val;
  }
  out[n] = '\0';
}

static char *event_json(const Sluice__V1__Event *ev) {
  json_t *o = json_object();
  char *s;
  json_object_set_new(o, "source", json_string(ev->source ? ev->source : ""));
  json_object_set_new(o, "time_ns", json_integer(ev->time_ns));
  if (ev->body_case == SLUICE__V1__EVENT__BODY_READING) {
    const Sluice__V1__Reading *r = ev->reading;
    sl_event_json_value(o, r, "value");
    json_object_set_new(o, "quality",
                        json_string(sl_event_quality_name(r->quality)));
    if (r->unit && *r->unit)
      json_object_set_new(o, "unit", json_string(r->unit));
  } else if (ev->body_case == SLUICE__V1__EVENT__BODY_STATUS) {
    json_object_set_new(o, "state", json_string(ev->status->state));
    json_object_set_new(o, "reason", json_string(ev->status->reason));
  }
  for (size_t i = 0; i < ev->n_attributes; i++)
    json_object_set_new(o, ev->attributes[i]->key,
                        json_string(ev->attributes[i]->value));
  s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  return s;
}

void mqtt__fanout_poll(sl_mqtt_t *mq) {
  sl_ingest_t *ic = mq->ic;
  if (!mq->nfan || mq->out.state != LINK_ACTIVE)
    return;
  for (size_t i = 0; i < mq->nfan; i++) {
    mqtt_fanout_t *f = &mq->fan[i];
    const char *sname = ic->streams[f->stream].name;
    unsigned sent = 0;
    sl_store_rec_t rec;
    while (sent < FANOUT_BURST && sl_store_cursor_next(f->cur, &rec) == 0) {
      Sluice__V1__EventBatch *b;
      if (rec.status != 0 ||
          !(b = sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload)))
        continue;
      for (size_t k = 0; k < b->n_events; k++) {
        char topic[1200], *js;
        if (rec.first_offset + k < f->next)
          continue; /* the first batch may start before our offset */
        topic_expand(f->conf->topic, sname,
                     b->events[k]->source ? b->events[k]->source : "", topic,
                     sizeof(topic));
        if ((js = event_json(b->events[k]))) {
          mqtt__publish(mq, topic, js, strlen(js), (int)f->conf->qos,
                        f->conf->retain,
                        (uint32_t)(f->conf->message_expiry_ms / 1000));
          free(js);
        }
        sent++;
      }
      f->next = rec.first_offset + rec.count;
      sluice__v1__event_batch__free_unpacked(b, NULL);
    }
  }
}

void mqtt__status_publish(sl_mqtt_t *mq) {
  sl_ingest_t *ic = mq->ic;
  const char *topic = mq->cfg->mqtt.status_topic;
  sl_store_info_t info;
  json_t *o, *streams;
  char *s;

  mq->status_next_ns =
      sl_now_mono_ns() + mq->cfg->mqtt.status_interval_ms * 1000000ull;
  if (!*topic || mq->out.state != LINK_ACTIVE)
    return;
  sl_store_env_info(ic->st, &info);
  o = json_object();
  streams = json_array();
  json_object_set_new(o, "state", json_string("online"));
  json_object_set_new(o, "node", json_string(ic->node_id));
  json_object_set_new(o, "time_ns", json_integer(sl_now_wall_ns()));
  json_object_set_new(o, "store_used_bytes",
                      json_integer((json_int_t)info.used_bytes));
  json_object_set_new(o, "store_budget_bytes",
                      json_integer((json_int_t)info.budget_bytes));
  json_object_set_new(
      o, "mqtt_ingest",
      json_string(mq->in.state == LINK_ACTIVE ? "connected" : "down"));
  json_object_set_new(
      o, "uplink", json_string(mq->cfg->kafka.enabled ? "configured" : "off"));
  for (size_t i = 0; i < ic->nstreams; i++) {
    sl_store_stream_stats_t ss;
    sl_store_consumer_t cons[8];
    size_t nc = 0;
    uint64_t low;
    if (sl_store_stream_stats(ic->st, ic->streams[i].id, &ss) < 0)
      continue;
    /* Backlog: events after the slowest consumer (all stored events when
     * no consumer has committed yet). */
    low = ss.first_offset;
    if (sl_store_consumer_list(ic->st, ss.id, cons, 8, &nc) == 0 && nc) {
      low = UINT64_MAX;
      for (size_t k = 0; k < nc && k < 8; k++)
        low = SL_MIN(low, cons[k].next_offset);
    }
    json_t *so = json_object();
    json_object_set_new(so, "name", json_string(ss.name));
    json_object_set_new(so, "next_offset",
                        json_integer((json_int_t)ss.next_offset));
    json_object_set_new(
        so, "backlog_events",
        json_integer(
            (json_int_t)(ss.next_offset > low ? ss.next_offset - low : 0)));
    json_array_append_new(streams, so);
  }
  json_object_set_new(o, "streams", streams);
  s = json_dumps(o, JSON_COMPACT);
  json_decref(o);
  if (s) {
    mqtt__publish(mq, topic, s, strlen(s), 1, true, 0);
    free(s);
  }
}
