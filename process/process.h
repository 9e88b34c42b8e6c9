/*
 * process: sluice's edge processing. Pipelines match events (stream, source
 * glob with captures, event kind, attributes) and run ordered steps over
 * them before they are persisted: filter (an expression compiled once),
 * deadband with a heartbeat, sample, rate_limit, aggregate (tumbling and
 * hopping event-time windows) and route. docs/PROCESSING.md is the user
 * guide; this header is the contract.
 *
 * Data flow of one batch (what an ingest path does):
 *
 *   sl_process_run(pr, stream, events, n, &res)      verdicts, tags, results
 *   build the stored batch from the kept events; add res.emit[] (aggregate
 *   results) as batches of their own streams to the same store group
 *   sl_process_state_put_group(pr, g)               dirty state, same group
 *   submit the group; if the submit itself fails: sl_process_rollback(pr),
 *   else sl_process_commit(pr)
 *
 * Because the state changed by a batch is written in the same store
 * transaction as the batch's events and results, a crash (kill -9, power
 * loss) either keeps all three or none of them: after sl_process_state_load()
 * a restarted node continues exactly where the last committed batch left
 * off and the client's resent batch is processed once.
 *
 * Determinism. Every decision uses event time (the device clock), never the
 * node clock, so the same input gives the same output whatever the batch
 * boundaries or restarts in between (window results are emitted as soon as
 * the watermark allows, which may differ in order, never in content). The
 * node clock enters only through two explicit calls, which are inputs like
 * the events: sl_process_watermark_cap() and sl_process_watermark_rebase().
 *
 * Threads. An sl_process_t is used by one thread at a time (the caller
 * serialises, e.g. the daemon's loop thread). Compiled expressions are
 * immutable and may be evaluated from any thread.
 *
 * Memory. Steady state allocates nothing per event: per-key state lives in
 * hash tables grown (rarely) between batches, result buffers are reused.
 *
 * Errors. Fallible functions return 0 or a negative code (-ENOMEM,
 * SL_ECONFIG, SL_ECORRUPT, ...). The module never logs.
 */
#ifndef SL_PROCESS_H
#define SL_PROCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"

typedef struct sl_process sl_process_t;
typedef struct sl_process_expr sl_process_expr_t;

/* Limits. */
#define SL_PROCESS_NAME_MAX 64    /* pipeline names, bytes */
#define SL_PROCESS_EXPR_MAX 4096  /* expression text, bytes */
#define SL_PROCESS_STEPS_MAX 16   /* steps per pipeline */
#define SL_PROCESS_MATCH_ATTRS 8  /* attribute conditions per match */
#define SL_PROCESS_CAPTURES 8     /* {name} captures per source glob */
#define SL_PROCESS_WINDOWS_MAX 16 /* open windows per key (hopping) */

/* ---- expressions ------------------------------------------------------ */

/*
 * Compiles text (NUL-terminated, borrowed) into *out (returns owned; free
 * with sl_process_expr_free()). The language is in docs/PROCESSING.md.
 * Errors: SL_ECONFIG with "column N: reason" in errstr (1-based byte
 * column of text), SL_ETOOBIG (text over SL_PROCESS_EXPR_MAX or nesting too
 * deep), -ENOMEM.
 */
int sl_process_expr_compile(const char *text, sl_process_expr_t **out,
                            char *errstr, size_t errlen);

/* Frees ex. NULL is a no-op. */
void sl_process_expr_free(sl_process_expr_t *ex);

/*
 * Evaluates ex on ev (borrowed) as a condition: returns true only when the
 * expression yields boolean true (a missing field makes a comparison false).
 * stream (borrowed, may be NULL) is what the `stream` field reads. Never
 * allocates; never fails.
 */
bool sl_process_expr_match(const sl_process_expr_t *ex,
                           const Sluice__V1__Event *ev, const char *stream);

/* ---- configuration ---------------------------------------------------- */

