/* The model_aggregate step (process/model_agg.c, docs/EDGE-AI.md):
 * - every emitted InferenceAggregate equals a naive reference computed from
 *   the whole event list, over random event streams cut into random batches
 *   (with rollbacks and redone batches in between);
 * - a full table closes the oldest window early, marked partial, and no
 *   event is lost from the aggregates;
 * - the latency sketch's stated relative accuracy holds;
 * - kill -9 at random points of a store-backed run: the stored aggregates
 *   equal an uninterrupted run's;
 * - configuration errors. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "process/process.h"

#define S 1000000000LL
#define W (5 * S)
#define NEV 3000
#define MAXDET 6
#define BINS SL_PROCESS_MA_BINS

/* ---- a deterministic random event stream -------------------------------- */

typedef struct tev {
  Sluice__V1__Event ev;
  Sluice__V1__Inference in;
  Sluice__V1__Detection det[MAXDET], *detp[MAXDET];
  Sluice__V1__ClassScore cls[4], *clsp[4];
} tev_t;

static tev_t evs[NEV + 1];
static size_t nev;
static uint64_t rng;
static const char *const srcs[] = {"cam0", "cam1", "cam2", "cam3", "cam4"};
static const char *const flush_src = "zz-flush";

static uint64_t rnd(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return rng >> 33;
}
static double frand(void) {
  return (double)(rnd() % 1000001) / 1000000.0;
}

static void ev_init(tev_t *e, const char *src, int64_t t, const char *model,
                    const char *ver, int role, uint64_t seq) {
  memset(e, 0, sizeof(*e));
  sluice__v1__event__init(&e->ev);
  sluice__v1__inference__init(&e->in);
  e->ev.source = (char *)src;
  e->ev.time_ns = t;
  e->ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
  e->ev.inference = &e->in;
  e->in.model = (char *)model;
  e->in.model_version = (char *)ver;
  e->in.model_digest = (char *)(ver[1] == '2' ? "sha256:beef" : "");
  e->in.role = (Sluice__V1__InferenceRole)role;
  e->in.sequence = seq;
}

/* One random result: detections (det) or classes (cls), random status. */
static void fill(tev_t *e, bool cls) {
  int r = (int)(rnd() % 20);
  e->in.status =
      r < 14   ? SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_OK
      : r < 16 ? SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_EMPTY
      : r < 17 ? SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_ERROR
      : r < 18 ? SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_SKIPPED
               : SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_UNSPECIFIED;
  e->in.latency_us = (uint32_t)(rnd() % 8 == 0 ? 0 : 1 + rnd() % 200000);
  if (e->in.status == SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_EMPTY ||
      e->in.status == SLUICE__V1__INFERENCE_STATUS__INFERENCE_STATUS_ERROR)
    return;
  if (cls) {
    size_t n = 1 + rnd() % 4;
    for (size_t i = 0; i < n; i++) {
      sluice__v1__class_score__init(&e->cls[i]);
      e->cls[i].label_id = (uint32_t)(rnd() % 24);
      e->cls[i].score = (float)frand();
      e->clsp[i] = &e->cls[i];
    }
    e->in.n_classes = n;
    e->in.classes = e->clsp;
    e->in.task = SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_CLASSIFY;
  } else {
    size_t n = rnd() % (MAXDET + 1);
    for (size_t i = 0; i < n; i++) {
      sluice__v1__detection__init(&e->det[i]);
      e->det[i].label_id = (uint32_t)(rnd() % 20);
      e->det[i].score = (float)frand();
      e->detp[i] = &e->det[i];
    }
    e->in.n_detections = n;
    e->in.detections = e->detp;
    e->in.task = SLUICE__V1__INFERENCE_TASK__INFERENCE_TASK_DETECT;
    if (rnd() % 10 == 0)
      e->in.anomaly_score = frand();
  }
}

/* Detector det v1 primary, v2 canary, v3 shadow on the same frames (the
 * canary sometimes before the primary), classifier cls v1 primary. */
static void gen(uint64_t seed) {
  uint64_t seq[5] = {0};
  int64_t t = 1700000000 * S;
  rng = seed;
  nev = 0;
  while (nev < NEV - 4) {
    size_t s = rnd() % 5;
    t += (int64_t)(rnd() % 300) * 1000000;
    uint64_t q = seq[s]++;
    bool canary = rnd() % 2, shadow = rnd() % 3 == 0, before = rnd() % 4 == 0;
    if (canary && before) {
      ev_init(&evs[nev], srcs[s], t, "det", "v2", 2, q);
      fill(&evs[nev++], false);
    }
    ev_init(&evs[nev], srcs[s], t, "det", "v1", 1, q);
    fill(&evs[nev++], false);
    if (canary && !before) {
      ev_init(&evs[nev], srcs[s], t, "det", "v2", 2, q);
      fill(&evs[nev++], false);
    }
    if (shadow) {
      ev_init(&evs[nev], srcs[s], t, "det", "v3", 3, q);
      fill(&evs[nev++], false);
    }
    if (rnd() % 3 == 0) {
      ev_init(&evs[nev], srcs[s], t, "cls", "v1", 0, q);
      fill(&evs[nev++], true);
    }
  }
  /* Moves the watermark past every window. */
  ev_init(&evs[nev++], flush_src, t + 100 * W, "det", "v1", 1, 0);
}

