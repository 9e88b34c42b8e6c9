/*
 * MQTT links: libmosquitto handles in threaded-external mode, driven from
 * the daemon's libuv loop (docs/MQTT.md).
 *
 * mosquitto_threaded_set(true) makes libmosquitto queue every outgoing
 * packet (CONNECT, SUBSCRIBE, PUBACK, PINGREQ, PUBLISH) instead of writing
 * it from inside the call that made it; packets leave only through
 * mosquitto_loop_write(), which this file calls from one place,
 * mqtt__link_flush(), and only when the link's may_write() allows it. The
 * ingest link refuses while any QoS 1 message it has read is not yet in a
 * durable commit (ingest_mqtt_ack.c), so a PUBACK can never overtake its
 * commit. tests/mqtt/mqtt_puback_test.c pins that libmosquitto behaviour.
 *
 * Reading: the socket is read packet by packet with mosquitto_loop_read()
 * until it reports EAGAIN, so one readable event
 * becomes one burst, one group commit and one write of all its PUBACKs.
 *
 * Connecting: mosquitto_connect_bind_v5() resolves and connects blocking,
 * so it runs on libuv's thread pool; the loop does not touch the handle
 * until the work's completion. MQTT 5 CONNECT properties (session expiry)
 * are not kept by mosquitto_reconnect(), so every attempt is a full
 * connect with the properties. Failed attempts back off exponentially
 * from mqtt.reconnect_min to mqtt.reconnect_max with jitter (half to all
 * of the delay), so a site full of nodes does not reconnect in step.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "telemetry/log.h"
#include "ingest/mqtt/mqtt.h"

/* Packets read per readable event at most, so one busy link cannot hold
 * the loop; the rest is read on the next turn. */
#define BURST_PACKETS 4096

static void link_connect(sl_mqtt_link_t *l);

/* The retained node status when sluice is gone: the publish link's will
 * (it vanished) and its last publish on a graceful stop. */
static const char status_offline[] = "{\"state\":\"offline\"}";

/* ---- poll ------------------------------------------------------------- */

static void on_poll_closed(uv_handle_t *h) {
  sl_mqtt_link_t *l = h->data;
  free(h);
  l->poll_closing = false;
}

/* Stops watching the socket. Must run before the fd is closed by us, and
 * is harmless after libmosquitto closed it (epoll forgets closed fds). */
static void poll_close(sl_mqtt_link_t *l) {
  if (!l->poll_ptr)
    return;
  uv_poll_stop(l->poll_ptr);
  l->poll_ptr->data = l;
  uv_close((uv_handle_t *)l->poll_ptr, on_poll_closed);
  l->poll_closing = true;
  l->poll_ptr = NULL;
  l->poll_fd = -1;
  l->poll_events = 0;
}

static void link_read(sl_mqtt_link_t *l);

static void on_poll(uv_poll_t *p, int status, int events) {
  sl_mqtt_link_t *l = p->data;
  if (status < 0)
    events = UV_READABLE; /* let libmosquitto read the error */
  if ((events & UV_WRITABLE) && l->state >= LINK_CONNECTED)
    mqtt__link_flush(l);
  if ((events & UV_READABLE) && l->state >= LINK_CONNECTED && !l->paused)
    link_read(l);
  if (l->state >= LINK_CONNECTED)
    mqtt__link_update(l);
}

void mqtt__link_update(sl_mqtt_link_t *l) {
  int fd, want = 0;
  if (l->state < LINK_CONNECTED || (fd = mosquitto_socket(l->mosq)) < 0)
    return;
  if (!l->paused)
    want |= UV_READABLE;
  if (mosquitto_want_write(l->mosq) && l->may_write(l))
    want |= UV_WRITABLE;
  if (l->poll_ptr && l->poll_fd != fd)
    poll_close(l);
  if (!l->poll_ptr) {
    if (!(l->poll_ptr = malloc(sizeof(*l->poll_ptr))))
      abort(); /* tiny control allocation */
    if (uv_poll_init(l->mq->ic->loop, l->poll_ptr, fd) < 0) {
      free(l->poll_ptr);
      l->poll_ptr = NULL;
      return;
    }
    l->poll_ptr->data = l;
    l->poll_fd = fd;
    l->poll_events = -1;
  }
  if (want == l->poll_events)
    return;
  l->poll_events = want;
  if (want)
    uv_poll_start(l->poll_ptr, want, on_poll);
  else
    uv_poll_stop(l->poll_ptr);
}

