/*
 * connectors/modbus/poll.c: the polling threads.
 *
 * Threading. One thread per device. libmodbus is blocking: a connect or a
 * request to a device that stopped answering holds its caller for the
 * device's timeout. A thread per device isolates devices from each other
 * with no scheduler of our own (a poll scheduler would need a non-blocking
 * Modbus stack, which libmodbus is not), and a site's gateway talks to tens
 * of devices, not thousands, so the threads (small stacks) are cheap.
 * Threads share only the client library handle (thread-safe), the stop
 * flag and atomic counters; each device's state is its thread's own.
 *
 * Delivery. Events go to sl_client_publish() without waiting
 * (publish_timeout_ms 0). When the library's bounded buffer is full
 * (SL_EBACKPRESSURE: the daemon is down or slow), the device keeps the
 * events in its own bounded retry ring, in order, and retries them before
 * anything newer; beyond retry_buffer the oldest is dropped and counted.
 * Polling never waits for the daemon, so timestamps stay on schedule.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <modbus/modbus.h>

#include "common/common.h"
#include "connectors/common/conn.h"
#include "connectors/modbus/modbus.h"
#include "sluice/client.h"

enum { DEV_UNKNOWN = 0, DEV_UP = 1, DEV_DOWN = 2 };
enum { EV_READING = 0, EV_STATUS = 1 };
enum { RD_NONE = -1 }; /* no reading published yet for a point */

/* One event waiting for room in the client library. */
typedef struct pending {
  int kind;         /* EV_READING or EV_STATUS */
  size_t point;     /* EV_READING: index into the device's points */
  int64_t time_ns;  /* event time (wall clock at the read) */
  double value;     /* EV_READING with quality good */
  int quality;      /* Sluice__V1__Quality */
  char reason[120]; /* bad reading: why; status: the state's reason */
  char state[8];    /* EV_STATUS: "up" or "down" */
} pending_t;

/* What was last published for a point (deadband, quality transitions). */
typedef struct point_state {
  int quality;       /* last quality published, RD_NONE before the first */
  double value;      /* last good value published */
  uint64_t pub_mono; /* when (monotonic ns) */
} point_state_t;

typedef struct dev {
  sl_modbus_t *mb;               /* back pointer */
  const sl_modbus_device_t *cfg; /* borrowed from the config */
  modbus_t *ctx;                 /* libmodbus context */
  int connected;                 /* TCP connection open */
  int state;                     /* DEV_* */
  sl_modbus_block_t *blocks;     /* read plan */
  size_t nblocks;
  uint64_t *due;            /* per block: next poll, monotonic ns */
  point_state_t *pts;       /* per point */
  uint32_t backoff_ms;      /* current backoff, 0 when up */
  uint64_t retry_mono;      /* next connect attempt when down */
  uint64_t rng;             /* jitter */
  pending_t *ring;          /* retry ring, allocated on first use */
  size_t rcap, rhead, rlen; /* capacity, oldest, count */
  uint16_t regs[2000];      /* one block's registers or bits */
  pthread_t thread;
  int started; /* thread was created */
} mb_dev_t;

struct sl_modbus {
  const sl_modbus_config_t *cfg; /* borrowed */
  sl_client_t *cl;               /* shared by the device threads */
  mb_dev_t *devs;
  size_t ndevs;
  pthread_mutex_t mu; /* guards stop, with cv */
  pthread_cond_t cv;  /* wakes sleeping threads on stop */
  int stop;
  atomic_uint_fast64_t polls, exceptions, failures, published, acked, failed,
      dropped;
  atomic_uint devices_up;
};

/* ---- time and waiting -------------------------------------------------- */

static uint64_t xorshift(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static int stopping(sl_modbus_t *mb) {
  pthread_mutex_lock(&mb->mu);
  int s = mb->stop;
  pthread_mutex_unlock(&mb->mu);
  return s;
}

/* Sleeps until mono time t or a stop, whichever comes first. */
static void wait_until(sl_modbus_t *mb, uint64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000u), (long)(t % 1000000000u)};
  pthread_mutex_lock(&mb->mu);
  while (!mb->stop && sl_now_mono_ns() < t)
    if (pthread_cond_timedwait(&mb->cv, &mb->mu, &ts) == ETIMEDOUT)
      break;
  pthread_mutex_unlock(&mb->mu);
}

