/*
 * process/model_agg_out.c: the results of the model_aggregate step
 * (model_agg.c): each closed window packed as a sluice.v1.InferenceAggregate
 * into an arena, and at the end of a run the Raw events of stream `into`
 * that carry them (docs/EDGE-AI.md). Buffers grow between runs and are
 * reused: no allocation in steady state.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process/model_agg_int.h"

static const char *const role_names[] = {"primary", "primary", "canary",
                                         "shadow"};

void process__magg_out_free(sl_process_t *pr) {
  pmagg_out_t *o = pr->ma;
  if (!o)
    return;
  free(o->recs);
  free(o->arena);
  free(o->ev);
  free(o->raw);
  free(o->attr);
  free(o->attrp);
  free(o);
  pr->ma = NULL;
}

/* ---- results ------------------------------------------------------------- */

static int arena_room(pmagg_out_t *o, size_t n) {
  if (o->alen + n <= o->acap)
    return 0;
  size_t c = o->acap ? o->acap : 65536;
  while (c < o->alen + n)
    c *= 2;
  uint8_t *a = realloc(o->arena, c);
  if (!a)
    return -ENOMEM;
  o->arena = a;
  o->acap = c;
  return 0;
}

int process__magg_emit_window(sl_process_t *pr, const ppipeline_t *p,
                              pstep_t *s, ma_entry_t *e, bool partial) {
  pmagg_out_t *o = pr->ma;
  ma_win_t *w = &e->u.w;
  const pmagg_conf_t *mc = s->ma;
  Sluice__V1__InferenceAggregate a = SLUICE__V1__INFERENCE_AGGREGATE__INIT;
  Sluice__V1__LabelAggregate la[LABELS + 1], *lap[LABELS + 1];
  Sluice__V1__LatencySketch sk = SLUICE__V1__LATENCY_SKETCH__INIT;
  double refp[BINS];
  const char *parts[4];
  const char *q = e->key + 1;
  for (int i = 0; i < 4; i++) {
    parts[i] = q;
    q += strlen(q) + 1;
  }
  a.model = (char *)parts[0];
  a.model_version = (char *)parts[1];
  a.model_digest = (char *)parts[2];
  a.source = (char *)parts[3];
  a.role = (Sluice__V1__InferenceRole)(((unsigned char)e->key[0]) & 3);
  a.window_start_ns = w->start;
  a.window_end_ns = w->start + s->c.window_ns;
  a.partial = partial;
  a.events = w->events;
  a.n_status_counts = NSTATUS;
  a.status_counts = w->status;
  size_t nl = 0;
  for (size_t k = 0; k <= LABELS; k++) {
    if (k == LABELS ? !w->label_n[k] : k >= w->nlabels)
      continue;
    sluice__v1__label_aggregate__init(&la[nl]);
    la[nl].label_id = k < LABELS ? w->label_id[k] : 0;
    la[nl].other = k == LABELS;
    la[nl].count = w->label_n[k];
    la[nl].n_score_hist = BINS;
    la[nl].score_hist = w->score[k];
    lap[nl] = &la[nl];
    nl++;
  }
  a.n_labels = nl;
  a.labels = lap;
  a.n_score_hist = a.n_margin_hist = a.n_entropy_hist = BINS;
  a.score_hist = w->pooled;
  a.margin_hist = w->margin;
  a.entropy_hist = w->entropy;
  size_t lo = 0, hi = LAT;
  while (lo < LAT && !w->lat[lo])
    lo++;
  while (hi > lo && !w->lat[hi - 1])
    hi--;
  sk.gamma = exp(mc->log_gamma);
  sk.relative_accuracy = SL_PROCESS_MA_ACCURACY;
  sk.index_offset = (int32_t)lo;
  sk.n_counts = hi - lo;
  sk.counts = w->lat + lo;
  sk.zero_count = w->lat_zero;
  sk.count = w->lat_n;
  sk.sum_us = w->lat_sum;
  sk.min_us = w->lat_min;
  sk.max_us = w->lat_max;
  a.latency = &sk;
  a.argmax_switches = w->switches;
  a.agree = w->agree;
  a.disagree = w->disagree;
  a.unmatched = w->unmatched;
  a.anomaly_count = w->anomaly_n;
  a.anomaly_sum = w->anomaly_sum;
  /* PSI of the pooled scores against the reference. */
  uint64_t n = 0, rn = 0;
  for (size_t i = 0; i < BINS; i++) {
    n += w->pooled[i];
    rn += e->ref[i];
  }
  bool have_ref = mc->have_ref ||
                  (mc->ref_windows && e->ref_windows >= mc->ref_windows && rn);
  if (have_ref) {
    for (size_t i = 0; i < BINS; i++)
      refp[i] = mc->have_ref ? mc->ref[i] : (double)e->ref[i] / (double)rn;
    a.n_reference = BINS;
    a.reference = refp;
    a.reference_windows = mc->have_ref ? 0 : (uint32_t)e->ref_windows;
    if (n) {
      double psi = 0;
      for (size_t i = 0; i < BINS; i++) {
        double x = SL_MAX((double)w->pooled[i] / (double)n, 1e-4);
        double r = SL_MAX(refp[i], 1e-4);
        psi += (x - r) * log(x / r);
      }
      a.psi = psi;
      a.has_psi = true;
    }
  } else if (!partial && mc->ref_windows && n) {
    for (size_t i = 0; i < BINS; i++)
      e->ref[i] += w->pooled[i];
    e->ref_windows++;
  }
  /* Queue: key copy and the packed message in the arena. */
  size_t plen = protobuf_c_message_get_packed_size(&a.base);
  if (o->n == o->cap) {
    size_t c = o->cap ? o->cap * 2 : 64;
    ma_rec_t *r = realloc(o->recs, c * sizeof(*r));
    if (!r)
      goto nomem;
    o->recs = r;
    o->cap = c;
  }
  if (arena_room(o, e->klen + 1 + plen) < 0)
    goto nomem;
  ma_rec_t *r = &o->recs[o->n++];
  r->p = p;
  r->s = s;
  r->koff = o->alen;
  r->klen = e->klen;
  memcpy(o->arena + o->alen, e->key, e->klen);
  o->arena[o->alen + e->klen] = '\0';
  o->alen += e->klen + 1;
  r->poff = o->alen;
  r->plen = protobuf_c_message_pack(&a.base, o->arena + o->alen);
  o->alen += r->plen;
  r->start = w->start;
  r->partial = partial;
  r->role = (int)a.role;
  snprintf(r->end_s, sizeof(r->end_s), "%lld",
           (long long)(w->start + s->c.window_ns));
  snprintf(r->count_s, sizeof(r->count_s), "%llu",
           (unsigned long long)w->events);
  ((ppipeline_t *)p)->stats.emitted++;
  w->open = 0;
  return 0;
nomem:
  pr->poisoned = true;
  return -1;
}