void mqtt__link_flush(sl_mqtt_link_t *l) {
  sl_mqtt_t *mq = l->mq;
  if (l->state < LINK_CONNECTED || !l->may_write(l))
    return;
  if (!mosquitto_want_write(l->mosq))
    return;
  int rc = mosquitto_loop_write(l->mosq, 1);
  if (rc != MOSQ_ERR_SUCCESS && l->state >= LINK_CONNECTED)
    sl_debug(SL_LOG_CTX_MQTT, l->role, "write: %s", mosquitto_strerror(rc));
  if (l == &mq->in && mq->durable_ns && !mosquitto_want_write(l->mosq)) {
    sl_metric_observe(mq->puback_latency,
                      (double)(sl_now_mono_ns() - mq->durable_ns) / 1e9);
    mq->durable_ns = 0;
  }
}

static void link_read(sl_mqtt_link_t *l) {
  sl_mqtt_t *mq = l->mq;
  for (int i = 0; i < BURST_PACKETS; i++) {
    /* mosquitto_loop_read() reads one packet per call here and returns
     * 0 both after a whole packet and when the socket had nothing more
     * (EAGAIN, left in errno). Queuing a PUBACK can also leave EAGAIN (its
     * wake-up byte to a full internal socketpair), so EAGAIN is confirmed
     * with FIONREAD before the burst ends. */
    int avail = 0;
    errno = 0;
    int rc = mosquitto_loop_read(l->mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS || l->state < LINK_CONNECTED)
      break; /* on_disconnect has run */
    if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
        (ioctl(mosquitto_socket(l->mosq), FIONREAD, &avail) < 0 || avail <= 0))
      break;
    if (l->paused || mq->built_events >= mq->max_events * 4u)
      break;
  }
  if (l == &mq->in)
    mqtt__flush(mq);
  mqtt__link_flush(l);
}

/* ---- callbacks (inside libmosquitto calls on the loop thread) --------- */

static void backoff(sl_mqtt_link_t *l);

static void on_connect(struct mosquitto *mosq, void *obj, int rc, int flags,
                       const mosquitto_property *props) {
  sl_mqtt_link_t *l = obj;
  sl_mqtt_t *mq = l->mq;
  (void)mosq;
  (void)props;
  if (rc != 0) {
    sl_error(
        SL_LOG_CTX_MQTT, l->role, "broker %s:%llu refused the connection: %s",
        mq->cfg->mqtt.host, (unsigned long long)mq->cfg->mqtt.port,
        rc < 128 ? mosquitto_connack_string(rc) : mosquitto_reason_string(rc));
    return; /* the broker closes; on_disconnect backs off */
  }
  l->failures = 0;
  sl_metric_set(l->connected, 1);
  sl_info(SL_LOG_CTX_MQTT, l->role,
          "mqtt %s link connected to %s:%llu as %s (session %s)", l->role,
          mq->cfg->mqtt.host, (unsigned long long)mq->cfg->mqtt.port,
          l->client_id, (flags & 1) ? "resumed" : "new");
  if (l->on_active)
    l->on_active(l, flags & 1);
  else
    l->state = LINK_ACTIVE;
}

static void on_disconnect(struct mosquitto *mosq, void *obj, int rc,
                          const mosquitto_property *props) {
  sl_mqtt_link_t *l = obj;
  sl_mqtt_t *mq = l->mq;
  (void)mosq;
  (void)props;
  if (l->state < LINK_CONNECTED)
    return;
  /* libmosquitto has closed the socket. Every PUBACK still queued is
   * dropped with the connection (mosquitto_connect cleans the queue): the
   * broker redelivers those messages to the resumed session. */
  poll_close(l);
  l->state = LINK_DOWN;
  l->gen++;
  sl_metric_set(l->connected, 0);
  if (l == &mq->in) {
    mq->unacked = 0;
    mq->built_qos1 = 0;
  }
  if (!mq->stopping) {
    sl_warn(SL_LOG_CTX_MQTT, l->role, "mqtt %s link lost: %s", l->role,
            mosquitto_strerror(rc));
    backoff(l);
  }
}

