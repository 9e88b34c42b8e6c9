/*
 * MQTT ingest: messages -> per-stream batches -> one store group per burst,
 * and the PUBACK only after that group is durable (docs/MQTT.md).
 *
 * Invariant: mq->unacked counts the QoS 1 messages of the current
 * connection that were read (so libmosquitto may hold their PUBACKs in its
 * output queue) and whose events are not yet in a durable commit. The
 * ingest link may write only while it is 0 (ingest_may_write()), and stops
 * reading while it is not 0 and a commit is pending, so every burst ends
 * in a state where all it read is durable and its PUBACKs can go out
 * together. A commit that fails drops the connection without writing; the
 * broker redelivers to the persistent session.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/pipes.h"
#include "telemetry/log.h"
#include "ingest/mqtt/mqtt.h"
#include "sluice/v1/event.pb-c.h"

/* Commits a link may have in flight while reading QoS 0 traffic. */
#define MAX_COMMITS 4
/* Streams one store group can hold (sl_store_group_submit). */
#define GROUP_STREAMS 16

typedef struct mqtt_commit {
  sl_done_t d; /* first: the daemon hands back &d */
  sl_mqtt_t *mq;
  uint64_t gen;  /* ingest link generation at submit */
  uint32_t qos1; /* QoS 1 messages this commit makes durable */
  size_t n;
  struct {
    size_t idx;
    uint32_t events;
    size_t bytes;
  } s[GROUP_STREAMS];
  uint64_t t0_ns;
  int piped;        /* the group carries pipeline state */
  uint64_t rd_upto; /* redelivery records up to here are in the group */
} mqtt_commit_t;

static void decode_raw(sl_mqtt_t *mq, const mqtt_rule_t *r, const char *source,
                       const struct mosquitto_message *msg, int64_t now) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  ev.source = (char *)source;
  ev.time_ns = now;
  ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
  ev.raw = &raw;
  raw.data.data = msg->payload;
  raw.data.len = (size_t)msg->payloadlen;
  raw.content_type = r->conf->content_type;
  if (sl_json_batch_add(mqtt__batch(mq, r->stream), &ev) == 0)
    mq->built_events++;
}

