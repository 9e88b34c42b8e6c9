/*
 * fleet/fleet.h: the fleet control plane's shared code (library sl_fleet):
 * the partition formula, document signatures, and the node's apply state
 * machine. Pure: no Kafka, no files, no logging; the daemon
 * (daemon/fleet_agent.c), the centre (`sluice fleet`) and the node simulator
 * of `loadtest/run fleet` drive it. docs/FLEET.md describes the model.
 *
 * Records are the messages of schemas/sluice/v1/fleet.proto.
 */
#ifndef SL_FLEET_H
#define SL_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* ---- partitions --------------------------------------------------------- */

/* Kafka's Java client's murmur2 (Utils.murmur2) of len bytes. */
uint32_t sl_fleet_murmur2(const void *data, size_t len);

/* Partition of a record keyed by key among partitions (> 0): what Kafka's
 * Java producer's default partitioner picks, (murmur2 & 0x7fffffff) %
 * partitions. librdkafka's default partitioner is not this one, so every
 * fleet record is produced to an explicit partition computed here. */
int32_t sl_fleet_partition(const char *key, size_t len, int32_t partitions);

/* ---- signatures (Ed25519, OpenSSL) ------------------------------------- */

typedef struct sl_fleet_key sl_fleet_key_t;

/* Loads a PEM Ed25519 private key (sign) or public key (verify; a private
 * key file is accepted too and its public half used). *out owned: free
 * with sl_fleet_key_free(). Errors: -errno, SL_EKEY (not an Ed25519 key),
 * with a message in err. */
int sl_fleet_key_load(const char *path, bool want_private, sl_fleet_key_t **out,
                      char *err, size_t errlen);

/* Same from PEM text in memory. */
int sl_fleet_key_parse(const char *pem, size_t len, bool want_private,
                       sl_fleet_key_t **out, char *err, size_t errlen);

/* Key id: first 16 hex digits of SHA-256 of the raw 32-byte public key. */
const char *sl_fleet_key_id(const sl_fleet_key_t *k);

void sl_fleet_key_free(sl_fleet_key_t *k);

/* Signed envelope kinds (Signed.Kind). */
enum { SL_FLEET_DESIRED = 1, SL_FLEET_DECOMMISSION = 2 };

/*
 * Wraps payload (len bytes, a serialized DesiredConfig or Decommission) in
 * a serialized Signed envelope signed with k (a private key): *out owned
 * (free()), *outlen. Errors: SL_EKEY, -ENOMEM.
 */
int sl_fleet_sign(const sl_fleet_key_t *k, int kind, const void *payload,
                  size_t len, uint8_t **out, size_t *outlen);

/*
 * Checks a serialized Signed envelope against the public key k: parses it,
 * verifies the signature over the payload's exact bytes. On success *kind
 * and *payload, *plen (pointing into a copy owned by *hold: free()) are set.
 * Errors (message in err): SL_EPROTO (not a Signed envelope), SL_ESIGNATURE
 * (signed by another key id, or the signature does not verify).
 */
int sl_fleet_verify(const sl_fleet_key_t *k, const void *msg, size_t len,
                    int *kind, const uint8_t **payload, size_t *plen,
                    void **hold, char *err, size_t errlen);

/* Hex SHA-256 of len bytes into hex (65 bytes with the NUL). */
void sl_fleet_sha256_hex(const void *data, size_t len, char hex[65]);

/* ---- the node's apply state machine (fleet/node.c) ---------------------- */

/* FleetPhase values (fleet.proto). */
typedef enum {
  SL_FLEET_PHASE_UNKNOWN = 0,
  SL_FLEET_RECEIVED = 1,
  SL_FLEET_VALIDATING = 2,
  SL_FLEET_REJECTED = 3,
  SL_FLEET_WAITING_WINDOW = 4,
  SL_FLEET_APPLYING = 5,
  SL_FLEET_VERIFYING = 6,
  SL_FLEET_COMMITTED = 7,
  SL_FLEET_ROLLED_BACK = 8,
  SL_FLEET_CONFLICT = 9,
  SL_FLEET_DECOMMISSIONED = 10,
  SL_FLEET_IDLE = 11,
} sl_fleet_phase_t;

/* Static name of a phase ("COMMITTED"). */
const char *sl_fleet_phase_name(sl_fleet_phase_t p);

/* Results of sl_fleet_ops_t.apply. */
enum {
  SL_FLEET_APPLIED = 0,      /* running the new remote layer now */
  SL_FLEET_NEEDS_RESTART = 1 /* a restart-only key changed: restart() */
};

/* Health as the gate sees it (sl_fleet_ops_t.health). */
typedef struct sl_fleet_health {
  bool ready;          /* the daemon reports ready */
  bool uplink;         /* Kafka uplink connected (or Kafka off) */
  uint64_t events_in;  /* cumulative events accepted */
  uint64_t events_bad; /* cumulative events refused */
  uint64_t backlog;    /* stored, not yet delivered */
  int uplink_state;    /* UplinkState (status.proto) */
} sl_fleet_health_t;

