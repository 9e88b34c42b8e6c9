/*
 * connectors/opcua/opcua_run.c: starting and stopping the connector (one
 * thread per server, ua_srv_main in opcua.c), the client library's
 * callbacks (acks advance acked_batch: deliver.c), and the counters.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "connectors/common/conn.h"
#include "connectors/opcua/opcua_int.h"

/* ---- lifecycle ---------------------------------------------------------- */

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  sl_opcua_t *ua = opaque;
  uint64_t cur = atomic_load(&ua->acked_batch);
  (void)cl;
  (void)first_offset;
  /* Batches ack in id order; kept plus one (deliver.c). */
  while (cur < batch_id + 1 &&
         !atomic_compare_exchange_weak(&ua->acked_batch, &cur, batch_id + 1))
    ;
  if (!err) {
    atomic_fetch_add(&ua->acked, count);
    return;
  }
  if (atomic_fetch_add(&ua->failed, count) % 1000 == 0)
    SL_CLOG(SL_CONN_LOG_WARN, "batch %llu (%u events) failed: %s",
            (unsigned long long)batch_id, count, sl_strerror(err));
}

static void on_state(sl_client_t *cl, sl_client_state_t state, int err,
                     const char *reason, void *opaque) {
  sl_opcua_t *ua = opaque;
  (void)cl;
  if (state == SL_CLIENT_CONNECTED)
    SL_CLOG(SL_CONN_LOG_INFO, "connected to sluice at %s", ua->cfg->address);
  else
    SL_CLOG(SL_CONN_LOG_WARN, "sluice at %s: %s (%s)", ua->cfg->address,
            state == SL_CLIENT_DISCONNECTED ? "disconnected" : "error",
            reason && *reason ? reason : sl_strerror(err));
}

static void srv_close(ua_srv_t *s) {
  if (s->conn)
    sl_ua_conn_close(s->conn, true);
  s->conn = NULL;
  sl_ua_conn_abort(s->prev);
  s->prev = NULL;
  for (size_t i = 0; s->items && i < s->cfg->nitems; i++)
    free(s->items[i].nodebuf);
  for (size_t i = 0; s->sources && i < s->cfg->nitems; i++)
    free(s->sources[i]);
  free(s->items);
  free(s->sources);
  free(s->due);
  ua_srv_free_delivery(s);
}

static int srv_init(sl_opcua_t *ua, ua_srv_t *s, const sl_opcua_server_t *c,
                    uint64_t seed) {
  s->ua = ua;
  s->cfg = c;
  s->rng = seed | 1;
  if (!(s->items = calloc(c->nitems, sizeof(*s->items))) ||
      !(s->sources = calloc(c->nitems, sizeof(*s->sources))) ||
      !(s->due = calloc(c->nitems, sizeof(*s->due))))
    return -ENOMEM;
  for (size_t i = 0; i < c->nitems; i++) {
    size_t n = strlen(c->source) + strlen(c->items[i].name) + 2;
    if (!(s->sources[i] = malloc(n)))
      return -ENOMEM;
    snprintf(s->sources[i], n, "%s/%s", c->source, c->items[i].name);
    s->items[i].quality = Q_NONE;
    s->due[i] = c->items[i].mode == SL_OPCUA_PERIODIC ? 0 : UINT64_MAX;
  }
  return 0;
}

static void stats_snapshot(sl_opcua_t *ua, sl_opcua_stats_t *s) {
  s->notifications = atomic_load(&ua->notifications);
  s->changes = atomic_load(&ua->changes);
  s->reads = atomic_load(&ua->reads);
  s->republished = atomic_load(&ua->republished);
  s->lost = atomic_load(&ua->lost);
  s->overflows = atomic_load(&ua->overflows);
  s->item_errors = atomic_load(&ua->item_errors);
  s->failures = atomic_load(&ua->failures);
  s->published = atomic_load(&ua->published);
  s->acked = atomic_load(&ua->acked);
  s->failed = atomic_load(&ua->failed);
  s->dropped = atomic_load(&ua->dropped);
  s->servers_up = atomic_load(&ua->servers_up);
  s->items_ok = atomic_load(&ua->items_ok);
}