static void on_message(struct mosquitto *mosq, void *obj,
                       const struct mosquitto_message *msg) {
  sl_mqtt_link_t *l = obj;
  (void)mosq;
  if (l == &l->mq->in)
    mqtt__on_message(l->mq, msg);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid,
                         int qos_count, const int *granted) {
  sl_mqtt_link_t *l = obj;
  sl_mqtt_t *mq = l->mq;
  (void)mosq;
  (void)mid;
  for (int i = 0; i < qos_count; i++)
    if (granted[i] >= 0x80)
      sl_error(SL_LOG_CTX_MQTT, l->role,
               "broker refused a subscription (reason 0x%02x)", granted[i]);
  if (l->subacks > 0 && --l->subacks > 0)
    return;
  l->state = LINK_ACTIVE;
  /* Tests wait for this line. */
  sl_info(SL_LOG_CTX_MQTT, l->role, "mqtt subscribed to %zu filters",
          mq->nrules);
}

static void on_log(struct mosquitto *mosq, void *obj, int level,
                   const char *str) {
  sl_mqtt_link_t *l = obj;
  (void)mosq;
  if (level & (MOSQ_LOG_ERR | MOSQ_LOG_WARNING))
    sl_debug(SL_LOG_CTX_MQTT, l->role, "libmosquitto: %s", str);
}

/* While a log callback is set, libmosquitto formats every line it could
 * log, whatever its level: a malloc, a vsnprintf and a free for each
 * PUBLISH received and each PUBACK sent (~3% of the daemon's CPU at 150,000
 * messages/s). on_log only forwards errors and warnings to the mqtt debug
 * context, so the callback is set only while that context is on; log.debug
 * is reloadable, so on_misc checks again every second. */
static void link_log_sync(sl_mqtt_link_t *l) {
  bool on = SL_LOG_ON(SL_LOG_DEBUG, SL_LOG_CTX_MQTT);
  if (!l->mosq || on == l->log_on)
    return;
  mosquitto_log_callback_set(l->mosq, on ? on_log : NULL);
  l->log_on = on;
}

/* ---- connect, backoff ------------------------------------------------- */

static int link_handle_new(sl_mqtt_link_t *l, char *errstr, size_t errlen) {
  const sl_config_t *cfg = l->mq->cfg;
  struct mosquitto *mosq;
  int rc;

  if (!(mosq = mosquitto_new(l->client_id, !l->persistent, l)))
    return -ENOMEM;
  mosquitto_threaded_set(mosq, true);
  mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION,
                       cfg->mqtt.version == SL_CONFIG_MQTT_V311
                           ? MQTT_PROTOCOL_V311
                           : MQTT_PROTOCOL_V5);
  mosquitto_int_option(mosq, MOSQ_OPT_RECEIVE_MAXIMUM,
                       (int)cfg->mqtt.receive_maximum);
  mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
  if (*cfg->mqtt.username &&
      (rc = mosquitto_username_pw_set(mosq, cfg->mqtt.username,
                                      *cfg->mqtt.password ? cfg->mqtt.password
                                                          : NULL))) {
    snprintf(errstr, errlen, "mqtt.username: %s", mosquitto_strerror(rc));
    goto fail;
  }
  if (*cfg->mqtt.tls_ca &&
      (rc = mosquitto_tls_set(
           mosq, cfg->mqtt.tls_ca, NULL,
           *cfg->mqtt.tls_cert ? cfg->mqtt.tls_cert : NULL,
           *cfg->mqtt.tls_keyfile ? cfg->mqtt.tls_keyfile : NULL, NULL))) {
    snprintf(errstr, errlen, "mqtt.tls_ca/tls_cert/tls_keyfile: %s",
             mosquitto_strerror(rc));
    goto fail;
  }
  if (l == &l->mq->out && *cfg->mqtt.status_topic) {
    /* The broker tells local apps when sluice vanishes. */
    mosquitto_will_set(mosq, cfg->mqtt.status_topic,
                       (int)strlen(status_offline), status_offline, 1, true);
  }
  mosquitto_connect_v5_callback_set(mosq, on_connect);
  mosquitto_disconnect_v5_callback_set(mosq, on_disconnect);
  mosquitto_message_callback_set(mosq, on_message);
  mosquitto_subscribe_callback_set(mosq, on_subscribe);
  l->mosq = mosq;
  l->log_on = false;
  link_log_sync(l);
  return 0;