/* ---- the naive reference --------------------------------------------------
 */

typedef struct nwin {
  char key[160];
  int64_t start;
  uint64_t events, status[5];
  uint32_t ids[16];
  size_t nids;
  uint64_t lab_n[17];
  uint32_t score[17][BINS], pooled[BINS], margin[BINS], entropy[BINS];
  uint32_t lat[SL_PROCESS_MA_LAT_BUCKETS];
  uint64_t lat_zero, lat_n, switches, agree, disagree, unmatched, anom_n;
  bool has_psi;
  double psi;
} nwin_t;

static nwin_t nw[4000];
static size_t nnw;

static int nbin(double x) {
  return !(x > 0) ? 0 : x >= 1 ? BINS - 1 : SL_MIN((int)(x * BINS), BINS - 1);
}

static void keystr(const tev_t *e, char *buf, size_t len) {
  int role = e->in.role ? (int)e->in.role : 1;
  snprintf(buf, len, "%s|%s|%s|%d|%s", e->in.model, e->in.model_version,
           e->in.model_digest, role, e->ev.source);
}

static nwin_t *nwin_get(const char *key, int64_t start) {
  for (size_t i = 0; i < nnw; i++)
    if (nw[i].start == start && !strcmp(nw[i].key, key))
      return &nw[i];
  assert_true(nnw < SL_ARRAY_SIZE(nw));
  nwin_t *w = &nw[nnw++];
  memset(w, 0, sizeof(*w));
  snprintf(w->key, sizeof(w->key), "%s", key);
  w->start = start;
  return w;
}

static void nlabel(nwin_t *w, uint32_t id, double s) {
  size_t k;
  for (k = 0; k < w->nids && w->ids[k] != id; k++)
    ;
  if (k == w->nids) {
    if (w->nids < 16)
      w->ids[w->nids++] = id;
    else
      k = 16;
  }
  w->lab_n[k]++;
  w->score[k][nbin(s)]++;
  w->pooled[nbin(s)]++;
}

static int64_t ntop(const tev_t *e) {
  int64_t top = -1;
  double best = -INFINITY;
  for (size_t i = 0; i < e->in.n_classes; i++)
    if (e->cls[i].score > best)
      best = e->cls[i].score, top = e->cls[i].label_id;
  if (top >= 0)
    return top;
  for (size_t i = 0; i < e->in.n_detections; i++)
    if (e->det[i].score > best)
      best = e->det[i].score, top = e->det[i].label_id;
  return top;
}

