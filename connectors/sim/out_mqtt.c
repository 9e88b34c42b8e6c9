/*
 * connectors/sim/out_mqtt.c: the MQTT output (libmosquitto). One JSON event
 * per message (docs/HTTP.md's shape, which the daemon's MQTT JSON decoder
 * reads too), QoS 1, topic "<topic_prefix>/<stream>/<source>". A PUBACK
 * counts as the ack: with the sluice daemon subscribed, the broker's PUBACK
 * only means the broker has the message; the daemon's own PUBACK to the
 * broker comes after its commit (docs/CONNECTORS.md).
 *
 * Sparkplug B payloads are not generated yet: the Sparkplug schema was not
 * committed when this was written.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>

#include "common/common.h"
#include "connectors/common/conn.h"
#include "connectors/sim/sim_int.h"

#define MQTT_INFLIGHT 1000 /* unacknowledged messages, at most */

typedef struct mqtt {
  struct mosquitto *mosq;
  pthread_mutex_t mu; /* guards connected, with cv */
  pthread_cond_t cv;  /* signalled on PUBACK and connect */
  int connected;
  char buf[16384]; /* one event's JSON */
  char topic[512];
} mqtt_t;

static void on_connect(struct mosquitto *mosq, void *arg, int rc) {
  sl_sim_out_t *o = arg;
  mqtt_t *m = o->impl;
  (void)mosq;
  SL_CLOG(rc ? SL_CONN_LOG_WARN : SL_CONN_LOG_INFO, "mqtt %s: %s",
          o->cfg->address, rc ? mosquitto_connack_string(rc) : "connected");
  pthread_mutex_lock(&m->mu);
  m->connected = rc == 0;
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
}

static void on_disconnect(struct mosquitto *mosq, void *arg, int rc) {
  sl_sim_out_t *o = arg;
  mqtt_t *m = o->impl;
  (void)mosq;
  if (rc)
    SL_CLOG(SL_CONN_LOG_WARN, "mqtt %s: connection lost (%s), reconnecting",
            o->cfg->address, mosquitto_strerror(rc));
  pthread_mutex_lock(&m->mu);
  m->connected = 0;
  pthread_mutex_unlock(&m->mu);
}

static void on_publish(struct mosquitto *mosq, void *arg, int mid) {
  sl_sim_out_t *o = arg;
  mqtt_t *m = o->impl;
  (void)mosq;
  (void)mid;
  atomic_fetch_add(&o->acked, 1);
  pthread_mutex_lock(&m->mu);
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
}

static uint64_t outstanding(sl_sim_out_t *o) {
  return atomic_load(&o->published) - atomic_load(&o->acked) -
         atomic_load(&o->failed);
}

/* Waits until fewer than limit messages are unacknowledged (and the
 * client is connected), up to deadline (monotonic ns; 0: no limit) or a
 * stop. Returns 0 or -ETIMEDOUT. */
static int wait_room(sl_sim_out_t *o, uint64_t limit, uint64_t deadline) {
  mqtt_t *m = o->impl;
  int rc = 0;
  pthread_mutex_lock(&m->mu);
  while ((!m->connected || outstanding(o) >= limit) && !*o->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 50000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&m->cv, &m->mu, &ts);
    if (deadline && sl_now_mono_ns() > deadline) {
      rc = -ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&m->mu);
  return *o->stop && !rc ? SL_ECLOSED : rc;
}

static int mqtt_publish(sl_sim_out_t *o, const char *stream,
                        const Sluice__V1__Event *ev) {
  mqtt_t *m = o->impl;
  size_t n;
  int rc;
  if ((rc = wait_room(o, MQTT_INFLIGHT, o->deadline_ns)))
    return rc;
  if ((rc = sl_sim_event_json(ev, m->buf, sizeof(m->buf), &n)))
    return rc;
  snprintf(m->topic, sizeof(m->topic), "%s/%s/%s", o->cfg->topic_prefix, stream,
           ev->source);
  atomic_fetch_add(&o->published, 1);
  rc = mosquitto_publish(m->mosq, NULL, m->topic, (int)n, m->buf, 1, false);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
    atomic_fetch_add(&o->failed, 1);
    SL_CLOG(SL_CONN_LOG_WARN, "mqtt publish: %s", mosquitto_strerror(rc));
  }
  /* MOSQ_ERR_NO_CONN: libmosquitto queued it and sends it on reconnect. */
  return 0;
}

static int mqtt_flush(sl_sim_out_t *o, int timeout_ms) {
  uint64_t deadline =
      sl_now_mono_ns() + (uint64_t)(timeout_ms < 0 ? 0 : timeout_ms) * 1000000;
  return wait_room(o, 1, timeout_ms < 0 ? 0 : deadline);
}

static void mqtt_free(sl_sim_out_t *o) {
  mqtt_t *m = o->impl;
  mosquitto_disconnect(m->mosq);
  mosquitto_loop_stop(m->mosq, false);
  mosquitto_destroy(m->mosq);
  mosquitto_lib_cleanup();
  pthread_cond_destroy(&m->cv);
  pthread_mutex_destroy(&m->mu);
  free(m);
}

static const sim_out_ops_t mqtt_ops = {mqtt_publish, mqtt_flush, mqtt_free};

int sim__mqtt_new(sl_sim_out_t *o) {
  char host[256];
  int port, rc;
  mqtt_t *m;
  if (sim__split_hostport(o->cfg->address, host, sizeof(host), &port))
    return SL_ECONFIG;
  if (!(m = calloc(1, sizeof(*m))))
    return -ENOMEM;
  pthread_mutex_init(&m->mu, NULL);
  pthread_cond_init(&m->cv, NULL);
  mosquitto_lib_init();
  o->impl = m;
  o->ops = &mqtt_ops;
  if (!(m->mosq = mosquitto_new(o->cfg->client_id, true, o))) {
    rc = -ENOMEM;
    goto fail;
  }
  mosquitto_connect_callback_set(m->mosq, on_connect);
  mosquitto_disconnect_callback_set(m->mosq, on_disconnect);
  mosquitto_publish_callback_set(m->mosq, on_publish);
  mosquitto_max_inflight_messages_set(m->mosq, MQTT_INFLIGHT);
  mosquitto_reconnect_delay_set(m->mosq, 1, 10, true);
  /* connect_async: a broker that is down is retried by the loop thread. */
  if ((rc = mosquitto_connect_async(m->mosq, host, port, 30)) !=
          MOSQ_ERR_SUCCESS &&
      rc != MOSQ_ERR_ERRNO) {
    SL_CLOG(SL_CONN_LOG_ERROR, "mqtt %s: %s", o->cfg->address,
            mosquitto_strerror(rc));
    rc = SL_EMQTT;
    goto fail;
  }
  if ((rc = mosquitto_loop_start(m->mosq)) != MOSQ_ERR_SUCCESS) {
    rc = SL_EMQTT;
    goto fail;
  }
  return 0;
fail:
  if (m->mosq)
    mosquitto_destroy(m->mosq);
  mosquitto_lib_cleanup();
  pthread_cond_destroy(&m->cv);
  pthread_mutex_destroy(&m->mu);
  free(m);
  o->impl = NULL;
  return rc;
}