void sl_opcua_stats(sl_opcua_t *ua, sl_opcua_stats_t *stats) {
  stats_snapshot(ua, stats);
}

int sl_opcua_stop(sl_opcua_t *ua, int flush_ms, sl_opcua_stats_t *final) {
  int rc = 0;
  size_t left = 0;
  sl_opcua_stats_t s;
  if (!ua)
    return 0;
  pthread_mutex_lock(&ua->mu);
  ua->stop = 1;
  pthread_cond_broadcast(&ua->cv);
  pthread_mutex_unlock(&ua->mu);
  for (size_t i = 0; i < ua->nsrvs; i++)
    if (ua->srvs[i].started)
      pthread_join(ua->srvs[i].thread, NULL);
  for (size_t i = 0; ua->cl && i < ua->nsrvs; i++) {
    ua_drain(&ua->srvs[i]);
    left += ua->srvs[i].rlen;
  }
  atomic_fetch_add(&ua->dropped, left);
  if (ua->cl && (rc = sl_client_flush(ua->cl, flush_ms)) < 0)
    SL_CLOG(SL_CONN_LOG_WARN, "flush: %s", sl_strerror(rc));
  /* Sessions close after the flush: what the daemon did not ack stays
   * unacknowledged at the server only as long as the session lives. */
  for (size_t i = 0; i < ua->nsrvs; i++)
    srv_close(&ua->srvs[i]);
  sl_client_free(ua->cl);
  free(ua->srvs);
  stats_snapshot(ua, &s);
  if (final)
    *final = s;
  if (!rc && (s.failed || s.dropped || s.acked != s.published))
    rc = SL_ECLOSED;
  pthread_cond_destroy(&ua->cv);
  pthread_mutex_destroy(&ua->mu);
  free(ua);
  return rc;
}

int sl_opcua_start(const sl_opcua_config_t *cfg, sl_opcua_t **out) {
  sl_client_opts_t o;
  pthread_condattr_t ca;
  pthread_attr_t ta;
  sl_opcua_t *ua;
  int rc;
  if (!(ua = calloc(1, sizeof(*ua))))
    return -ENOMEM;
  ua->cfg = cfg;
  pthread_mutex_init(&ua->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ua->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (!(ua->srvs = calloc(cfg->nservers, sizeof(*ua->srvs)))) {
    rc = -ENOMEM;
    goto fail;
  }
  ua->nsrvs = cfg->nservers;
  for (size_t i = 0; i < cfg->nservers; i++)
    if ((rc = srv_init(ua, &ua->srvs[i], &cfg->servers[i],
                       (uint64_t)sl_now_wall_ns() + i * 7919)))
      goto fail;
  sl_client_opts_init(&o);
  o.address = cfg->address;
  o.client_id = cfg->client_id;
  o.token = cfg->token;
  o.max_buffered_events = cfg->max_buffered;
  o.publish_timeout_ms = 0;
  o.ack_cb = on_ack;
  o.state_cb = on_state;
  o.opaque = ua;
  if ((rc = sl_client_new(&o, &ua->cl)))
    goto fail;
  pthread_attr_init(&ta);
  pthread_attr_setstacksize(&ta, 512 * 1024);
  for (size_t i = 0; i < ua->nsrvs; i++) {
    if ((rc = -pthread_create(&ua->srvs[i].thread, &ta, ua_srv_main,
                              &ua->srvs[i]))) {
      pthread_attr_destroy(&ta);
      goto fail;
    }
    ua->srvs[i].started = 1;
  }
  pthread_attr_destroy(&ta);
  *out = ua;
  return 0;
fail:
  sl_opcua_stop(ua, 0, NULL);
  return rc;
}