/*
 * What the node machine needs from its host (the daemon, or a simulated
 * node). Every call is made from the thread that drives the machine.
 * config_json is the remote layer as JSON text ("{}" for none).
 */
typedef struct sl_fleet_ops {
  /* Loads the effective config with this remote layer and checks it as
   * `sluice check-config` does (and compiles the pipelines): 0, or -1 with
   * the validator's message in err. */
  int (*validate)(void *opaque, const char *config_json, char *err,
                  size_t errlen);
  /* Runs this remote layer: SL_FLEET_APPLIED when applied in process,
   * SL_FLEET_NEEDS_RESTART when it needs a restart (the machine then
   * persists and calls restart()), or -1 with a reason in err. */
  int (*apply)(void *opaque, const char *config_json, char *err, size_t errlen);
  /* Asks for a clean restart (the host drains and re-executes itself);
   * the machine's state was persisted before. */
  void (*restart)(void *opaque, const char *why);
  /* Durably stores the machine's state (len bytes): 0 once committed
   * (fsynced), else an error (the machine stays where it was). */
  int (*persist)(void *opaque, const void *state, size_t len);
  void (*health)(void *opaque, sl_fleet_health_t *h);
  /* A serialized FleetStatus (key = node id) for the status topic, and a
   * serialized FleetEvent for the events topic. Best effort: the machine
   * re-publishes its latest status on every heartbeat. */
  void (*publish_status)(void *opaque, const void *rec, size_t len);
  void (*publish_event)(void *opaque, const void *rec, size_t len);
  int64_t (*now_ns)(void *opaque); /* wall clock (windows, status times) */
  int64_t (*mono_ns)(void *opaque);
} sl_fleet_ops_t;

typedef struct sl_fleet_label {
  const char *key, *value;
} sl_fleet_label_t;

typedef struct sl_fleet_node_conf {
  const char *node_id;
  const sl_fleet_key_t *verify_key; /* borrowed; documents must verify */
  const sl_fleet_label_t *labels;   /* borrowed, n_labels */
  size_t n_labels;
  const char *agent_version;
  unsigned max_trial_starts; /* starts without commit before crash loop */
  int64_t heartbeat_ns;      /* status re-published this often */
} sl_fleet_node_conf_t;

typedef struct sl_fleet_node sl_fleet_node_t;

/*
 * Opens the machine over its persisted state (state/len from the last
 * persist(), or NULL/0 on a fresh node); conf and ops are copied, opaque
 * borrowed. The host then calls sl_fleet_node_boot() once. Errors:
 * SL_ECORRUPT (state unreadable: the message says so; the host decides),
 * -ENOMEM.
 */
int sl_fleet_node_open(const sl_fleet_node_conf_t *conf,
                       const sl_fleet_ops_t *ops, void *opaque,
                       const void *state, size_t len, sl_fleet_node_t **out);

/*
 * At start, before the host loads its effective config: returns the remote
 * layer to start with (borrowed, valid until the next call on n; "{}" when
 * none). A trial generation pending from before a restart is counted as one
 * more start (persisted); past max_trial_starts the node starts on the last
 * known good and reports ROLLED_BACK (crash_loop). Errors: those of
 * persist().
 */
int sl_fleet_node_boot(sl_fleet_node_t *n, const char **config_json);

/*
 * The newest record for this node's key on the desired topic (a serialized
 * Signed envelope), offered once the host has caught up with the
 * partition (so a node back from an outage skips generations it missed).
 * offset: the record's Kafka offset (kept to resume the read). Returns 0;
 * what happened is in the status (REJECTED, CONFLICT, ...).
 */
int sl_fleet_node_offer(sl_fleet_node_t *n, const void *rec, size_t len,
                        int64_t offset);

/* Every second or so: apply windows, the health gate, timeouts, the
 * heartbeat status. */
void sl_fleet_node_tick(sl_fleet_node_t *n);

/* The offset after the last record offered (persisted), or -1. */
int64_t sl_fleet_node_resume_offset(const sl_fleet_node_t *n);

/* Phase, generations and reason as the node reports them. */
typedef struct sl_fleet_node_info {
  sl_fleet_phase_t phase;
  uint64_t observed, applied, lkg, failed;
  const char *reason;  /* borrowed */
  const char *message; /* borrowed */
  const char *running_sha256;
  bool decommissioned;
  /* Transitions since open (not persisted): each rejection, rollback,
   * conflict and commit counts, also when the phase stays the same. */
  uint64_t n_rejected, n_rolled_back, n_conflicts, n_committed;
} sl_fleet_node_info_t;

void sl_fleet_node_info(const sl_fleet_node_t *n, sl_fleet_node_info_t *info);

/* Serialized FleetStatus of now (*out owned, free()). */
int sl_fleet_node_status(sl_fleet_node_t *n, uint8_t **out, size_t *len);

void sl_fleet_node_free(sl_fleet_node_t *n);

#endif /* SL_FLEET_H */
