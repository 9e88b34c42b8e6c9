/*
 * daemon/cmd/fleet_int.h: what the `sluice fleet` subcommands share
 * (cmd_fleet.c, fleet_view.c, fleet_render.c, fleet_status.c): the common
 * options, and the view of the fleet topics (latest record per key) that
 * the commands build by reading the compacted topics.
 */
#ifndef SL_DAEMON_FLEET_INT_H
#define SL_DAEMON_FLEET_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "fleet/centre/centre.h"
#include "sluice/v1/fleet.pb-c.h"

/* Exit codes of `sluice fleet` (docs/FLEET.md). */
enum {
  FLEET_EXIT_OK = 0,
  FLEET_EXIT_FAIL = 1,     /* Kafka or delivery failed, rollout stopped */
  FLEET_EXIT_USAGE = 2,    /* bad arguments or input file */
  FLEET_EXIT_NOTFOUND = 3, /* no such policy, rollout or node */
  FLEET_EXIT_NOTOPICS = 4  /* the fleet topics do not exist: run init */
};

#define FLEET_MAX_PROPS 64

typedef struct fleet_opts {
  sl_fleet_kconf_t k;
  const char *props[FLEET_MAX_PROPS];
  const char *signing_key; /* --signing-key PATH */
  bool json, watch;
  int partitions, replication;
  int64_t retention_ms;
  const char *reason;
  double interval_s;   /* render: reconcile period */
  const char *args[8]; /* positional arguments after the subcommand */
  int n_args;
} fleet_opts_t;

/* Exit code for an error code (SL_ENOTFOUND -> NOTOPICS, ...). */
int fleet_exit_for(int rc);

/* ---- the view of the topics ---------------------------------------------- */

typedef struct fv_node {
  char *id;
  Sluice__V1__Inventory *inv; /* latest, or NULL */
  Sluice__V1__FleetStatus *st;
  sl_fleet_label_t *labels; /* from inv (else st), pointing into it */
  size_t n_labels;
  uint64_t gen;         /* highest desired generation seen (any kind) */
  uint64_t desired_gen; /* generation of the latest DESIRED document */
  char sha[65];         /* its config_sha256 */
  char *refs;           /* its policy refs "a@3,b@1" */
  char *batch_id;
  bool decommissioned;
  int64_t seen_ns; /* latest status or inventory time */
} fv_node_t;

typedef struct fv_pol {
  char *name;
  Sluice__V1__Policy *p;   /* latest record, or NULL */
  Sluice__V1__Rollout *ro; /* latest rollout record, or NULL */
  bool ro_dirty;           /* a cli record arrived (render adopts it) */
} fv_pol_t;

typedef struct fleet_view {
  fv_node_t **nodes;
  size_t n_nodes, cap;
  size_t *index; /* open addressing over nodes, SIZE_MAX = empty */
  size_t index_cap;
  fv_pol_t **pols;
  size_t n_pols;
  uint64_t records; /* delivered so far */
  bool changed;     /* something a render depends on changed */
  bool live;        /* set by the renderer once it writes */
  uint64_t foreign; /* desired records another writer wrote while live */
} fleet_view_t;

void fv_init(fleet_view_t *v);
void fv_free(fleet_view_t *v);
fv_node_t *fv_node(fleet_view_t *v, const char *id, bool create);
/* Position of a node in v->nodes, or SIZE_MAX. */
size_t fv_node_index(fleet_view_t *v, const char *id);
fv_pol_t *fv_pol(fleet_view_t *v, const char *name, bool create);
/* sl_fleet_record_cb over a fleet_view_t. */
void fv_record(void *opaque, int topic, int32_t partition, int64_t offset,
               const char *key, size_t klen, const void *val, size_t vlen);

/* Opens the producer (and prints the error); 0 or an exit code. */
int fleet_connect(const fleet_opts_t *o, sl_fleet_kafka_t **k);
/* Reads topics (mask) to their end into v: 0 or an exit code (printed). */
int fleet_read_all(sl_fleet_kafka_t *k, unsigned topics, fleet_view_t *v,
                   sl_fleet_reader_t **keep);

/* Writes a FleetEvent (best effort). */
void fleet_event(sl_fleet_kafka_t *k, const char *subject, const char *what,
                 int phase, uint64_t gen, const char *reason,
                 const char *message);

/* FleetPhase name (fleet.proto), "UNKNOWN" outside the enum. */
const char *fleet_phase_name(int p);

/* The subcommands. */
int fleet_cmd_render(fleet_opts_t *o);
int fleet_cmd_status(fleet_opts_t *o);
int fleet_cmd_rollout(fleet_opts_t *o, const char *verb);

#endif /* SL_DAEMON_FLEET_INT_H */
