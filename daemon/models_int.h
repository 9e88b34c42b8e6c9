/* daemon/models_int.h: what daemon/models.c and daemon/models_view.c
 * share (the daemon's model host; not public). */
#ifndef SL_DAEMON_MODELS_INT_H
#define SL_DAEMON_MODELS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>
#include <uv.h>

#include "daemon/daemon.h"
#include "daemon/models.h"
#include "fleet/fleet.h"
#include "model/model.h"

#define INDEX_KEY "models.index"
#define MAX_MODELS 32

typedef struct entry {
  char name[129];
  sl_model_t *m;
  uint8_t *newest; /* newest manifest record seen, not yet offered */
  size_t newest_len;
  uint8_t *status; /* latest status not yet produced */
  size_t status_len;
} entry_t;

typedef struct ack {
  struct ack *next;
  char name[129], version[129], message[256];
  int ok;
} ack_t;

typedef struct announce {
  char topic[300];
  char *payload; /* NULL = nothing pending */
} announce_t;

struct sl_models {
  sl_daemon_t *dm;
  sl_fleet_key_t *key;
  char dir[1024], topic[3][300]; /* models, model.chunks, model.status */
  char node_id[256];
  uint64_t max_bytes, rate;
  int win_start, win_end; /* minutes, -1 = always */
  const char *const *names;
  size_t nnames;

  rd_kafka_t *cm, *cc, *prod;
  pthread_t thr;
  int thr_started;
  atomic_int stop;
  atomic_int slow; /* the uplink is sending a backlog */
  int32_t status_parts;

  entry_t ents[MAX_MODELS]; /* models thread */
  size_t nents;
  char fetching[65];     /* sha256 the chunk consumer is assigned to */
  int64_t next_expected; /* offset the consumer reads next */
  double tokens;
  int64_t refill_ns;

  pthread_mutex_t lock; /* acks, announcements, snapshot */
  ack_t *acks;
  announce_t ann[MAX_MODELS];
  size_t nann;
  char *snap;
  uv_async_t wake;
  uv_timer_t timer;
  int handles_open;

  sl_metric_t *m_bytes, *m_chunks_ok, *m_chunks_bad, *m_activations, *m_commits,
      *m_rollbacks, *m_rejections, *m_downloading, *m_rx;
  uint64_t last_n[5]; /* per-entry sums seen: activated, committed, ... */
  sl_models_gate_t *gate;
};

/* models_view.c: what the apps, the admin server and the metrics see. */
void models__announce(void *o, const char *model, const char *version,
                      const char *sha, const char *path);
void models__snapshot(sl_models_t *ms);
void models__counters(sl_models_t *ms);
void models__on_wake(uv_async_t *h);
void models__on_timer(uv_timer_t *h);
char *models__admin_list(void *o);
int models__admin_ack(void *o, const char *name, const char *version, int ok,
                      const char *message);

#endif /* SL_DAEMON_MODELS_INT_H */