typedef enum sl_process_step_kind {
  SL_PROCESS_FILTER = 0,
  SL_PROCESS_DEADBAND,
  SL_PROCESS_SAMPLE,
  SL_PROCESS_RATE_LIMIT,
  SL_PROCESS_AGGREGATE,
  SL_PROCESS_ROUTE,
  SL_PROCESS_MODEL_AGG, /* per model version aggregates (process/model_agg.c) */
  SL_PROCESS_STEP_KINDS
} sl_process_step_kind_t;

/* filter actions: what happens to events the expression matches. */
typedef enum sl_process_action {
  SL_PROCESS_KEEP = 0, /* keep matching events, drop the others */
  SL_PROCESS_DROP,     /* drop matching events, keep the others */
  SL_PROCESS_TAG       /* keep everything, add tag_key=tag_value to matches */
} sl_process_action_t;

/* Event kinds a match can ask for (bits). */
#define SL_PROCESS_KIND_READING 0x1u
#define SL_PROCESS_KIND_INFERENCE 0x2u
#define SL_PROCESS_KIND_RAW 0x4u
#define SL_PROCESS_KIND_STATUS 0x8u
#define SL_PROCESS_KIND_GAP 0x10u
#define SL_PROCESS_KIND_ANY 0x1fu

/* Aggregate functions (bits). */
#define SL_PROCESS_AGG_COUNT 0x1u
#define SL_PROCESS_AGG_SUM 0x2u
#define SL_PROCESS_AGG_MIN 0x4u
#define SL_PROCESS_AGG_MAX 0x8u
#define SL_PROCESS_AGG_MEAN 0x10u
#define SL_PROCESS_AGG_STDDEV 0x20u
#define SL_PROCESS_AGG_FIRST 0x40u
#define SL_PROCESS_AGG_LAST 0x80u
#define SL_PROCESS_AGG_LABELS 0x100u /* inference: count per label */
#define SL_PROCESS_AGG_SCORES 0x200u /* inference: mean score per version */

/* What an aggregate does with an event later than its window allows. In
 * both modes the event is counted (stats.late) and its raw event is kept
 * (stored, whatever keep_raw says) with the attribute sluice.late = the
 * pipeline's name: an acknowledged event is never lost to a watermark. */
typedef enum sl_process_late {
  SL_PROCESS_LATE_DROP = 0,   /* leave it out of the aggregate */
  SL_PROCESS_LATE_CORRECT = 1 /* also emit a correction result */
} sl_process_late_t;

typedef enum sl_process_route_kind {
  SL_PROCESS_ROUTE_KAFKA = 0, /* to a Kafka topic (the default uplink) */
  SL_PROCESS_ROUTE_MQTT,      /* to an MQTT topic for local apps */
  SL_PROCESS_ROUTE_LOCAL      /* stored locally, never sent upstream */
} sl_process_route_kind_t;

typedef enum sl_process_format {
  SL_PROCESS_FORMAT_PROTOBUF = 0, /* sluice.v1.Event */
  SL_PROCESS_FORMAT_JSON = 1
} sl_process_format_t;

/* One step. Only the fields of its kind are read; strings are borrowed
 * for the duration of sl_process_pipeline_add() (copied). */
