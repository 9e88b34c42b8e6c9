/*
 * process/window.c: tumbling and hopping windows by event time.
 *
 * A window [start, start + window) has start a multiple of hop (hop =
 * window for tumbling windows); an event at time t belongs to every window
 * with start <= t < start + window. Each step keeps a watermark: the
 * largest event time it has seen, persisted with the windows. A window is
 * closed, and its result emitted, once
 *
 *     start + window + lateness <= watermark
 *
 * An event whose window is already closed by that rule is late: it is
 * counted, left out of the aggregate (or emitted as a correction with
 * late: correct: a result for that window holding only the late event,
 * attribute correction=true; sums and counts add up, see
 * docs/PROCESSING.md), and its raw event is stored, tagged sluice.late,
 * even with keep_raw false. The decision depends only on the sequence of
 * event times and of the rebases the daemon asks for
 * (sl_process_watermark_cap(), sl_process_watermark_rebase()), never on
 * batch boundaries, so a restarted node decides exactly as an
 * uninterrupted one.
 *
 * Windows with no events emit nothing. A device clock that goes backwards
 * lands in an older window while that window is still open (within the
 * lateness) and is late otherwise; the watermark never moves back on its
 * own (only a rebase, when the node's own clock stepped back, sets it back).
 * NaN values are counted in "nan" and left out of every statistic.
 *
 * Each key holds nwin = ceil((window + lateness) / hop) + 1 window slots:
 * enough for every window that can be open at once, so adding never needs
 * more room.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "process/process_int.h"

size_t process__aggregate_payload(const pstep_t *s) {
  return sizeof(pagg_t) + s->nwin * sizeof(pwin_t) +
         (s->inference ? s->nwin * sizeof(pwin_inf_t) : 0);
}

static pwin_t *wins(pagg_t *a) {
  return (pwin_t *)(void *)(a + 1);
}
static pwin_inf_t *infs(const pstep_t *s, pagg_t *a) {
  return (pwin_inf_t *)(void *)(wins(a) + s->nwin);
}

static int64_t floordiv(int64_t t, int64_t d) {
  int64_t q = t / d;
  return (t % d != 0 && t < 0) ? q - 1 : q;
}

static bool closed(const pstep_t *s, int64_t start) {
  /* start + window + lateness <= wm, without overflow near INT64 limits. */
  return s->have_wm && (start <= s->wm - s->c.window_ns - s->c.lateness_ns ||
                        (s->flush_future && start > s->flush_above));
}

static void add_name(char names[][PNAME], uint64_t *n, size_t cap,
                     const char *name, double *sum, double score) {
  size_t i;
  if (!name)
    name = "";
  for (i = 0; i < cap && names[i][0]; i++) {
    if (!strncmp(names[i], name, PNAME - 1) && strlen(name) < PNAME)
      break;
  }
  if (i < cap && !names[i][0]) {
    if (strlen(name) >= PNAME || !*name)
      i = cap; /* too long to keep exactly, or empty: "other" */
    else
      memcpy(names[i], name, strlen(name) + 1);
  }
  n[i]++;
  if (sum)
    sum[i] += score;
}

static void add_event(const pstep_t *s, pwin_t *w, pwin_inf_t *inf,
                      const Sluice__V1__Event *ev, double v, bool num) {
  int64_t t = ev->time_ns;
  if (!num) { /* inference */
    const Sluice__V1__Inference *in = ev->inference;
    const Sluice__V1__Label *top = process__top_label(ev);
    w->count++;
    if (inf) {
      for (size_t i = 0; i < in->n_labels; i++)
        add_name(inf->label, inf->label_n, PLABELS,
                 in->labels[i] ? in->labels[i]->name : "", NULL, 0);
      for (size_t i = 0; i < in->n_boxes; i++)
        add_name(inf->label, inf->label_n, PLABELS,
                 in->boxes[i] ? in->boxes[i]->label : "", NULL, 0);
      if (top)
        add_name(inf->version, inf->score_n, PVERSIONS, in->model_version,
                 inf->score_sum, (double)top->score);
    }
    return;
  }
  if (isnan(v)) {
    w->nan++;
    return;
  }
  w->count++;
  w->sum += v;
  double d = v - w->mean;
  w->mean += d / (double)w->count;
  w->m2 += d * (v - w->mean);
  if (w->count == 1) {
    w->min = w->max = w->first = w->last = v;
    w->first_t = w->last_t = t;
    return;
  }
  if (v < w->min)
    w->min = v;
  if (v > w->max)
    w->max = v;
  if (t < w->first_t) {
    w->first = v;
    w->first_t = t;
  }
  if (t >= w->last_t) {
    w->last = v;
    w->last_t = t;
  }
}