/* ---- publishing -------------------------------------------------------- */

static const char *reading_stream(const sl_modbus_config_t *cfg) {
  return cfg->stream;
}

static const char *status_stream(const sl_modbus_config_t *cfg) {
  return cfg->status_stream[0] ? cfg->status_stream : cfg->stream;
}

/* Builds the event for p and hands it to the client library. */
static int publish(mb_dev_t *d, const pending_t *p) {
  const sl_modbus_point_t *pt = &d->cfg->points[p->point];
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  Sluice__V1__Status st = SLUICE__V1__STATUS__INIT;
  Sluice__V1__Attribute attr = SLUICE__V1__ATTRIBUTE__INIT, *attrs[1];
  char source[SL_MODBUS_SOURCE_MAX + SL_MODBUS_NAME_MAX + 2];

  ev.time_ns = p->time_ns;
  if (p->kind == EV_STATUS) {
    ev.source = (char *)d->cfg->source;
    st.state = (char *)p->state;
    st.reason = (char *)p->reason;
    ev.body_case = SLUICE__V1__EVENT__BODY_STATUS;
    ev.status = &st;
    return sl_client_publish(d->mb->cl, status_stream(d->mb->cfg), &ev, NULL);
  }
  snprintf(source, sizeof(source), "%s/%s", d->cfg->source, pt->name);
  ev.source = source;
  rd.quality = p->quality;
  rd.unit = (char *)pt->unit;
  if (p->quality == SLUICE__V1__QUALITY__QUALITY_GOOD) {
    if (pt->type == SL_MODBUS_BOOL) {
      rd.value_case = SLUICE__V1__READING__VALUE_BOOL_VALUE;
      rd.bool_value = p->value != 0;
      rd.datatype = SLUICE__V1__DATA_TYPE__DATA_TYPE_BOOLEAN;
    } else {
      /* Registers of every type, scaled: a double (docs/SCHEMAS.md). */
      rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
      rd.double_value = p->value;
      rd.datatype = SLUICE__V1__DATA_TYPE__DATA_TYPE_DOUBLE;
    }
  } else {
    /* A bad reading carries no value, only why. */
    attr.key = "error";
    attr.value = (char *)p->reason;
    attrs[0] = &attr;
    ev.attributes = attrs;
    ev.n_attributes = 1;
  }
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  return sl_client_publish(d->mb->cl, reading_stream(d->mb->cfg), &ev, NULL);
}

/* Publishes what waits in the ring, oldest first, until the library is
 * full again. Returns 1 when the ring is empty. */
static int drain(mb_dev_t *d) {
  while (d->rlen) {
    pending_t *p = &d->ring[d->rhead];
    int rc = publish(d, p);
    if (rc == SL_EBACKPRESSURE)
      return 0;
    if (rc == 0) {
      atomic_fetch_add(&d->mb->published, 1);
    } else {
      atomic_fetch_add(&d->mb->failed, 1);
      SL_CLOG(SL_CONN_LOG_WARN, "device %s: publish failed: %s", d->cfg->name,
              sl_strerror(rc));
    }
    d->rhead = (d->rhead + 1) % d->rcap;
    d->rlen--;
  }
  return 1;
}

static void enqueue(mb_dev_t *d, const pending_t *p) {
  if (!d->ring) {
    d->rcap = d->mb->cfg->retry_buffer;
    if (!(d->ring = malloc(d->rcap * sizeof(*d->ring)))) {
      d->rcap = 0;
      atomic_fetch_add(&d->mb->dropped, 1);
      return;
    }
  }
  if (d->rlen == d->rcap) {
    /* Full: the oldest goes, counted; a log line when it starts. */
    if (atomic_fetch_add(&d->mb->dropped, 1) % 10000 == 0)
      SL_CLOG(SL_CONN_LOG_WARN,
              "device %s: retry buffer full (%zu), dropping oldest readings",
              d->cfg->name, d->rcap);
    d->rhead = (d->rhead + 1) % d->rcap;
    d->rlen--;
  }
  d->ring[(d->rhead + d->rlen) % d->rcap] = *p;
  d->rlen++;
}