typedef struct sl_process_step_conf {
  sl_process_step_kind_t kind;
  /* filter */
  const char *expr;           /* condition, see docs/PROCESSING.md */
  sl_process_action_t action; /* keep, drop or tag */
  const char *tag_key;        /* with SL_PROCESS_TAG */
  const char *tag_value;
  /* deadband */
  double deadband;      /* absolute change, or percent of last sent value */
  bool percent;         /* deadband is a percentage */
  int64_t heartbeat_ns; /* send unchanged values this often; 0 = never */
  /* sample */
  uint32_t every; /* keep 1 in every per source */
  /* rate_limit */
  uint32_t limit;      /* events per source per interval */
  int64_t interval_ns; /* aligned event-time intervals */
  /* aggregate */
  unsigned funcs;         /* SL_PROCESS_AGG_* bits */
  int64_t window_ns;      /* window length */
  int64_t hop_ns;         /* hop; 0 or window_ns = tumbling */
  int64_t lateness_ns;    /* allowed lateness behind the watermark */
  sl_process_late_t late; /* what to do with later events */
  const char *group_by;   /* "source", "none", "attr.NAME", a capture */
  const char *into;       /* stream the results are stored in */
  bool keep_raw;          /* also keep the aggregated events */
  uint32_t max_keys;      /* distinct keys tracked; 0 = 100000 */
  /* route */
  sl_process_route_kind_t route;
  const char *stream;         /* store matched events in this stream */
  const char *topic;          /* Kafka or MQTT topic, may use {captures} */
  const char *key;            /* Kafka key: "source", "none", a capture */
  sl_process_format_t format; /* value format */
  /* model_aggregate (docs/EDGE-AI.md): window_ns, lateness_ns, into,
   * keep_raw and max_keys as above (max_keys 0 = 256; the whole table is
   * allocated when the step is added). The PSI reference: reference
   * (SL_PROCESS_MA_BINS proportions of the pooled score histogram,
   * borrowed, copied) or, when n_reference is 0, the first
   * reference_windows complete windows of each key (0 = no PSI). */
  const double *reference;
  size_t n_reference;
  uint32_t reference_windows;
} sl_process_step_conf_t;

/* model_aggregate: bins of every score histogram (width 1/20 over [0, 1]),
 * label ids tracked per window (more go to "other"), and the latency
 * sketch (relative accuracy 2%: gamma = 1.02 / 0.98, buckets of 1 us to
 * ~760 s; slower runs land in the last bucket). */
#define SL_PROCESS_MA_BINS 20
#define SL_PROCESS_MA_LABELS 16
#define SL_PROCESS_MA_ACCURACY 0.02
#define SL_PROCESS_MA_LAT_BUCKETS 512
/* content_type of the Raw events a model_aggregate emits. */
#define SL_PROCESS_MA_CONTENT_TYPE                                             \
  "application/x-protobuf; proto=sluice.v1.InferenceAggregate"

typedef struct sl_process_pipeline_conf {
  const char *name;   /* unique, 1..SL_PROCESS_NAME_MAX of [a-z0-9._-] */
  const char *stream; /* match this stream only; NULL or "" = any */
  /* Source glob: '*' any run of characters, '?' one character, '{name}'
   * one path segment (no '/') captured as name. NULL or "" = any. */
  const char *source;
  unsigned kinds; /* SL_PROCESS_KIND_* bits; 0 = any */
  /* Attribute conditions "key=glob" (all must hold), n_attrs of them. */
  const char *const *attrs;
  size_t n_attrs;
  const sl_process_step_conf_t *steps;
  size_t n_steps;
} sl_process_pipeline_conf_t;

/* Makes an empty pipeline set. *out: returns owned; free with
 * sl_process_free(). Errors: -ENOMEM. */
int sl_process_new(sl_process_t **out);

/* Frees pr and everything it owns. NULL is a no-op. */
void sl_process_free(sl_process_t *pr);

/*
 * Compiles pc (borrowed) and appends it to pr's pipelines; events meet
 * pipelines in the order added. Must be called before the first
 * sl_process_run() and sl_process_state_load(). Errors: SL_ECONFIG with a
 * reason naming the step ("steps[2]: ...", expression errors with their
 * column), SL_EEXIST (name used), SL_ETOOBIG (too many steps), -ENOMEM.
 */
int sl_process_pipeline_add(sl_process_t *pr,
                            const sl_process_pipeline_conf_t *pc, char *errstr,
                            size_t errlen);

/* Number of pipelines added. */
size_t sl_process_pipeline_count(const sl_process_t *pr);

/* ---- running ---------------------------------------------------------- */

