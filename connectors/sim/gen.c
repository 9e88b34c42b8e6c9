/*
 * connectors/sim/gen.c: sensor readings (moved here from loadtest/common,
 * which now uses this one) and inference results. See gen.h.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/sim/gen.h"

static const char *const kinds[SL_GEN_NKINDS] = {
    "temp", "pressure", "vibration", "current",
    "flow", "speed",    "count",     "status"};
static const char *const units[SL_GEN_NKINDS] = {"C",     "bar", "mm/s", "A",
                                                 "l/min", "rpm", "pcs",  ""};
const char *const sl_gen_states[] = {"running", "idle", "stopped", "fault",
                                     NULL};
enum { RUNNING = 0, IDLE, STOPPED, FAULT };

/* xorshift64*: fast, deterministic, good enough for test data. */
static uint64_t rnd(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ull;
}

static double unit_rand(uint64_t *s) {
  return (double)(rnd(s) >> 11) / 9007199254740992.0;
}

static const char *asset_kind(size_t i) {
  return (i % 3) == 0 ? "press" : (i % 3) == 1 ? "pump" : "robot";
}

int sl_gen_init(sl_gen_t *g, size_t nsrc, uint64_t seed, int64_t t0_ns,
                int64_t period_ns) {
  static const char *const keys[4] = {"seq", "site", "asset", "model"};
  memset(g, 0, sizeof(*g));
  if (!(g->src = calloc(nsrc ? nsrc : 1, sizeof(*g->src))))
    return -ENOMEM;
  g->nsrc = nsrc ? nsrc : 1;
  g->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
  g->t0_ns = t0_ns;
  g->period_ns = period_ns;
  for (size_t i = 0; i < g->nsrc; i++) {
    sl_gen_source_t *s = &g->src[i];
    s->kind = (int)(i % SL_GEN_NKINDS);
    snprintf(s->name, sizeof(s->name), "plant%zu/line%zu/%s%02zu/%s",
             1 + i / 250, 1 + (i / 25) % 10, asset_kind(i), i % 25,
             kinds[s->kind]);
    s->unit = units[s->kind];
    snprintf(s->site, sizeof(s->site), "plant%zu", 1 + i / 250);
    snprintf(s->asset, sizeof(s->asset), "%s%02zu", asset_kind(i), i % 25);
    snprintf(s->model, sizeof(s->model), "%s-%zu",
             (i % 3) == 0   ? "HX"
             : (i % 3) == 1 ? "KSB-Etanorm"
                            : "KR-Quantec",
             100 + (i % 7) * 50);
    s->value = 20 + 80 * unit_rand(&g->rng);
    s->drift = (unit_rand(&g->rng) - 0.5) * 0.01;
    s->noise = 0.05 + 0.5 * unit_rand(&g->rng);
    if (s->kind == SL_GEN_VIBRATION) {
      s->value = 1 + 2 * unit_rand(&g->rng); /* mm/s RMS baseline */
      s->drift = 0;
      s->noise = 0.1;
    }
    s->count = (int64_t)(rnd(&g->rng) % 100000);
  }
  sluice__v1__event__init(&g->ev);
  sluice__v1__reading__init(&g->rd);
  for (int i = 0; i < 4; i++) {
    sluice__v1__attribute__init(&g->attr[i]);
    g->attr[i].key = (char *)keys[i];
    g->attrs[i] = &g->attr[i];
  }
  g->attr[0].value = g->attr_val;
  return 0;
}

void sl_gen_close(sl_gen_t *g) {
  free(g->src);
  g->src = NULL;
}

/* Machine status: mostly running; idles, stops, faults now and then. */
static int next_state(int st, double u) {
  switch (st) {
  case RUNNING:
    return u < 0.97 ? RUNNING : u < 0.985 ? IDLE : u < 0.995 ? STOPPED : FAULT;
  case IDLE:
    return u < 0.7 ? IDLE : RUNNING;
  case STOPPED:
    return u < 0.8 ? STOPPED : RUNNING;
  default: /* a fault is cleared by stopping the machine */
    return u < 0.6 ? FAULT : STOPPED;
  }
}

