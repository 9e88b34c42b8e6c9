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

#include "process/process_int.h"

#define BINS SL_PROCESS_MA_BINS
#define LABELS SL_PROCESS_MA_LABELS
#define LAT SL_PROCESS_MA_LAT_BUCKETS
#define MA_RING 48
#define MA_KEYMAX 448
#define NSTATUS 5

enum { E_WINDOWS = 1, E_PRIMARY = 2 };

typedef struct ma_win {
  int64_t start;
  uint64_t open;
  uint64_t events;
  uint64_t status[NSTATUS + 1]; /* [NSTATUS]: pad */
  uint64_t label_n[LABELS + 1]; /* [LABELS] = other */
  uint32_t label_id[LABELS];
  uint32_t nlabels, pad;
  uint32_t score[LABELS + 1][BINS];
  uint32_t pooled[BINS];
  uint32_t margin[BINS], entropy[BINS];
  uint32_t lat[LAT];
  uint64_t lat_zero, lat_n;
  double lat_sum, lat_min, lat_max;
  uint64_t switches, agree, disagree, unmatched, anomaly_n;
  double anomaly_sum;
} ma_win_t;

/* A canary or shadow result waiting for its primary. */
typedef struct ma_pend {
  uint64_t seq1; /* sequence + 1; 0 = none */
  int64_t top;   /* its top label id */
  uint64_t hash; /* its window entry's table hash */
  int64_t start; /* the window it was counted unmatched in */
} ma_pend_t;

typedef struct ma_ring {
  uint64_t seq1;     /* the primary's sequence + 1; 0 = empty */
  int64_t top;       /* the primary's top label id, -1 none */
  ma_pend_t pend[2]; /* canary, shadow */
} ma_ring_t;

/* One table entry's payload (host layout, 8-byte fields, persisted). */
typedef struct ma_entry {
  uint64_t kind; /* E_WINDOWS or E_PRIMARY */
  uint64_t klen;
  /* (kind << 2 | role), model, NUL, version, NUL, digest, NUL, source;
   * NUL-padded */
  char key[MA_KEYMAX];
  int64_t age; /* event time of the last update */
  int64_t last_top;
  uint64_t have_top;
  uint64_t ref_windows;
  uint32_t ref[BINS];
  union {
    ma_win_t w;
    ma_ring_t ring[MA_RING];
  } u;
} ma_entry_t;

_Static_assert(sizeof(ma_win_t) % 8 == 0, "ma_win_t is padding-free");
_Static_assert(sizeof(ma_entry_t) % 8 == 0, "ma_entry_t is padding-free");
_Static_assert(sizeof(ma_ring_t) * MA_RING <= sizeof(ma_win_t),
               "the ring does not grow an entry");

typedef struct pmagg_conf {
  double ref[BINS]; /* configured reference proportions */
  bool have_ref;
  uint32_t ref_windows;
  double log_gamma;
} pmagg_conf_t;

/* One result of the run: key and packed InferenceAggregate in the arena. */
typedef struct ma_rec {
  const ppipeline_t *p;
  const pstep_t *s;
  size_t koff, klen, poff, plen;
  int64_t start;
  bool partial;
  int role;
  char end_s[24], count_s[24];
} ma_rec_t;

typedef struct pmagg_out {
  ma_rec_t *recs;
  size_t n, cap;
  uint8_t *arena;
  size_t alen, acap;
  Sluice__V1__Event *ev;
  Sluice__V1__Raw *raw;
  Sluice__V1__Attribute *attr;
  Sluice__V1__Attribute **attrp;
  size_t mcap;
} pmagg_out_t;

#define MA_ATTRS 8

static const char *const role_names[] = {"primary", "primary", "canary",
                                         "shadow"};

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

static int emit_window(sl_process_t *pr, const ppipeline_t *p, pstep_t *s,
                       ma_entry_t *e, bool partial);

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
        emit_window(pr, p, s, entry(sl), true) < 0)
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
    if (role == 1) {
      rg->seq1 = seq1;
      rg->top = top;
      if (t > pe->age)
        pe->age = t;
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
    } else {
      agree = rg && rg->seq1 == seq1 ? rg->top == top : 2;
    }
  }
  ma_entry_t *e = get(pr, p, s, key, klen, G_CREATE);
  if (!e)
    return STEP_PASS;
  ma_win_t *w = &e->u.w;
  int64_t st = floordiv(t, W) * W;
  if (w->open && closed(s, w->start) && emit_window(pr, p, s, e, false) < 0)
    return STEP_PASS;
  if (closed(s, st) || (w->open && st < w->start)) {
    p->stats.late++;
    return STEP_LATE;
  }
  if (w->open && st > w->start && emit_window(pr, p, s, e, false) < 0)
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
        emit_window(pr, p, s, e, false) < 0)
      return -1;
  }
  s->flush_future = false;
  return 0;
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

/* Packs the open window of e as an InferenceAggregate, queues its result
 * and closes the window (the reference learns from complete windows). */
static int emit_window(sl_process_t *pr, const ppipeline_t *p, pstep_t *s,
                       ma_entry_t *e, bool partial) {
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
