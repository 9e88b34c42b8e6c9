/*
 * Daemon glue for edge pipelines. One sl_process_t per daemon, used under
 * a mutex by the ingest paths (the loop thread for native and MQTT,
 * libmicrohttpd's thread for HTTP): apply -> submit -> finish happen under
 * the lock, so the state a batch changed is put in that batch's group and
 * groups reach the writer in the order their state was computed.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"
#include "ingest/dedupe.h"
#include "telemetry/log.h"
#include "ingest/pipes.h"
#include "common/clock_step.h"
#include "wire/frame.h"
#include "wire/wire.h"

#define MAX_OUT 16 /* distinct destination streams per batch */

typedef struct builder {
  size_t sidx;      /* destination stream (index in ic->streams) */
  sl_frame_buf_t b; /* serialized EventBatch */
  uint32_t count;
  int64_t tmin, tmax;
} builder_t;

struct sl_pipes {
  sl_ingest_t *ic;
  sl_process_t *pr;
  pthread_mutex_t lock;
  _Atomic int reload; /* a group with state failed: reload before a run */
  size_t npipes;
  uint8_t *wants; /* per stream index: some pipeline may match */
  builder_t out[MAX_OUT];
  size_t nout;
  const uint8_t **entry; /* per event: its EventBatch entry (tag..end) */
  size_t *entry_len;
  size_t cap_entries;
  sl_frame_buf_t scratch;        /* re-encoded tagged event */
  sl_dedupe_t *dd;               /* dedupe windows (streams[].dedupe_key) */
  uint8_t *keep;                 /* per event: not a duplicate */
  const Sluice__V1__Event **evs; /* the events left after dedupe */
  /* Metrics: last published stats, so counters get the difference. */
  sl_process_stats_t *last;
  sl_metric_t **m_in, **m_emitted, **m_late;
  sl_metric_t **m_partial, **m_unkeyed; /* model_aggregate */
  sl_metric_t *(*m_drop)[SL_PROCESS_R_COUNT];
  sl_metric_t *m_wm_reset; /* watermarks set back from the future */
  int64_t max_future_ns;   /* limits.max_future at start */
  /* The node's own clock (issue 26): a backward step rebases aggregates. */
  sl_clock_ref_t clk;     /* wall/monotonic pair of the last run */
  int64_t clock_saved_ns; /* node clock in the committed state record */
  int64_t clock_pending;  /* ... in the record of the pending run, or 0 */
  sl_metric_t *m_steps;   /* backward steps noticed */
  sl_metric_t *m_rebased; /* watermarks rebased after them */
};

/* ---- the node clock ------------------------------------------------------ */

/*
 * The node clock of the last run is kept in the store's state with the
 * pipelines' own records (same group, so it always matches the persisted
 * watermarks), to notice at start that the clock went back while the
 * daemon was down. Record "sl.pipes/clock", 24 bytes: magic "SLCK", u8
 * version 1, 3 zero bytes, i64 node clock (ns, little-endian), u64 FNV-1a
 * of the 16 bytes before it.
 */
#define CLOCK_KEY "sl.pipes/clock"
#define CLOCK_LEN 24

