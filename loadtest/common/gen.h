/*
 * Realistic sensor readings for load tests and simulators: ~500 sources named
 * like "plant1/line3/press07/temp", values that drift with noise, regular
 * timestamps, units, occasional quality changes and spikes. Deterministic for
 * a given seed. Encodes to ~150-byte protobuf Events.
 */
#ifndef SL_LOADTEST_GEN_H
#define SL_LOADTEST_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/event.pb-c.h"

typedef struct sl_gen_source {
  char name[64];
  char site[32], asset[32], model[40];
  const char *unit;
  double value, drift, noise;
  Sluice__V1__Quality quality;
} sl_gen_source_t;

typedef struct sl_gen {
  sl_gen_source_t *src;
  size_t nsrc;
  uint64_t rng;
  uint64_t seq;
  int64_t t0_ns, period_ns; /* time of event seq = t0 + seq * period */
  /* The event handed out by sl_gen_next(): valid until the next call. */
  Sluice__V1__Event ev;
  Sluice__V1__Reading rd;
  Sluice__V1__Attribute attr[4], *attrs[4];
  char attr_val[16];
} sl_gen_t;

/* nsrc sources, events spaced period_ns apart from t0_ns. Returns 0 or
 * -ENOMEM. Free with sl_gen_close(). */
int sl_gen_init(sl_gen_t *g, size_t nsrc, uint64_t seed, int64_t t0_ns,
                int64_t period_ns);
void sl_gen_close(sl_gen_t *g);

/* The next reading; borrowed, valid until the next call. The value of a
 * reading is deterministic; tests that need to recognise events use
 * g->seq - 1, which is also put in the "seq" attribute. */
const Sluice__V1__Event *sl_gen_next(sl_gen_t *g);

#endif