static void naive(void) {
  double lg = log(1.02 / 0.98);
  nnw = 0;
  for (size_t i = 0; i < nev; i++) {
    const tev_t *e = &evs[i];
    char key[160];
    if (e->ev.source == flush_src)
      continue;
    keystr(e, key, sizeof(key));
    int64_t st = e->ev.time_ns / W * W;
    nwin_t *w = nwin_get(key, st);
    int stc = (int)e->in.status;
    if (!stc)
      stc = e->in.n_detections || e->in.n_classes || e->in.anomaly_score != 0
                ? 1
                : 2;
    w->events++;
    w->status[stc]++;
    for (size_t k = 0; k < e->in.n_detections; k++)
      nlabel(w, e->det[k].label_id, e->det[k].score);
    if (e->in.n_classes) {
      /* top class by sorting a copy */
      double sc[4];
      size_t n = e->in.n_classes, best = 0;
      for (size_t k = 0; k < n; k++) {
        sc[k] = e->cls[k].score;
        if (sc[k] > sc[best])
          best = k;
      }
      nlabel(w, e->cls[best].label_id, sc[best]);
      if (n >= 2) {
        for (size_t a = 0; a < n; a++)
          for (size_t b = a + 1; b < n; b++)
            if (sc[b] > sc[a]) {
              double x = sc[a];
              sc[a] = sc[b];
              sc[b] = x;
            }
        w->margin[nbin(sc[0] - sc[1])]++;
        double sum = 0, h = 0;
        for (size_t k = 0; k < n; k++)
          sum += sc[k];
        for (size_t k = 0; k < n && sum > 0; k++)
          if (sc[k] > 0)
            h -= sc[k] / sum * log(sc[k] / sum);
        w->entropy[nbin(h / log((double)n))]++;
      }
    }
    if (e->in.anomaly_score != 0) {
      w->anom_n++;
      w->pooled[nbin(e->in.anomaly_score)]++;
    }
    if (stc != 4) {
      if (!e->in.latency_us)
        w->lat_zero++;
      else
        w->lat[(size_t)ceil(log((double)e->in.latency_us) / lg)]++;
      w->lat_n++;
    }
    /* argmax switch: the previous event of the same key */
    int64_t top = ntop(e);
    for (size_t j = i; j-- > 0;) {
      char k2[160];
      keystr(&evs[j], k2, sizeof(k2));
      if (!strcmp(k2, key)) {
        if (ntop(&evs[j]) != top)
          w->switches++;
        break;
      }
    }
    /* agreement: the latest earlier primary of (model, source) whose
     * sequence shares the ring slot must be this sequence; else the result
     * waits for the first later primary of that slot with its sequence
     * (a later result of its role and slot takes its place), which settles
     * it while its window is still open: no time at or past the window's
     * end seen, no later window of its key. The generator puts a waiting
     * result right before its primary. */
    if (e->in.role == 2 || e->in.role == 3) {
      int res = 2;
      size_t slot = e->in.sequence % 48;
      for (size_t j = i; j-- > 0;) {
        const tev_t *p = &evs[j];
        if ((p->in.role == 1 || p->in.role == 0) &&
            !strcmp(p->in.model, e->in.model) &&
            !strcmp(p->ev.source, e->ev.source) &&
            p->in.sequence % 48 == slot) {
          if (p->in.sequence == e->in.sequence)
            res = ntop(p) == top;
          break;
        }
      }
      if (res == 2) {
        int64_t wm = 0;
        for (size_t j = 0; j <= i; j++)
          wm = evs[j].ev.time_ns > wm ? evs[j].ev.time_ns : wm;
        for (size_t j = i + 1; j < nev; j++) {
          const tev_t *p = &evs[j];
          char k2[160];
          wm = p->ev.time_ns > wm ? p->ev.time_ns : wm;
          keystr(p, k2, sizeof(k2));
          if (wm >= st + W || (!strcmp(k2, key) && p->ev.time_ns / W * W > st))
            break; /* its window closed first */
          if (strcmp(p->in.model, e->in.model) ||
              strcmp(p->ev.source, e->ev.source) || p->in.sequence % 48 != slot)
            continue;
          if (p->in.role == e->in.role)
            break;
          if ((p->in.role == 1 || p->in.role == 0) &&
              p->in.sequence == e->in.sequence) {
            res = ntop(p) == top;
            break;
          }
        }
      }
      if (res == 2)
        w->unmatched++;
      else if (res)
        w->agree++;
      else
        w->disagree++;
    }
  }
  /* PSI: per key, the first window with scores is the reference. */
  for (size_t i = 0; i < nnw; i++) {
    nwin_t *ref = NULL;
    for (size_t j = 0; j < nnw; j++) {
      uint64_t n = 0;
      for (int b = 0; b < BINS; b++)
        n += nw[j].pooled[b];
      if (n && !strcmp(nw[j].key, nw[i].key) && nw[j].start < nw[i].start &&
          (!ref || nw[j].start < ref->start))
        ref = &nw[j];
    }
    uint64_t n = 0, rn = 0;
    for (int b = 0; b < BINS; b++) {
      n += nw[i].pooled[b];
      rn += ref ? ref->pooled[b] : 0;
    }
    if (!ref || !n)
      continue;
    nw[i].has_psi = true;
    for (int b = 0; b < BINS; b++) {
      double x = fmax((double)nw[i].pooled[b] / (double)n, 1e-4);
      double r = fmax((double)ref->pooled[b] / (double)rn, 1e-4);
      nw[i].psi += (x - r) * log(x / r);
    }
  }
}

/* ---- running the step -----------------------------------------------------
 */

static sl_process_t *mk(uint32_t max_keys) {
  sl_process_t *pr;
  char err[256];
  sl_process_step_conf_t steps[] = {{.kind = SL_PROCESS_MODEL_AGG,
                                     .window_ns = W,
                                     .into = "models",
                                     .max_keys = max_keys,
                                     .reference_windows = 1}};
  sl_process_pipeline_conf_t pc = {.name = "ai", .steps = steps, .n_steps = 1};
  assert_int_equal(sl_process_new(&pr), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)), 0);
  return pr;
}

static Sluice__V1__InferenceAggregate *aggs[4000];
static size_t naggs;

static void collect(const sl_process_result_t *res) {
  for (size_t k = 0; k < res->nemit; k++) {
    const Sluice__V1__Event *e = res->emit[k].ev;
    assert_true(naggs < SL_ARRAY_SIZE(aggs));
    assert_string_equal(res->emit[k].stream, "models");
    assert_int_equal(e->body_case, SLUICE__V1__EVENT__BODY_RAW);
    assert_string_equal(e->raw->content_type, SL_PROCESS_MA_CONTENT_TYPE);
    aggs[naggs] = sluice__v1__inference_aggregate__unpack(
        NULL, e->raw->data.len, e->raw->data.data);
    assert_non_null(aggs[naggs]);
    assert_string_equal(aggs[naggs]->source, e->source);
    naggs++;
  }
}

