/*
 * fleet/centre/centre.h: the fleet centre's code (library sl_fleet_centre),
 * what `sluice fleet` (daemon/cmd/cmd_fleet*.c) runs: label selectors,
 * RFC 7396 merge patches, rendering a node's remote layer from policies, the
 * rollout planner (pure), and the Kafka plumbing of the fleet topics
 * (explicit partitions, reading a compacted topic to its end, creating the
 * topics). No logging: errors come back as codes with a message in err.
 * docs/FLEET.md describes the model.
 */
#ifndef SL_FLEET_CENTRE_H
#define SL_FLEET_CENTRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "common/common.h"
#include "fleet/fleet.h"
#include "sluice/v1/fleet.pb-c.h"

/* ---- label selectors ---------------------------------------------------- */

/*
 * Syntax: comma-separated terms, all of which must hold (empty = all nodes):
 *   k=v  k==v  k!=v  k in (a|b|c)  k notin (a|b)  k  !k
 * Keys and values: letters, digits, '.', '-', '_', '/', ':'.
 */
typedef struct sl_fleet_sel sl_fleet_sel_t;

/* *out owned (sl_fleet_sel_free). Errors: SL_ECONFIG with the column and
 * what was expected in err. */
int sl_fleet_sel_parse(const char *text, sl_fleet_sel_t **out, char *err,
                       size_t errlen);
bool sl_fleet_sel_match(const sl_fleet_sel_t *s, const sl_fleet_label_t *l,
                        size_t n);
void sl_fleet_sel_free(sl_fleet_sel_t *s);

/* Value of key among labels, or NULL. */
const char *sl_fleet_label_get(const sl_fleet_label_t *l, size_t n,
                               const char *key);

/* ---- JSON: merge patches, canonical text, policy files ------------------ */

/* RFC 7396: applies patch to target and returns the result (a new
 * reference; target's reference is consumed, NULL = absent). NULL only on
 * allocation failure. */
json_t *sl_fleet_merge_patch(json_t *target, const json_t *patch);

/* Canonical text of v: sorted keys, one line, ", " and ": " separators (so
 * YAML parsers read it too). Owned (free()), NULL on allocation failure. */
char *sl_fleet_json_canon(const json_t *v);

/* Checks that a merge patch touches only remote-owned keys (streams,
 * pipelines, log.level|debug|format, kafka.bandwidth_bytes_per_s|
 * backlog_share|backlog_threshold|backlog_order): 0, or SL_ECONFIG naming
 * the first key that is not. */
int sl_fleet_patch_check(const json_t *patch, char *err, size_t errlen);

/* Parses YAML (or JSON, a YAML subset) text into JSON: plain scalars become
 * numbers, booleans or null when they read as such. *out owned. Errors:
 * SL_ECONFIG with line and column in err. */
int sl_fleet_yaml_to_json(const char *text, size_t len, json_t **out, char *err,
                          size_t errlen);

/* ---- policy files -------------------------------------------------------- */

/*
 * Parses a policy file (YAML or JSON; keys in docs/FLEET.md) into a Policy
 * (revision and updated_ns left 0 for the caller). *out owned: free with
 * sluice__v1__policy__free_unpacked(*out, NULL). Errors: SL_ECONFIG with
 * the key (or line and column) and what was expected in err; -ENOMEM.
 */
int sl_fleet_policy_parse(const char *text, size_t len,
                          Sluice__V1__Policy **out, char *err, size_t errlen);

/* The policy as JSON (new reference). */
json_t *sl_fleet_policy_to_json(const Sluice__V1__Policy *p);

/* ---- rendering ---------------------------------------------------------- */

/* One policy as the renderer uses it (borrowed pointers). */
typedef struct sl_fleet_rpol {
  const char *name;
  uint64_t revision;
  int32_t priority;
  int64_t updated_ns;
  const json_t *patch;
} sl_fleet_rpol_t;

/*
 * Renders a node's remote layer from the policies that apply to it (any
 * order): starting from {}, each patch in priority order (lowest first, so
 * higher wins; ties: older updated_ns first so the newer wins; then name).
 * pols is sorted in place into that order. *json owned (free()), sha256 set.
 * Errors: -ENOMEM.
 */
int sl_fleet_render(sl_fleet_rpol_t *pols, size_t n, char **json,
                    char sha256[65]);

/* ---- the rollout planner (pure) ----------------------------------------- */

enum {
  SL_FLEET_OUT_PENDING = 0,
  SL_FLEET_OUT_COMMITTED = 1,
  SL_FLEET_OUT_FAILED = 2
};
/* RolloutState (fleet.proto). */
enum {
  SL_FLEET_RO_RUNNING = 1,
  SL_FLEET_RO_PAUSED = 2,
  SL_FLEET_RO_STOPPED = 3,
  SL_FLEET_RO_DONE = 4
};

typedef struct sl_fleet_plan_node {
  const char *id;
  const sl_fleet_label_t *labels;
  size_t n_labels;
  bool released; /* in/out: released for this revision */
  int outcome;   /* in: SL_FLEET_OUT_* of its released generation */
  int batch;     /* out: its batch (0 = canary when there is one) */
} sl_fleet_plan_node_t;

typedef struct sl_fleet_plan_spec {
  const sl_fleet_sel_t *canary; /* NULL: no canary batch */
  const uint32_t *steps;        /* cumulative percents; none = [100] */
  size_t n_steps;
  double threshold;     /* 0 = 1.0 */
  uint64_t deadline_ms; /* 0 = none */
  uint32_t max_failures;
  const char *group_label; /* NULL/"" = none */
  uint32_t max_unavailable_per_group;
} sl_fleet_plan_spec_t;

