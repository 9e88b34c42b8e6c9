/*
 * connectors/sim/out.c: the output dispatch and the native output (the C
 * client library: batching, acks after the daemon's commit, resend after a
 * reconnect).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/common.h"
#include "connectors/common/conn.h"
#include "connectors/sim/sim_int.h"
#include "sluice/client.h"

/* ---- native ------------------------------------------------------------ */

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  sl_sim_out_t *o = opaque;
  (void)cl;
  (void)first_offset;
  if (!err) {
    atomic_fetch_add(&o->acked, count);
    return;
  }
  /* The first failure is logged; the summary counts them all. */
  if (atomic_fetch_add(&o->failed, count) == 0)
    SL_CLOG(SL_CONN_LOG_WARN, "batch %llu (%u events) failed: %s",
            (unsigned long long)batch_id, count, sl_strerror(err));
}

static void on_state(sl_client_t *cl, sl_client_state_t state, int err,
                     const char *reason, void *opaque) {
  sl_sim_out_t *o = opaque;
  (void)cl;
  if (state == SL_CLIENT_CONNECTED)
    SL_CLOG(SL_CONN_LOG_INFO, "connected to %s", o->cfg->address);
  else
    SL_CLOG(SL_CONN_LOG_WARN, "%s: %s (%s)", o->cfg->address,
            state == SL_CLIENT_DISCONNECTED ? "disconnected" : "error",
            reason && *reason ? reason : sl_strerror(err));
}

static int native_publish(sl_sim_out_t *o, const char *stream,
                          const Sluice__V1__Event *ev) {
  int rc;
  /* A full buffer (daemon slow or away) waits in slices, so a stop is
   * noticed. */
  while ((rc = sl_client_publish(o->impl, stream, ev, NULL)) ==
         SL_EBACKPRESSURE)
    if (*o->stop || (o->deadline_ns && sl_now_mono_ns() >= o->deadline_ns))
      return SL_ECLOSED; /* stopped, or --duration ran out while waiting */
  if (rc == 0)
    atomic_fetch_add(&o->published, 1);
  return rc;
}

static int native_flush(sl_sim_out_t *o, int timeout_ms) {
  return sl_client_flush(o->impl, timeout_ms);
}

static void native_free(sl_sim_out_t *o) {
  sl_client_free(o->impl);
}

static const sim_out_ops_t native_ops = {native_publish, native_flush,
                                         native_free};

int sim__native_new(sl_sim_out_t *o) {
  sl_client_opts_t opts;
  sl_client_t *cl;
  int rc;
  sl_client_opts_init(&opts);
  opts.address = o->cfg->address;
  opts.client_id = o->cfg->client_id;
  opts.token = o->cfg->token;
  opts.publish_timeout_ms = 200;
  opts.ack_cb = on_ack;
  opts.state_cb = on_state;
  opts.opaque = o;
  if ((rc = sl_client_new(&opts, &cl)))
    return rc;
  o->ops = &native_ops;
  o->impl = cl;
  return 0;
}

/* ---- dispatch ------------------------------------------------------------ */

int sl_sim_out_new(const sl_sim_config_t *cfg, volatile int *stop,
                   sl_sim_out_t **out) {
  sl_sim_out_t *o = calloc(1, sizeof(*o));
  int rc;
  if (!o)
    return -ENOMEM;
  o->cfg = cfg;
  o->stop = stop;
  rc = cfg->output == SL_SIM_HTTP   ? sim__http_new(o)
       : cfg->output == SL_SIM_MQTT ? sim__mqtt_new(o)
                                    : sim__native_new(o);
  if (rc) {
    free(o);
    return rc;
  }
  *out = o;
  return 0;
}

int sl_sim_out_publish(sl_sim_out_t *o, const char *stream,
                       const Sluice__V1__Event *ev) {
  return o->ops->publish(o, stream, ev);
}

int sl_sim_out_flush(sl_sim_out_t *o, int timeout_ms) {
  return o->ops->flush(o, timeout_ms);
}

void sl_sim_out_stats(sl_sim_out_t *o, uint64_t *published, uint64_t *acked,
                      uint64_t *failed) {
  *published = atomic_load(&o->published);
  *acked = atomic_load(&o->acked);
  *failed = atomic_load(&o->failed);
}

void sl_sim_out_free(sl_sim_out_t *o, uint64_t *published, uint64_t *acked,
                     uint64_t *failed) {
  if (!o)
    return;
  /* Closing fails what is still unacked (native: through ack_cb), so the
   * counters are read after it; whatever was never acked counts as failed. */
  o->ops->free(o);
  sl_sim_out_stats(o, published, acked, failed);
  if (*published - *acked > *failed)
    *failed = *published - *acked;
  free(o);
}
