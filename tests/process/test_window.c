/* Aggregate windows: tumbling and hopping known answers, empty windows,
 * late events (drop and correct), a device clock going backwards, NaN,
 * inference labels and scores, and a randomized comparison against a
 * naive reference with random batch boundaries. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "helpers.h"

#define S 1000000000LL

static sl_process_t *agg(sl_process_step_conf_t c) {
  sl_process_t *pr;
  char err[256];
  c.kind = SL_PROCESS_AGGREGATE;
  if (!c.into)
    c.into = "agg";
  sl_process_pipeline_conf_t pc = {
      .name = "w", .source = "{dev}/*", .steps = &c, .n_steps = 1};
  assert_int_equal(sl_process_new(&pr), 0);
  int rc = sl_process_pipeline_add(pr, &pc, err, sizeof(err));
  if (rc)
    print_error("%s\n", err);
  assert_int_equal(rc, 0);
  return pr;
}

/* Collected results of several runs (copies: results are borrowed). */
typedef struct out {
  char src[64];
  int64_t start;
  double count, sum, min, max, mean, stddev, first, last, nan;
  bool correction;
  char labels[128];
} out_t;
static out_t outs[4096];
static size_t nouts;

static void collect(const sl_process_result_t *res) {
  for (size_t i = 0; i < res->nemit; i++) {
    const Sluice__V1__Event *e = res->emit[i].ev;
    out_t *o = &outs[nouts++];
    memset(o, 0, sizeof(*o));
    snprintf(o->src, sizeof(o->src), "%s", e->source);
    o->start = e->time_ns;
    o->count = ph_num(e, "count");
    o->sum = ph_num(e, "sum");
    o->min = ph_num(e, "min");
    o->max = ph_num(e, "max");
    o->mean = ph_num(e, "mean");
    o->stddev = ph_num(e, "stddev");
    o->first = ph_num(e, "first");
    o->last = ph_num(e, "last");
    o->nan = ph_get(e, "nan") ? ph_num(e, "nan") : 0;
    o->correction = ph_get(e, "correction") != NULL;
    for (size_t k = 0; k < e->n_attributes; k++) {
      const char *key = e->attributes[k]->key;
      if (!strncmp(key, "label.", 6) || !strncmp(key, "score.", 6)) {
        size_t l = strlen(o->labels);
        snprintf(o->labels + l, sizeof(o->labels) - l, "%s=%s;", key,
                 e->attributes[k]->value);
      }
    }
    assert_string_equal(res->emit[i].stream, "agg");
  }
}

static void feed(sl_process_t *pr, const Sluice__V1__Event **ev, size_t n) {
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "s", ev, n, &res), 0);
  collect(&res);
  sl_process_commit(pr);
}

static const unsigned ALL = SL_PROCESS_AGG_COUNT | SL_PROCESS_AGG_SUM |
                            SL_PROCESS_AGG_MIN | SL_PROCESS_AGG_MAX |
                            SL_PROCESS_AGG_MEAN | SL_PROCESS_AGG_STDDEV |
                            SL_PROCESS_AGG_FIRST | SL_PROCESS_AGG_LAST;

