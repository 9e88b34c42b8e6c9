/*
 * Shared by the model_aggregate tests (test_model_agg.c,
 * test_model_agg_state.c): a deterministic random stream of inference
 * results (detector with primary, canary and shadow versions, a
 * classifier), the step under test, and its results unpacked. Static
 * functions, one copy per test program (as helpers.h).
 */
#ifndef SL_TESTS_PROCESS_MODEL_AGG_GEN_H
#define SL_TESTS_PROCESS_MODEL_AGG_GEN_H

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
/* The window length of mk()'s step and the reference (tests vary it). */
static int64_t W = 5 * S;
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

static inline uint64_t rnd(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return rng >> 33;
}
static inline double frand(void) {
  return (double)(rnd() % 1000001) / 1000000.0;
}

static inline void ev_init(tev_t *e, const char *src, int64_t t,
                           const char *model, const char *ver, int role,
                           uint64_t seq) {
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
static inline void fill(tev_t *e, bool cls) {
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
static inline void gen(uint64_t seed) {
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

/* ---- running the step -----------------------------------------------------
 */

static inline sl_process_t *mk(uint32_t max_keys) {
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

static inline void collect(const sl_process_result_t *res) {
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

static inline void aggs_free(void) {
  for (size_t i = 0; i < naggs; i++)
    sluice__v1__inference_aggregate__free_unpacked(aggs[i], NULL);
  naggs = 0;
}

/* Runs evs[0..nev) in random batches; some batches are rolled back and
 * run again (their results are dropped the first time). */

#endif /* SL_TESTS_PROCESS_MODEL_AGG_GEN_H */
