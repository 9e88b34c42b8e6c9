/*
 * process/model_agg.c: the model_aggregate step (docs/EDGE-AI.md).
 *
 * Per (model, version, digest, role, source) tumbling windows over
 * inference events: runs by status, counts and 20-bin score histograms per
 * label, top-1/top-2 margin and entropy histograms, a DDSketch-style
 * latency sketch, argmax switches, PSI against a reference, and for
 * canary/shadow keys the agreement with the primary on the same sequence
 * number. Results are InferenceAggregate messages in Raw events.
 *
 * Memory. The key table is allocated whole when the step is added
 * (max_keys entries at a load factor of 1/2) and never grows; keys live in
 * the entries (no key arena), so nothing is allocated per event. A new key
 * in a full table evicts the entry with the oldest window: entries without
 * an open window first (oldest update), else the open window with the
 * earliest start, which is emitted early with partial = true
 * (stats.partial). Entries are removed by backward shifting (linear
 * probing), every moved slot going through the undo log, so a rollback
 * restores the table exactly.
 *
 * Agreement. Results are remembered per (model, source) in a ring of
 * MA_RING slots indexed by sequence number % MA_RING (an entry of its own
 * in the same table: persisted and undone like the windows). A canary or
 * shadow result whose primary result is in its slot counts agree (same top
 * label) or disagree at once. Otherwise it counts unmatched and waits in
 * the slot (one per role); a primary result of that sequence number
 * arriving while the waiting result's window is still open turns its
 * unmatched into agree or disagree there. A window's figures are final
 * when it is emitted.
 *
 * Windows close like the aggregate step's (window.c): once start + window
 * + lateness <= the step's watermark (largest event time seen), checked at
 * each event of the key and by a sweep at the end of each run, so batch
 * boundaries never change a result. Within a key events are taken in
 * order: an event of a later window closes the key's open window; an
 * event of an earlier one is late (kept raw, tagged sluice.late).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process/model_agg_int.h"

/* ---- configuration ----------------------------------------------------- */

static int cerr(char *errstr, size_t errlen, size_t k, const char *msg) {
  snprintf(errstr, errlen, "steps[%zu]: model_aggregate: %s", k, msg);
  return SL_ECONFIG;
}

int process__magg_compile(sl_process_t *pr, pstep_t *s,
                          const sl_process_step_conf_t *c, size_t k,
                          char *errstr, size_t errlen) {
  const int64_t day = 86400LL * 1000000000LL;
  pmagg_conf_t *mc;
  int rc;
  if (c->window_ns <= 0 || c->window_ns > 7 * day)
    return cerr(errstr, errlen, k, "window must be in (0, 7d]");
  if (c->lateness_ns < 0 || c->lateness_ns > 7 * day)
    return cerr(errstr, errlen, k, "lateness must be in [0, 7d]");
  if (c->max_keys > 65536)
    return cerr(errstr, errlen, k, "max_keys must be at most 65536");
  if (c->n_reference && c->n_reference != BINS)
    return cerr(errstr, errlen, k, "reference needs exactly 20 proportions");
  if (!(mc = calloc(1, sizeof(*mc))))
    return -ENOMEM;
  s->ma = mc;
  if (c->n_reference) {
    double sum = 0;
    for (size_t i = 0; i < BINS; i++) {
      if (!isfinite(c->reference[i]) || c->reference[i] < 0)
        return cerr(errstr, errlen, k, "reference values must be >= 0");
      sum += c->reference[i];
    }
    if (!(sum > 0))
      return cerr(errstr, errlen, k, "reference must not be all 0");
    for (size_t i = 0; i < BINS; i++)
      mc->ref[i] = c->reference[i] / sum;
    mc->have_ref = true;
  }
  mc->ref_windows = c->reference_windows;
  mc->log_gamma =
      log((1 + SL_PROCESS_MA_ACCURACY) / (1 - SL_PROCESS_MA_ACCURACY));
  if (!pr->ma && !(pr->ma = calloc(1, sizeof(*pr->ma))))
    return -ENOMEM;
  s->c.hop_ns = c->window_ns;
  s->c.max_keys = c->max_keys ? c->max_keys : 256;
  s->c.reference = NULL;
  s->stateful = true;
  if ((rc = process__table_init(&s->tab, sizeof(ma_entry_t), s->c.max_keys)) <
      0)
    return rc;
  /* The whole table now: cap >= 2 * max_keys, never grown by a run. */
  return process__table_reserve(&s->tab, s->c.max_keys);
}