/* Emits and frees every window of one key the watermark has closed, oldest
 * first (slot order depends on history; output order must not). */
static int close_key(sl_process_t *pr, const ppipeline_t *p, pstep_t *s,
                     pslot_t *slot, bool touch) {
  pagg_t *a = pslot_data(slot);
  pwin_t *w = wins(a);
  for (;;) {
    size_t best = SIZE_MAX;
    for (size_t i = 0; i < s->nwin; i++) {
      if (w[i].used && closed(s, w[i].start) &&
          (best == SIZE_MAX || w[i].start < w[best].start))
        best = i;
    }
    if (best == SIZE_MAX)
      return 0;
    if (touch && process__table_touch(pr, &s->tab, slot) < 0)
      return -1;
    touch = false;
    if (process__emit_add(pr, p, s, s->tab.keys + slot->koff, slot->klen,
                          a->unit, &w[best],
                          s->inference ? &infs(s, a)[best] : NULL, false) < 0)
      return -1;
    w[best].used = 0;
  }
}

pstep_verdict_t process__aggregate(sl_process_t *pr, ppipeline_t *p, pstep_t *s,
                                   const Sluice__V1__Event *ev, const char *key,
                                   size_t klen, uint64_t hash,
                                   sl_process_reason_t *reason) {
  int64_t t = ev->time_ns, W = s->c.window_ns, H = s->c.hop_ns;
  double v = 0;
  bool num, full, late = false, added = false;
  pagg_t *a;

  /* Far-out times would overflow the window arithmetic: not aggregated. */
  if (t < INT64_MIN / 4 || t > INT64_MAX / 4)
    return STEP_PASS;
  num = process__reading_num(ev, &v);
  if (!num &&
      !(s->inference && ev->body_case == SLUICE__V1__EVENT__BODY_INFERENCE &&
        ev->inference))
    return STEP_PASS; /* nothing to aggregate: not ours */
  if (!s->have_wm || t > s->wm) {
    s->wm = t;
    s->have_wm = 1;
    s->meta_dirty = true;
  }
  a = process__table_get(pr, &s->tab, hash, key, klen, true, &full);
  if (!a) {
    if (pr->poisoned)
      return STEP_PASS;
    *reason = SL_PROCESS_R_OVERFLOW;
    return s->c.keep_raw ? STEP_PASS : STEP_DROP;
  }
  pslot_t *slot = (pslot_t *)(void *)a - 1;
  if (close_key(pr, p, s, slot, false) < 0)
    return STEP_PASS;
  if (num && ev->reading->unit) {
    size_t ul = SL_MIN(strlen(ev->reading->unit), sizeof(a->unit) - 1);
    memset(a->unit, 0, sizeof(a->unit));
    memcpy(a->unit, ev->reading->unit, ul);
  }
  /* Windows containing t: starts last, last - H, ... while start + W > t. */
  int64_t last = floordiv(t, H) * H;
  for (int64_t st = last; st > t - W; st -= H) {
    pwin_t *w = wins(a), *slotw = NULL;
    pwin_inf_t *inf = NULL;
    if (closed(s, st)) {
      late = true;
      if (s->c.late == SL_PROCESS_LATE_CORRECT) {
        pwin_t one = {.start = st, .used = 1};
        pwin_inf_t oinf;
        memset(&oinf, 0, sizeof(oinf));
        add_event(s, &one, s->inference ? &oinf : NULL, ev, v, num);
        if (process__emit_add(pr, p, s, key, klen, a->unit, &one,
                              s->inference ? &oinf : NULL, true) < 0)
          return STEP_PASS;
      }
      continue;
    }
    for (size_t i = 0; i < s->nwin && !slotw; i++) {
      if (w[i].used && w[i].start == st)
        slotw = &w[i], inf = s->inference ? &infs(s, a)[i] : NULL;
    }
    for (size_t i = 0; i < s->nwin && !slotw; i++) {
      if (!w[i].used) {
        slotw = &w[i];
        memset(slotw, 0, sizeof(*slotw));
        slotw->start = st;
        slotw->used = 1;
        if (s->inference) {
          inf = &infs(s, a)[i];
          memset(inf, 0, sizeof(*inf));
        }
      }
    }
    if (!slotw) {
      late = true; /* cannot happen with nwin slots; never lose silently */
      continue;
    }
    add_event(s, slotw, inf, ev, v, num);
    added = true;
  }
  if (late) {
    p->stats.late++;
    /* In no window at all: the raw event is the only place its value
     * lives, so it is kept whatever keep_raw says (an acknowledged event is
     * never lost to a watermark; run_pipeline() tags it sluice.late). */
    if (!added)
      return STEP_LATE;
  }
  if (!s->c.keep_raw) {
    *reason = SL_PROCESS_R_AGGREGATED;
    return STEP_DROP;
  }
  return STEP_PASS;
}