void process__magg_reset(sl_process_t *pr) {
  if (pr->ma)
    pr->ma->n = pr->ma->alen = 0;
}

size_t process__magg_count(const sl_process_t *pr) {
  return pr->ma ? pr->ma->n : 0;
}

static int out_reserve(pmagg_out_t *o, size_t n) {
  if (n <= o->mcap)
    return 0;
  size_t c = o->mcap ? o->mcap : 16;
  while (c < n)
    c *= 2;
  void *a = realloc(o->ev, c * sizeof(*o->ev));
  if (a)
    o->ev = a;
  void *b = a ? realloc(o->raw, c * sizeof(*o->raw)) : NULL;
  if (b)
    o->raw = b;
  void *d = b ? realloc(o->attr, c * MA_ATTRS * sizeof(*o->attr)) : NULL;
  if (d)
    o->attr = d;
  void *f = d ? realloc(o->attrp, c * MA_ATTRS * sizeof(*o->attrp)) : NULL;
  if (f)
    o->attrp = f;
  if (!f)
    return -ENOMEM;
  o->mcap = c;
  return 0;
}

static void attr(pmagg_out_t *o, Sluice__V1__Event *ev, size_t base,
                 const char *k, const char *v) {
  Sluice__V1__Attribute *a = &o->attr[base + ev->n_attributes];
  sluice__v1__attribute__init(a);
  a->key = (char *)k;
  a->value = (char *)v;
  o->attrp[base + ev->n_attributes++] = a;
}

void process__magg_materialise(sl_process_t *pr, size_t first) {
  pmagg_out_t *o = pr->ma;
  if (!o || !o->n)
    return;
  if (process__emit_reserve(pr, first + o->n, 0) < 0 ||
      out_reserve(o, o->n) < 0) {
    pr->poisoned = true;
    return;
  }
  for (size_t i = 0; i < o->n; i++) {
    ma_rec_t *r = &o->recs[i];
    Sluice__V1__Event *ev = &o->ev[i];
    Sluice__V1__Raw *raw = &o->raw[i];
    const char *parts[4], *q = (const char *)o->arena + r->koff + 1;
    for (int j = 0; j < 4; j++) {
      parts[j] = q;
      q += strlen(q) + 1;
    }
    sluice__v1__event__init(ev);
    sluice__v1__raw__init(raw);
    ev->source = (char *)parts[3];
    ev->time_ns = r->start;
    ev->body_case = SLUICE__V1__EVENT__BODY_RAW;
    ev->raw = raw;
    raw->data.data = o->arena + r->poff;
    raw->data.len = r->plen;
    raw->content_type = (char *)SL_PROCESS_MA_CONTENT_TYPE;
    size_t base = i * MA_ATTRS;
    ev->attributes = &o->attrp[base];
    attr(o, ev, base, "pipeline", r->p->name);
    attr(o, ev, base, "model", parts[0]);
    attr(o, ev, base, "model_version", parts[1]);
    if (*parts[2])
      attr(o, ev, base, "model_digest", parts[2]);
    attr(o, ev, base, "role", role_names[r->role & 3]);
    attr(o, ev, base, "window_end_ns", r->end_s);
    attr(o, ev, base, "count", r->count_s);
    if (r->partial)
      attr(o, ev, base, "partial", "true");
    pr->emit[first + i].stream = r->s->into;
    pr->emit[first + i].ev = ev;
  }
}
