/*
 * ingest/mqtt/service.c: the MQTT service the daemon starts (ingest/mqtt/
 * mqtt.h, docs/MQTT.md): builds the rules, Sparkplug state and fan-out,
 * opens the ingest and publish links (link.c) with their callbacks (reads
 * go to acks.c), runs the 1 s housekeeping timer, and stops them in order.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "telemetry/log.h"
#include "ingest/mqtt/mqtt.h"

/* ---- the module ------------------------------------------------------- */

static void ingest_on_active(sl_mqtt_link_t *l, bool session_present) {
  sl_mqtt_t *mq = l->mq;
  char **filters;
  mqtt__redeliver_connected(mq, session_present);
  /* Commits of the last connection still in flight: the broker may resend
   * their messages first thing, and a resend is recognised only against a
   * durable record. Read once they are decided (a failed one's messages
   * are then stored from the resend). */
  if (mq->commits > 0) {
    mq->settle = true;
    mqtt__update_pause(mq);
  }
  /* Subscribe every time: cheap, and needed when the broker lost the
   * session (expired, or a broker without persistence restarted). One
   * SUBSCRIBE per QoS. */
  l->subacks = 0;
  if (!mq->nrules || !(filters = calloc(mq->nrules, sizeof(char *)))) {
    l->state = LINK_ACTIVE;
    return;
  }
  for (int qos = 0; qos <= 1; qos++) {
    int n = 0, rc;
    for (size_t i = 0; i < mq->nrules; i++)
      if ((int)mq->rules[i].conf->qos == qos)
        filters[n++] = mq->rules[i].filter;
    if (!n)
      continue;
    if ((rc = mosquitto_subscribe_multiple(l->mosq, NULL, n, filters, qos, 0,
                                           NULL)))
      sl_error(SL_LOG_CTX_MQTT, l->role, "subscribe: %s",
               mosquitto_strerror(rc));
    else
      l->subacks++;
  }
  free(filters);
}

static void ingest_on_message(sl_mqtt_link_t *l,
                              const struct mosquitto_message *msg) {
  mqtt__on_message(l->mq, msg);
}

/* After a burst was read: one group commit for it. */
static void ingest_after_read(sl_mqtt_link_t *l) {
  mqtt__flush(l->mq);
}

static bool ingest_may_write(sl_mqtt_link_t *l) {
  /* The core rule: nothing leaves while a read QoS 1 message is not yet
   * durable, because its PUBACK may be in libmosquitto's queue. */
  return l->mq->unacked == 0;
}

static bool always(sl_mqtt_link_t *l) {
  (void)l;
  return true;
}

static void publish_on_active(sl_mqtt_link_t *l, bool session_present) {
  (void)session_present;
  l->state = LINK_ACTIVE;
  mqtt__status_publish(l->mq);
}

static void on_misc(uv_timer_t *t) {
  sl_mqtt_t *mq = t->data;
  sl_mqtt_link_t *links[2] = {&mq->in, mq->have_out ? &mq->out : NULL};
  for (int i = 0; i < 2; i++) {
    sl_mqtt_link_t *l = links[i];
    if (l && l->state != LINK_CONNECTING)
      mqtt__link_log_sync(l);
    if (!l || l->state < LINK_CONNECTED)
      continue;
    /* Keepalive: may queue a PINGREQ, which leaves with the next flush;
     * on the ingest link that is after the pending commit at the latest
     * (docs/MQTT.md: keepalive must exceed the longest commit). */
    mosquitto_loop_misc(l->mosq);
    if (l->state >= LINK_CONNECTED) {
      mqtt__link_flush(l);
      mqtt__link_update(l);
    }
  }
  if (mq->have_out && !mq->stopping) {
    mqtt__fanout_poll(mq);
    if (sl_now_mono_ns() >= mq->status_next_ns)
      mqtt__status_publish(mq);
  }
}