void mqtt__on_message(sl_mqtt_t *mq, const struct mosquitto_message *msg) {
  const char *caps[MQTT_MAX_CAPTURES];
  size_t caplens[MQTT_MAX_CAPTURES];
  const mqtt_rule_t *r;
  const char *topic = msg->topic, *reason = NULL;
  size_t len = (size_t)msg->payloadlen;
  uint32_t before = mq->built_events;
  int64_t now = sl_now_wall_ns();
  char source[1024], err[256];

  mq->ev_rules.now_ns = now;
  sl_metric_add(mq->messages, 1);
  /* Already stored before a reconnect: its PUBACK (queued now) is all the
   * broker is missing. */
  if (mqtt__redeliver_seen(mq, msg))
    return;
  if (!mqtt__utf8_ok(topic, strlen(topic))) {
    /* libmosquitto and the broker check too; this never trusts them. */
    mqtt__dead_letter(mq, topic, msg->payload, len, "none", "bad_topic",
                      "topic is not valid UTF-8");
    goto out;
  }
  if (!(r = mqtt__rule_match(mq, topic, caps, caplens))) {
    mqtt__dead_letter(mq, topic, msg->payload, len, "none", "no_rule",
                      "no subscription rule matches the topic");
    goto out;
  }
  sl_metric_add(r->messages, 1);
  sl_metric_add(r->bytes, len);
  if (len > mq->cfg->mqtt.max_payload_bytes) {
    snprintf(err, sizeof(err), "%zu bytes, limit %llu", len,
             (unsigned long long)mq->cfg->mqtt.max_payload_bytes);
    mqtt__dead_letter(mq, topic, NULL, len, "none", "too_big", err);
    goto out;
  }
  if (r->conf->decoder == SL_CONFIG_MQTT_SPARKPLUG) {
    sl_sp_handle(mq, r, topic, msg->payload, len, now);
    goto out;
  }
  if (mqtt__source_expand(r, r->conf->source, topic, caps, caplens, source,
                          sizeof(source)) < 0) {
    mqtt__dead_letter(mq, topic, msg->payload, len, "none", "bad_source",
                      "the source template expands to more than 1 KiB");
    goto out;
  }
  if (r->conf->decoder == SL_CONFIG_MQTT_RAW) {
    decode_raw(mq, r, source, msg, now);
    goto out;
  }
  sl_json_batch_t *jb = mqtt__batch(mq, r->stream);
  uint32_t n0 = jb->count;
  if (r->conf->decoder == SL_CONFIG_MQTT_EVENT ||
      r->conf->decoder == SL_CONFIG_MQTT_INFERENCE ||
      r->conf->decoder == SL_CONFIG_MQTT_OIP) {
    /* sluice's own event JSON (docs/HTTP.md: an object, an array or JSON
     * lines, each with its source), as the simulator and HTTP clients send
     * it. The HTTP decoder resets its batch, so it decodes into a scratch
     * batch owned by mq (loop thread only) appended to the stream's. */
    if (!mq->evtmp.used) {
      sl_json_batch_init(&mq->evtmp.jb);
      mq->evtmp.jb.rules = &mq->ev_rules;
      mq->evtmp.used = true;
    }
    sl_json_batch_t *evb = &mq->evtmp.jb;
    bool oip = r->conf->decoder == SL_CONFIG_MQTT_OIP;
    bool inf = oip || r->conf->decoder == SL_CONFIG_MQTT_INFERENCE;
    const sl_config_oip_t *prof = sl_config_oip_find(mq->cfg, r->conf->oip);
    int drc = SL_EPROTO;
    if (inf && !mq->infdec && sl_infer_dec_new(&mq->infdec) < 0) {
      snprintf(err, sizeof(err), "out of memory for the inference decoder");
    } else if (oip && !prof) {
      snprintf(err, sizeof(err), "no oip profile \"%.60s\"", r->conf->oip);
    } else if (oip) {
      sl_oip_map_t m;
      sl_ingest_oip_map(prof, &m);
      drc = sl_infer_decode_oip(mq->infdec, msg->payload ? msg->payload : "",
                                len, &m, source, now, evb, err, sizeof(err));
    } else if (inf)
      drc = sl_infer_decode_json(mq->infdec, msg->payload ? msg->payload : "",
                                 len, source, now, mq->max_events, evb, err,
                                 sizeof(err));
    else
      drc = sl_json_decode_body(msg->payload ? msg->payload : "", len, now,
                                mq->max_events, evb, err, sizeof(err));
    if (drc < 0) {
      mqtt__dead_letter(mq, topic, msg->payload, len,
                        oip   ? "oip"
                        : inf ? "inference"
                              : "event",
                        inf ? "bad_inference" : "bad_event", err);
    } else if (sl_frame_buf_reserve(&jb->buf, evb->buf.len) < 0) {
      mqtt__dead_letter(mq, topic, msg->payload, len, "event", "no_memory",
                        "out of memory appending the events to the burst");
    } else {
      memcpy(jb->buf.data + jb->buf.len, evb->buf.data, evb->buf.len);
      jb->buf.len += evb->buf.len;
      jb->count += evb->count;
      jb->min_time_ns = SL_MIN(jb->min_time_ns, evb->min_time_ns);
      jb->max_time_ns = SL_MAX(jb->max_time_ns, evb->max_time_ns);
      mq->built_events += evb->count;
    }
    goto out;
  }
  if (sl_json_decode_mapped(msg->payload ? msg->payload : "", len, &r->map,
                            source, NULL, 0, now, mq->max_events, jb, &reason,
                            err, sizeof(err)) < 0)
    mqtt__dead_letter(mq, topic, msg->payload, len, "json", reason, err);
  else
    mq->built_events += jb->count - n0;
out:
  /* Its PUBACK is queued now; it may leave only once these events are
   * durable. A message that produced nothing (counted, no dead-letter
   * stream) has nothing to wait for. */
  if (msg->qos > 0 && mq->built_events != before) {
    mq->built_qos1++;
    mq->unacked++;
  }
}

void mqtt__update_pause(sl_mqtt_t *mq) {
  sl_mqtt_link_t *l = &mq->in;
  if (mq->settle && mq->commits == 0)
    mq->settle = false; /* the last connection's commits are decided */
  bool paused = mq->stopping || mq->store_full || mq->commits >= MAX_COMMITS ||
                (mq->unacked > 0 && mq->commits > 0) || mq->settle;
  if (!l->mq)
    return;
  if (paused != l->paused) {
    l->paused = paused;
    if (paused)
      sl_metric_add(mq->ic->pauses[SL_PATH_MQTT], 1);
  }
  mqtt__link_update(l);
}