void process__magg_conf_free(pstep_t *s) {
  free(s->ma);
  s->ma = NULL;
}

/* ---- the table ----------------------------------------------------------- */

static ma_entry_t *entry(pslot_t *sl) {
  return pslot_data(sl);
}

static bool closed(const pstep_t *s, int64_t start) {
  return s->have_wm && (start <= s->wm - s->c.window_ns - s->c.lateness_ns ||
                        (s->flush_future && start > s->flush_above));
}

/* Builds the entry key; returns its length or 0 when over MA_KEYMAX. */
static size_t make_key(char *buf, int kind, int role, const char *model,
                       const char *version, const char *digest,
                       const char *source) {
  const char *parts[4] = {model, version, digest, source};
  size_t n = 1;
  buf[0] = (char)(kind << 2 | role);
  for (int i = 0; i < 4; i++) {
    size_t l = parts[i] ? strlen(parts[i]) : 0;
    if (n + l + 1 > MA_KEYMAX)
      return 0;
    memcpy(buf + n, parts[i] ? parts[i] : "", l);
    n += l;
    if (i < 3)
      buf[n++] = '\0';
  }
  return n;
}

static pslot_t *find(ptable_t *t, uint64_t h, const char *key, size_t klen) {
  size_t mask = t->cap - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    pslot_t *sl = ptable_slot(t, i);
    if (!sl->used)
      return NULL;
    if (sl->hash == h && entry(sl)->klen == klen &&
        !memcmp(entry(sl)->key, key, klen))
      return sl;
  }
}

/* Removes slot victim (backward shift; every changed slot is undoable). */
static int remove_slot(sl_process_t *pr, ptable_t *t, size_t i) {
  size_t mask = t->cap - 1;
  if (process__table_touch(pr, t, ptable_slot(t, i)) < 0)
    return -1;
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    pslot_t *sj = ptable_slot(t, j);
    if (!sj->used)
      break;
    size_t h = (size_t)sj->hash & mask;
    bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (stays)
      continue;
    if (process__table_touch(pr, t, sj) < 0)
      return -1;
    memcpy(ptable_slot(t, i), sj, t->esize);
    i = j;
  }
  pslot_t *si = ptable_slot(t, i);
  memset(si, 0, t->esize);
  si->epoch = pr->epoch; /* its old bytes are in the undo log already */
  t->count--;
  return 0;
}

/* Evicts the oldest entry of a full table (its open window goes out as
 * partial). */
static int evict(sl_process_t *pr, const ppipeline_t *p, pstep_t *s) {
  ptable_t *t = &s->tab;
  size_t best = SIZE_MAX;
  int best_open = 2;
  int64_t best_t = 0;
  for (size_t i = 0; i < t->cap; i++) {
    pslot_t *sl = ptable_slot(t, i);
    if (!sl->used)
      continue;
    ma_entry_t *e = entry(sl);
    int open = e->kind == E_WINDOWS && e->u.w.open;
    int64_t at = open ? e->u.w.start : e->age;
    if (open < best_open || (open == best_open && at < best_t)) {
      best = i;
      best_open = open;
      best_t = at;
    }
  }
  if (best == SIZE_MAX)
    return -1;
  pslot_t *sl = ptable_slot(t, best);
  if (best_open) {
    if (process__table_touch(pr, t, sl) < 0 ||
        process__magg_emit_window(pr, p, s, entry(sl), true) < 0)
      return -1;
    ((ppipeline_t *)p)->stats.partial++;
  }
  return remove_slot(pr, t, best);
}

enum { G_READ, G_WRITE, G_CREATE };

/* Finds the entry of key: G_READ to read it (no undo copy, no dirty
 * shard), G_WRITE to change it, G_CREATE also creates it (a creation may
 * evict and move other entries: earlier pointers are stale). NULL when pr
 * is poisoned or there is none. */