static void test_tumbling(void **state) {
  (void)state;
  ph_reset();
  nouts = 0;
  sl_process_t *pr = agg((sl_process_step_conf_t){
      .window_ns = 10 * S, .funcs = ALL, .group_by = "dev"});
  /* Window [0,10) of d1: 2, 4, 9 at 1, 5, 3 s. first = earliest event time
   * (2 at 1 s), last = latest (4 at 5 s); mean 5, population stddev
   * sqrt(((2-5)^2 + (4-5)^2 + (9-5)^2) / 3) = sqrt(26/3). d2 in [0,10): 7.
   * The 12 s event closes both (lateness 0: end 10 <= watermark 12). */
  const Sluice__V1__Event *ev[] = {
      ph_reading("d1/t", 1 * S, 2), ph_reading("d1/t", 5 * S, 4),
      ph_reading("d2/t", 2 * S, 7), ph_reading("d1/t", 3 * S, 9),
      ph_reading("d1/t", 12 * S, 100)};
  feed(pr, ev, 5);
  assert_int_equal(nouts, 2);
  /* Sweep output is sorted by (start, key). */
  assert_string_equal(outs[0].src, "d1");
  assert_int_equal(outs[0].start, 0);
  assert_true(outs[0].count == 3 && outs[0].sum == 15 && outs[0].min == 2 &&
              outs[0].max == 9 && outs[0].mean == 5 && outs[0].first == 2 &&
              outs[0].last == 4);
  assert_true(fabs(outs[0].stddev - sqrt(26.0 / 3)) < 1e-12);
  assert_string_equal(outs[1].src, "d2");
  assert_true(outs[1].count == 1 && outs[1].mean == 7 && outs[1].stddev == 0);
  /* Value of the emitted reading is the mean; window_end is an attribute. */
  sl_process_result_t res;
  const Sluice__V1__Event *ev2[] = {ph_reading("d1/t", 25 * S, 1)};
  assert_int_equal(sl_process_run(pr, "s", ev2, 1, &res), 0);
  assert_int_equal(res.nemit, 1);
  assert_true(res.emit[0].ev->reading->double_value == 100);
  assert_string_equal(ph_get(res.emit[0].ev, "window_end_ns"), "20000000000");
  assert_string_equal(ph_get(res.emit[0].ev, "pipeline"), "w");
  assert_string_equal(res.emit[0].ev->reading->unit, "C");
  /* Raw events are consumed (keep_raw false) and counted. */
  assert_int_equal(res.kept, 0);
  sl_process_commit(pr);
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.dropped[SL_PROCESS_R_AGGREGATED], 6);
  assert_int_equal(st.emitted, 3);
  sl_process_free(pr);
}

/* Gaps in the data emit nothing for the empty windows in between. */
static void test_empty_windows(void **state) {
  (void)state;
  ph_reset();
  nouts = 0;
  sl_process_t *pr =
      agg((sl_process_step_conf_t){.window_ns = 10 * S, .keep_raw = true});
  const Sluice__V1__Event *ev[] = {ph_reading("d/t", 1 * S, 1),
                                   ph_reading("d/t", 55 * S, 2),
                                   ph_reading("d/t", 71 * S, 3)};
  feed(pr, ev, 3);
  assert_int_equal(nouts, 2);
  assert_int_equal(outs[0].start, 0);
  assert_int_equal(outs[1].start, 50 * S);
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "s", NULL, 0, &res), 0);
  assert_int_equal(res.nemit, 0); /* nothing new: no empty results */
  sl_process_free(pr);
}

static void test_hopping(void **state) {
  (void)state;
  ph_reset();
  nouts = 0;
  sl_process_t *pr = agg((sl_process_step_conf_t){
      .window_ns = 10 * S, .hop_ns = 5 * S, .funcs = ALL});
  /* Windows start every 5 s, 10 s long. 1 at 3 s is in [-5,5) and [0,10);
   * 2 at 7 s in [0,10) and [5,15); 4 at 12 s in [5,15) and [10,20). The
   * event at 30 s closes all of them. */
  const Sluice__V1__Event *ev[] = {
      ph_reading("d/t", 3 * S, 1), ph_reading("d/t", 7 * S, 2),
      ph_reading("d/t", 12 * S, 4), ph_reading("d/t", 30 * S, 0)};
  feed(pr, ev, 4);
  assert_int_equal(nouts, 4);
  int64_t starts[] = {-5 * S, 0, 5 * S, 10 * S};
  double sums[] = {1, 3, 6, 4};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(outs[i].start, starts[i]);
    assert_true(outs[i].sum == sums[i]);
  }
  sl_process_free(pr);
}