fail:
  mosquitto_destroy(mosq);
  return SL_EMQTT;
}

/* Thread pool: the only code touching l->mosq off the loop thread; the
 * loop leaves the handle alone while state is LINK_CONNECTING. */
static void connect_work(uv_work_t *w) {
  sl_mqtt_link_t *l = w->data;
  const sl_config_t *cfg = l->mq->cfg;
  mosquitto_property *props = NULL;
  int keepalive = (int)(cfg->mqtt.keepalive_ms / 1000);

  if (cfg->mqtt.version == SL_CONFIG_MQTT_V5 && l->persistent)
    mosquitto_property_add_int32(
        &props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
        (uint32_t)SL_MIN(cfg->mqtt.session_expiry_ms / 1000, 0xfffffffeull));
  errno = 0;
  l->connect_rc =
      mosquitto_connect_bind_v5(l->mosq, cfg->mqtt.host, (int)cfg->mqtt.port,
                                keepalive < 5 ? 5 : keepalive, NULL, props);
  /* MOSQ_ERR_ERRNO: the reason is in errno, which is per thread and
   * which the next call (the free below, the loop thread's own calls)
   * may change: read it here, now. */
  l->connect_errno = errno;
  mosquitto_property_free_all(&props);
}

static void connect_done(uv_work_t *w, int status) {
  sl_mqtt_link_t *l = w->data;
  sl_mqtt_t *mq = l->mq;
  int fd = -1;

  l->work_busy = false;
  l->state = LINK_DOWN;
  if (status != UV_ECANCELED && l->connect_rc == MOSQ_ERR_SUCCESS &&
      (fd = mosquitto_socket(l->mosq)) >= 0) {
    /* libmosquitto makes the socket non-blocking after a blocking
     * connect; make sure, the loop must never block on it. */
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    l->state = LINK_CONNECTED;
  }
  if (mq->stopping) {
    mqtt__link_stop(l);
    return;
  }
  if (l->state == LINK_DOWN) {
    sl_warn(SL_LOG_CTX_MQTT, l->role,
            "mqtt %s link: cannot connect to %s:%llu: %s", l->role,
            mq->cfg->mqtt.host, (unsigned long long)mq->cfg->mqtt.port,
            l->connect_rc == MOSQ_ERR_ERRNO && l->connect_errno
                ? strerror(l->connect_errno)
                : mosquitto_strerror(l->connect_rc));
    backoff(l);
    return;
  }
  mqtt__link_flush(l); /* CONNECT */
  mqtt__link_update(l);
}

static void link_connect(sl_mqtt_link_t *l) {
  if (l->mq->stopping || l->state != LINK_DOWN)
    return;
  if (l->drop) {
    char err[200];
    mosquitto_destroy(l->mosq);
    l->mosq = NULL;
    l->drop = false;
    if (link_handle_new(l, err, sizeof(err)) < 0) {
      sl_error(SL_LOG_CTX_MQTT, l->role, "mqtt %s: %s", l->role, err);
      backoff(l);
      return;
    }
  }
  l->state = LINK_CONNECTING;
  l->work.data = l;
  l->work_busy = true;
  if (uv_queue_work(l->mq->ic->loop, &l->work, connect_work, connect_done) <
      0) {
    l->work_busy = false;
    l->state = LINK_DOWN;
    backoff(l);
  }
}

static void on_retry(uv_timer_t *t) {
  link_connect(t->data);
}

static void backoff(sl_mqtt_link_t *l) {
  const sl_config_t *cfg = l->mq->cfg;
  uint64_t d = cfg->mqtt.reconnect_min_ms;
  for (unsigned i = 0; i < l->failures && d < cfg->mqtt.reconnect_max_ms; i++)
    d *= 2;
  d = SL_MIN(d, cfg->mqtt.reconnect_max_ms);
  /* Jitter: half to all of the delay. */
  d = d / 2 + (uint64_t)rand() % (d / 2 + 1);
  l->failures++;
  sl_metric_add(l->reconnects, 1);
  uv_timer_start(&l->retry, on_retry, d, 0);
}