static ma_entry_t *get(sl_process_t *pr, const ppipeline_t *p, pstep_t *s,
                       const char *key, size_t klen, int mode) {
  ptable_t *t = &s->tab;
  uint64_t h = process__hash(key, klen);
  pslot_t *sl = find(t, h, key, klen);
  if (sl) {
    if (mode != G_READ && process__table_touch(pr, t, sl) < 0)
      return NULL;
    return entry(sl);
  }
  if (mode != G_CREATE)
    return NULL;
  if (t->count >= t->max_keys && evict(pr, p, s) < 0)
    return NULL;
  size_t mask = t->cap - 1, i = (size_t)h & mask;
  while (ptable_slot(t, i)->used)
    i = (i + 1) & mask;
  sl = ptable_slot(t, i);
  if (process__table_touch(pr, t, sl) < 0)
    return NULL;
  memset(sl, 0, t->esize);
  sl->hash = h;
  sl->used = 1;
  sl->epoch = pr->epoch;
  t->count++;
  t->dirty |= 1ull << (h & (PSHARDS - 1));
  ma_entry_t *e = entry(sl);
  memcpy(e->key, key, klen);
  e->klen = klen;
  e->kind = (uint64_t)(((unsigned char)key[0]) >> 2);
  e->last_top = -1;
  return e;
}

int process__magg_load(sl_process_t *pr, pstep_t *s, const uint8_t *payload) {
  ptable_t *t = &s->tab;
  ma_entry_t e;
  (void)pr;
  memcpy(&e, payload, sizeof(e));
  if (e.klen == 0 || e.klen >= MA_KEYMAX || t->count >= t->max_keys)
    return 0; /* not ours: skipped */
  uint64_t h = process__hash(e.key, e.klen);
  if (find(t, h, e.key, e.klen))
    return 0;
  size_t mask = t->cap - 1, i = (size_t)h & mask;
  while (ptable_slot(t, i)->used)
    i = (i + 1) & mask;
  pslot_t *sl = ptable_slot(t, i);
  memset(sl, 0, t->esize);
  sl->hash = h;
  sl->used = 1;
  memcpy(entry(sl), &e, sizeof(e));
  t->count++;
  return 0;
}

/* The window entry whose table hash is h and role role (a waiting result's),
 * made writable, or NULL. */
static ma_entry_t *get_hash(sl_process_t *pr, ptable_t *t, uint64_t h,
                            int role) {
  size_t mask = t->cap - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    pslot_t *sl = ptable_slot(t, i);
    if (!sl->used)
      return NULL;
    if (sl->hash == h && entry(sl)->kind == E_WINDOWS &&
        (((unsigned char)entry(sl)->key[0]) & 3) == (unsigned)role)
      return process__table_touch(pr, t, sl) < 0 ? NULL : entry(sl);
  }
}

/* ---- one event ----------------------------------------------------------- */

static int bin(double x) {
  if (!(x > 0))
    return 0;
  if (x >= 1)
    return BINS - 1;
  int b = (int)(x * BINS);
  return b < BINS ? b : BINS - 1;
}

/* Top label id of an inference (classes, else detections), -1 none. */
static int64_t top_label(const Sluice__V1__Inference *in) {
  int64_t top = -1;
  float best = -INFINITY;
  for (size_t i = 0; i < in->n_classes; i++) {
    if (in->classes[i] && in->classes[i]->score > best) {
      best = in->classes[i]->score;
      top = in->classes[i]->label_id;
    }
  }
  if (top >= 0)
    return top;
  for (size_t i = 0; i < in->n_detections; i++) {
    if (in->detections[i] && in->detections[i]->score > best) {
      best = in->detections[i]->score;
      top = in->detections[i]->label_id;
    }
  }
  return top;
}

static int status_of(const Sluice__V1__Inference *in) {
  unsigned st = (unsigned)in->status;
  if (st == 0)
    return in->n_detections || in->n_classes || in->n_values ||
                   in->anomaly_score != 0
               ? SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK
               : SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_EMPTY;
  return st < NSTATUS ? (int)st
                      : SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_ERROR;
}

