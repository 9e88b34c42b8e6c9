/* The model_aggregate step (process/model_agg.c, docs/EDGE-AI.md):
 * - every emitted InferenceAggregate equals a naive reference computed from
 *   the whole event list, over random event streams cut into random batches
 *   (with rollbacks and redone batches in between);
 * - a full table closes the oldest window early, marked partial, and no
 *   event is lost from the aggregates;
 * - the latency sketch's stated relative accuracy holds;
 * - late results, lateness and rebases; keys too long to hold;
 * - configuration errors.
 * Persistence (state round trip, kill -9): test_model_agg_state.c. */
#include "model_agg_gen.h"

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
  /* Window lengths that do and do not divide the stream's steps. */
  static const int64_t lens[] = {5 * S, 2500000000LL, 3 * S,
                                 7 * S, 10 * S,       4100000000LL};
  for (uint64_t seed = 1; seed <= 6; seed++) {
    W = lens[seed - 1];
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
  W = 5 * S;
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

/* A key too long to hold (model, version, digest and source over 448
 * bytes): counted, kept raw, in no aggregate; other events go on. */
static void test_unkeyed(void **state) {
  (void)state;
  aggs_free();
  static char longsrc[600];
  memset(longsrc, 'x', sizeof(longsrc) - 1);
  sl_process_t *pr = mk(8);
  tev_t e[3];
  ev_init(&e[0], longsrc, 10 * W, "det", "v1", 1, 1);
  ev_init(&e[1], "cam", 10 * W, "det", "v1", 1, 1);
  ev_init(&e[2], "cam", 12 * W, "det", "v1", 1, 2);
  const Sluice__V1__Event *b[] = {&e[0].ev, &e[1].ev, &e[2].ev};
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "x", b, 3, &res), 0);
  collect(&res);
  assert_int_equal(res.keep[0], 1);
  assert_int_equal(res.keep[1], 0);
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.unkeyed, 1);
  assert_int_equal(naggs, 1);
  assert_int_equal(aggs[0]->events, 1);
  aggs_free();
  sl_process_free(pr);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_random),
      cmocka_unit_test(test_full_table),
      cmocka_unit_test(test_sketch_accuracy),
      cmocka_unit_test(test_config),
      cmocka_unit_test(test_late_and_rebase),
      cmocka_unit_test(test_unkeyed),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