typedef struct sl_fleet_plan {
  int state; /* SL_FLEET_RO_* */
  uint32_t batch, batches;
  int64_t batch_started_ns;
  uint32_t failed_base; /* failures forgiven by a resume */
  uint32_t released, committed, failed;
  char reason[160];
} sl_fleet_plan_t;

/*
 * One step of a rollout over its target nodes (those the old or the new
 * revision covers): assigns batches (canary selector first, the rest by a
 * hash of policy/revision/node id, cut at the cumulative percentages),
 * counts outcomes, stops on failures (>= max(1, max_failures) since the
 * last resume) or the batch deadline, releases the current batch's nodes
 * (at most max_unavailable_per_group in flight per value of group_label),
 * and advances while a batch's committed share reaches the threshold.
 * Only RUNNING plans change; nodes' released flags are set here.
 * Returns true when anything in p or a released flag changed.
 */
bool sl_fleet_plan_step(const sl_fleet_plan_spec_t *spec, const char *policy,
                        uint64_t revision, sl_fleet_plan_node_t *nodes,
                        size_t n, sl_fleet_plan_t *p, int64_t now_ns);

/* Static name of a RolloutState ("RUNNING"). */
const char *sl_fleet_rollout_state_name(int s);

/* ---- Kafka ----------------------------------------------------------------
 */

/* The six fleet topics. */
enum {
  SL_FT_POLICIES,
  SL_FT_DESIRED,
  SL_FT_STATUS,
  SL_FT_INVENTORY,
  SL_FT_ROLLOUTS,
  SL_FT_EVENTS,
  SL_FT_COUNT
};
const char *sl_fleet_topic_suffix(int t); /* "policies" */

typedef struct sl_fleet_kconf {
  const char *brokers;
  const char *prefix;       /* "sluice.fleet." when NULL */
  const char *const *props; /* "k=v" librdkafka properties */
  size_t n_props;
} sl_fleet_kconf_t;

typedef struct sl_fleet_kafka sl_fleet_kafka_t;

/* A producer (idempotent, acks=all, zstd unless a property says else) plus
 * metadata access; librdkafka logs errors only and never lets the broker
 * auto-create a topic. Errors: SL_ECONFIG (no brokers, a bad property),
 * SL_EKAFKA, with librdkafka's message in err. */
int sl_fleet_kafka_open(const sl_fleet_kconf_t *c, sl_fleet_kafka_t **out,
                        char *err, size_t errlen);
void sl_fleet_kafka_close(sl_fleet_kafka_t *k);
/* Full topic name (valid until close). */
const char *sl_fleet_kafka_topic(sl_fleet_kafka_t *k, int t);
rd_kafka_t *sl_fleet_kafka_handle(sl_fleet_kafka_t *k);

/* Creates the topics that do not exist yet (compacted; events
 * time-retained for retention_ms); existing ones are left as they are, so
 * it is idempotent. Errors: SL_EKAFKA. */
int sl_fleet_kafka_create_topics(sl_fleet_kafka_t *k, int partitions,
                                 int replication, int64_t retention_ms,
                                 char *err, size_t errlen);

/* Partitions of topic t (cached after the first look-up). Errors:
 * SL_ENOTFOUND (no such topic: run `sluice fleet init`), SL_EKAFKA. */
int sl_fleet_kafka_partitions(sl_fleet_kafka_t *k, int t, int32_t *out,
                              char *err, size_t errlen);

/* Produces value under key to partition sl_fleet_partition(key) of topic t
 * (copied). Errors: SL_EKAFKA, those of sl_fleet_kafka_partitions. */
int sl_fleet_kafka_produce(sl_fleet_kafka_t *k, int t, const char *key,
                           const void *val, size_t len, char *err,
                           size_t errlen);
/* Waits up to timeout_ms for every produced record to be acknowledged:
 * 0, or SL_EKAFKA (first delivery error, or timed out). */
int sl_fleet_kafka_flush(sl_fleet_kafka_t *k, int timeout_ms, char *err,
                         size_t errlen);

/* A reader of some fleet topics from their beginning (no consumer group:
 * assign() on every partition). */
typedef struct sl_fleet_reader sl_fleet_reader_t;
typedef void (*sl_fleet_record_cb)(void *opaque, int topic, int32_t partition,
                                   int64_t offset, const char *key, size_t klen,
                                   const void *val, size_t vlen);

/* topics: bit mask of 1 << SL_FT_*. Errors: SL_EKAFKA, SL_ENOTFOUND. */
int sl_fleet_reader_open(sl_fleet_kafka_t *k, unsigned topics,
                         sl_fleet_reader_t **out, char *err, size_t errlen);
/* Delivers records for up to timeout_ms (stops early once every partition
 * reached the end it had at open, when until_end): returns the number of
 * records delivered, or SL_EKAFKA. *at_end (optional) tells whether every
 * partition has reached the end it had when the reader opened. */
int sl_fleet_reader_poll(sl_fleet_reader_t *r, int timeout_ms, bool until_end,
                         sl_fleet_record_cb cb, void *opaque, bool *at_end,
                         char *err, size_t errlen);
void sl_fleet_reader_close(sl_fleet_reader_t *r);

#endif /* SL_FLEET_CENTRE_H */