void mqtt__link_abort(sl_mqtt_link_t *l) {
  sl_mqtt_t *mq = l->mq;
  if (l->state < LINK_CONNECTED)
    return;
  /* Close our poll before the fd goes, then destroy the handle: it closes
   * the socket without writing its queue. A new handle is made for the
   * next attempt. */
  poll_close(l);
  l->state = LINK_DOWN;
  l->gen++;
  l->drop = true;
  mosquitto_destroy(l->mosq);
  l->mosq = NULL;
  sl_metric_set(l->connected, 0);
  if (l == &mq->in) {
    mq->unacked = 0;
    mq->built_qos1 = 0;
  }
  if (!mq->stopping)
    backoff(l);
}

int mqtt__link_init(sl_mqtt_t *mq, sl_mqtt_link_t *l, const char *role,
                    const char *client_id, bool persistent, char *errstr,
                    size_t errlen) {
  char labels[64];
  int rc;
  l->mq = mq;
  l->role = role;
  l->persistent = persistent;
  l->poll_fd = -1;
  snprintf(l->client_id, sizeof(l->client_id), "%s", client_id);
  snprintf(labels, sizeof(labels), "link=\"%s\"", role);
  l->connected = sl_metrics_gauge(mq->ic->mx, "sluice_mqtt_connected",
                                  "1 while the MQTT link is connected", labels);
  l->reconnects = sl_metrics_counter(mq->ic->mx, "sluice_mqtt_reconnects_total",
                                     "MQTT connection attempts after a failure "
                                     "or a lost connection",
                                     labels);
  if ((rc = link_handle_new(l, errstr, errlen)) < 0)
    return rc;
  uv_timer_init(mq->ic->loop, &l->retry);
  l->retry.data = l;
  l->timer_open = true;
  link_connect(l);
  return 0;
}

static void on_timer_closed(uv_handle_t *h) {
  sl_mqtt_link_t *l = h->data;
  l->timer_open = false;
}

void mqtt__link_stop(sl_mqtt_link_t *l) {
  if (!l->mq)
    return;
  if (l->work_busy) {
    /* Cancel if still queued; otherwise connect_done calls us again. */
    uv_cancel((uv_req_t *)&l->work);
    return;
  }
  if (l->state >= LINK_CONNECTED) {
    if (l->may_write(l)) {
      /* Graceful: DISCONNECT keeps the session (MQTT 5: the expiry given
       * at CONNECT stays). Bounded: a broker that does not read gets the
       * socket closed under it. */
      mosquitto_disconnect(l->mosq);
      for (int i = 0; i < 8 && mosquitto_want_write(l->mosq) &&
                      mosquitto_socket(l->mosq) >= 0;
           i++)
        mosquitto_loop_write(l->mosq, 1);
    }
    poll_close(l);
    l->state = LINK_DOWN;
  }
  if (l->mosq) {
    mosquitto_destroy(l->mosq);
    l->mosq = NULL;
  }
  sl_metric_set(l->connected, 0);
  if (l->timer_open && !uv_is_closing((uv_handle_t *)&l->retry)) {
    uv_timer_stop(&l->retry);
    uv_close((uv_handle_t *)&l->retry, on_timer_closed);
  }
}

int mqtt__link_open_handles(const sl_mqtt_link_t *l) {
  return (l->poll_ptr || l->poll_closing) + l->timer_open + l->work_busy;
}

/* ---- the module ------------------------------------------------------- */

static void ingest_on_active(sl_mqtt_link_t *l, bool session_present) {
  sl_mqtt_t *mq = l->mq;
  char **filters;
  mqtt__redeliver_connected(mq, session_present);
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
      link_log_sync(l);
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

static void on_misc_closed(uv_handle_t *h) {
  sl_mqtt_t *mq = h->data;
  mq->misc_closed = true;
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
    mqtt__publish(mq, mq->cfg->mqtt.status_topic, status_offline,
                  strlen(status_offline), 1, true, 0);
  if (mq->have_out)
    mqtt__link_stop(&mq->out);
  if (!mq->misc_closed && !uv_is_closing((uv_handle_t *)&mq->misc)) {
    uv_timer_stop(&mq->misc);
    uv_close((uv_handle_t *)&mq->misc, on_misc_closed);
  }
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