/* Why a pipeline dropped an event (the "reason" label in /metrics). */
typedef enum sl_process_reason {
  SL_PROCESS_R_FILTER = 0,
  SL_PROCESS_R_DEADBAND,
  SL_PROCESS_R_SAMPLE,
  SL_PROCESS_R_RATE_LIMIT,
  SL_PROCESS_R_AGGREGATED, /* consumed by an aggregate (keep_raw false) */
  SL_PROCESS_R_LATE,       /* never used since late events are kept raw;
                              kept so the metric's labels stay stable */
  SL_PROCESS_R_OVERFLOW,   /* max_keys reached */
  SL_PROCESS_R_COUNT
} sl_process_reason_t;

/* Returns the static name of reason ("filter", "deadband", ...). */
const char *sl_process_reason_name(sl_process_reason_t reason);

/* An attribute a filter with action tag adds to an event. */
typedef struct sl_process_tag {
  uint32_t event;    /* index into the input batch */
  const char *key;   /* borrowed from pr, valid until sl_process_free() */
  const char *value; /* idem */
} sl_process_tag_t;

/* An event a pipeline produced (aggregate result or correction). */
typedef struct sl_process_emit {
  const char *stream;          /* destination stream (the step's into) */
  const Sluice__V1__Event *ev; /* borrowed, see sl_process_result_t */
} sl_process_emit_t;

/*
 * What sl_process_run() decided for one batch. Every pointer is borrowed
 * from pr and valid until the next sl_process_run(), sl_process_commit(),
 * sl_process_rollback() or sl_process_free().
 */
typedef struct sl_process_result {
  size_t n;                     /* events in the input */
  size_t kept;                  /* events to store (keep[i] != 0) */
  const uint8_t *keep;          /* per input event: 1 store it, 0 dropped */
  const char *const *dest;      /* per input event: stream to store it in
                                   (a route's stream) or NULL = the input's */
  const sl_process_tag_t *tags; /* attributes to add before storing */
  size_t ntags;
  const sl_process_emit_t *emit; /* results to store, in order */
  size_t nemit;
} sl_process_result_t;

/*
 * Runs every matching pipeline over events[0..n-1] (borrowed) of stream
 * (borrowed) and fills *res. An event is stored unless some matching
 * pipeline dropped it; every matching pipeline sees the original event. The
 * state changes are pending until sl_process_commit() or
 * sl_process_rollback(); a second run without either commits the first.
 * Errors: -ENOMEM (growing a table or a buffer; nothing was changed),
 * SL_EPOISONED (after an earlier failure in the middle of a run).
 */
int sl_process_run(sl_process_t *pr, const char *stream,
                   const Sluice__V1__Event *const *events, size_t n,
                   sl_process_result_t *res);

/* Makes the last run's state changes final (its group was submitted). */
void sl_process_commit(sl_process_t *pr);

/* Undoes the last run's state changes and counters (its group could not
 * be submitted, e.g. SL_EBACKPRESSURE: the same batch will be retried). */
void sl_process_rollback(sl_process_t *pr);

/* ---- state ------------------------------------------------------------ */

/* Receives one state record: key -> val (val NULL deletes). All borrowed
 * for the call. Returns 0 or a negative code that stops the walk. */
typedef int (*sl_process_put_cb)(void *arg, const void *key, size_t klen,
                                 const void *val, size_t vlen);

/*
 * Hands every state record changed since the last put to cb (the last
 * run's changes included). Records are versioned and checksummed (format
 * in docs/PROCESSING.md). Returns 0 or cb's error (the records stay dirty).
 */
int sl_process_state_put(sl_process_t *pr, sl_process_put_cb cb, void *arg);

/* sl_process_state_put() into g (borrowed) with
 * sl_store_group_state_put(): the state commits with g's appends.
 * Errors: those of sl_store_group_state_put(). */
int sl_process_state_put_group(sl_process_t *pr, sl_store_group_t *g);

/* Fetches one record: copies key's value into buf (cap bytes), length in
 * *vlen. Returns 0, SL_ENOTFOUND, SL_ETOOBIG (*vlen set: retry bigger) or
 * another error. */
typedef int (*sl_process_get_cb)(void *arg, const void *key, size_t klen,
                                 void *buf, size_t cap, size_t *vlen);

