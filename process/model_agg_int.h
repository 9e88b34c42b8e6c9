/*
 * process/model_agg_int.h: the model_aggregate step's internals, shared by
 * model_agg.c (configuration, table, events, sweeps) and model_agg_out.c
 * (the InferenceAggregate results). Only those two include it.
 */
#ifndef SL_PROCESS_MODEL_AGG_INT_H
#define SL_PROCESS_MODEL_AGG_INT_H

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

/* Packs the open window of e as an InferenceAggregate, queues its result
 * (partial: closed early, the table was full) and closes the window; the
 * learnt reference takes complete windows. Returns 0 or -1 (pr poisoned). */
int process__magg_emit_window(sl_process_t *pr, const ppipeline_t *p,
                              pstep_t *s, ma_entry_t *e, bool partial);

#endif /* SL_PROCESS_MODEL_AGG_INT_H */