static void aggs_free(void) {
  for (size_t i = 0; i < naggs; i++)
    sluice__v1__inference_aggregate__free_unpacked(aggs[i], NULL);
  naggs = 0;
}

/* Runs evs[0..nev) in random batches; some batches are rolled back and
 * run again (their results are dropped the first time). */
static void run_random(sl_process_t *pr) {
  const Sluice__V1__Event *b[64];
  size_t i = 0;
  while (i < nev) {
    size_t n = 1 + rnd() % 64; /* not inside SL_MIN: evaluated twice */
    n = SL_MIN(n, nev - i);
    sl_process_result_t res;
    for (size_t k = 0; k < n; k++)
      b[k] = &evs[i + k].ev;
    assert_int_equal(sl_process_run(pr, "vision", b, n, &res), 0);
    if (rnd() % 5 == 0) {
      sl_process_rollback(pr);
      continue;
    }
    collect(&res);
    sl_process_commit(pr);
    i += n;
  }
}

static void u32eq(const uint32_t *a, size_t na, const uint32_t *b) {
  assert_int_equal(na, BINS);
  for (size_t i = 0; i < BINS; i++)
    assert_int_equal(a[i], b[i]);
}

static void compare(void) {
  size_t matched = 0;
  for (size_t i = 0; i < naggs; i++) {
    const Sluice__V1__InferenceAggregate *a = aggs[i];
    char key[160];
    if (!strcmp(a->source, flush_src))
      continue;
    snprintf(key, sizeof(key), "%s|%s|%s|%d|%s", a->model, a->model_version,
             a->model_digest, (int)a->role, a->source);
    nwin_t *w = NULL;
    for (size_t j = 0; j < nnw && !w; j++)
      if (nw[j].start == a->window_start_ns && !strcmp(nw[j].key, key))
        w = &nw[j];
    assert_non_null(w);
    matched++;
    assert_false(a->partial);
    assert_int_equal(a->window_end_ns, a->window_start_ns + W);
    assert_int_equal(a->events, w->events);
    assert_int_equal(a->n_status_counts, 5);
    for (int k = 0; k < 5; k++)
      assert_int_equal(a->status_counts[k], w->status[k]);
    assert_int_equal(a->n_labels, w->nids + (w->lab_n[16] ? 1 : 0));
    for (size_t k = 0; k < a->n_labels; k++) {
      size_t wk = a->labels[k]->other ? 16 : k;
      if (!a->labels[k]->other)
        assert_int_equal(a->labels[k]->label_id, w->ids[k]);
      assert_int_equal(a->labels[k]->count, w->lab_n[wk]);
      u32eq(a->labels[k]->score_hist, a->labels[k]->n_score_hist, w->score[wk]);
    }
    u32eq(a->score_hist, a->n_score_hist, w->pooled);
    u32eq(a->margin_hist, a->n_margin_hist, w->margin);
    u32eq(a->entropy_hist, a->n_entropy_hist, w->entropy);
    assert_non_null(a->latency);
    assert_int_equal(a->latency->zero_count, w->lat_zero);
    assert_int_equal(a->latency->count, w->lat_n);
    for (size_t k = 0; k < SL_PROCESS_MA_LAT_BUCKETS; k++) {
      int64_t o = (int64_t)k - a->latency->index_offset;
      uint32_t got = o >= 0 && (size_t)o < a->latency->n_counts
                         ? a->latency->counts[o]
                         : 0;
      assert_int_equal(got, w->lat[k]);
    }
    assert_int_equal(a->argmax_switches, w->switches);
    assert_int_equal(a->agree, w->agree);
    assert_int_equal(a->disagree, w->disagree);
    assert_int_equal(a->unmatched, w->unmatched);
    assert_int_equal(a->anomaly_count, w->anom_n);
    assert_int_equal(a->has_psi, w->has_psi);
    if (w->has_psi)
      assert_true(fabs(a->psi - w->psi) <= 1e-9 * fmax(1, fabs(w->psi)));
  }
  /* Every naive window came out exactly once. */
  assert_int_equal(matched, nnw);
}

static void test_reference_random(void **state) {
  (void)state;
  aggs_free(); /* a failed test before may have left some */
  for (uint64_t seed = 1; seed <= 6; seed++) {
    gen(seed * 7919);
    naive();
    assert_true(nnw > 100);
    sl_process_t *pr = mk(64);
    rng = seed * 104729; /* the batch cuts */
    run_random(pr);
    compare();
    sl_process_stats_t st;
    assert_int_equal(sl_process_stats(pr, 0, &st), 0);
    assert_int_equal(st.partial, 0);
    assert_int_equal(st.events_in, nev);
    assert_int_equal(st.dropped[SL_PROCESS_R_AGGREGATED], nev);
    aggs_free();
    sl_process_free(pr);
  }
}