const Sluice__V1__Event *sl_gen_next(sl_gen_t *g) {
  sl_gen_source_t *s;
  int64_t t;
  uint64_t r;
  double v;

  /* A source in a gap loses its turn (its time slot passes unused). Gaps
   * are finite, so this ends. */
  for (;;) {
    s = &g->src[g->slot % g->nsrc];
    t = g->t0_ns + (int64_t)g->slot * g->period_ns;
    g->slot++;
    if (!s->gap)
      break;
    s->gap--;
    g->gaps++;
  }
  r = rnd(&g->rng);
  if (r % 4000 == 7)
    s->gap = 3 + (uint32_t)(r >> 32) % 20;
  if (r % 500 == 1)
    s->quality = s->quality == SLUICE__V1__QUALITY__QUALITY_GOOD
                     ? SLUICE__V1__QUALITY__QUALITY_UNCERTAIN
                     : SLUICE__V1__QUALITY__QUALITY_GOOD;

  g->rd.quality = s->quality;
  g->rd.unit = (char *)s->unit;
  switch (s->kind) {
  case SL_GEN_COUNTER:
    /* Parts made: only while running would be nicer, but sources are
     * independent; a counter counts 0..3 per reading. */
    s->count += (int64_t)((r >> 20) % 4);
    g->rd.value_case = SLUICE__V1__READING__VALUE_INT_VALUE;
    g->rd.int_value = s->count;
    break;
  case SL_GEN_STATUS:
    s->state = next_state(s->state, unit_rand(&g->rng));
    g->rd.value_case = SLUICE__V1__READING__VALUE_STRING_VALUE;
    g->rd.string_value = (char *)sl_gen_states[s->state];
    break;
  case SL_GEN_VIBRATION:
    /* Bursts: 10..40 readings at 4..8x the baseline. */
    if (!s->burst && r % 300 == 3)
      s->burst = 10 + (uint32_t)(r >> 40) % 30;
    v = s->value + s->noise * (unit_rand(&g->rng) - 0.5);
    if (s->burst) {
      s->burst--;
      v *= 4 + 4 * unit_rand(&g->rng);
    }
    g->rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    g->rd.double_value = round(v * 1000) / 1000;
    break;
  default:
    /* Drift with noise; a spike one time in 2000. */
    s->value += s->drift + s->noise * (unit_rand(&g->rng) - 0.5);
    v = s->value;
    if (r % 2000 == 0)
      v *= 3;
    /* Readings carry 3 decimals, as most PLC scalings do. */
    g->rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    g->rd.double_value = round(v * 1000) / 1000;
    break;
  }
  g->ev.source = s->name;
  g->ev.time_ns = t;
  g->ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  g->ev.reading = &g->rd;
  snprintf(g->attr_val, sizeof(g->attr_val), "%llu",
           (unsigned long long)g->seq);
  g->attr[1].value = s->site;
  g->attr[2].value = s->asset;
  g->attr[3].value = s->model;
  g->ev.n_attributes = 4;
  g->ev.attributes = g->attrs;
  g->seq++;
  return &g->ev;
}

/* ---- inference ---------------------------------------------------------- */

static const char *const defects[] = {"ok", "scratch", "dent", "crack"};
static const char *const health[] = {"healthy", "degrading",
                                     "failure_imminent"};

int sl_infer_init(sl_infer_t *g, size_t nsrc, uint64_t seed, int64_t t0_ns,
                  int64_t period_ns) {
  memset(g, 0, sizeof(*g));
  if (!(g->src = calloc(nsrc ? nsrc : 1, sizeof(*g->src))))
    return -ENOMEM;
  g->nsrc = nsrc ? nsrc : 1;
  g->rng = (seed ? seed : 0x9e3779b97f4a7c15ull) ^ 0xa5a5a5a5a5a5a5a5ull;
  g->t0_ns = t0_ns;
  g->period_ns = period_ns;
  for (size_t i = 0; i < g->nsrc; i++) {
    sl_infer_source_t *s = &g->src[i];
    s->camera = (i % 2) == 0;
    if (s->camera)
      snprintf(s->name, sizeof(s->name), "plant1/line%zu/cam%02zu",
               1 + (i / 2) % 10, i / 2);
    else
      snprintf(s->name, sizeof(s->name), "plant1/line%zu/press%02zu/pdm",
               1 + (i / 2) % 10, i / 2);
    s->wear = 0.05 * unit_rand(&g->rng);
  }
  sluice__v1__event__init(&g->ev);
  sluice__v1__inference__init(&g->inf);
  for (int i = 0; i < 4; i++) {
    sluice__v1__label__init(&g->lab[i]);
    sluice__v1__box__init(&g->box[i]);
    g->labs[i] = &g->lab[i];
    g->boxes[i] = &g->box[i];
  }
  for (int i = 0; i < 2; i++) {
    sluice__v1__attribute__init(&g->attr[i]);
    g->attrs[i] = &g->attr[i];
  }
  g->attr[0].key = "seq";
  g->attr[0].value = g->attr_val;
  g->attr[1].key = "site";
  g->attr[1].value = "plant1";
  return 0;
}

