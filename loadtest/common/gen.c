#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadtest/common/gen.h"

static const char *const kinds[] = {"temp",    "pressure", "vibration",
                                    "current", "flow",     "speed"};
static const char *const units[] = {"C", "bar", "mm/s", "A", "l/min", "rpm"};

/* xorshift64*: fast, deterministic, good enough for test data. */
static uint64_t rnd(sl_gen_t *g) {
  g->rng ^= g->rng >> 12;
  g->rng ^= g->rng << 25;
  g->rng ^= g->rng >> 27;
  return g->rng * 2685821657736338717ull;
}

static double unit_rand(sl_gen_t *g) {
  return (double)(rnd(g) >> 11) / 9007199254740992.0;
}

int sl_gen_init(sl_gen_t *g, size_t nsrc, uint64_t seed, int64_t t0_ns,
                int64_t period_ns) {
  memset(g, 0, sizeof(*g));
  if (!(g->src = calloc(nsrc ? nsrc : 1, sizeof(*g->src))))
    return -ENOMEM;
  g->nsrc = nsrc ? nsrc : 1;
  g->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
  g->t0_ns = t0_ns;
  g->period_ns = period_ns;
  for (size_t i = 0; i < g->nsrc; i++) {
    sl_gen_source_t *s = &g->src[i];
    size_t k = i % 6;
    snprintf(s->name, sizeof(s->name), "plant%zu/line%zu/%s%02zu/%s",
             1 + i / 250, 1 + (i / 25) % 10,
             (i % 3) == 0   ? "press"
             : (i % 3) == 1 ? "pump"
                            : "robot",
             i % 25, kinds[k]);
    s->unit = units[k];
    snprintf(s->site, sizeof(s->site), "plant%zu", 1 + i / 250);
    snprintf(s->asset, sizeof(s->asset), "%s%02zu",
             (i % 3) == 0   ? "press"
             : (i % 3) == 1 ? "pump"
                            : "robot",
             i % 25);
    snprintf(s->model, sizeof(s->model), "%s-%zu",
             (i % 3) == 0   ? "HX"
             : (i % 3) == 1 ? "KSB-Etanorm"
                            : "KR-Quantec",
             100 + (i % 7) * 50);
    s->value = 20 + 80 * unit_rand(g);
    s->drift = (unit_rand(g) - 0.5) * 0.01;
    s->noise = 0.05 + 0.5 * unit_rand(g);
  }
  sluice__v1__event__init(&g->ev);
  sluice__v1__reading__init(&g->rd);
  static const char *const keys[4] = {"seq", "site", "asset", "model"};
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

const Sluice__V1__Event *sl_gen_next(sl_gen_t *g) {
  sl_gen_source_t *s = &g->src[g->seq % g->nsrc];
  double v;
  uint64_t r = rnd(g);

  /* Drift with noise; a spike one time in 2000; quality flips rarely. */
  s->value += s->drift + s->noise * (unit_rand(g) - 0.5);
  v = s->value;
  if (r % 2000 == 0)
    v *= 3;
  if (r % 5000 == 1)
    s->quality = s->quality == SLUICE__V1__QUALITY__QUALITY_GOOD
                     ? SLUICE__V1__QUALITY__QUALITY_UNCERTAIN
                     : SLUICE__V1__QUALITY__QUALITY_GOOD;
  /* Readings carry 3 decimals, as most PLC scalings do. */
  v = round(v * 1000) / 1000;

  g->rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  g->rd.double_value = v;
  g->rd.quality = s->quality;
  g->rd.unit = (char *)s->unit;
  g->ev.source = s->name;
  g->ev.time_ns = g->t0_ns + (int64_t)g->seq * g->period_ns;
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