static void test_late_drop_and_correct(void **state) {
  (void)state;
  for (int mode = 0; mode < 2; mode++) {
    ph_reset();
    nouts = 0;
    sl_process_t *pr = agg((sl_process_step_conf_t){
        .window_ns = 10 * S,
        .lateness_ns = 5 * S,
        .funcs = ALL,
        .late = mode ? SL_PROCESS_LATE_CORRECT : SL_PROCESS_LATE_DROP});
    /* Watermark 14: [0,10) is open until 15 (end + lateness), so the 8 s
     * event (clock behind) still counts. At 16 the window closes; the 9 s
     * event after that is late. */
    const Sluice__V1__Event *ev[] = {
        ph_reading("d/t", 1 * S, 1), ph_reading("d/t", 14 * S, 10),
        ph_reading("d/t", 8 * S, 2), ph_reading("d/t", 16 * S, 20),
        ph_reading("d/t", 9 * S, 5)};
    sl_process_result_t res;
    assert_int_equal(sl_process_run(pr, "s", ev, 5, &res), 0);
    collect(&res);
    sl_process_commit(pr);
    sl_process_stats_t st;
    sl_process_stats(pr, 0, &st);
    assert_int_equal(st.late, 1);
    /* Late is never a drop: the 9 s event is kept raw and marked. */
    assert_int_equal(st.dropped[SL_PROCESS_R_LATE], 0);
    if (mode == 0) {
      assert_int_equal(nouts, 1);
      assert_true(outs[0].count == 2 && outs[0].sum == 3);
    } else {
      /* The correction is emitted when the late event arrives (before the
       * sweep's results of that run). */
      assert_int_equal(nouts, 2);
      assert_true(outs[0].count == 2 && outs[0].sum == 3 &&
                  !outs[0].correction);
      assert_true(outs[1].correction && outs[1].start == 0 &&
                  outs[1].count == 1 && outs[1].sum == 5);
    }
    sl_process_free(pr);
  }
}

/* The device clock jumps back an hour: its events are late while the
 * watermark is ahead; they never reopen or corrupt newer windows. */
static void test_clock_backwards(void **state) {
  (void)state;
  ph_reset();
  nouts = 0;
  sl_process_t *pr =
      agg((sl_process_step_conf_t){.window_ns = 10 * S, .funcs = ALL});
  const Sluice__V1__Event *ev[] = {
      ph_reading("d/t", 3600 * S, 1), ph_reading("d/t", 3601 * S, 2),
      ph_reading("d/t", 1 * S, 100),  ph_reading("d/t", 2 * S, 100),
      ph_reading("d/t", 3605 * S, 3), ph_reading("d/t", 3611 * S, 4)};
  feed(pr, ev, 6);
  assert_int_equal(nouts, 1);
  assert_int_equal(outs[0].start, 3600 * S);
  assert_true(outs[0].count == 3 && outs[0].sum == 6 && outs[0].max == 3);
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.late, 2);
  assert_int_equal(st.dropped[SL_PROCESS_R_LATE], 0);
  sl_process_free(pr);
}

/* Issue 14: one event stamped far in the future moved the watermark, and
 * every later event was dropped as late (the state persisted that). The
 * daemon now caps such a watermark at the node clock plus max_future:
 * later events aggregate again, and the window from the future is emitted
 * as it is, once, by the next run (a rolled-back run emits it again). */
