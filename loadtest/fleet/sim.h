/*
 * loadtest/fleet/sim.h: many simulated fleet nodes in one process, each
 * running the REAL node machine (fleet/node.c, sl_fleet_node_*) over
 * in-memory ops, all sharing one Kafka consumer (every partition of the
 * desired topic, assign(), no group) and one producer (status, inventory,
 * events at their explicit partitions). Used by `loadtest/run fleet`
 * (sl_fleet_sim) and by the centre's integration tests.
 *
 * A simulated node: validate fails when the document sets log.level
 * "invalid" (REJECTED); health reports every event refused while the
 * running document sets log.level "error" (the gate rolls it back); apply
 * always applies in process; persist keeps the state in memory.
 */
#ifndef SL_FLEET_SIM_H
#define SL_FLEET_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/centre/centre.h"

typedef struct fsim fsim_t;

typedef struct fsim_conf {
  const char *brokers;
  const char *prefix;     /* topic prefix */
  const char *verify_key; /* PEM path of the fleet's public key */
  size_t nodes;
  const char *id_prefix; /* node ids: <id_prefix>-00000 */
  size_t canaries;       /* the first ones get label canary=yes */
  size_t sites;          /* label site=s<i % sites> (0: none) */
  int64_t heartbeat_ms;
} fsim_conf_t;

/* Publishes every node's Inventory. Errors with a message in err. */
int fsim_open(const fsim_conf_t *c, fsim_t **out, char *err, size_t errlen);
/* Consumes for up to ms, offers documents, ticks the online nodes, sends
 * what they published. 0 or an error (message in err). */
int fsim_poll(fsim_t *s, int ms, char *err, size_t errlen);
void fsim_close(fsim_t *s);

size_t fsim_count(const fsim_t *s);
const char *fsim_id(const fsim_t *s, size_t i);
/* An offline node gets no documents and no ticks (its newest document
 * waits, as on its partition, until it is back online). */
void fsim_set_online(fsim_t *s, size_t i, bool on);
void fsim_info(const fsim_t *s, size_t i, sl_fleet_node_info_t *info);
/* Documents validated by node i, and those of them with log.level "error"
 * or "invalid" (the tests' bad policies). */
void fsim_docs(const fsim_t *s, size_t i, unsigned *docs, unsigned *bad);
/* log.level of node i's running remote layer ("" when none). */
const char *fsim_level(const fsim_t *s, size_t i);
/* Desired records whose partition is not sl_fleet_partition(key) or not
 * librdkafka's murmur2_random partitioner's choice. */
unsigned fsim_bad_partitions(const fsim_t *s);

#endif /* SL_FLEET_SIM_H */
