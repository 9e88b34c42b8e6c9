/* model/model_node_int.h: the machine's struct, shared by node.c and
 * gate.c (not public). */
#ifndef SL_MODEL_NODE_INT_H
#define SL_MODEL_NODE_INT_H

#include "model/model.h"
#include "model/model_int.h"

#define SL_MODEL_MAX_FAILED 16

typedef struct model_ref {
  sl_model_manifest_t *mf; /* NULL = none */
} model_ref_t;

typedef struct model_gate_acc {
  uint32_t windows;
  sl_model_window_t cand, prim;
  double p95_max;
  bool have_prim;
} model_gate_acc_t;

struct sl_model {
  char *dir, *name, *node_id;
  const sl_fleet_key_t *key;
  uint64_t max_bytes;
  sl_model_ops_t ops;
  void *opaque;

  model_ref_t active, previous;
  sl_model_manifest_t *pending;
  uint8_t *have; /* bitmap of pending's chunks */
  int part_fd;
  sl_model_phase_t phase;
  char reason[64], message[512];
  char failed[SL_MODEL_MAX_FAILED][65];
  size_t nfailed;
  int64_t trial_start_ns;
  bool acked;
  uint64_t bytes_fetched, seq;
  uint32_t bad_streak, bad_index;
  model_gate_acc_t gate;
  /* Counters since open (metrics). */
  uint64_t n_rejected, n_rolled_back, n_committed, n_activated, n_corrupt;
};

void model__step(sl_model_t *m, const char *point);
int64_t model__now(sl_model_t *m);
void model__path(const sl_model_t *m, char *buf, size_t cap, const char *what,
                 const char *arg);
int model__fsync_path(const char *path);
int model__hash_file(const char *path, uint64_t off, uint64_t size,
                     char out[65]);
int model__persist(sl_model_t *m);
void model__set_phase(sl_model_t *m, sl_model_phase_t p, const char *reason,
                      const char *msg);
void model__report(sl_model_t *m);
void model__announce(sl_model_t *m);
int model__link(sl_model_t *m);
void model__clear_pending(sl_model_t *m);
bool model__failed(const sl_model_t *m, const char *sha);
void model__add_failed(sl_model_t *m, const char *sha);
void model__gc(sl_model_t *m);
void model__rmtree(const char *path);
void model__ref_move(model_ref_t *dst, model_ref_t *src);
const char *model__ref_version(const model_ref_t *r);
const char *model__ref_sha(const model_ref_t *r);
/* gate.c */
void model__gate_reset(sl_model_t *m);
void model__gate_check(sl_model_t *m);

#endif /* SL_MODEL_NODE_INT_H */