static void test_watermark_cap(void **state) {
  (void)state;
  ph_reset();
  nouts = 0;
  sl_process_t *pr = agg((sl_process_step_conf_t){
      .window_ns = 10 * S, .funcs = ALL, .group_by = "dev"});
  const int64_t future = 2208988800LL * S; /* 2040-01-01 */
  const Sluice__V1__Event *ev[] = {ph_reading("d1/t", 101 * S, 1),
                                   ph_reading("d2/t", future + 3 * S, 7),
                                   ph_reading("d1/t", 102 * S, 2)};
  feed(pr, ev, 3);
  /* Poisoned: [100,110) closed at once by the 2040 watermark, the 102 s
   * event is late. */
  assert_int_equal(nouts, 1);
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.late, 1);
  nouts = 0;
  /* Nothing ahead of the limit: nothing to do. */
  assert_int_equal(sl_process_watermark_cap(pr, future, 5 * S), 0);
  /* Node clock 110 s, max_future 300 s. */
  assert_int_equal(sl_process_watermark_cap(pr, 110 * S, 300 * S), 1);
  assert_int_equal(sl_process_watermark_cap(pr, 110 * S, 300 * S), 0);
  const Sluice__V1__Event *ev2[] = {ph_reading("d1/t", 111 * S, 5),
                                    ph_reading("d1/t", 112 * S, 6)};
  sl_process_result_t res;
  /* A rolled-back run changes nothing: the same run again decides the
   * same. */
  assert_int_equal(sl_process_run(pr, "s", ev2, 2, &res), 0);
  assert_int_equal(res.nemit, 1);
  sl_process_rollback(pr);
  feed(pr, ev2, 2);
  /* The 2040 window of d2 comes out; d1's events open a window again. */
  assert_int_equal(nouts, 1);
  assert_string_equal(outs[0].src, "d2");
  assert_true(outs[0].start == future && outs[0].count == 1 &&
              outs[0].sum == 7);
  const Sluice__V1__Event *ev3[] = {ph_reading("d1/t", 125 * S, 1)};
  feed(pr, ev3, 1);
  assert_int_equal(nouts, 2);
  assert_string_equal(outs[1].src, "d1");
  assert_true(outs[1].start == 110 * S && outs[1].count == 2 &&
              outs[1].sum == 11);
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.late, 1); /* no new late event */
  sl_process_free(pr);
}

/* Issue 26: a late event is left out of the aggregate but never lost: with
 * keep_raw false (aggregated events dropped) the late one is kept, marked
 * sluice.late = the pipeline, in both late modes; nothing is counted as a
 * drop for it. Before, it was dropped (reason late) with an acknowledged
 * request. */
static void test_late_kept_raw(void **state) {
  (void)state;
  for (int mode = 0; mode < 2; mode++) {
    ph_reset();
    nouts = 0;
    sl_process_t *pr = agg((sl_process_step_conf_t){
        .window_ns = 10 * S,
        .funcs = ALL,
        .keep_raw = false,
        .late = mode ? SL_PROCESS_LATE_CORRECT : SL_PROCESS_LATE_DROP});
    const Sluice__V1__Event *ev[] = {ph_reading("d/t", 1 * S, 1),
                                     ph_reading("d/t", 25 * S, 2),
                                     ph_reading("d/t", 3 * S, 3)};
    sl_process_result_t res;
    assert_int_equal(sl_process_run(pr, "s", ev, 3, &res), 0);
    /* Aggregated: dropped (keep_raw false). Late: kept. */
    assert_int_equal(res.keep[0], 0);
    assert_int_equal(res.keep[1], 0);
    assert_int_equal(res.keep[2], 1);
    assert_int_equal(res.kept, 1);
    assert_int_equal(res.ntags, 1);
    assert_int_equal(res.tags[0].event, 2);
    assert_string_equal(res.tags[0].key, "sluice.late");
    assert_string_equal(res.tags[0].value, "w");
    collect(&res);
    sl_process_commit(pr);
    sl_process_stats_t st;
    sl_process_stats(pr, 0, &st);
    assert_int_equal(st.late, 1);
    assert_int_equal(st.dropped[SL_PROCESS_R_LATE], 0);
    assert_int_equal(st.dropped[SL_PROCESS_R_AGGREGATED], 2);
    /* The aggregate holds only the in-time event ([0,10): 1). */
    assert_true(outs[0].start == 0 && outs[0].count == 1 && outs[0].sum == 1);
    assert_int_equal(nouts, mode ? 2 : 1);
    sl_process_free(pr);
  }
}