/* Fewer keys than the stream needs: windows close early as partial, counted,
 * and every event is still in exactly one aggregate. */
static void test_full_table(void **state) {
  (void)state;
  aggs_free(); /* a failed test before may have left some */
  gen(4242);
  sl_process_t *pr = mk(6);
  rng = 99;
  run_random(pr);
  /* Flush what the table still holds. */
  const Sluice__V1__Event *b[1];
  tev_t fl;
  ev_init(&fl, flush_src, evs[nev - 1].ev.time_ns + 100 * W, "det", "v1", 1, 1);
  b[0] = &fl.ev;
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "vision", b, 1, &res), 0);
  collect(&res);
  sl_process_commit(pr);
  sl_process_stats_t st;
  assert_int_equal(sl_process_stats(pr, 0, &st), 0);
  assert_true(st.partial > 10);
  assert_true(st.keys <= 6);
  uint64_t events = 0, partial = 0;
  for (size_t i = 0; i < naggs; i++) {
    if (strcmp(aggs[i]->source, flush_src))
      events += aggs[i]->events;
    partial += aggs[i]->partial;
  }
  assert_int_equal(partial, st.partial);
  assert_int_equal(events, nev - 1);
  aggs_free();
  sl_process_free(pr);
}

/* Every bucket's representative value 2 g^i / (g + 1) is within the
 * stated relative accuracy of every value the bucket holds. */
static void test_sketch_accuracy(void **state) {
  (void)state;
  double g = 1.02 / 0.98, a = SL_PROCESS_MA_ACCURACY;
  for (uint32_t v = 1; v < 2000000; v = v < 1000 ? v + 1 : v + v / 997) {
    double i = ceil(log((double)v) / log(g));
    double rep = 2 * pow(g, i) / (g + 1);
    assert_true(fabs(rep - v) <= a * v * (1 + 1e-9));
  }
}

static void test_config(void **state) {
  (void)state;
  aggs_free(); /* a failed test before may have left some */
  sl_process_t *pr;
  char err[256];
  double ref[20] = {0};
  sl_process_step_conf_t st = {.kind = SL_PROCESS_MODEL_AGG,
                               .window_ns = W,
                               .into = "models",
                               .reference = ref,
                               .n_reference = 20};
  sl_process_pipeline_conf_t pc = {.name = "ai", .steps = &st, .n_steps = 1};
  assert_int_equal(sl_process_new(&pr), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)),
                   SL_ECONFIG);
  assert_non_null(strstr(err, "reference must not be all 0"));
  st.n_reference = 3;
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)),
                   SL_ECONFIG);
  assert_non_null(strstr(err, "exactly 20"));
  st.n_reference = 0;
  st.into = NULL;
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)),
                   SL_ECONFIG);
  st.into = "models";
  st.window_ns = 0;
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)),
                   SL_ECONFIG);
  /* A configured reference: PSI from the first window on. */
  st.window_ns = W;
  ref[3] = 1;
  ref[15] = 3;
  st.n_reference = 20;
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)), 0);
  tev_t a, b;
  ev_init(&a, "cam", 10 * W, "det", "v1", 1, 1);
  sluice__v1__detection__init(&a.det[0]);
  a.det[0].score = 0.8f;
  a.detp[0] = &a.det[0];
  a.in.n_detections = 1;
  a.in.detections = a.detp;
  ev_init(&b, "cam", 12 * W, "det", "v1", 1, 2);
  const Sluice__V1__Event *batch[] = {&a.ev, &b.ev};
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "x", batch, 2, &res), 0);
  collect(&res);
  assert_int_equal(naggs, 1);
  assert_true(aggs[0]->has_psi);
  assert_int_equal(aggs[0]->n_reference, 20);
  assert_true(fabs(aggs[0]->reference[15] - 0.75) < 1e-12);
  /* x = 1 in bin 16 (0.8), r = 0.25 / 0.75 in bins 3 / 15. */
  double x = 1e-4, psi = 0;
  for (int i = 0; i < 20; i++) {
    double xi = i == 16 ? 1 : x, ri = i == 3 ? 0.25 : i == 15 ? 0.75 : x;
    psi += (xi - ri) * log(xi / ri);
  }
  assert_true(fabs(aggs[0]->psi - psi) < 1e-9);
  aggs_free();
  sl_process_free(pr);
}

/* Late results (behind the watermark and lateness, or before the key's
 * open window) are counted, kept raw and tagged sluice.late; lateness
 * keeps a window open for other keys' later events; a rebase (the node
 * clock stepped back) emits the windows ahead of it at the next run. */
