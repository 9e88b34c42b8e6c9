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
  if (l->after_read)
    l->after_read(l);
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
  if (l->on_message)
    l->on_message(l, msg);
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
void mqtt__link_log_sync(sl_mqtt_link_t *l) {
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
                       (int)strlen(MQTT_STATUS_OFFLINE), MQTT_STATUS_OFFLINE, 1,
                       true);
  }
  mosquitto_connect_v5_callback_set(mosq, on_connect);
  mosquitto_disconnect_v5_callback_set(mosq, on_disconnect);
  mosquitto_message_callback_set(mosq, on_message);
  mosquitto_subscribe_callback_set(mosq, on_subscribe);
  l->mosq = mosq;
  l->log_on = false;
  mqtt__link_log_sync(l);
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