/* Issue 26: the node clock steps back 3 h while it stamps the events. The
 * watermark stays 3 h ahead, so without a rebase every later event is late
 * (the daemon dropped 340 of 340). sl_process_watermark_rebase() sets it
 * back to the node clock: the windows ahead are emitted as they are, once,
 * at the start of the next run (a rolled-back run emits them again), and
 * the later events aggregate in windows of their own. */
static void test_watermark_rebase(void **state) {
  (void)state;
  ph_reset();
  nouts = 0;
  const int64_t T = 1700000000LL * S, H3 = 3 * 3600 * S;
  sl_process_t *pr = agg((sl_process_step_conf_t){
      .window_ns = 1 * S, .lateness_ns = 0, .funcs = ALL});
  const Sluice__V1__Event *ev[] = {ph_reading("d/t", T + S / 10, 1),
                                   ph_reading("d/t", T + 11 * S / 10, 2),
                                   ph_reading("e/t", T + 12 * S / 10, 3)};
  feed(pr, ev, 3);
  assert_int_equal(nouts, 1); /* [T, T+1) of d closed by T+1.1 */
  /* Nothing ahead of the node clock beyond the tolerance: no rebase. */
  assert_int_equal(sl_process_watermark_rebase(pr, T + 1 * S, 1 * S), 0);
  assert_int_equal(sl_process_watermark_rebase(pr, T - H3, 1 * S), 1);
  assert_int_equal(sl_process_watermark_rebase(pr, T - H3, 1 * S), 0);
  nouts = 0;
  const Sluice__V1__Event *ev2[] = {ph_reading("d/t", T - H3 + S / 10, 10),
                                    ph_reading("d/t", T - H3 + 2 * S / 10, 20),
                                    ph_reading("e/t", T - H3 + 3 * S / 10, 30)};
  sl_process_result_t res;
  assert_int_equal(sl_process_run(pr, "s", ev2, 3, &res), 0);
  assert_int_equal(res.nemit, 2);
  sl_process_rollback(pr);
  feed(pr, ev2, 3);
  /* The windows of T (d: [T+1,T+2), e: [T+1,T+2)) come out as they are. */
  assert_int_equal(nouts, 2);
  assert_true(outs[0].start == T + 1 * S && outs[0].count == 1 &&
              outs[0].sum == 2);
  assert_string_equal(outs[0].src, "d/t");
  assert_true(outs[1].start == T + 1 * S && outs[1].count == 1 &&
              outs[1].sum == 3);
  sl_process_stats_t st;
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.late, 0);
  /* The new present aggregates: a later event closes [T-3h, T-3h+1). */
  const Sluice__V1__Event *ev3[] = {ph_reading("d/t", T - H3 + 15 * S / 10, 1)};
  feed(pr, ev3, 1);
  assert_int_equal(nouts, 4);
  assert_true(outs[2].start == T - H3 && outs[2].count == 2 &&
              outs[2].sum == 30);
  assert_string_equal(outs[2].src, "d/t");
  assert_true(outs[3].start == T - H3 && outs[3].count == 1 &&
              outs[3].sum == 30);
  assert_string_equal(outs[3].src, "e/t");
  sl_process_stats(pr, 0, &st);
  assert_int_equal(st.late, 0);
  /* The lateness is slack too: a step inside it is left alone. */
  sl_process_t *pr2 = agg((sl_process_step_conf_t){
      .window_ns = 1 * S, .lateness_ns = 10 * S, .funcs = ALL});
  feed(pr2, ev, 3);
  assert_int_equal(sl_process_watermark_rebase(pr2, T - 5 * S, 1 * S), 0);
  assert_int_equal(sl_process_watermark_rebase(pr2, T - 90 * S, 1 * S), 1);
  sl_process_free(pr2);
  sl_process_free(pr);
}