static void test_late_and_rebase(void **state) {
  (void)state;
  aggs_free();
  sl_process_t *pr;
  char err[256];
  sl_process_step_conf_t st = {.kind = SL_PROCESS_MODEL_AGG,
                               .window_ns = W,
                               .lateness_ns = 2 * S,
                               .into = "models"};
  sl_process_pipeline_conf_t pc = {.name = "ai", .steps = &st, .n_steps = 1};
  assert_int_equal(sl_process_new(&pr), 0);
  assert_int_equal(sl_process_pipeline_add(pr, &pc, err, sizeof(err)), 0);
  tev_t e[6];
  ev_init(&e[0], "a", 100 * W + 1, "det", "v1", 1, 1);
  ev_init(&e[1], "b", 101 * W + 1 * S, "det", "v1", 1, 1); /* wm */
  ev_init(&e[2], "a", 100 * W + 2, "det", "v1", 1, 2);     /* within lateness */
  ev_init(&e[3], "b", 101 * W + 3 * S, "det", "v1", 1, 2); /* closes a's */
  ev_init(&e[4], "a", 100 * W + 3, "det", "v1", 1, 3);     /* late */
  ev_init(&e[5], "b", 100 * W + 4, "det", "v1", 1, 3); /* before b's window */
  const Sluice__V1__Event *b[6];
  for (int i = 0; i < 6; i++)
    b[i] = &e[i].ev;
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "x", b, 6, &res), 0);
  collect(&res);
  assert_int_equal(naggs, 1);
  assert_string_equal(aggs[0]->source, "a");
  assert_int_equal(aggs[0]->events, 2);
  /* Aggregated events are dropped (keep_raw false), late ones kept and
   * tagged. */
  assert_int_equal(res.keep[0] + res.keep[1] + res.keep[2] + res.keep[3], 0);
  assert_int_equal(res.keep[4], 1);
  assert_int_equal(res.keep[5], 1);
  size_t tagged = 0;
  for (size_t i = 0; i < res.ntags; i++)
    if (!strcmp(res.tags[i].key, "sluice.late") &&
        (res.tags[i].event == 4 || res.tags[i].event == 5))
      tagged++;
  assert_int_equal(tagged, 2);
  sl_process_stats_t sst;
  sl_process_stats(pr, 0, &sst);
  assert_int_equal(sst.late, 2);
  sl_process_commit(pr);
  aggs_free();
  /* The node clock stepped back to before b's window: it goes out with
   * the next run, whatever that run holds. */
  assert_int_equal(sl_process_watermark_rebase(pr, 100 * W, S), 1);
  ev_init(&e[0], "c", 100 * W + 5, "det", "v1", 1, 9);
  assert_int_equal(sl_process_run(pr, "x", b, 1, &res), 0);
  collect(&res);
  assert_int_equal(naggs, 1);
  assert_string_equal(aggs[0]->source, "b");
  assert_int_equal(aggs[0]->events, 2);
  assert_int_equal(aggs[0]->window_start_ns, 101 * W);
  aggs_free();
  sl_process_free(pr);
}

/* ---- state round trip through the put/get callbacks -----------------------
 */

typedef struct kv {
  char key[128];
  size_t klen, vlen;
  uint8_t *val;
} kv_t;
static kv_t kvs[512];
static size_t nkv;

static int kv_put(void *arg, const void *key, size_t klen, const void *val,
                  size_t vlen) {
  (void)arg;
  kv_t *e = NULL;
  for (size_t i = 0; i < nkv && !e; i++)
    if (kvs[i].klen == klen && !memcmp(kvs[i].key, key, klen))
      e = &kvs[i];
  if (!e) {
    assert_true(nkv < SL_ARRAY_SIZE(kvs) && klen < sizeof(kvs[0].key));
    e = &kvs[nkv++];
    memcpy(e->key, key, klen);
    e->klen = klen;
    e->val = NULL;
  }
  free(e->val);
  e->val = val ? malloc(vlen) : NULL;
  e->vlen = val ? vlen : 0;
  if (val)
    memcpy(e->val, val, vlen);
  return 0;
}

static int kv_get(void *arg, const void *key, size_t klen, void *buf,
                  size_t cap, size_t *vlen) {
  (void)arg;
  for (size_t i = 0; i < nkv; i++) {
    if (kvs[i].klen != klen || memcmp(kvs[i].key, key, klen) || !kvs[i].val)
      continue;
    *vlen = kvs[i].vlen;
    if (kvs[i].vlen > cap)
      return SL_ETOOBIG;
    memcpy(buf, kvs[i].val, kvs[i].vlen);
    return 0;
  }
  return SL_ENOTFOUND;
}