static void label_add(ma_win_t *w, uint32_t id, double score) {
  size_t k;
  if (isnan(score))
    return;
  for (k = 0; k < w->nlabels && w->label_id[k] != id; k++)
    ;
  if (k == w->nlabels) {
    if (w->nlabels < LABELS)
      w->label_id[w->nlabels++] = id;
    else
      k = LABELS; /* other */
  }
  w->label_n[k]++;
  w->score[k][bin(score)]++;
  w->pooled[bin(score)]++;
}

static void add(const pstep_t *s, ma_win_t *w, const Sluice__V1__Inference *in,
                int st) {
  w->events++;
  w->status[st]++;
  for (size_t i = 0; i < in->n_detections; i++)
    if (in->detections[i])
      label_add(w, in->detections[i]->label_id, in->detections[i]->score);
  if (in->n_classes) {
    /* A classifier counts its top class; margin and entropy of the top-k. */
    double s1 = -INFINITY, s2 = -INFINITY, sum = 0;
    uint32_t id = 0;
    size_t n = 0;
    for (size_t i = 0; i < in->n_classes; i++) {
      const Sluice__V1__ClassScore *c = in->classes[i];
      double v;
      if (!c || !((v = c->score) >= 0))
        continue;
      n++;
      sum += v;
      if (v > s1) {
        s2 = s1;
        s1 = v;
        id = c->label_id;
      } else if (v > s2) {
        s2 = v;
      }
    }
    if (n)
      label_add(w, id, s1);
    if (n >= 2) {
      w->margin[bin(s1 - s2)]++;
      double h = 0;
      if (sum > 0) {
        for (size_t i = 0; i < in->n_classes; i++) {
          const Sluice__V1__ClassScore *c = in->classes[i];
          double q = c && c->score > 0 ? c->score / sum : 0;
          if (q > 0)
            h -= q * log(q);
        }
      }
      w->entropy[bin(h / log((double)n))]++;
    }
  }
  if (in->task == SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_ANOMALY ||
      in->anomaly_score != 0) {
    if (isfinite(in->anomaly_score)) {
      w->anomaly_n++;
      w->anomaly_sum += in->anomaly_score;
      w->pooled[bin(in->anomaly_score)]++;
    }
  }
  if (st != SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_SKIPPED) {
    double v = (double)in->latency_us;
    if (in->latency_us < 1) {
      w->lat_zero++;
    } else {
      double ix = ceil(log(v) / s->ma->log_gamma);
      w->lat[ix < LAT - 1 ? (size_t)ix : LAT - 1]++;
    }
    if (!w->lat_n || v < w->lat_min)
      w->lat_min = v;
    if (!w->lat_n || v > w->lat_max)
      w->lat_max = v;
    w->lat_n++;
    w->lat_sum += v;
  }
}

static int64_t floordiv(int64_t t, int64_t d) {
  int64_t q = t / d;
  return (t % d != 0 && t < 0) ? q - 1 : q;
}