/* Order of two emit records: window start, then key bytes. */
static int rec_cmp(const sl_process_t *pr, const pemit_rec_t *a,
                   const pemit_rec_t *b) {
  if (a->w.start != b->w.start)
    return a->w.start < b->w.start ? -1 : 1;
  int c = memcmp(pr->ekeys + a->koff, pr->ekeys + b->koff,
                 SL_MIN(a->klen, b->klen));
  if (c)
    return c;
  return a->klen < b->klen ? -1 : a->klen > b->klen;
}

static void sift(const sl_process_t *pr, const pemit_rec_t *r, uint32_t *ix,
                 size_t i, size_t n) {
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      return;
    if (c + 1 < n && rec_cmp(pr, &r[ix[c]], &r[ix[c + 1]]) < 0)
      c++;
    if (rec_cmp(pr, &r[ix[i]], &r[ix[c]]) >= 0)
      return;
    uint32_t t = ix[i];
    ix[i] = ix[c];
    ix[c] = t;
    i = c;
  }
}

/* Sorts r[0..n) by (start, key) without allocating (glibc's qsort may
 * malloc a merge buffer): heapsort on an index array, then the records
 * are permuted in place cycle by cycle. */
static void sort_recs(sl_process_t *pr, pemit_rec_t *r, size_t n) {
  uint32_t *ix = pr->eorder;
  for (size_t i = 0; i < n; i++)
    ix[i] = (uint32_t)i;
  for (size_t i = n / 2; i-- > 0;)
    sift(pr, r, ix, i, n);
  for (size_t end = n; end-- > 1;) {
    uint32_t t = ix[0];
    ix[0] = ix[end];
    ix[end] = t;
    sift(pr, r, ix, 0, end);
  }
  /* ix[k] = which record goes to position k. */
  for (size_t k = 0; k < n; k++) {
    if (ix[k] == k || ix[k] == UINT32_MAX)
      continue;
    pemit_rec_t tmp = r[k];
    size_t j = k;
    while (ix[j] != k) {
      size_t from = ix[j];
      r[j] = r[from];
      ix[j] = UINT32_MAX;
      j = from;
    }
    r[j] = tmp;
    ix[j] = UINT32_MAX;
  }
}