static void emit(mb_dev_t *d, const pending_t *p) {
  int rc;
  if (!drain(d)) {
    enqueue(d, p);
    return;
  }
  rc = publish(d, p);
  if (rc == SL_EBACKPRESSURE) {
    enqueue(d, p);
  } else if (rc == 0) {
    atomic_fetch_add(&d->mb->published, 1);
  } else {
    atomic_fetch_add(&d->mb->failed, 1);
    SL_CLOG(SL_CONN_LOG_WARN, "device %s: publish failed: %s", d->cfg->name,
            sl_strerror(rc));
  }
}

static void emit_status(mb_dev_t *d, const char *state, const char *reason) {
  pending_t p = {.kind = EV_STATUS, .time_ns = sl_now_wall_ns()};
  snprintf(p.state, sizeof(p.state), "%s", state);
  snprintf(p.reason, sizeof(p.reason), "%s", reason);
  emit(d, &p);
}

/* A bad reading for point i, once per transition into bad quality. */
static void emit_bad(mb_dev_t *d, size_t i, int64_t t, const char *reason) {
  pending_t p = {.kind = EV_READING, .point = i, .time_ns = t};
  if (d->pts[i].quality == SLUICE__V1__QUALITY__QUALITY_BAD)
    return;
  p.quality = SLUICE__V1__QUALITY__QUALITY_BAD;
  snprintf(p.reason, sizeof(p.reason), "%s", reason);
  d->pts[i].quality = p.quality;
  d->pts[i].pub_mono = sl_now_mono_ns();
  emit(d, &p);
}

/* A good value for point i, through its deadband. */
static void emit_good(mb_dev_t *d, size_t i, int64_t t, double v) {
  const sl_modbus_point_t *pt = &d->cfg->points[i];
  point_state_t *ps = &d->pts[i];
  uint64_t now = sl_now_mono_ns();
  pending_t p = {.kind = EV_READING, .point = i, .time_ns = t, .value = v};
  if (ps->quality == SLUICE__V1__QUALITY__QUALITY_GOOD && pt->deadband > 0 &&
      fabs(v - ps->value) < pt->deadband &&
      (!pt->heartbeat_ms ||
       now - ps->pub_mono < (uint64_t)pt->heartbeat_ms * 1000000u))
    return;
  p.quality = SLUICE__V1__QUALITY__QUALITY_GOOD;
  ps->quality = p.quality;
  ps->value = v;
  ps->pub_mono = now;
  emit(d, &p);
}

/* ---- the device state machine ----------------------------------------- */

static void set_up(mb_dev_t *d) {
  char why[300];
  if (d->state == DEV_UP)
    return;
  d->state = DEV_UP;
  d->backoff_ms = 0;
  atomic_fetch_add(&d->mb->devices_up, 1);
  snprintf(why, sizeof(why), "answering at %s:%" PRIu64 " unit %" PRIu64,
           d->cfg->host, d->cfg->port, d->cfg->unit_id);
  SL_CLOG(SL_CONN_LOG_INFO, "device %s: up (%s)", d->cfg->name, why);
  emit_status(d, "up", why);
}

static void disconnect(mb_dev_t *d) {
  if (d->connected)
    modbus_close(d->ctx);
  d->connected = 0;
}

/* The device stopped answering: status event and bad readings on the
 * transition, then a jittered exponential backoff before the next try. */
static void set_down(mb_dev_t *d, const char *reason) {
  const sl_modbus_device_t *c = d->cfg;
  uint32_t b;
  disconnect(d);
  atomic_fetch_add(&d->mb->failures, 1);
  if (d->state != DEV_DOWN) {
    char why[160];
    int64_t t = sl_now_wall_ns();
    if (d->state == DEV_UP)
      atomic_fetch_sub(&d->mb->devices_up, 1);
    d->state = DEV_DOWN;
    SL_CLOG(SL_CONN_LOG_WARN, "device %s: down (%s:%" PRIu64 ": %s)", c->name,
            c->host, c->port, reason);
    emit_status(d, "down", reason);
    snprintf(why, sizeof(why), "device down: %s", reason);
    for (size_t i = 0; i < c->npoints; i++)
      emit_bad(d, i, t, why);
  }
  d->backoff_ms = d->backoff_ms ? SL_MIN(d->backoff_ms * 2, c->backoff_max_ms)
                                : c->backoff_min_ms;
  /* Jitter in [b/2, b]: devices that failed together retry apart. */
  b = d->backoff_ms / 2 +
      (uint32_t)(xorshift(&d->rng) % (d->backoff_ms / 2 + 1));
  d->retry_mono = sl_now_mono_ns() + (uint64_t)b * 1000000u;
}