pstep_verdict_t process__magg(sl_process_t *pr, ppipeline_t *p, pstep_t *s,
                              const Sluice__V1__Event *ev,
                              sl_process_reason_t *reason) {
  const Sluice__V1__Inference *in;
  char key[MA_KEYMAX];
  int64_t t = ev->time_ns, W = s->c.window_ns;
  size_t klen;
  int role, agree = -1; /* -1 n/a, 0 disagree, 1 agree, 2 unmatched */

  if (ev->body_case != SLUICE__V1__EVENT__BODY_INFERENCE ||
      !(in = ev->inference))
    return STEP_PASS;
  if (t < INT64_MIN / 4 || t > INT64_MAX / 4)
    return STEP_PASS;
  role = (unsigned)in->role <= 3 ? (int)in->role : 1;
  if (role == 0)
    role = 1;
  klen = make_key(key, E_WINDOWS, role, in->model, in->model_version,
                  in->model_digest, ev->source);
  if (!klen) {
    p->stats.unkeyed++;
    return STEP_PASS;
  }
  if (!s->have_wm || t > s->wm) {
    s->wm = t;
    s->have_wm = 1;
    s->meta_dirty = true;
  }
  int64_t top = top_label(in);
  uint64_t seq1 = in->sequence + 1;
  /* The ring of (model, source), before the window entry (whose creation
   * may evict and move entries; it is the one pointer kept after). */
  char pk[MA_KEYMAX];
  size_t pl = make_key(pk, E_PRIMARY, 0, in->model, NULL, NULL, ev->source);
  if (pl) {
    ma_entry_t *pe = get(pr, p, s, pk, pl, G_CREATE);
    if (pr->poisoned)
      return STEP_PASS;
    ma_ring_t *rg = pe ? &pe->u.ring[in->sequence % MA_RING] : NULL;
    /* In use now: not the first to go when the window entry below needs
     * room. */
    if (pe && t > pe->age)
      pe->age = t;
    if (rg && role == 1) {
      rg->seq1 = seq1;
      rg->top = top;
      /* Results that came before their primary: settle them in their
       * window if it is still the open one. */
      for (int r = 0; r < 2; r++) {
        ma_pend_t pd = rg->pend[r];
        if (pd.seq1 != seq1)
          continue;
        memset(&rg->pend[r], 0, sizeof(rg->pend[r]));
        ma_entry_t *ce = get_hash(pr, &s->tab, pd.hash, r + 2);
        if (pr->poisoned)
          return STEP_PASS;
        if (ce && ce->u.w.open && ce->u.w.start == pd.start &&
            ce->u.w.unmatched) {
          ce->u.w.unmatched--;
          if (pd.top == top)
            ce->u.w.agree++;
          else
            ce->u.w.disagree++;
        }
      }
    } else if (role != 1) {
      agree = rg && rg->seq1 == seq1 ? rg->top == top : 2;
    }
  }
  ma_entry_t *e = get(pr, p, s, key, klen, G_CREATE);
  if (!e)
    return STEP_PASS;
  ma_win_t *w = &e->u.w;
  int64_t st = floordiv(t, W) * W;
  if (w->open && closed(s, w->start) &&
      process__magg_emit_window(pr, p, s, e, false) < 0)
    return STEP_PASS;
  if (closed(s, st) || (w->open && st < w->start)) {
    p->stats.late++;
    return STEP_LATE;
  }
  if (w->open && st > w->start &&
      process__magg_emit_window(pr, p, s, e, false) < 0)
    return STEP_PASS;
  if (!w->open) {
    memset(w, 0, sizeof(*w));
    w->open = 1;
    w->start = st;
  }
  if (t > e->age)
    e->age = t;
  add(s, w, in, status_of(in));
  if (e->have_top && e->last_top != top)
    w->switches++;
  e->last_top = top;
  e->have_top = 1;
  if (agree == 0)
    w->disagree++;
  else if (agree == 1)
    w->agree++;
  else if (agree == 2)
    w->unmatched++;
  if (agree == 2 && pl) {
    /* Wait in the slot for the primary's result (no creation: e stays
     * valid). */
    uint64_t h = ((pslot_t *)(void *)e - 1)->hash;
    int64_t start = w->start;
    ma_entry_t *pe = get(pr, p, s, pk, pl, G_WRITE);
    if (pe) {
      ma_ring_t *rg = &pe->u.ring[in->sequence % MA_RING];
      rg->pend[role - 2] =
          (ma_pend_t){.seq1 = seq1, .top = top, .hash = h, .start = start};
    }
  }
  if (!s->c.keep_raw) {
    *reason = SL_PROCESS_R_AGGREGATED;
    return STEP_DROP;
  }
  return STEP_PASS;
}

int process__magg_sweep(sl_process_t *pr, ppipeline_t *p, pstep_t *s) {
  if (!s->have_wm)
    return 0;
  for (size_t i = 0; i < s->tab.cap; i++) {
    pslot_t *sl = ptable_slot(&s->tab, i);
    ma_entry_t *e = entry(sl);
    if (!sl->used || e->kind != E_WINDOWS || !e->u.w.open ||
        !closed(s, e->u.w.start))
      continue;
    if (process__table_touch(pr, &s->tab, sl) < 0 ||
        process__magg_emit_window(pr, p, s, e, false) < 0)
      return -1;
  }
  s->flush_future = false;
  return 0;
}