int process__aggregate_sweep(sl_process_t *pr, ppipeline_t *p, pstep_t *s) {
  size_t first = pr->nerec;
  if (!s->have_wm)
    return 0;
  for (size_t i = 0; i < s->tab.cap; i++) {
    pslot_t *slot = ptable_slot(&s->tab, i);
    if (slot->used && close_key(pr, p, s, slot, true) < 0)
      return -1;
  }
  /* Every key was visited: the windows from the future are out. */
  s->flush_future = false;
  /* Table order depends on insertion history: sort the sweep's results by
   * (window start, key) so the output order is reproducible too. */
  if (pr->nerec - first > 1)
    sort_recs(pr, pr->erec + first, pr->nerec - first);
  return 0;
}

int process__emit_add(sl_process_t *pr, const ppipeline_t *p, const pstep_t *s,
                      const char *key, size_t klen, const char *unit,
                      const pwin_t *w, const pwin_inf_t *inf, bool correction) {
  if (pr->nerec == pr->ecap) {
    size_t n = pr->ecap ? pr->ecap * 2 : 64;
    pemit_rec_t *r = realloc(pr->erec, n * sizeof(*r));
    if (!r)
      goto nomem;
    pr->erec = r;
    uint32_t *o = realloc(pr->eorder, n * sizeof(*o));
    if (!o)
      goto nomem;
    pr->eorder = o;
    pr->ecap = n;
  }
  if (pr->eklen + klen > pr->ekcap) {
    size_t n = pr->ekcap ? pr->ekcap : 4096;
    while (n < pr->eklen + klen)
      n *= 2;
    char *k = realloc(pr->ekeys, n);
    if (!k)
      goto nomem;
    pr->ekeys = k;
    pr->ekcap = n;
  }
  pemit_rec_t *r = &pr->erec[pr->nerec++];
  r->p = p;
  r->s = s;
  r->koff = (uint32_t)pr->eklen;
  r->klen = (uint32_t)klen;
  memcpy(pr->ekeys + pr->eklen, key, klen);
  pr->eklen += klen;
  memcpy(r->unit, unit, sizeof(r->unit));
  r->unit[sizeof(r->unit) - 1] = '\0';
  r->correction = correction;
  r->w = *w;
  if (inf)
    r->inf = *inf;
  return 0;
nomem:
  pr->poisoned = true;
  return -1;
}

/* Attribute slots and text bytes one record can need at most. */
#define EATTRS (4 + 8 + PLABELS + 1 + PVERSIONS + 1)
#define ETEXT (EATTRS * (PNAME + 16 + 32))

typedef struct mat {
  sl_process_t *pr;
  size_t ai; /* next attribute */
  size_t ti; /* next text byte */
} mat_t;