/*
 * Loads every pipeline's state through cb, replacing what pr holds. A
 * record written for a different step configuration (window length,
 * functions, ...) is ignored: that step starts empty. A corrupt record
 * (bad magic, checksum, length) is skipped and the load goes on; the
 * return value is then SL_ECORRUPT with the first bad key in errstr.
 * Other errors: cb's, -ENOMEM.
 */
int sl_process_state_load(sl_process_t *pr, sl_process_get_cb cb, void *arg,
                          char *errstr, size_t errlen);

/* sl_process_state_load() from st (borrowed) with sl_store_state_get(). */
int sl_process_state_load_store(sl_process_t *pr, sl_store_t *st, char *errstr,
                                size_t errlen);

/*
 * Recovers aggregates whose watermark an event from the future moved (one
 * event stamped 2040 made every later event "late"; such state may have
 * been persisted before ingest bounded event times). Every aggregate
 * watermark beyond now_ns + max_future_ns is set back to now_ns (not to
 * the limit: windows of the present must stay open), and the windows that
 * start after the limit are emitted as they are by the next run (their
 * pipeline's next batch). The daemon calls it after
 * sl_process_state_load() with the node clock and limits.max_future; this
 * is the one place where the node clock touches processing. The change is
 * persisted with the next run's state. Returns how many steps were reset.
 */
size_t sl_process_watermark_cap(sl_process_t *pr, int64_t now_ns,
                                int64_t max_future_ns);

/*
 * Rebases aggregates after the node's own clock stepped back (an NTP step,
 * a technician, a dead RTC battery at boot). Events the node stamps with
 * its clock (HTTP and MQTT events without a time, Sparkplug metrics without
 * timestamps, local native clients) would otherwise be late until the
 * clock caught up with the watermark. Every aggregate watermark beyond
 * now_ns + max(tolerance_ns, the step's lateness) is set back to now_ns,
 * and the windows that start after now_ns are emitted as they are at the
 * start of the pipeline's next run, before its events (windows that
 * contain now_ns stay open). The daemon calls it with the node clock when
 * it detected a backward step (wall clock against monotonic clock) and at
 * start when the stored node clock is ahead of the present; like the cap,
 * it is an input to processing: the same events and rebases give the same
 * results. The change is persisted with the next run's state. Returns how
 * many steps were rebased.
 */
size_t sl_process_watermark_rebase(sl_process_t *pr, int64_t now_ns,
                                   int64_t tolerance_ns);

/* ---- introspection ---------------------------------------------------- */

typedef struct sl_process_stats {
  const char *name;                     /* borrowed from pr */
  uint64_t events_in;                   /* events matched */
  uint64_t dropped[SL_PROCESS_R_COUNT]; /* by reason */
  uint64_t tagged;                      /* filter tag actions applied */
  uint64_t emitted;                     /* aggregate results emitted */
  uint64_t late;                        /* late events (drop or correct) */
  uint64_t keys;                        /* per-key state entries held */
  uint64_t partial; /* model_aggregate: windows closed early (table full) */
  uint64_t unkeyed; /* model_aggregate: key over 448 bytes, kept raw */
} sl_process_stats_t;

/* Fills st for pipeline idx. Errors: SL_ENOTFOUND (idx out of range). */
int sl_process_stats(const sl_process_t *pr, size_t idx,
                     sl_process_stats_t *st);

/* A route as the sync and fan-out layers read it. */
typedef struct sl_process_route {
  const char *pipeline;         /* borrowed from pr */
  sl_process_route_kind_t kind; /* kafka, mqtt, local */
  const char *stream;           /* stream the routed events go to */
  const char *topic;            /* "" = the stream's configured topic */
  const char *key;              /* Kafka key */
  sl_process_format_t format;   /* value format */
} sl_process_route_t;

/* Writes up to cap routes to out (borrowed, valid until sl_process_free())
 * and returns how many exist. */
size_t sl_process_routes(const sl_process_t *pr, sl_process_route_t *out,
                         size_t cap);

#endif /* SL_PROCESS_H */