int sl_mqtt_start(sl_ingest_t *ic, sl_mqtt_t **out, char *errstr,
                  size_t errlen) {
  const sl_config_t *cfg = ic->cfg;
  char id[160];
  sl_mqtt_t *mq;
  int rc;

  *out = NULL;
  if (!cfg->mqtt.enabled)
    return 0;
  mosquitto_lib_init();
  if (!(mq = calloc(1, sizeof(*mq))))
    return -ENOMEM;
  mq->ic = ic;
  mq->cfg = cfg;
  mq->dlq = SIZE_MAX;
  mq->max_events = (uint32_t)cfg->limits.max_batch_events;
  sl_ingest_rules(ic, cfg, SL_PATH_MQTT, &mq->ev_rules);
  mq->in.poll_fd = mq->out.poll_fd = -1;
  mq->misc_closed = true;
  mq->messages = sl_metrics_counter(ic->mx, "sluice_mqtt_messages_total",
                                    "MQTT messages received", NULL);
  mq->puback_latency = sl_metrics_histogram(
      ic->mx, "sluice_mqtt_commit_to_puback_seconds",
      "From the durable commit of a burst to its PUBACKs written", NULL,
      sl_metrics_latency_buckets, sl_metrics_latency_nbuckets);
  mq->published = sl_metrics_counter(ic->mx, "sluice_mqtt_published_total",
                                     "Messages published to MQTT (fan-out, "
                                     "status, Sparkplug commands)",
                                     NULL);
  mq->sp_gaps =
      sl_metrics_counter(ic->mx, "sluice_mqtt_sparkplug_seq_gaps_total",
                         "Sparkplug B seq numbers that skipped", NULL);
  mq->sp_rebirths =
      sl_metrics_counter(ic->mx, "sluice_mqtt_sparkplug_rebirths_total",
                         "Sparkplug B rebirth requests (NCMD) sent", NULL);
  if (!(mq->sb = calloc(ic->nstreams, sizeof(*mq->sb)))) {
    rc = -ENOMEM;
    goto fail;
  }
  if ((rc = mqtt__rules_init(mq, errstr, errlen)) < 0 ||
      (rc = sl_sp_new(mq, &mq->sp)) < 0 ||
      (rc = mqtt__fanout_init(mq, errstr, errlen)) < 0)
    goto fail;

  uv_timer_init(ic->loop, &mq->misc);
  mq->misc.data = mq;
  mq->misc_closed = false;
  uv_timer_start(&mq->misc, on_misc, 1000, 1000);

  if (*cfg->mqtt.client_id)
    snprintf(id, sizeof(id), "%s", cfg->mqtt.client_id);
  else
    snprintf(id, sizeof(id), "sluice-%s", cfg->node.id);
  mq->in.may_write = ingest_may_write;
  mq->in.on_active = ingest_on_active;
  mq->in.on_message = ingest_on_message;
  mq->in.after_read = ingest_after_read;
  if (mq->nrules && (rc = mqtt__redeliver_init(mq, id)) < 0)
    goto fail;
  if (mq->nrules && (rc = mqtt__link_init(mq, &mq->in, "ingest", id, true,
                                          errstr, errlen)) < 0)
    goto fail;
  mq->have_out = mq->nfan || *cfg->mqtt.status_topic || mq->sp_used;
  if (mq->have_out) {
    char pid[170];
    snprintf(pid, sizeof(pid), "%s-pub", id);
    mq->out.may_write = always;
    mq->out.on_active = publish_on_active;
    if ((rc = mqtt__link_init(mq, &mq->out, "publish", pid, false, errstr,
                              errlen)) < 0)
      goto fail;
  }
  *out = mq;
  return 0;
fail:
  /* Nothing connected yet that needs draining: stop synchronously. */
  *out = mq;
  sl_mqtt_stop(mq);
  return rc;
}

void sl_mqtt_stop(sl_mqtt_t *mq) {
  if (!mq)
    return;
  mq->stopping = true;
  if (mq->in.mq && mq->in.state >= LINK_CONNECTED) {
    mq->in.paused = true;
    mqtt__link_update(&mq->in);
  }
  if (mq->built_events && !mq->commits)
    mqtt__flush(mq);
  mqtt__try_finish(mq);
}

void sl_mqtt_resume(sl_mqtt_t *mq) {
  if (!mq || !mq->store_full)
    return;
  mqtt__flush(mq);
  mqtt__try_finish(mq);
}

int sl_mqtt_open_handles(const sl_mqtt_t *mq) {
  if (!mq)
    return 0;
  return (mq->in.mq ? mqtt__link_open_handles(&mq->in) : 0) +
         (mq->have_out ? mqtt__link_open_handles(&mq->out) : 0) +
         !mq->misc_closed;
}

void sl_mqtt_free(sl_mqtt_t *mq) {
  if (!mq)
    return;
  if (mq->in.mosq)
    mosquitto_destroy(mq->in.mosq);
  if (mq->out.mosq)
    mosquitto_destroy(mq->out.mosq);
  for (size_t i = 0; mq->sb && i < mq->ic->nstreams; i++)
    if (mq->sb[i].used)
      sl_json_batch_close(&mq->sb[i].jb);
  free(mq->sb);
  if (mq->evtmp.used)
    sl_json_batch_close(&mq->evtmp.jb);
  sl_infer_dec_free(mq->infdec);
  while (mq->puts) {
    mqtt_state_put_t *p = mq->puts;
    mq->puts = p->next;
    free(p->key);
    free(p->val);
    free(p);
  }
  mqtt__rules_free(mq);
  mqtt__fanout_free(mq);
  sl_sp_free(mq->sp);
  mqtt__redeliver_free(mq);
  free(mq);
  mosquitto_lib_cleanup();
}
