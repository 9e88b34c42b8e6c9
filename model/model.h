/*
 * model/model.h: model distribution and the quality gate (library
 * sl_model; docs/EDGE-AI.md "Model distribution", "The quality gate").
 *
 *   - manifests: built from an artifact by the publisher, signed with the
 *     fleet key (fleet/fleet.h), verified and checked by the node;
 *   - the node's per-model machine: disk reserved up front, chunks verified
 *     and written in place, progress persisted per chunk (resume from the
 *     first missing chunk), atomic activation (whole-file hash, signature,
 *     fsync, rename into <dir>/<name>/<version>/, one persisted transition
 *     for active/previous, a `current` symbolic link swapped with rename),
 *     the app's load acknowledgement and the gate, rollback in one
 *     transition.
 *
 * No Kafka, no MQTT, no logging: the host (daemon/models.c, the tests, the
 * load test's nodes) moves the bytes and persists the state it is handed.
 * Records are the messages of schemas/sluice/v1/model.proto.
 */
#ifndef SL_MODEL_H
#define SL_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fleet/fleet.h"

#define SL_MODEL_MAX_CHUNK (512u * 1024u)
#define SL_MODEL_HIST_BINS 20

/* ---- manifests ---------------------------------------------------------- */

/* Gate limits (ModelGate); 0 = off. */
typedef struct sl_model_gate_limits {
  double max_error_rate, max_empty_rate, max_p95_latency_ms, max_psi;
  uint64_t min_events;
  uint32_t windows;
  uint64_t ack_timeout_ms, timeout_ms;
  double min_agreement, max_error_rate_delta;
} sl_model_gate_limits_t;

/* What the publisher says about an artifact beyond its bytes. */
typedef struct sl_model_build {
  const char *name, *version;
  const char *file_name; /* name inside the version's directory */
  uint32_t chunk_size;   /* 0 = 512 KiB */
  const char *runtime, *format, *role;
  const char *previous_version, *previous_sha256;
  const char *labels_json; /* {"0":"cat",...} or NULL */
  const double *reference; /* SL_MODEL_HIST_BINS proportions or NULL */
  sl_model_gate_limits_t gate;
  int32_t chunk_partition;
  const int64_t *chunk_offsets; /* one per chunk, or NULL */
  int64_t published_ns;
} sl_model_build_t;

/* Hashes an artifact in memory: whole SHA-256 and per-chunk (chunk_size
 * bytes, 0 = 512 KiB). *hashes owned (free()), n entries of 65 bytes. */
int sl_model_hash_chunks(const void *data, size_t len, uint32_t chunk_size,
                         char whole[65], char (**hashes)[65], size_t *n);

/* Serialized ModelManifest for data/len under b: *out owned (free()).
 * Errors: SL_ECONFIG (bad name, version, chunk size; message in err). */
int sl_model_manifest_build(const sl_model_build_t *b, const void *data,
                            size_t len, uint8_t **out, size_t *outlen,
                            char *err, size_t errlen);

/* A manifest verified against the fleet key and checked. */
typedef struct sl_model_manifest sl_model_manifest_t;

/* Verifies a Signed envelope (kind MODEL_MANIFEST) with key and checks the
 * manifest: name and version safe as path components, size and chunk
 * count consistent, chunk size <= 512 KiB, hashes hex. *out owned.
 * Errors: SL_ESIGNATURE, SL_EPROTO (not a manifest or inconsistent; message
 * in err), -ENOMEM. */
int sl_model_manifest_open(const sl_fleet_key_t *key, const void *rec,
                           size_t len, sl_model_manifest_t **out, char *err,
                           size_t errlen);
void sl_model_manifest_free(sl_model_manifest_t *m);

typedef struct sl_model_manifest_info {
  const char *name, *version, *sha256, *role, *file_name;
  uint64_t size;
  uint32_t chunk_size, chunks;
  int32_t chunk_partition;
  const int64_t *chunk_offsets; /* chunks entries, or NULL */
  const double *reference;      /* SL_MODEL_HIST_BINS, or NULL */
  sl_model_gate_limits_t gate;
} sl_model_manifest_info_t;

/* Borrowed views, valid while m lives. */
void sl_model_manifest_info(const sl_model_manifest_t *m,
                            sl_model_manifest_info_t *info);

/* ---- the node's machine ------------------------------------------------- */

typedef enum {
  SL_MODEL_IDLE = 1,
  SL_MODEL_DOWNLOADING = 2,
  SL_MODEL_WAITING_WINDOW = 3,
  SL_MODEL_ACTIVATING = 4,
  SL_MODEL_TRIAL = 5,
  SL_MODEL_COMMITTED = 6,
  SL_MODEL_ROLLED_BACK = 7,
  SL_MODEL_REJECTED = 8,
} sl_model_phase_t;

const char *sl_model_phase_name(sl_model_phase_t p);

typedef struct sl_model_ops {
  /* Durably stores the machine's state (a ModelNodeState) in one
   * transaction: 0 once committed, else an error (nothing changed). */
  int (*persist)(void *opaque, const char *model, const void *state,
                 size_t len);
  /* The active version changed (activation, rollback, boot): tell the
   * apps (retained MQTT message). version/sha256 "" when none. */
  void (*announce)(void *opaque, const char *model, const char *version,
                   const char *sha256, const char *path);
  /* A transition to report (serialized ModelStatus). May be NULL. */
  void (*status)(void *opaque, const char *model, const void *rec, size_t len);
  int64_t (*now_ns)(void *opaque);
  /* Crash-test hook: called at each named step; NULL in production. */
  void (*step)(void *opaque, const char *point);
} sl_model_ops_t;

