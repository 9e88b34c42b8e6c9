/*
 * daemon/models_gate.c: the quality gate's input. Reads model_aggregate's
 * output (InferenceAggregate events, docs/EDGE-AI.md "The model_aggregate
 * step") from models.gate_stream with a store cursor, merges the
 * aggregates of one (model, version, role) and window across sources, and
 * hands each model on trial its closed windows (sl_model_gate_window): a
 * window is closed for the gate when an aggregate of a later window of the
 * same model arrives. For a canary or shadow the primary's aggregates of
 * the same window go with it. Latency sketches are merged bucket-wise and
 * the p95 read from the merged sketch (2% relative accuracy).
 *
 * Runs on the models thread (daemon/models.c).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/daemon.h"
#include "daemon/models.h"
#include "sluice/v1/event.pb-c.h"
#include "telemetry/log.h"

#ifdef SLUICE__V1__INFERENCE_AGGREGATE__INIT

#define NBUCKETS 640
#define MAX_PENDING 16

typedef struct sketch {
  double gamma;
  int32_t base; /* bucket index of counts[0] */
  uint64_t counts[NBUCKETS], zero, count;
} sketch_t;

typedef struct pending {
  char model[129];
  char version[129]; /* the version on trial it was gathered for */
  int64_t start;
  bool used, have_cand, have_prim;
  sl_model_window_t cand, prim;
  sketch_t cand_lat, prim_lat;
} pending_t;

struct sl_models_gate {
  sl_daemon_t *dm;
  char stream[128];
  uint32_t id;
  bool open;
  sl_store_cursor_t *cur;
  uint64_t next;
  pending_t pend[MAX_PENDING];
};

static void sketch_add(sketch_t *s, const Sluice__V1__LatencySketch *l) {
  if (!l)
    return;
  if (!s->count && !s->zero) {
    s->gamma = l->gamma;
    s->base = l->index_offset - 64; /* room below */
  }
  if (l->gamma != s->gamma && s->gamma)
    return; /* another accuracy: not mergeable (never with one sluice) */
  for (size_t k = 0; k < l->n_counts; k++) {
    int64_t b = (int64_t)l->index_offset + (int64_t)k - s->base;
    if (b < 0)
      b = 0;
    if (b >= NBUCKETS)
      b = NBUCKETS - 1;
    s->counts[b] += l->counts[k];
    s->count += l->counts[k];
  }
  s->zero += l->zero_count;
}

static double sketch_p95_ms(const sketch_t *s) {
  uint64_t total = s->count + s->zero, rank, seen = s->zero;
  if (!total || s->gamma <= 1)
    return 0;
  rank = (uint64_t)ceil(0.95 * (double)total);
  if (seen >= rank)
    return 0;
  for (int b = 0; b < NBUCKETS; b++) {
    seen += s->counts[b];
    if (seen >= rank) {
      double i = (double)(s->base + b);
      return 2.0 * pow(s->gamma, i) / (s->gamma + 1.0) / 1000.0;
    }
  }
  return 0;
}

static void window_add(sl_model_window_t *w,
                       const Sluice__V1__InferenceAggregate *a) {
  w->events += a->events;
  for (size_t i = 0; i < a->n_status_counts && i < 5; i++)
    w->status[i] += a->status_counts[i];
  for (size_t i = 0; i < a->n_score_hist && i < SL_MODEL_HIST_BINS; i++)
    w->score_hist[i] += a->score_hist[i];
  w->agree += a->agree;
  w->disagree += a->disagree;
}

int sl_models_gate_new(sl_daemon_t *dm, const char *stream,
                       sl_models_gate_t **out, char *err, size_t errlen) {
  sl_models_gate_t *g = calloc(1, sizeof(*g));
  (void)err;
  (void)errlen;
  if (!g)
    return -ENOMEM;
  g->dm = dm;
  snprintf(g->stream, sizeof(g->stream), "%s", stream);
  *out = g;
  return 0;
}

/* The stream may be made later (the pipeline's first window). */
static bool open_cursor(sl_models_gate_t *g) {
  sl_store_stream_stats_t ss;
  if (g->open)
    return true;
  if (sl_store_stream_lookup(g->dm->in.st, g->stream, &g->id) < 0 ||
      sl_store_stream_stats(g->dm->in.st, g->id, &ss) < 0 ||
      sl_store_cursor_open(g->dm->in.st, g->id, ss.next_offset,
                           SL_STORE_OFFSET_END, &g->cur) < 0)
    return false;
  g->next = ss.next_offset;
  g->open = true;
  return true;
}