/* Results of evs[from..to) in batches of 100, packed bytes hashed. */
static uint64_t run_hash(sl_process_t *pr, size_t from, size_t to, uint64_t h) {
  for (size_t i = from; i < to; i += 100) {
    const Sluice__V1__Event *b[100];
    size_t n = SL_MIN(100, to - i);
    sl_process_result_t res;
    for (size_t k = 0; k < n; k++)
      b[k] = &evs[i + k].ev;
    assert_int_equal(sl_process_run(pr, "vision", b, n, &res), 0);
    for (size_t k = 0; k < res.nemit; k++) {
      const ProtobufCBinaryData *d = &res.emit[k].ev->raw->data;
      for (size_t j = 0; j < d->len; j++)
        h = (h ^ d->data[j]) * 1099511628211ull;
    }
    sl_process_commit(pr);
  }
  return h;
}

/* The state (run-length encoded entries) survives a put and a load into a
 * new pipeline set: the rest of the run gives the same results; a flipped
 * byte is reported as corrupt, never loaded. */
static void test_state_roundtrip(void **state) {
  (void)state;
  char err[256];
  gen(777);
  size_t half = (nev / 2) / 100 * 100;
  sl_process_t *a = mk(64);
  uint64_t ha = run_hash(a, 0, nev, 1469598103934665603ull);
  sl_process_free(a);
  sl_process_t *b = mk(64);
  uint64_t hb = run_hash(b, 0, half, 1469598103934665603ull);
  assert_int_equal(sl_process_state_put(b, kv_put, NULL), 0);
  sl_process_stats_t st;
  sl_process_stats(b, 0, &st);
  uint64_t keys = st.keys;
  size_t bytes = 0;
  for (size_t i = 0; i < nkv; i++)
    bytes += kvs[i].vlen;
  /* ~4.6 KB per entry raw; mostly zero bins are not written. */
  assert_true(keys > 20 && bytes < keys * 2000);
  sl_process_free(b);
  b = mk(64);
  assert_int_equal(sl_process_state_load(b, kv_get, NULL, err, sizeof(err)), 0);
  sl_process_stats(b, 0, &st);
  assert_int_equal(st.keys, keys);
  hb = run_hash(b, half, nev, hb);
  sl_process_free(b);
  assert_true(ha == hb);
  /* A flipped payload byte: skipped and named. */
  kv_t *v = NULL;
  for (size_t i = 0; i < nkv && !v; i++)
    if (kvs[i].vlen > 200)
      v = &kvs[i];
  assert_non_null(v);
  v->val[100] ^= 0x10;
  b = mk(64);
  assert_int_equal(sl_process_state_load(b, kv_get, NULL, err, sizeof(err)),
                   SL_ECORRUPT);
  assert_non_null(strstr(err, "corrupt state record sl.proc/ai/0/"));
  sl_process_free(b);
  for (size_t i = 0; i < nkv; i++)
    free(kvs[i].val);
  nkv = 0;
}

/* ---- kill -9 ----------------------------------------------------------------
 */

#define BSIZE 50

static char *tmpdir(void) {
  const char *base = getenv("TMPDIR");
  char *d = malloc(512);
  snprintf(d, 512, "%s/sl_magg_XXXXXX", base ? base : "/tmp");
  assert_non_null(mkdtemp(d));
  return d;
}

static sl_store_t *open_store(const char *dir, uint32_t *sid) {
  sl_store_t *st;
  sl_store_opts_t o;
  char err[256];
  sl_store_stream_conf_t sc = {.priority = 5};
  sl_store_opts_init(&o);
  o.map_size = 64u << 20;
  if (sl_store_env_open(dir, &o, &st, err, sizeof(err)))
    return NULL;
  if (sl_store_stream_create(st, "models", &sc, sid)) {
    sl_store_env_close(st);
    return NULL;
  }
  return st;
}

/* One result as a line: source, window, FNV-1a of the packed aggregate. */
static void line(const Sluice__V1__Event *e, char *buf, size_t len) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < e->raw->data.len; i++)
    h = (h ^ e->raw->data.data[i]) * 1099511628211ull;
  snprintf(buf, len, "%s %lld %016llx\n", e->source, (long long)e->time_ns,
           (unsigned long long)h);
}

/* Resumes from the stored position; one group per batch (results, state,
 * position); reports each commit on fd. */