static void commit_done(sl_done_t *d, int status, uint64_t first_offset) {
  mqtt_commit_t *c = (mqtt_commit_t *)d;
  sl_mqtt_t *mq = c->mq;
  sl_ingest_t *ic = mq->ic;
  (void)first_offset;

  mq->commits--;
  if (status != 0 && c->piped)
    sl_pipes_commit_failed(ic->pipes);
  if (status == 0) {
    mqtt__redeliver_durable(mq, c->rd_upto);
    for (size_t i = 0; i < c->n; i++)
      sl_ingest_accepted(ic, SL_PATH_MQTT, c->s[i].idx, c->s[i].events,
                         c->s[i].bytes);
    sl_metric_observe(ic->commit_latency,
                      (double)(sl_now_mono_ns() - c->t0_ns) / 1e9);
    if (c->gen == mq->in.gen && c->qos1) {
      mq->unacked -= SL_MIN(mq->unacked, c->qos1);
      if (mq->unacked == 0) {
        mq->durable_ns = sl_now_mono_ns();
        mqtt__link_flush(&mq->in); /* the PUBACKs of everything read */
      }
    }
  } else {
    sl_ingest_rejected(ic, SL_PATH_MQTT, status);
    mqtt__redeliver_failed(mq);
    sl_error(SL_LOG_CTX_MQTT, "ingest",
             "commit of %u MQTT messages failed: %s; dropping the connection "
             "so the broker redelivers them",
             c->qos1, sl_strerror(status));
    if (c->gen == mq->in.gen && c->qos1)
      mqtt__link_abort(&mq->in);
  }
  free(c);
  if (mq->have_out)
    mqtt__fanout_poll(mq);
  mqtt__update_pause(mq);
  mqtt__try_finish(mq);
}

/* Builds and submits one group of up to GROUP_STREAMS streams. Returns 1
 * when submitted, 0 when nothing was left, or an error. */
static int flush_one(sl_mqtt_t *mq) {
  sl_ingest_t *ic = mq->ic;
  sl_store_group_t *g = NULL;
  sl_store_batch_t *b = NULL;
  mqtt_commit_t *c;
  Sluice__V1__EventBatch *eb = NULL;
  sl_pipes_out_t po;
  size_t left = 0;
  int rc, piped = 0;

  if (!mq->built_events && !mq->puts && !mqtt__redeliver_dirty(mq))
    return 0;
  if (!(c = calloc(1, sizeof(*c))))
    return -ENOMEM;
  if ((rc = sl_store_group_new(ic->st, &g)) < 0)
    goto fail;
  for (size_t i = 0; i < ic->nstreams; i++) {
    sl_json_batch_t *jb = &mq->sb[i].jb;
    if (!mq->sb[i].used || !jb->count)
      continue;
    if (c->n == GROUP_STREAMS) {
      left++;
      continue;
    }
    if (sl_pipes_wants(ic->pipes, i)) {
      /* Edge pipelines (docs/PROCESSING.md): one such stream per group,
       * since their lock is held from apply until the submit is decided;
       * a second one goes into the next group like any leftover. */
      if (piped) {
        left++;
        continue;
      }
      if (!(eb = sluice__v1__event_batch__unpack(NULL, jb->buf.len,
                                                 jb->buf.data))) {
        rc = -ENOMEM;
        goto fail;
      }
      piped = 1;
      if ((rc = sl_pipes_apply(
               ic->pipes, i, (const Sluice__V1__Event *const *)eb->events,
               eb->n_events, jb->buf.data, jb->buf.len, g, &po)) < 0)
        goto fail;
    } else {
      if ((rc = sl_store_batch_new(ic->st, ic->streams[i].id, jb->buf.data,
                                   jb->buf.len, jb->count, jb->min_time_ns,
                                   jb->max_time_ns, &b)) < 0 ||
          (rc = sl_store_group_add(g, b)) < 0)
        goto fail;
      b = NULL;
    }
    c->s[c->n].idx = i;
    c->s[c->n].events = jb->count;
    c->s[c->n].bytes = jb->buf.len;
    c->n++;
  }
  for (mqtt_state_put_t *p = mq->puts; p; p = p->next)
    if ((rc = sl_store_group_state_put(g, p->key, strlen(p->key), p->val,
                                       p->vlen)) < 0)
      goto fail;
  /* The record of the messages read goes with the last group of the
   * burst, so it never names a message whose events are not durable. */
  if (!left && (rc = mqtt__redeliver_put(mq, g)) < 0)
    goto fail;
  c->mq = mq;
  c->gen = mq->in.gen;
  c->qos1 = left ? 0 : mq->built_qos1;
  c->t0_ns = sl_now_mono_ns();
  c->d.fn = commit_done;
  c->piped = piped;
  rc = sl_ingest_submit(ic, g, &c->d);
  if (piped) {
    /* Rolled back when refused: the burst is processed again later. */
    sl_pipes_finish(ic->pipes, rc == 0);
    piped = 0;
    sluice__v1__event_batch__free_unpacked(eb, NULL);
    eb = NULL;
  }
  if (rc < 0)
    goto fail;
  /* Submitted: the group owns copies of everything; reset what went. */
  mq->commits++;
  mq->store_full = false;
  for (size_t i = 0; i < c->n; i++) {
    mq->built_events -= c->s[i].events;
    sl_json_batch_reset(&mq->sb[c->s[i].idx].jb);
  }
  if (!left) {
    mq->built_qos1 = 0;
    c->rd_upto = mqtt__redeliver_submitted(mq);
  }
  while (mq->puts) {
    mqtt_state_put_t *p = mq->puts;
    mq->puts = p->next;
    free(p->key);
    free(p->val);
    free(p);
  }
  return 1;
fail:
  if (piped)
    sl_pipes_finish(ic->pipes, 0);
  if (eb)
    sluice__v1__event_batch__free_unpacked(eb, NULL);
  sl_store_batch_free(b);
  sl_store_group_free(g);
  free(c);
  return rc;
}