static int try_connect(mb_dev_t *d) {
  const sl_modbus_device_t *c = d->cfg;
  uint32_t ct = c->connect_timeout_ms, rt = c->response_timeout_ms;
  /* libmodbus bounds its connect by the response timeout. */
  modbus_set_response_timeout(d->ctx, ct / 1000, (ct % 1000) * 1000);
  if (modbus_connect(d->ctx) < 0) {
    set_down(d, modbus_strerror(errno));
    return -1;
  }
  modbus_set_response_timeout(d->ctx, rt / 1000, (rt % 1000) * 1000);
  modbus_set_byte_timeout(d->ctx, rt / 1000, (rt % 1000) * 1000);
  d->connected = 1;
  /* Poll everything at once after a (re)connect. */
  for (size_t i = 0; i < d->nblocks; i++)
    d->due[i] = sl_now_mono_ns();
  return 0;
}

static int is_exception(int e) {
  return e >= EMBXILFUN && e <= EMBXGTAR;
}

/* One request. Returns 0, the Modbus exception errno (EMBX*), or -1 for a
 * transport failure with errno set. */
static int read_block(mb_dev_t *d, const sl_modbus_block_t *b) {
  uint8_t bits[2000];
  int rc, n = (int)b->count;
  switch (b->table) {
  case SL_MODBUS_HOLDING:
    rc = modbus_read_registers(d->ctx, (int)b->address, n, d->regs);
    break;
  case SL_MODBUS_INPUT:
    rc = modbus_read_input_registers(d->ctx, (int)b->address, n, d->regs);
    break;
  case SL_MODBUS_COIL:
    rc = modbus_read_bits(d->ctx, (int)b->address, n, bits);
    break;
  default:
    rc = modbus_read_input_bits(d->ctx, (int)b->address, n, bits);
    break;
  }
  if (rc < 0)
    return is_exception(errno) ? errno : -1;
  if (rc != n) {
    errno = EMBBADDATA;
    return -1;
  }
  if (b->table == SL_MODBUS_COIL || b->table == SL_MODBUS_DISCRETE)
    for (int i = 0; i < n; i++)
      d->regs[i] = bits[i];
  return 0;
}

static void publish_block(mb_dev_t *d, const sl_modbus_block_t *b, int exc) {
  int64_t t = sl_now_wall_ns();
  char why[120];
  if (exc) {
    atomic_fetch_add(&d->mb->exceptions, 1);
    snprintf(why, sizeof(why), "modbus exception %d: %s", exc - MODBUS_ENOBASE,
             modbus_strerror(exc));
    for (size_t k = 0; k < b->npoints; k++) {
      if (d->pts[b->points[k]].quality != SLUICE__V1__QUALITY__QUALITY_BAD)
        SL_CLOG(SL_CONN_LOG_WARN, "device %s: point %s: %s", d->cfg->name,
                d->cfg->points[b->points[k]].name, why);
      emit_bad(d, b->points[k], t, why);
    }
    return;
  }
  atomic_fetch_add(&d->mb->polls, 1);
  for (size_t k = 0; k < b->npoints; k++) {
    size_t i = b->points[k];
    const sl_modbus_point_t *pt = &d->cfg->points[i];
    double v;
    if (sl_modbus_decode(pt, d->regs + (pt->address - b->address), &v))
      emit_bad(d, i, t, "value is NaN or infinite");
    else
      emit_good(d, i, t, v);
  }
}