typedef struct sl_model_conf {
  const char *dir;           /* models.dir */
  const char *name;          /* the model */
  const sl_fleet_key_t *key; /* verify key, borrowed */
  uint64_t max_bytes;        /* models.max_bytes: 0 = the disk decides */
  const char *node_id;       /* for statuses */
} sl_model_conf_t;

typedef struct sl_model sl_model_t;

/*
 * Opens one model's machine over its persisted state (NULL/0: new) and
 * recovers: a version renamed into place whose transition was not
 * persisted is checked again (hash) and its transition made; the
 * `current` link is set to the active version; chunks marked verified are
 * re-read and checked (a torn write is fetched again); the active version is
 * announced. conf and ops copied, opaque borrowed. Errors: SL_ECORRUPT
 * (state unreadable), those of persist(), -ENOMEM.
 */
int sl_model_open(const sl_model_conf_t *conf, const sl_model_ops_t *ops,
                  void *opaque, const void *state, size_t len,
                  sl_model_t **out);
void sl_model_free(sl_model_t *m);

/*
 * Offers a manifest record (a Signed envelope). The active, pending or a
 * failed digest: nothing to do (returns 0). Else verified (REJECTED
 * "signature"/"manifest"), the disk reserved for the whole artifact
 * (posix_fallocate; REJECTED "disk" when it does not fit or is over
 * max_bytes) and the download started from an empty bitmap. Returns 0 or
 * the error that rejected it.
 */
int sl_model_offer(sl_model_t *m, const void *rec, size_t len);

/* First chunk still missing of the pending version: its index, or -1
 * (nothing pending or all there). */
int64_t sl_model_next_chunk(const sl_model_t *m);

/* The pending manifest (NULL when none), borrowed. */
const sl_model_manifest_t *sl_model_pending(const sl_model_t *m);

/*
 * One chunk's bytes: checked against its hash, written at its offset,
 * synced, then marked in the persisted bitmap. Errors: SL_ECORRUPT (hash
 * or size mismatch: nothing written; after 3 in a row for one chunk the
 * version is REJECTED "chunk"), -ERANGE (no such chunk), SL_ENOTFOUND
 * (nothing pending), -errno (write).
 */
int sl_model_put_chunk(sl_model_t *m, uint32_t index, const void *data,
                       size_t len);

/*
 * All chunks there: activates (whole-file hash and signature again, fsync,
 * rename into <dir>/<name>/<version>/, one transition making it active and
 * the old active previous, the `current` link, announce). TRIAL follows
 * until the ack and the gate. Errors: SL_EBACKPRESSURE (chunks missing),
 * SL_ECORRUPT (whole hash: REJECTED "digest", the part file removed).
 */
int sl_model_activate(sl_model_t *m);

/* The app's load acknowledgement of version: ok false = the load failed
 * (rollback "load"). SL_ENOTFOUND when version is not the one on trial. */
int sl_model_ack(sl_model_t *m, const char *version, bool ok,
                 const char *message);

/* One aggregate window of a model version (model_aggregate's
 * InferenceAggregate, reduced to what the gate reads). */
typedef struct sl_model_window {
  uint64_t events;
  uint64_t status[5]; /* by InferenceStatus: 1 OK 2 EMPTY 3 ERROR 4 SKIPPED */
  uint64_t score_hist[SL_MODEL_HIST_BINS];
  double p95_latency_ms; /* of this window's sketch, or merged by caller */
  uint64_t agree, disagree;
} sl_model_window_t;

/*
 * Feeds the gate a closed window of the version on trial (cand) and,
 * for a canary/shadow, the primary's window of the same span (NULL when
 * none). Once `windows` windows with at least min_events runs in all are
 * in, every limit is compared; a breach rolls back (reason "gate", the
 * message says which limit), else the version commits (when acked).
 */
void sl_model_gate_window(sl_model_t *m, const sl_model_window_t *cand,
                          const sl_model_window_t *primary);

/* Every second or so: ack and gate timeouts. */
void sl_model_tick(sl_model_t *m);

/* Rolls back the version on trial or the committed one to previous
 * (operator or fleet): reason copied into the status. SL_ENOTFOUND when no
 * previous version. */
int sl_model_rollback(sl_model_t *m, const char *reason, const char *message);

typedef struct sl_model_info {
  sl_model_phase_t phase;
  const char *reason, *message;
  const char *active_version, *active_sha256;
  const char *previous_version, *previous_sha256;
  const char *pending_version;
  uint32_t chunks_have, chunks_total;
  uint64_t bytes_fetched;
  bool acked;
  uint64_t gate_events; /* runs seen by the gate so far */
  uint32_t gate_windows;
  /* Transitions since open (not persisted), for the metrics. */
  uint64_t n_activated, n_committed, n_rolled_back, n_rejected, n_corrupt;
} sl_model_info_t;

/* Borrowed strings, valid until the next call on m. */
void sl_model_info(const sl_model_t *m, sl_model_info_t *info);

/* Serialized ModelStatus of now (*out owned, free()). */
int sl_model_status(sl_model_t *m, uint8_t **out, size_t *len);

/* <dir>/<name>/<version> of the active version into buf ("" none). */
void sl_model_active_path(const sl_model_t *m, char *buf, size_t cap);

#endif /* SL_MODEL_H */