void sl_infer_close(sl_infer_t *g) {
  free(g->src);
  g->src = NULL;
}

void sl_infer_upgrade(sl_infer_t *g) {
  g->upgraded = 1;
}

/* Scores as a model reports them: floats with 4 decimals. */
static float score(double x) {
  return (float)(round(x * 10000) / 10000);
}

static void camera(sl_infer_t *g) {
  uint64_t r = rnd(&g->rng);
  /* 70% of parts are fine; the new version is a little more confident. */
  size_t top = r % 10 < 7 ? 0 : 1 + (r >> 8) % 3, nbox = 0;
  double conf = (g->upgraded ? 0.8 : 0.65) + 0.19 * unit_rand(&g->rng);
  g->inf.model = SL_INFER_CAMERA_MODEL;
  g->inf.model_version = g->upgraded ? SL_INFER_CAMERA_V2 : SL_INFER_CAMERA_V1;
  g->lab[0].name = (char *)defects[top];
  g->lab[0].score = score(conf);
  g->lab[1].name = (char *)defects[top ? 0 : 1 + (r >> 16) % 3];
  g->lab[1].score = score((1 - conf) * 0.8);
  g->inf.n_labels = 2;
  if (top)
    nbox = 1 + (r >> 24) % 3;
  for (size_t i = 0; i < nbox; i++) {
    Sluice__V1__Box *b = &g->box[i];
    b->w = score(0.05 + 0.2 * unit_rand(&g->rng));
    b->h = score(0.05 + 0.2 * unit_rand(&g->rng));
    b->x = score((1 - b->w) * unit_rand(&g->rng));
    b->y = score((1 - b->h) * unit_rand(&g->rng));
    b->label = (char *)defects[top];
    b->score = score(conf - 0.1 * unit_rand(&g->rng));
  }
  g->inf.n_boxes = nbox;
  g->inf.latency_us = 8000 + (uint32_t)(rnd(&g->rng) % 12000);
}

static void pdm(sl_infer_t *g, sl_infer_source_t *s) {
  double w, e[3], sum = 0;
  s->wear = fmin(1.0, s->wear + 0.002 * unit_rand(&g->rng));
  w = s->wear + 0.05 * (unit_rand(&g->rng) - 0.5);
  /* Class scores: a softmax over how worn the bearing looks. */
  e[0] = exp(4 * (0.5 - w));
  e[1] = exp(4 * (0.5 - fabs(w - 0.5)) - 1);
  e[2] = exp(4 * (w - 0.7));
  for (int i = 0; i < 3; i++)
    sum += e[i];
  g->inf.model = SL_INFER_PDM_MODEL;
  g->inf.model_version = g->upgraded ? SL_INFER_PDM_V2 : SL_INFER_PDM_V1;
  for (int i = 0; i < 3; i++) {
    g->lab[i].name = (char *)health[i];
    g->lab[i].score = score(e[i] / sum);
  }
  g->inf.n_labels = 3;
  g->inf.n_boxes = 0;
  g->inf.latency_us = 300 + (uint32_t)(rnd(&g->rng) % 1200);
}

const Sluice__V1__Event *sl_infer_next(sl_infer_t *g) {
  sl_infer_source_t *s = &g->src[g->seq % g->nsrc];
  if (s->camera)
    camera(g);
  else
    pdm(g, s);
  g->inf.labels = g->labs;
  g->inf.boxes = g->boxes;
  g->ev.source = s->name;
  g->ev.time_ns = g->t0_ns + (int64_t)g->seq * g->period_ns;
  g->ev.body_case = SLUICE__V1__EVENT__BODY_INFERENCE;
  g->ev.inference = &g->inf;
  snprintf(g->attr_val, sizeof(g->attr_val), "%llu",
           (unsigned long long)g->seq);
  g->ev.n_attributes = 2;
  g->ev.attributes = g->attrs;
  g->seq++;
  return &g->ev;
}