/* Polls every block that is due. */
static void poll_due(mb_dev_t *d) {
  for (size_t i = 0; i < d->nblocks && d->connected; i++) {
    const sl_modbus_block_t *b = &d->blocks[i];
    uint64_t now = sl_now_mono_ns();
    int rc;
    if (d->due[i] > now)
      continue;
    rc = read_block(d, b);
    if (rc < 0) {
      /* Gateways and PLCs drop idle connections: reconnect once at once
       * before calling the device down. */
      int e = errno;
      SL_CLOG(SL_CONN_LOG_DEBUG, "device %s: read failed (%s), reconnecting",
              d->cfg->name, modbus_strerror(e));
      disconnect(d);
      if (try_connect(d) < 0)
        return;
      if ((rc = read_block(d, b)) < 0) {
        set_down(d, modbus_strerror(errno));
        return;
      }
    }
    set_up(d);
    publish_block(d, b, rc);
    /* Next poll one interval later; missed slots are skipped, not
     * bunched up. */
    d->due[i] += (uint64_t)b->interval_ms * 1000000u;
    if (d->due[i] <= now)
      d->due[i] = now + (uint64_t)b->interval_ms * 1000000u;
  }
}

static void *dev_main(void *arg) {
  mb_dev_t *d = arg;
  sl_modbus_t *mb = d->mb;
  while (!stopping(mb)) {
    uint64_t now = sl_now_mono_ns(), next = UINT64_MAX;
    int empty = drain(d);
    if (!d->connected) {
      if (now < d->retry_mono) {
        wait_until(mb, empty ? d->retry_mono
                             : SL_MIN(d->retry_mono, now + 50000000u));
        continue;
      }
      if (try_connect(d) < 0)
        continue;
    }
    poll_due(d);
    for (size_t i = 0; i < d->nblocks; i++)
      next = SL_MIN(next, d->due[i]);
    if (!d->connected)
      continue;
    /* With readings waiting for room, look again soon. */
    if (!empty)
      next = SL_MIN(next, sl_now_mono_ns() + 50000000u);
    wait_until(mb, next);
  }
  return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  sl_modbus_t *mb = opaque;
  (void)cl;
  (void)first_offset;
  if (!err) {
    atomic_fetch_add(&mb->acked, count);
    return;
  }
  /* The first failure and then one in a thousand are logged; the stats
   * lines count them all. */
  if (atomic_fetch_add(&mb->failed, count) % 1000 == 0)
    SL_CLOG(SL_CONN_LOG_WARN, "batch %llu (%u events) failed: %s",
            (unsigned long long)batch_id, count, sl_strerror(err));
}

static void on_state(sl_client_t *cl, sl_client_state_t state, int err,
                     const char *reason, void *opaque) {
  sl_modbus_t *mb = opaque;
  (void)cl;
  if (state == SL_CLIENT_CONNECTED)
    SL_CLOG(SL_CONN_LOG_INFO, "connected to sluice at %s", mb->cfg->address);
  else
    SL_CLOG(SL_CONN_LOG_WARN, "sluice at %s: %s (%s)", mb->cfg->address,
            state == SL_CLIENT_DISCONNECTED ? "disconnected" : "error",
            reason && *reason ? reason : sl_strerror(err));
}

static void dev_close(mb_dev_t *d) {
  if (d->ctx) {
    disconnect(d);
    modbus_free(d->ctx);
  }
  sl_modbus_plan_free(d->blocks, d->nblocks);
  free(d->due);
  free(d->pts);
  free(d->ring);
}

static int dev_init(sl_modbus_t *mb, mb_dev_t *d, const sl_modbus_device_t *c,
                    uint64_t seed) {
  char port[8];
  d->mb = mb;
  d->cfg = c;
  d->rng = seed | 1;
  snprintf(port, sizeof(port), "%" PRIu64, c->port);
  if (!(d->ctx = modbus_new_tcp_pi(c->host, port)))
    return -errno ? -errno : -ENOMEM;
  modbus_set_slave(d->ctx, (int)c->unit_id);
  modbus_set_error_recovery(d->ctx, MODBUS_ERROR_RECOVERY_NONE);
  if (sl_modbus_plan(c, &d->blocks, &d->nblocks) ||
      !(d->due = calloc(d->nblocks, sizeof(*d->due))) ||
      !(d->pts = calloc(c->npoints, sizeof(*d->pts))))
    return -ENOMEM;
  for (size_t i = 0; i < c->npoints; i++)
    d->pts[i].quality = RD_NONE;
  SL_CLOG(SL_CONN_LOG_INFO, "device %s: %zu points in %zu requests per round",
          c->name, c->npoints, d->nblocks);
  return 0;
}