static int child(const char *dir, int fd) {
  uint32_t sid;
  sl_store_t *st = open_store(dir, &sid);
  sl_process_t *pr = mk(64);
  char err[256];
  uint64_t pos = 0;
  size_t vlen;
  if (!st || sl_process_state_load_store(pr, st, err, sizeof(err)))
    return 3;
  if (sl_store_state_get(st, "test/pos", 8, &pos, sizeof(pos), &vlen) == 0 &&
      vlen != sizeof(pos))
    return 4;
  for (; pos * BSIZE < nev; pos++) {
    const Sluice__V1__Event *b[BSIZE];
    sl_process_result_t res;
    sl_store_group_t *g;
    size_t n = SL_MIN(BSIZE, nev - pos * BSIZE);
    for (size_t k = 0; k < n; k++)
      b[k] = &evs[pos * BSIZE + k].ev;
    if (sl_process_run(pr, "vision", b, n, &res) || sl_store_group_new(st, &g))
      return 5;
    if (res.nemit) {
      Sluice__V1__EventBatch eb = SLUICE__V1__EVENT_BATCH__INIT;
      Sluice__V1__Event *evp[512];
      int64_t tmin = INT64_MAX, tmax = INT64_MIN;
      for (size_t k = 0; k < res.nemit; k++) {
        evp[k] = (Sluice__V1__Event *)res.emit[k].ev;
        tmin = SL_MIN(tmin, evp[k]->time_ns);
        tmax = SL_MAX(tmax, evp[k]->time_ns);
      }
      eb.n_events = res.nemit;
      eb.events = evp;
      size_t len = sluice__v1__event_batch__get_packed_size(&eb);
      uint8_t *buf = malloc(len);
      sluice__v1__event_batch__pack(&eb, buf);
      sl_store_batch_t *sb;
      if (sl_store_batch_new(st, sid, buf, len, (uint32_t)res.nemit, tmin, tmax,
                             &sb) ||
          sl_store_group_add(g, sb))
        return 7;
      free(buf);
    }
    uint64_t next = pos + 1;
    if (sl_process_state_put_group(pr, g) ||
        sl_store_group_state_put(g, "test/pos", 8, &next, sizeof(next)) ||
        sl_store_group_commit(g, NULL, 0))
      return 8;
    sl_process_commit(pr);
    if (write(fd, "x", 1) != 1)
      return 10;
  }
  sl_process_free(pr);
  sl_store_env_close(st);
  return 0;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t sorted_lines(char *buf, char **v, size_t cap) {
  size_t n = 0;
  for (char *p = strtok(buf, "\n"); p && n < cap; p = strtok(NULL, "\n"))
    v[n++] = p;
  qsort(v, n, sizeof(v[0]), cmp_str);
  return n;
}

static char la[1 << 20], lb[1 << 20];
static char *va[8000], *vb[8000];

static void test_kill9(void **state) {
  (void)state;
  char *dir = tmpdir();
  uint64_t r = (uint64_t)getpid() * 2654435761u;
  int kills = 0, rounds = 0;
  gen(31337);
  for (;;) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
      close(p[0]);
      _exit(child(dir, p[1]));
    }
    close(p[1]);
    rounds++;
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    int want = kills < 6 ? 2 + (int)((r >> 33) % 12) : -1;
    int got = 0;
    char c;
    while ((want < 0 || got < want) && read(p[0], &c, 1) == 1)
      got++;
    if (want >= 0 && got == want) {
      kill(pid, SIGKILL);
      kills++;
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    close(p[0]);
    if (WIFEXITED(status)) {
      assert_int_equal(WEXITSTATUS(status), 0);
      break;
    }
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_true(rounds < 50);
  }
  assert_true(kills >= 1);
  uint32_t sid;
  sl_store_t *st = open_store(dir, &sid);
  assert_non_null(st);
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  assert_int_equal(sl_store_cursor_open(st, sid, 0, SL_STORE_OFFSET_END, &cur),
                   0);
  size_t l = 0;
  lb[0] = '\0';
  while (sl_store_cursor_next(cur, &rec) == 0) {
    Sluice__V1__EventBatch *eb =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    assert_non_null(eb);
    for (size_t k = 0; k < eb->n_events; k++) {
      line(eb->events[k], lb + l, sizeof(lb) - l);
      l += strlen(lb + l);
    }
    sluice__v1__event_batch__free_unpacked(eb, NULL);
  }
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  /* The uninterrupted run, same batches. */
  sl_process_t *pr = mk(64);
  l = 0;
  la[0] = '\0';
  for (size_t pos = 0; pos * BSIZE < nev; pos++) {
    const Sluice__V1__Event *b[BSIZE];
    sl_process_result_t res;
    size_t n = SL_MIN(BSIZE, nev - pos * BSIZE);
    for (size_t k = 0; k < n; k++)
      b[k] = &evs[pos * BSIZE + k].ev;
    assert_int_equal(sl_process_run(pr, "vision", b, n, &res), 0);
    for (size_t k = 0; k < res.nemit; k++) {
      line(res.emit[k].ev, la + l, sizeof(la) - l);
      l += strlen(la + l);
    }
    sl_process_commit(pr);
  }
  sl_process_free(pr);
  size_t na = sorted_lines(la, va, 8000), nb = sorted_lines(lb, vb, 8000);
  assert_true(na > 100);
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++)
    assert_string_equal(va[i], vb[i]);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
  free(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_random),
      cmocka_unit_test(test_full_table),
      cmocka_unit_test(test_sketch_accuracy),
      cmocka_unit_test(test_config),
      cmocka_unit_test(test_late_and_rebase),
      cmocka_unit_test(test_state_roundtrip),
      cmocka_unit_test(test_kill9),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