static uint64_t fnv1a(const uint8_t *p, size_t n) {
  uint64_t h = 14695981039346656037ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

static void clock_encode(uint8_t rec[CLOCK_LEN], int64_t now_ns) {
  memset(rec, 0, CLOCK_LEN);
  memcpy(rec, "SLCK", 4);
  rec[4] = 1;
  for (int i = 0; i < 8; i++)
    rec[8 + i] = (uint8_t)((uint64_t)now_ns >> (8 * i));
  uint64_t h = fnv1a(rec, 16);
  for (int i = 0; i < 8; i++)
    rec[16 + i] = (uint8_t)(h >> (8 * i));
}

/* The node clock of the last committed run, or 0 (none, unreadable). */
static int64_t clock_load(sl_store_t *st) {
  uint8_t rec[CLOCK_LEN];
  size_t vlen = 0;
  uint64_t v = 0, h = 0;
  if (sl_store_state_get(st, CLOCK_KEY, strlen(CLOCK_KEY), rec, sizeof(rec),
                         &vlen) < 0 ||
      vlen != CLOCK_LEN || memcmp(rec, "SLCK", 4) || rec[4] != 1)
    return 0;
  for (int i = 0; i < 8; i++) {
    v |= (uint64_t)rec[8 + i] << (8 * i);
    h |= (uint64_t)rec[16 + i] << (8 * i);
  }
  return h == fnv1a(rec, 16) ? (int64_t)v : 0;
}

/* Rebases every aggregate ahead of now_ns after a backward step of step_ns
 * (< 0) of the node clock, counts and logs it (once per step). */
static void clock_rebase(sl_pipes_t *pp, int64_t now_ns, int64_t step_ns,
                         const char *when) {
  size_t n = sl_process_watermark_rebase(pp->pr, now_ns, SL_CLOCK_STEP_MIN_NS);
  sl_metric_add(pp->m_steps, 1);
  if (n)
    sl_metric_add(pp->m_rebased, n);
  sl_warn(SL_LOG_CTX_STORE, NULL,
          "pipelines: the node clock stepped back %.3f s %s; %zu aggregate "
          "watermark(s) set back to it (their windows ahead are emitted as "
          "they are with the next batch)",
          (double)-step_ns / 1e9, when, n);
}

/* At start and after a state reload: the node clock behind the one the
 * stored state was written with means it went back meanwhile. */
static void clock_check_stored(sl_pipes_t *pp, const char *when) {
  int64_t now = sl_now_wall_ns(), saved = clock_load(pp->ic->st);
  pp->clock_saved_ns = saved;
  pp->clock_pending = 0;
  if (saved && now < saved - SL_CLOCK_STEP_MIN_NS)
    clock_rebase(pp, now, now - saved, when);
  pp->clk.set = false;
  sl_clock_step(&pp->clk, now, sl_now_mono_ns());
}

/* Before a run: a backward step since the last run rebases. Adds the clock
 * record to g when it moved a second or more (or back). */
static int clock_before_run(sl_pipes_t *pp, sl_store_group_t *g) {
  int64_t now = sl_now_wall_ns(), step;
  step = sl_clock_step(&pp->clk, now, sl_now_mono_ns());
  if (step < 0)
    clock_rebase(pp, now, step, "while running");
  pp->clock_pending = 0;
  if (now - pp->clock_saved_ns >= SL_CLOCK_STEP_MIN_NS ||
      now < pp->clock_saved_ns) {
    uint8_t rec[CLOCK_LEN];
    clock_encode(rec, now);
    int rc = sl_store_group_state_put(g, CLOCK_KEY, strlen(CLOCK_KEY), rec,
                                      sizeof(rec));
    if (rc < 0)
      return rc;
    pp->clock_pending = now;
  }
  return 0;
}

/* Sets back every aggregate watermark an event from the future moved, in
 * state stored before event times were bounded (sl_process_watermark_cap()).
 * Returns how many. */
static size_t cap_watermarks(sl_pipes_t *pp) {
  size_t n = 0;
  if (pp->max_future_ns > 0 &&
      (n = sl_process_watermark_cap(pp->pr, sl_now_wall_ns(),
                                    pp->max_future_ns)) > 0)
    sl_metric_add(pp->m_wm_reset, n);
  return n;
}

int sl_pipes_route_of(const sl_config_t *cfg, const char *stream,
                      const char **topic) {
  int local = 0;
  if (topic)
    *topic = NULL;
  for (size_t i = 0; i < cfg->pipelines.n; i++) {
    const sl_config_pipeline_t *p = &cfg->pipelines.v[i];
    for (size_t k = 0; k < p->steps.n; k++) {
      const sl_config_step_t *s = &p->steps.v[k];
      const char *target = *s->stream ? s->stream : p->match_stream;
      if (!*s->route || strcmp(target, stream))
        continue;
      if (!strcmp(s->route, "local"))
        local = 1;
      else if (!strcmp(s->route, "kafka") && *s->topic && topic)
        *topic = s->topic;
    }
  }
  return local;
}

/* ---- building ---------------------------------------------------------- */

static int stream_known(sl_ingest_t *ic, const char *name, char *err,
                        size_t errlen, const char *what, const char *pipe) {
  size_t idx;
  if (!name || !*name || sl_ingest_stream(ic, name, &idx) == 0)
    return 0;
  snprintf(err, errlen,
           "pipelines[%s]: %s stream '%s' is not in streams: add it there",
           pipe, what, name);
  return SL_ECONFIG;
}

static void register_metrics(sl_pipes_t *pp) {
  sl_ingest_t *ic = pp->ic;
  char labels[256], esc[160];
  for (size_t i = 0; i < pp->npipes; i++) {
    sl_process_stats_t st;
    sl_process_stats(pp->pr, i, &st);
    sl_metrics_escape(esc, sizeof(esc), st.name);
    snprintf(labels, sizeof(labels), "pipeline=\"%s\"", esc);
    pp->m_in[i] = sl_metrics_counter(ic->mx, "sluice_pipeline_events_total",
                                     "Events a pipeline matched", labels);
    pp->m_emitted[i] = sl_metrics_counter(
        ic->mx, "sluice_pipeline_emitted_total",
        "Window results and corrections a pipeline emitted", labels);
    pp->m_late[i] = sl_metrics_counter(
        ic->mx, "sluice_pipeline_late_total",
        "Events behind an aggregate's watermark and lateness", labels);
    pp->m_partial[i] = sl_metrics_counter(
        ic->mx, "sluice_pipeline_partial_windows_total",
        "model_aggregate windows closed early because the key table was full",
        labels);
    pp->m_unkeyed[i] = sl_metrics_counter(
        ic->mx, "sluice_pipeline_unkeyed_total",
        "Inference events a model_aggregate could not key (kept raw)", labels);
    for (int r = 0; r < SL_PROCESS_R_COUNT; r++) {
      snprintf(labels, sizeof(labels), "pipeline=\"%s\",reason=\"%s\"", esc,
               sl_process_reason_name((sl_process_reason_t)r));
      pp->m_drop[i][r] = sl_metrics_counter(
          ic->mx, "sluice_pipeline_dropped_total",
          "Events a pipeline dropped before storage, by reason", labels);
    }
  }
}

int sl_pipes_new(sl_ingest_t *ic, sl_pipes_t **out, char *err, size_t errlen,
                 char *warn, size_t warnlen) {
  const sl_config_t *cfg = ic->cfg;
  sl_pipes_t *pp;
  int rc;

  *out = NULL;
  if (warn && warnlen)
    *warn = 0;
  sl_dedupe_t *dd = NULL;
  if ((rc = sl_dedupe_new(ic, &dd)) < 0)
    return rc;
  if (!cfg->pipelines.n && !dd)
    return 0;
  if (!(pp = calloc(1, sizeof(*pp)))) {
    sl_dedupe_free(dd);
    return -ENOMEM;
  }
  pthread_mutex_init(&pp->lock, NULL);
  pp->ic = ic;
  pp->dd = dd; /* also a reason to run: every path meets here */
  sl_frame_buf_init(&pp->scratch);
  for (size_t i = 0; i < MAX_OUT; i++)
    sl_frame_buf_init(&pp->out[i].b);
  if ((rc = sl_process_new(&pp->pr)) < 0)
    goto fail;
  for (size_t i = 0; i < cfg->pipelines.n; i++) {
    const sl_config_pipeline_t *p = &cfg->pipelines.v[i];
    char why[400];
    if ((rc = sl_config_pipeline_add(pp->pr, p, why, sizeof(why))) < 0) {
      snprintf(err, errlen, "pipelines[%s]: %s", p->name, why);
      goto fail;
    }
    if ((rc = stream_known(ic, p->match_stream, err, errlen, "match",
                           p->name)) < 0)
      goto fail;
    for (size_t k = 0; k < p->steps.n; k++)
      if ((rc = stream_known(ic, p->steps.v[k].into, err, errlen,
                             "aggregate into", p->name)) < 0 ||
          (rc = stream_known(ic, p->steps.v[k].stream, err, errlen, "route",
                             p->name)) < 0)
        goto fail;
  }
  pp->npipes = cfg->pipelines.n;
  if (!(pp->wants = calloc(ic->nstreams ? ic->nstreams : 1, 1)))
    goto nomem;
  for (size_t s = 0; s < ic->nstreams; s++)
    for (size_t i = 0; i < cfg->pipelines.n; i++)
      if (!*cfg->pipelines.v[i].match_stream ||
          !strcmp(cfg->pipelines.v[i].match_stream, ic->streams[s].name))
        pp->wants[s] = 1;
  for (size_t s = 0; s < ic->nstreams; s++)
    pp->wants[s] |= sl_dedupe_wants(pp->dd, s);
  size_t np = pp->npipes ? pp->npipes : 1;
  pp->last = calloc(np, sizeof(*pp->last));
  pp->m_in = calloc(np, sizeof(*pp->m_in));
  pp->m_emitted = calloc(np, sizeof(*pp->m_emitted));
  pp->m_late = calloc(np, sizeof(*pp->m_late));
  pp->m_partial = calloc(np, sizeof(*pp->m_partial));
  pp->m_unkeyed = calloc(np, sizeof(*pp->m_unkeyed));
  pp->m_drop = calloc(np, sizeof(*pp->m_drop));
  if (!pp->last || !pp->m_in || !pp->m_emitted || !pp->m_late || !pp->m_drop ||
      !pp->m_partial || !pp->m_unkeyed)
    goto nomem;
  /* State from the last run, before any listener opens. */
  char bad[200] = "";
  rc = sl_process_state_load_store(pp->pr, ic->st, bad, sizeof(bad));
  if (rc < 0 && rc != SL_ECORRUPT) {
    snprintf(err, errlen, "pipelines: cannot load state: %s", sl_strerror(rc));
    goto fail;
  }
  if (rc == SL_ECORRUPT && warn && warnlen)
    snprintf(warn, warnlen, "pipelines: a corrupt state record was skipped: %s",
             bad);
  pp->m_wm_reset = sl_metrics_counter(
      ic->mx, "sluice_pipeline_watermark_resets_total",
      "Aggregate watermarks found beyond limits.max_future and set back to "
      "the node clock",
      NULL);
  pp->max_future_ns = (int64_t)SL_MIN(cfg->limits.max_future_ms,
                                      (uint64_t)INT64_MAX / 1000000) *
                      1000000;
  pp->m_steps = sl_metrics_counter(
      ic->mx, "sluice_pipeline_clock_steps_total",
      "Backward steps of the node clock the pipelines noticed (while running "
      "or across a restart)",
      NULL);
  pp->m_rebased = sl_metrics_counter(
      ic->mx, "sluice_pipeline_watermark_rebases_total",
      "Aggregate watermarks set back to the node clock after it stepped back",
      NULL);
  size_t nreset = cap_watermarks(pp);
  clock_check_stored(pp, "while the daemon was stopped");
  if (nreset && warn && warnlen && !*warn)
    snprintf(warn, warnlen,
             "pipelines: %zu aggregate watermark(s) were more than "
             "limits.max_future ahead of the node clock (an event from the "
             "future moved them); set back to now, their future windows are "
             "emitted with the next batch",
             nreset);
  register_metrics(pp);
  *out = pp;
  return 0;
nomem:
  rc = -ENOMEM;
  snprintf(err, errlen, "pipelines: out of memory");
fail:
  sl_pipes_free(pp);
  return rc;
}

void sl_pipes_free(sl_pipes_t *pp) {
  if (!pp)
    return;
  sl_process_free(pp->pr);
  for (size_t i = 0; i < MAX_OUT; i++)
    sl_frame_buf_close(&pp->out[i].b);
  sl_frame_buf_close(&pp->scratch);
  free(pp->entry);
  free(pp->entry_len);
  free(pp->keep);
  free(pp->evs);
  sl_dedupe_free(pp->dd);
  free(pp->wants);
  free(pp->last);
  free(pp->m_in);
  free(pp->m_emitted);
  free(pp->m_late);
  free(pp->m_partial);
  free(pp->m_unkeyed);
  free(pp->m_drop);
  pthread_mutex_destroy(&pp->lock);
  free(pp);
}

int sl_pipes_wants(const sl_pipes_t *pp, size_t sidx) {
  return pp && sidx < pp->ic->nstreams && pp->wants[sidx];
}

/* ---- running ----------------------------------------------------------- */

static builder_t *builder_for(sl_pipes_t *pp, size_t sidx) {
  for (size_t i = 0; i < pp->nout; i++)
    if (pp->out[i].sidx == sidx)
      return &pp->out[i];
  if (pp->nout == MAX_OUT)
    return NULL;
  builder_t *b = &pp->out[pp->nout++];
  b->sidx = sidx;
  b->b.len = 0;
  b->count = 0;
  b->tmin = INT64_MAX;
  b->tmax = INT64_MIN;
  return b;
}

/* Appends one serialized EventBatch entry (tag, length, Event). */
static int builder_add(builder_t *b, const uint8_t *entry, size_t len,
                       int64_t t) {
  if (sl_frame_buf_reserve(&b->b, len) < 0)
    return -ENOMEM;
  memcpy(b->b.data + b->b.len, entry, len);
  b->b.len += len;
  b->count++;
  b->tmin = t < b->tmin ? t : b->tmin;
  b->tmax = t > b->tmax ? t : b->tmax;
  return 0;
}

/* Encodes ev as an EventBatch entry in pp->scratch, with the attributes of
 * every tag res holds for event index idx added (tagging is the rare path:
 * it allocates). res may be NULL. */
static int encode_entry(sl_pipes_t *pp, const Sluice__V1__Event *ev,
                        const sl_process_result_t *res, size_t idx) {
  Sluice__V1__Event copy = *ev;
  Sluice__V1__Attribute *extra = NULL, **attrs = NULL;
  size_t sz, ntag = 0;
  uint8_t *p;

  for (size_t t = 0; res && t < res->ntags; t++)
    ntag += res->tags[t].event == idx;
  if (ntag) {
    attrs = malloc((ev->n_attributes + ntag) * sizeof(*attrs));
    extra = calloc(ntag, sizeof(*extra));
    if (!attrs || !extra) {
      free(attrs);
      free(extra);
      return -ENOMEM;
    }
    if (ev->n_attributes) /* attributes may be NULL when there are none */
      memcpy(attrs, ev->attributes, ev->n_attributes * sizeof(*attrs));
    for (size_t t = 0, k = 0; t < res->ntags; t++) {
      if (res->tags[t].event != idx)
        continue;
      sluice__v1__attribute__init(&extra[k]);
      extra[k].key = (char *)res->tags[t].key;
      extra[k].value = (char *)res->tags[t].value;
      attrs[ev->n_attributes + k] = &extra[k];
      k++;
    }
    copy.attributes = attrs;
    copy.n_attributes = ev->n_attributes + ntag;
  }
  sz = sluice__v1__event__get_packed_size(&copy);
  pp->scratch.len = 0;
  if (sl_frame_buf_reserve(&pp->scratch, sz + 11) < 0) {
    free(attrs);
    free(extra);
    return -ENOMEM;
  }
  p = pp->scratch.data;
  *p++ = SL_WIRE_KEY_BATCH_EVENTS;
  for (size_t l = sz;; l >>= 7) {
    if (l < 0x80) {
      *p++ = (uint8_t)l;
      break;
    }
    *p++ = (uint8_t)(l | 0x80);
  }
  p += sluice__v1__event__pack(&copy, p);
  pp->scratch.len = (size_t)(p - pp->scratch.data);
  free(attrs);
  free(extra);
  return 0;
}

/* Finds each event's entry in the serialized batch. */
static int index_entries(sl_pipes_t *pp, const uint8_t *batch, size_t len,
                         size_t n) {
  const uint8_t *p = batch, *end = batch + len, *val, *next;
  uint64_t key;
  size_t vlen, i = 0;

  if (n > pp->cap_entries) {
    const uint8_t **e = realloc(pp->entry, n * sizeof(*e));
    if (!e)
      return -ENOMEM;
    pp->entry = e;
    size_t *l = realloc(pp->entry_len, n * sizeof(*l));
    if (!l)
      return -ENOMEM;
    pp->entry_len = l;
    uint8_t *k = realloc(pp->keep, n);
    if (!k)
      return -ENOMEM;
    pp->keep = k;
    const Sluice__V1__Event **v = realloc(pp->evs, n * sizeof(*v));
    if (!v)
      return -ENOMEM;
    pp->evs = v;
    pp->cap_entries = n;
  }
  for (; p < end; p = next) {
    if (!(next = sl_pb_next_field(p, end, &key, &val, &vlen)))
      return SL_EPROTO;
    if (key != SL_WIRE_KEY_BATCH_EVENTS)
      continue;
    if (i == n)
      return SL_EPROTO;
    pp->entry[i] = p;
    pp->entry_len[i] = (size_t)(next - p);
    i++;
  }
  return i == n ? 0 : SL_EPROTO;
}

int sl_pipes_apply(sl_pipes_t *pp, size_t sidx,
                   const Sluice__V1__Event *const *events, size_t n,
                   const uint8_t *batch, size_t len, sl_store_group_t *g,
                   sl_pipes_out_t *out) {
  sl_ingest_t *ic = pp->ic;
  sl_process_result_t res;
  builder_t *b;
  int rc;

  pthread_mutex_lock(&pp->lock);
  memset(out, 0, sizeof(*out));
  pp->nout = 0;
  if (atomic_exchange(&pp->reload, 0)) {
    /* A group with state failed: take the state back from what is
     * durable. Behind-disk state lets more events pass, never fewer. */
    char why[200];
    int lr = sl_process_state_load_store(pp->pr, ic->st, why, sizeof(why));
    if (lr < 0 && lr != SL_ECORRUPT) {
      atomic_store(&pp->reload, 1);
    } else {
      cap_watermarks(pp);
      clock_check_stored(pp, "since the state reloaded was written");
    }
    sl_dedupe_reload(pp->dd);
  }
  if ((rc = clock_before_run(pp, g)) < 0)
    return rc;
  if ((rc = index_entries(pp, batch, len, n)) < 0)
    return rc;
  if (sl_dedupe_wants(pp->dd, sidx)) {
    /* Replays are dropped before anything else sees them. */
    size_t k = 0;
    if ((rc = sl_dedupe_run(pp->dd, sidx, events, n, pp->keep, g)) < 0)
      return rc;
    for (size_t i = 0; i < n; i++) {
      if (!pp->keep[i])
        continue;
      pp->evs[k] = events[i];
      pp->entry[k] = pp->entry[i];
      pp->entry_len[k] = pp->entry_len[i];
      k++;
    }
    events = pp->evs;
    n = k;
    if (!n) /* every event was a replay: only the window's state to write */
      return sl_process_state_put_group(pp->pr, g);
  }
  if ((rc = sl_process_run(pp->pr, ic->streams[sidx].name, events, n, &res)) <
      0)
    return rc;
  /* The input stream's own batch first, so its offset is the ack's. */
  b = builder_for(pp, sidx);
  for (size_t i = 0; i < n; i++) {
    int tagged = 0;
    size_t dest = sidx;
    if (!res.keep[i])
      continue;
    if (res.dest[i] && sl_ingest_stream(ic, res.dest[i], &dest) < 0)
      return SL_ENOTFOUND; /* checked at start; cannot happen */
    for (size_t t = 0; t < res.ntags && !tagged; t++)
      tagged = res.tags[t].event == i;
    if (!(b = builder_for(pp, dest)))
      return SL_ETOOBIG;
    if (tagged) {
      if ((rc = encode_entry(pp, events[i], &res, i)) < 0 ||
          (rc = builder_add(b, pp->scratch.data, pp->scratch.len,
                            events[i]->time_ns)) < 0)
        return rc;
    } else if ((rc = builder_add(b, pp->entry[i], pp->entry_len[i],
                                 events[i]->time_ns)) < 0) {
      return rc;
    }
  }
  for (size_t i = 0; i < res.nemit; i++) {
    size_t dest;
    if (sl_ingest_stream(ic, res.emit[i].stream, &dest) < 0)
      return SL_ENOTFOUND;
    if (!(b = builder_for(pp, dest)) ||
        (rc = encode_entry(pp, res.emit[i].ev, NULL, 0)) < 0 ||
        (rc = builder_add(b, pp->scratch.data, pp->scratch.len,
                          res.emit[i].ev->time_ns)) < 0)
      return rc < 0 ? rc : SL_ETOOBIG;
  }
  for (size_t i = 0; i < pp->nout; i++) {
    sl_store_batch_t *sb;
    builder_t *o = &pp->out[i];
    if (!o->count)
      continue;
    if ((rc = sl_store_batch_new(ic->st, ic->streams[o->sidx].id, o->b.data,
                                 o->b.len, o->count, o->tmin, o->tmax, &sb)) <
        0)
      return rc;
    if ((rc = sl_store_group_add(g, sb)) < 0) {
      sl_store_batch_free(sb);
      return rc;
    }
    if (i == 0)
      out->own = o->count;
    out->stored += o->count;
    out->batches++;
  }
  return sl_process_state_put_group(pp->pr, g);
}

void sl_pipes_finish(sl_pipes_t *pp, int submitted) {
  sl_dedupe_finish(pp->dd, submitted);
  if (submitted) {
    sl_process_commit(pp->pr);
    /* A commit that fails after this reloads (clock_check_stored()). */
    if (pp->clock_pending)
      pp->clock_saved_ns = pp->clock_pending;
  } else {
    sl_process_rollback(pp->pr);
  }
  pp->clock_pending = 0;
  pthread_mutex_unlock(&pp->lock);
}

void sl_pipes_commit_failed(sl_pipes_t *pp) {
  if (pp)
    atomic_store(&pp->reload, 1);
}

void sl_pipes_metrics(sl_pipes_t *pp) {
  if (!pp)
    return;
  pthread_mutex_lock(&pp->lock);
  for (size_t i = 0; i < pp->npipes; i++) {
    sl_process_stats_t st, *l = &pp->last[i];
    if (sl_process_stats(pp->pr, i, &st) < 0)
      continue;
    /* Counters only go up: a rollback's undone counts are not published
     * until they are final, and never subtracted. */
    if (st.events_in > l->events_in)
      sl_metric_add(pp->m_in[i], st.events_in - l->events_in);
    if (st.emitted > l->emitted)
      sl_metric_add(pp->m_emitted[i], st.emitted - l->emitted);
    if (st.late > l->late)
      sl_metric_add(pp->m_late[i], st.late - l->late);
    if (st.partial > l->partial)
      sl_metric_add(pp->m_partial[i], st.partial - l->partial);
    if (st.unkeyed > l->unkeyed)
      sl_metric_add(pp->m_unkeyed[i], st.unkeyed - l->unkeyed);
    for (int r = 0; r < SL_PROCESS_R_COUNT; r++)
      if (st.dropped[r] > l->dropped[r])
        sl_metric_add(pp->m_drop[i][r], st.dropped[r] - l->dropped[r]);
    for (int r = 0; r < SL_PROCESS_R_COUNT; r++)
      l->dropped[r] = SL_MAX(l->dropped[r], st.dropped[r]);
    l->events_in = SL_MAX(l->events_in, st.events_in);
    l->emitted = SL_MAX(l->emitted, st.emitted);
    l->late = SL_MAX(l->late, st.late);
    l->partial = SL_MAX(l->partial, st.partial);
    l->unkeyed = SL_MAX(l->unkeyed, st.unkeyed);
  }
  pthread_mutex_unlock(&pp->lock);
}
