/*
 * connectors/sim: realistic event generators shared by the simulator
 * (sluice-sim), the tests and the load generators (loadtest/).
 *
 * Sensor readings (sl_gen_*): sources named like "plant1/line3/press07/temp"
 * cycle through eight profiles: temperature, pressure, current, flow and
 * speed drift with noise and an occasional spike; vibration has bursts;
 * counters count up (int_value); machine status is a state machine
 * (string_value: running, idle, stopped, fault). Quality changes now and
 * then, and a source falls silent for a few of its turns now and then (a
 * gap). Readings carry 3 decimals and the attributes seq, site, asset, model.
 *
 * Inference results (sl_infer_*): cameras running an object detector
 * (labels, scores, boxes) and predictive-maintenance models on presses
 * (class scores), each with a model name and version; sl_infer_upgrade()
 * switches every model to its next version, as a rollout mid-run would.
 *
 * Both are deterministic for a seed: the same seed and start time give the
 * same events, whatever path carries them.
 */
#ifndef SL_SIM_GEN_H
#define SL_SIM_GEN_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/v1/event.pb-c.h"

/* Sensor profiles. */
typedef enum sl_gen_kind {
  SL_GEN_TEMP = 0,
  SL_GEN_PRESSURE,
  SL_GEN_VIBRATION,
  SL_GEN_CURRENT,
  SL_GEN_FLOW,
  SL_GEN_SPEED,
  SL_GEN_COUNTER,
  SL_GEN_STATUS,
  SL_GEN_NKINDS
} sl_gen_kind_t;

typedef struct sl_gen_source {
  char name[64];                       /* the event's source */
  char site[32], asset[32], model[40]; /* attributes */
  int kind;                            /* sl_gen_kind_t */
  const char *unit;                    /* static */
  double value, drift, noise;          /* analogue profiles */
  int64_t count;                       /* SL_GEN_COUNTER */
  int state;      /* SL_GEN_STATUS: index into the states */
  uint32_t burst; /* SL_GEN_VIBRATION: readings left in a burst */
  uint32_t gap;   /* turns left to skip (a gap) */
  Sluice__V1__Quality quality;
} sl_gen_source_t;

typedef struct sl_gen {
  sl_gen_source_t *src;
  size_t nsrc;
  uint64_t rng;
  uint64_t seq;             /* events handed out */
  uint64_t slot;            /* turns taken, gaps included */
  int64_t t0_ns, period_ns; /* time of slot n = t0 + n * period */
  uint64_t gaps;            /* turns skipped so far */
  /* The event handed out by sl_gen_next(): valid until the next call. */
  Sluice__V1__Event ev;
  Sluice__V1__Reading rd;
  Sluice__V1__Attribute attr[4], *attrs[4];
  char attr_val[24];
} sl_gen_t;

/* nsrc sources, turns spaced period_ns apart from t0_ns. Returns 0 or
 * -ENOMEM. Free with sl_gen_close(). */
int sl_gen_init(sl_gen_t *g, size_t nsrc, uint64_t seed, int64_t t0_ns,
                int64_t period_ns);
void sl_gen_close(sl_gen_t *g);

/* The next reading; borrowed, valid until the next call. Its "seq"
 * attribute is g->seq - 1 after the call (unique per generator). */
const Sluice__V1__Event *sl_gen_next(sl_gen_t *g);

/* The machine states of SL_GEN_STATUS sources (NULL-terminated). */
extern const char *const sl_gen_states[];

/* ---- inference ---------------------------------------------------------- */

typedef struct sl_infer_source {
  char name[64]; /* the event's source */
  int camera;    /* 1: object detector, 0: predictive maintenance */
  double wear;   /* predictive maintenance: slowly rising */
} sl_infer_source_t;

typedef struct sl_infer {
  sl_infer_source_t *src;
  size_t nsrc;
  uint64_t rng;
  uint64_t seq;
  int64_t t0_ns, period_ns; /* time of event n = t0 + n * period */
  int upgraded;             /* models run their next version */
  /* The event handed out by sl_infer_next(): valid until the next call. */
  Sluice__V1__Event ev;
  Sluice__V1__Inference inf;
  Sluice__V1__Label lab[4], *labs[4];
  Sluice__V1__Box box[4], *boxes[4];
  Sluice__V1__Attribute attr[2], *attrs[2];
  char attr_val[24];
} sl_infer_t;

/* Model names and versions (before, after sl_infer_upgrade()). */
#define SL_INFER_CAMERA_MODEL "defect-detector"
#define SL_INFER_CAMERA_V1 "2.3.0"
#define SL_INFER_CAMERA_V2 "2.4.0"
#define SL_INFER_PDM_MODEL "bearing-rul"
#define SL_INFER_PDM_V1 "1.0.3"
#define SL_INFER_PDM_V2 "1.1.0"

/* nsrc model instances (cameras and presses alternate). Returns 0 or
 * -ENOMEM. Free with sl_infer_close(). */
int sl_infer_init(sl_infer_t *g, size_t nsrc, uint64_t seed, int64_t t0_ns,
                  int64_t period_ns);
void sl_infer_close(sl_infer_t *g);

/* Every model switches to its next version from the next event on. */
void sl_infer_upgrade(sl_infer_t *g);

/* The next inference result; borrowed, valid until the next call. */
const Sluice__V1__Event *sl_infer_next(sl_infer_t *g);

#endif /* SL_SIM_GEN_H */