static void test_nan(void **state) {
  (void)state;
  ph_reset();
  nouts = 0;
  sl_process_t *pr =
      agg((sl_process_step_conf_t){.window_ns = 10 * S, .funcs = ALL});
  const Sluice__V1__Event *ev[] = {
      ph_reading("d/t", 1 * S, NAN), ph_reading("d/t", 2 * S, 4),
      ph_reading("d/t", 3 * S, NAN), ph_reading("d/t", 4 * S, 6),
      ph_reading("e/t", 1 * S, NAN), ph_reading("d/t", 20 * S, 0)};
  feed(pr, ev, 6);
  assert_int_equal(nouts, 2);
  /* d: NaN left out of every statistic, counted in nan. */
  assert_true(outs[0].count == 2 && outs[0].nan == 2 && outs[0].mean == 5 &&
              outs[0].min == 4 && outs[0].max == 6 && outs[0].first == 4 &&
              outs[0].last == 6 && outs[0].stddev == 1);
  /* e: only NaN: a result with count 0 and no statistics. */
  assert_string_equal(outs[0].src, "d/t");
  assert_string_equal(outs[1].src, "e/t");
  assert_true(outs[1].count == 0 && outs[1].nan == 1 &&
              outs[1].mean == -12345.0);
  sl_process_free(pr);
}

static void test_inference(void **state) {
  (void)state;
  ph_reset();
  nouts = 0;
  sl_process_t *pr = agg((sl_process_step_conf_t){
      .window_ns = 60 * S,
      .funcs = SL_PROCESS_AGG_COUNT | SL_PROCESS_AGG_LABELS |
               SL_PROCESS_AGG_SCORES});
  /* Top scores: v1: 0.5, 0.75 -> mean 0.625; v2: 0.25. Labels counted over
   * every label of every event: person 3, car 1, dog 1. */
  const Sluice__V1__Event *ev[] = {
      ph_inference("cam1/x", 1 * S, "yolo", "v1", "person", 0.5, NULL),
      ph_inference("cam1/x", 2 * S, "yolo", "v1", "person", 0.75, "car", 0.25,
                   NULL),
      ph_inference("cam1/x", 3 * S, "yolo", "v2", "dog", 0.25, "person", 0.125,
                   NULL),
      ph_inference("cam1/x", 61 * S, "yolo", "v2", NULL)};
  feed(pr, ev, 4);
  assert_int_equal(nouts, 1);
  assert_true(outs[0].count == 3);
  assert_string_equal(outs[0].labels, "label.person=3;label.car=1;label.dog=1;"
                                      "score.v1=0.625;score.v2=0.25;");
  sl_process_free(pr);
}

/* ---- randomized: module vs a naive reference, random batch cuts ----- */

#define RN 3000
typedef struct ref_ev {
  int src;
  int64_t t;
  double v;
} ref_ev_t;

typedef struct ref_win {
  int src;
  int64_t start;
  double vals[RN];
  size_t n;
} ref_win_t;

static int cmp_out(const void *a, const void *b) {
  const out_t *x = a, *y = b;
  int c = strcmp(x->src, y->src);
  if (c)
    return c;
  return x->start < y->start ? -1 : x->start > y->start;
}