static void feed(sl_models_gate_t *g, pending_t *p) {
  sl_model_t *m = sl_models__find(g->dm->models, p->model);
  sl_model_info_t in;
  if (m)
    sl_model_info(m, &in);
  /* Windows gathered for another trial (rolled back, replaced) are not
   * this one's. */
  if (m && p->have_cand && in.phase == SL_MODEL_TRIAL &&
      !strcmp(in.active_version, p->version)) {
    p->cand.p95_latency_ms = sketch_p95_ms(&p->cand_lat);
    p->prim.p95_latency_ms = sketch_p95_ms(&p->prim_lat);
    sl_model_gate_window(m, &p->cand, p->have_prim ? &p->prim : NULL);
  }
  memset(p, 0, sizeof(*p));
}

static void take(sl_models_gate_t *g, const Sluice__V1__InferenceAggregate *a) {
  sl_model_t *m = sl_models__find(g->dm->models, a->model);
  sl_model_info_t in;
  pending_t *p = NULL, *free_slot = NULL;
  char active[129];
  bool cand;
  if (!m)
    return;
  sl_model_info(m, &in);
  if (in.phase != SL_MODEL_TRIAL)
    return;
  /* A copy: feeding a window may roll the version back and free the
   * manifest in.active_version points into. */
  snprintf(active, sizeof(active), "%s", in.active_version);
  cand = !strcmp(a->model_version, active);
  if (!cand && a->role != SLUICE__V1__INFERENCE_ROLE__INFERENCE_ROLE_PRIMARY)
    return;
  /* Windows of an earlier trial go; a later window of the model closes
   * the earlier ones. */
  for (int i = 0; i < MAX_PENDING; i++) {
    pending_t *q = &g->pend[i];
    if (!q->used || strcmp(q->model, a->model))
      continue;
    if (strcmp(q->version, active))
      memset(q, 0, sizeof(*q));
    else if (q->start < a->window_start_ns)
      feed(g, q);
  }
  /* The trial may have ended on one of those windows. */
  sl_model_info(m, &in);
  if (in.phase != SL_MODEL_TRIAL || strcmp(in.active_version, active))
    return;
  for (int i = 0; i < MAX_PENDING; i++) {
    pending_t *q = &g->pend[i];
    if (q->used && !strcmp(q->model, a->model) &&
        q->start == a->window_start_ns)
      p = q;
    else if (!q->used && !free_slot)
      free_slot = q;
  }
  if (!p) {
    if (!(p = free_slot))
      return;
    p->used = true;
    snprintf(p->model, sizeof(p->model), "%s", a->model);
    snprintf(p->version, sizeof(p->version), "%s", active);
    p->start = a->window_start_ns;
  }
  if (cand) {
    window_add(&p->cand, a);
    sketch_add(&p->cand_lat, a->latency);
    p->have_cand = true;
  } else {
    window_add(&p->prim, a);
    sketch_add(&p->prim_lat, a->latency);
    p->have_prim = true;
  }
}

void sl_models_gate_poll(sl_models_gate_t *g) {
  sl_store_rec_t rec;
  unsigned n = 0;
  if (!g || !open_cursor(g))
    return;
  while (n++ < 256 && sl_store_cursor_next(g->cur, &rec) == 0) {
    Sluice__V1__EventBatch *b;
    if (rec.status != 0 ||
        !(b = sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload)))
      continue;
    for (size_t k = 0; k < b->n_events; k++) {
      const Sluice__V1__Event *ev = b->events[k];
      Sluice__V1__InferenceAggregate *a;
      if (rec.first_offset + k < g->next)
        continue;
      if (ev->body_case != SLUICE__V1__EVENT__BODY_RAW || !ev->raw ||
          !strstr(ev->raw->content_type, "InferenceAggregate"))
        continue;
      if ((a = sluice__v1__inference_aggregate__unpack(NULL, ev->raw->data.len,
                                                       ev->raw->data.data))) {
        take(g, a);
        sluice__v1__inference_aggregate__free_unpacked(a, NULL);
      }
    }
    g->next = rec.first_offset + rec.count;
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
}

void sl_models_gate_free(sl_models_gate_t *g) {
  if (!g)
    return;
  sl_store_cursor_close(g->cur);
  free(g);
}

#else /* before model_aggregate (issue 19, items 1-2) is in the tree */

int sl_models_gate_new(sl_daemon_t *dm, const char *stream,
                       sl_models_gate_t **out, char *err, size_t errlen) {
  (void)dm;
  (void)stream;
  *out = NULL;
  snprintf(err, errlen,
           "models.gate_stream needs the model_aggregate step, "
           "which this build does not have");
  return SL_ECONFIG;
}
void sl_models_gate_poll(sl_models_gate_t *g) {
  (void)g;
}
void sl_models_gate_free(sl_models_gate_t *g) {
  (void)g;
}

#endif