int mqtt__flush(sl_mqtt_t *mq) {
  int rc;
  while ((rc = flush_one(mq)) > 0)
    ;
  if (rc == SL_EBACKPRESSURE) {
    /* Writer queue full: keep the burst, stop reading; the daemon's next
     * completion round calls sl_mqtt_resume(). */
    mq->store_full = true;
  } else if (rc < 0) {
    /* Not durable and never will be: drop the connection so no PUBACK
     * for it leaves; the broker redelivers. */
    sl_error(SL_LOG_CTX_MQTT, "ingest", "cannot store an MQTT burst: %s",
             sl_strerror(rc));
    sl_ingest_rejected(mq->ic, SL_PATH_MQTT, rc);
    for (size_t i = 0; i < mq->ic->nstreams; i++)
      if (mq->sb[i].used)
        sl_json_batch_reset(&mq->sb[i].jb);
    mq->built_events = 0;
    mq->built_qos1 = 0;
    mqtt__redeliver_failed(mq);
    mqtt__link_abort(&mq->in);
  }
  mqtt__update_pause(mq);
  return rc < 0 ? rc : 0;
}

static void on_misc_closed(uv_handle_t *h) {
  sl_mqtt_t *mq = h->data;
  mq->misc_closed = true;
}

/* Ends a stop once the last commit and its PUBACKs are out. */
void mqtt__try_finish(sl_mqtt_t *mq) {
  if (!mq->stopping)
    return;
  /* Wait for the last commit and its PUBACKs before disconnecting. */
  if (mq->in.mq && (mq->unacked > 0 || mq->built_events > 0 || mq->commits))
    return;
  if (mq->in.mq)
    mqtt__link_stop(&mq->in);
  /* A clean DISCONNECT discards the will: replace the retained "online"
   * status ourselves, or local apps would see this node online for good.
   * It leaves before the DISCONNECT (same socket, mqtt__publish writes). */
  if (mq->have_out && *mq->cfg->mqtt.status_topic)
    mqtt__publish(mq, mq->cfg->mqtt.status_topic, MQTT_STATUS_OFFLINE,
                  strlen(MQTT_STATUS_OFFLINE), 1, true, 0);
  if (mq->have_out)
    mqtt__link_stop(&mq->out);
  if (!mq->misc_closed && !uv_is_closing((uv_handle_t *)&mq->misc)) {
    uv_timer_stop(&mq->misc);
    uv_close((uv_handle_t *)&mq->misc, on_misc_closed);
  }
}