static void test_random_vs_reference(void **state) {
  (void)state;
  static ref_ev_t evs[RN];
  static ref_win_t wins[2000];
  static char names[8][16];
  size_t nw = 0;
  uint64_t rng = 42;
  const int64_t W = 10 * S, L = 3 * S;
  for (int i = 0; i < 8; i++)
    snprintf(names[i], sizeof(names[i]), "dev%d/v", i);
  /* Times advance ~0.1 s per event with jitter up to 5 s back: some events
   * fall inside the lateness, some behind it. */
  int64_t now = 0;
  for (int i = 0; i < RN; i++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    now += S / 10;
    evs[i].src = (int)((rng >> 33) % 8);
    evs[i].t = now - (int64_t)((rng >> 20) % 50) * S / 10;
    evs[i].v = (double)((rng >> 40) % 1000) / 10.0;
  }
  /* Reference: the rule from window.c's header, computed naively. */
  int64_t wm = INT64_MIN;
  size_t late = 0;
  for (int i = 0; i < RN; i++) {
    if (evs[i].t > wm)
      wm = evs[i].t;
    int64_t st = (evs[i].t - (evs[i].t % W + W) % W); /* floor to W */
    if (st + W + L <= wm) {
      late++;
      continue; /* late: dropped */
    }
    size_t k;
    for (k = 0; k < nw; k++)
      if (wins[k].src == evs[i].src && wins[k].start == st)
        break;
    if (k == nw) {
      wins[nw].src = evs[i].src;
      wins[nw].start = st;
      wins[nw].n = 0;
      nw++;
    }
    wins[k].vals[wins[k].n++] = evs[i].v;
  }
  for (int trial = 0; trial < 5; trial++) {
    sl_process_t *pr = agg((sl_process_step_conf_t){
        .window_ns = W, .lateness_ns = L, .funcs = ALL, .group_by = "source"});
    nouts = 0;
    for (size_t i = 0; i < RN;) {
      const Sluice__V1__Event *batch[512];
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      size_t n = trial == 0 ? RN - i : 1 + (size_t)((rng >> 33) % 300);
      n = SL_MIN(n, SL_MIN(RN - i, SL_ARRAY_SIZE(batch)));
      ph_reset();
      for (size_t k = 0; k < n; k++)
        batch[k] =
            ph_reading(names[evs[i + k].src], evs[i + k].t, evs[i + k].v);
      feed(pr, batch, n);
      i += n;
    }
    /* Compare every closed reference window. */
    size_t closed = 0;
    qsort(outs, nouts, sizeof(outs[0]), cmp_out);
    for (size_t k = 0; k < nw; k++) {
      if (!(wins[k].start + W + L <= wm))
        continue;
      closed++;
      out_t key = {.start = wins[k].start};
      snprintf(key.src, sizeof(key.src), "%s", names[wins[k].src]);
      out_t *o = bsearch(&key, outs, nouts, sizeof(outs[0]), cmp_out);
      assert_non_null(o);
      double sum = 0, mn = INFINITY, mx = -INFINITY, var = 0;
      for (size_t j = 0; j < wins[k].n; j++) {
        sum += wins[k].vals[j];
        mn = fmin(mn, wins[k].vals[j]);
        mx = fmax(mx, wins[k].vals[j]);
      }
      double mean = sum / (double)wins[k].n;
      for (size_t j = 0; j < wins[k].n; j++)
        var += (wins[k].vals[j] - mean) * (wins[k].vals[j] - mean);
      assert_true(o->count == (double)wins[k].n);
      assert_true(fabs(o->sum - sum) < 1e-9 * fmax(1, fabs(sum)));
      assert_true(o->min == mn && o->max == mx);
      assert_true(fabs(o->mean - mean) < 1e-9 * fmax(1, fabs(mean)));
      assert_true(fabs(o->stddev - sqrt(var / (double)wins[k].n)) < 1e-9 * 100);
    }
    assert_int_equal(nouts, closed);
    /* The input really has late events and many windows. */
    assert_true(late > 10 && closed > 100);
    sl_process_free(pr);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tumbling),
      cmocka_unit_test(test_empty_windows),
      cmocka_unit_test(test_hopping),
      cmocka_unit_test(test_late_drop_and_correct),
      cmocka_unit_test(test_clock_backwards),
      cmocka_unit_test(test_nan),
      cmocka_unit_test(test_watermark_cap),
      cmocka_unit_test(test_late_kept_raw),
      cmocka_unit_test(test_watermark_rebase),
      cmocka_unit_test(test_inference),
      cmocka_unit_test(test_random_vs_reference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