static char *text(mat_t *m, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *text(mat_t *m, const char *fmt, ...) {
  va_list ap;
  char *out = m->pr->etext + m->ti;
  va_start(ap, fmt);
  int n = vsnprintf(out, PNAME + 40, fmt, ap);
  va_end(ap);
  m->ti += (size_t)(n < 0 ? 0 : SL_MIN(n, PNAME + 39)) + 1;
  return out;
}

static void attr(mat_t *m, Sluice__V1__Event *ev, char *k, char *v) {
  Sluice__V1__Attribute *a = &m->pr->eattr[m->ai];
  sluice__v1__attribute__init(a);
  a->key = k;
  a->value = v;
  m->pr->eattrp[m->ai++] = a;
  ev->n_attributes++;
}

/* Grows the emit arrays to n records and the text arena to text_need
 * bytes. Returns 0 or -ENOMEM (what was grown stays). */
int process__emit_reserve(sl_process_t *pr, size_t n, size_t text_need) {
  if (n > pr->mcap) {
    size_t c = pr->mcap ? pr->mcap : 16;
    while (c < n)
      c *= 2;
    void *a = realloc(pr->emit, c * sizeof(*pr->emit));
    if (a)
      pr->emit = a;
    void *b = a ? realloc(pr->eev, c * sizeof(*pr->eev)) : NULL;
    if (b)
      pr->eev = b;
    void *d = b ? realloc(pr->erd, c * sizeof(*pr->erd)) : NULL;
    if (d)
      pr->erd = d;
    void *e = d ? realloc(pr->eattr, c * EATTRS * sizeof(*pr->eattr)) : NULL;
    if (e)
      pr->eattr = e;
    void *f = e ? realloc(pr->eattrp, c * EATTRS * sizeof(*pr->eattrp)) : NULL;
    if (f)
      pr->eattrp = f;
    if (!f)
      return -ENOMEM;
    pr->mcap = c;
  }
  if (text_need > pr->tcap_text) {
    size_t c = pr->tcap_text ? pr->tcap_text : 4096;
    while (c < text_need)
      c *= 2;
    char *t = realloc(pr->etext, c);
    if (!t)
      return -ENOMEM;
    pr->etext = t;
    pr->tcap_text = c;
  }
  return 0;
}

/* The aggregate functions of a sensor window as attributes of ev. */
static void emit_aggregates(mat_t *m, Sluice__V1__Event *ev, const pwin_t *w,
                            unsigned f) {
  static const struct {
    unsigned bit;
    const char *name;
  } fn[] = {{SL_PROCESS_AGG_SUM, "sum"},       {SL_PROCESS_AGG_MIN, "min"},
            {SL_PROCESS_AGG_MAX, "max"},       {SL_PROCESS_AGG_MEAN, "mean"},
            {SL_PROCESS_AGG_STDDEV, "stddev"}, {SL_PROCESS_AGG_FIRST, "first"},
            {SL_PROCESS_AGG_LAST, "last"}};
  for (size_t k = 0; k < SL_ARRAY_SIZE(fn); k++) {
    double x;
    if (!(f & fn[k].bit))
      continue;
    switch (fn[k].bit) {
    case SL_PROCESS_AGG_SUM:
      x = w->sum;
      break;
    case SL_PROCESS_AGG_MIN:
      x = w->min;
      break;
    case SL_PROCESS_AGG_MAX:
      x = w->max;
      break;
    case SL_PROCESS_AGG_MEAN:
      x = w->mean;
      break;
    case SL_PROCESS_AGG_STDDEV:
      /* Population standard deviation (divides by count). */
      x = sqrt(w->m2 / (double)w->count);
      break;
    case SL_PROCESS_AGG_FIRST:
      x = w->first;
      break;
    default:
      x = w->last;
      break;
    }
    attr(m, ev, (char *)fn[k].name, text(m, "%.17g", x));
  }
}

/* Label counts and mean scores per model version of an inference
 * window as attributes of ev. */
static void emit_inference(mat_t *m, Sluice__V1__Event *ev,
                           const pemit_rec_t *r, unsigned f) {
  if (f & SL_PROCESS_AGG_LABELS) {
    for (size_t k = 0; k <= PLABELS; k++) {
      if (k < PLABELS && !r->inf.label[k][0])
        continue;
      if (!r->inf.label_n[k])
        continue;
      attr(m, ev, text(m, "label.%s", k < PLABELS ? r->inf.label[k] : "other"),
           text(m, "%llu", (unsigned long long)r->inf.label_n[k]));
    }
  }
  if (f & SL_PROCESS_AGG_SCORES) {
    for (size_t k = 0; k <= PVERSIONS; k++) {
      if (!r->inf.score_n[k] || (k < PVERSIONS && !r->inf.version[k][0]))
        continue;
      attr(m, ev,
           text(m, "score.%s", k < PVERSIONS ? r->inf.version[k] : "other"),
           text(m, "%.17g", r->inf.score_sum[k] / (double)r->inf.score_n[k]));
    }
  }
}

int process__emit_materialise(sl_process_t *pr) {
  size_t n = pr->nerec, text_need = 0;
  mat_t m = {.pr = pr};
  for (size_t i = 0; i < n; i++)
    text_need += pr->erec[i].klen + 1 + ETEXT;
  if (process__emit_reserve(pr, n, text_need) < 0)
    goto nomem;
  for (size_t i = 0; i < n; i++) {
    const pemit_rec_t *r = &pr->erec[i];
    const pstep_t *s = r->s;
    const pwin_t *w = &r->w;
    unsigned f = s->c.funcs;
    Sluice__V1__Event *ev = &pr->eev[i];
    Sluice__V1__Reading *rd = &pr->erd[i];
    sluice__v1__event__init(ev);
    sluice__v1__reading__init(rd);
    char *src = pr->etext + m.ti;
    memcpy(src, pr->ekeys + r->koff, r->klen);
    src[r->klen] = '\0';
    m.ti += r->klen + 1;
    ev->source = src;
    ev->time_ns = w->start;
    ev->body_case = SLUICE__V1__EVENT__BODY_READING;
    ev->reading = rd;
    rd->value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    rd->double_value = s->inference ? (double)w->count
                       : w->count   ? w->mean
                                    : NAN;
    rd->unit = text(&m, "%s", r->unit);
    ev->attributes = &pr->eattrp[m.ai];
    attr(&m, ev, (char *)"pipeline", r->p->name);
    attr(&m, ev, (char *)"window_end_ns",
         text(&m, "%lld", (long long)(w->start + s->c.window_ns)));
    attr(&m, ev, (char *)"count",
         text(&m, "%llu", (unsigned long long)w->count));
    if (w->nan)
      attr(&m, ev, (char *)"nan", text(&m, "%llu", (unsigned long long)w->nan));
    if (r->correction)
      attr(&m, ev, (char *)"correction", (char *)"true");
    if (!s->inference && w->count)
      emit_aggregates(&m, ev, w, f);
    if (s->inference)
      emit_inference(&m, ev, r, f);
    pr->emit[i].stream = s->into;
    pr->emit[i].ev = ev;
  }
  return 0;
nomem:
  pr->poisoned = true;
  return -ENOMEM;
}

size_t sl_process_watermark_cap(sl_process_t *pr, int64_t now_ns,
                                int64_t max_future_ns) {
  size_t n = 0;
  int64_t limit_ns;
  if (__builtin_add_overflow(now_ns, max_future_ns, &limit_ns))
    return 0;
  for (size_t i = 0; i < pr->npipes; i++) {
    for (size_t k = 0; k < pr->pipes[i].nsteps; k++) {
      pstep_t *s = &pr->pipes[i].steps[k];
      if (!process__windowed(s) || !s->have_wm || s->wm <= limit_ns)
        continue;
      s->wm = now_ns;
      s->flush_above =
          s->flush_future ? SL_MIN(s->flush_above, limit_ns) : limit_ns;
      s->flush_future = true;
      s->meta_dirty = true;
      n++;
    }
  }
  return n;
}

size_t sl_process_watermark_rebase(sl_process_t *pr, int64_t now_ns,
                                   int64_t tolerance_ns) {
  size_t n = 0;
  if (tolerance_ns < 0)
    tolerance_ns = 0;
  for (size_t i = 0; i < pr->npipes; i++) {
    for (size_t k = 0; k < pr->pipes[i].nsteps; k++) {
      pstep_t *s = &pr->pipes[i].steps[k];
      int64_t slack = SL_MAX(tolerance_ns, s->c.lateness_ns), limit_ns;
      if (!process__windowed(s) || !s->have_wm)
        continue;
      /* Within the slack no event stamped now can be late: leave it. */
      if (__builtin_add_overflow(now_ns, slack, &limit_ns) || s->wm <= limit_ns)
        continue;
      s->wm = now_ns;
      /* A cap that is still pending flushes above a higher bound: the
       * lower one covers both. */
      s->flush_above =
          s->flush_future ? SL_MIN(s->flush_above, now_ns) : now_ns;
      s->flush_future = true;
      s->meta_dirty = true;
      n++;
    }
  }
  return n;
}