static void stats_snapshot(sl_modbus_t *mb, sl_modbus_stats_t *s) {
  s->polls = atomic_load(&mb->polls);
  s->exceptions = atomic_load(&mb->exceptions);
  s->failures = atomic_load(&mb->failures);
  s->published = atomic_load(&mb->published);
  s->acked = atomic_load(&mb->acked);
  s->failed = atomic_load(&mb->failed);
  s->dropped = atomic_load(&mb->dropped);
  s->devices_up = atomic_load(&mb->devices_up);
}

void sl_modbus_stats(sl_modbus_t *mb, sl_modbus_stats_t *stats) {
  stats_snapshot(mb, stats);
}

int sl_modbus_stop(sl_modbus_t *mb, int flush_ms, sl_modbus_stats_t *final) {
  int rc = 0;
  size_t left = 0;
  if (!mb)
    return 0;
  pthread_mutex_lock(&mb->mu);
  mb->stop = 1;
  pthread_cond_broadcast(&mb->cv);
  pthread_mutex_unlock(&mb->mu);
  for (size_t i = 0; i < mb->ndevs; i++)
    if (mb->devs[i].started)
      pthread_join(mb->devs[i].thread, NULL);
  /* What still waits in retry rings gets one last chance, then counts as
   * dropped. */
  for (size_t i = 0; mb->cl && i < mb->ndevs; i++) {
    drain(&mb->devs[i]);
    left += mb->devs[i].rlen;
  }
  atomic_fetch_add(&mb->dropped, left);
  if (mb->cl && (rc = sl_client_flush(mb->cl, flush_ms)) < 0)
    SL_CLOG(SL_CONN_LOG_WARN, "flush: %s", sl_strerror(rc));
  sl_client_free(mb->cl);
  for (size_t i = 0; i < mb->ndevs; i++)
    dev_close(&mb->devs[i]);
  free(mb->devs);
  sl_modbus_stats_t s;
  stats_snapshot(mb, &s);
  if (final)
    *final = s;
  if (!rc && (s.failed || s.dropped || s.acked != s.published))
    rc = SL_ECLOSED;
  pthread_cond_destroy(&mb->cv);
  pthread_mutex_destroy(&mb->mu);
  free(mb);
  return rc;
}

int sl_modbus_start(const sl_modbus_config_t *cfg, sl_modbus_t **out) {
  sl_client_opts_t o;
  pthread_condattr_t ca;
  pthread_attr_t ta;
  sl_modbus_t *mb;
  int rc;

  if (!(mb = calloc(1, sizeof(*mb))))
    return -ENOMEM;
  mb->cfg = cfg;
  pthread_mutex_init(&mb->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&mb->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (!(mb->devs = calloc(cfg->ndevices, sizeof(*mb->devs)))) {
    rc = -ENOMEM;
    goto fail;
  }
  mb->ndevs = cfg->ndevices;
  for (size_t i = 0; i < cfg->ndevices; i++)
    if ((rc = dev_init(mb, &mb->devs[i], &cfg->devices[i],
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
  o.opaque = mb;
  if ((rc = sl_client_new(&o, &mb->cl)))
    goto fail;
  pthread_attr_init(&ta);
  pthread_attr_setstacksize(&ta, 256 * 1024);
  for (size_t i = 0; i < mb->ndevs; i++) {
    if ((rc = -pthread_create(&mb->devs[i].thread, &ta, dev_main,
                              &mb->devs[i]))) {
      pthread_attr_destroy(&ta);
      goto fail;
    }
    mb->devs[i].started = 1;
  }
  pthread_attr_destroy(&ta);
  *out = mb;
  return 0;
fail:
  sl_modbus_stop(mb, 0, NULL);
  return rc;
}
