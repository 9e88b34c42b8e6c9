/*
 * ingest/ingest.h: the ingest room's one interface to the daemon
 * (docs/ARCHITECTURE.md). The daemon owns one sl_ingest_t (the ingest
 * core: the store, streams, counters, guard, credentials and the
 * completion mailbox the paths share) and starts the paths on it; the
 * paths (native, HTTP, MQTT, pipelines, dedupe) see only this core, never
 * the daemon.
 *
 * Threads: one libuv loop thread owns every socket and timer; the store's
 * writer thread commits; completions come back to the loop through a
 * bounded mailbox and a uv_async_t. Private to the daemon layer.
 */
#ifndef SL_INGEST_H
#define SL_INGEST_H

#include <pthread.h>
#include <stdint.h>

#include <uv.h>

#include "config/config.h"
#include "decode/decode_inference.h"
#include "decode/event_check.h"
#include "ingest/guard.h"
#include "security/creds.h"
#include "store/store.h"
#include "telemetry/metrics.h"

typedef struct sl_ingest sl_ingest_t;
typedef struct sl_native sl_native_t;
typedef struct sl_http sl_http_t;
typedef struct sl_mqtt sl_mqtt_t; /* ingest/mqtt/mqtt.h */

/*
 * A store completion carried from the writer thread to the loop. fn runs on
 * the loop thread with the status and the first offset of the group's first
 * batch.
 */
typedef struct sl_done {
  struct sl_done *next;
  sl_ingest_t *ic;
  void (*fn)(struct sl_done *d, int status, uint64_t first_offset);
  int status;
  uint64_t first_offset;
} sl_done_t;

/* Ingest paths, the "path" label of the ingest metrics. */
typedef enum sl_path {
  SL_PATH_NATIVE = 0,
  SL_PATH_HTTP = 1,
  SL_PATH_MQTT = 2,
  SL_PATH_N
} sl_path_t;

/* The "path" label of p. */
const char *sl_path_name(sl_path_t p);

/* A configured stream: its store id and its ingest counters per path. */
typedef struct sl_dstream {
  char *name;
  uint32_t id;
  sl_metric_t *events[SL_PATH_N];  /* events acknowledged */
  sl_metric_t *bytes[SL_PATH_N];   /* serialized event bytes acknowledged */
  sl_metric_t *batches[SL_PATH_N]; /* batches acknowledged */
} sl_dstream_t;

/* The ingest core. The daemon fills the borrowed fields before a path
 * starts; the paths read them (streams are fixed after start: safe to read
 * anywhere; cfg is the loop thread's). */
struct sl_ingest {
  sl_config_t *cfg;       /* borrowed: the config the daemon runs now (loop) */
  char node_id[72];       /* copy of node.id for other threads */
  uv_loop_t *loop;        /* borrowed */
  sl_store_t *st;         /* borrowed */
  sl_metrics_t *mx;       /* borrowed */
  sl_creds_t *creds;      /* borrowed: listeners' TLS and credentials */
  sl_guard_t guard;       /* node-wide ingest limits (ingest/guard.h) */
  sl_native_t *native;    /* native listeners, NULL until started */
  sl_http_t *http;        /* HTTP ingest, NULL when off */
  sl_mqtt_t *mqtt;        /* MQTT ingest and fan-out, NULL when off */
  struct sl_pipes *pipes; /* edge pipelines, NULL when none configured */

  /* Configured streams, fixed after start (safe to read anywhere). */
  sl_dstream_t *streams;
  size_t nstreams;

  /* Completions: writer thread -> loop. */
  uv_async_t done_async;
  pthread_mutex_t done_lock;
  sl_done_t *done_head; /* completions waiting for the loop, FIFO */
  sl_done_t **done_tail;
  uint64_t pending; /* groups submitted and not yet completed (loop) */
  /* Events acknowledged and refusals, all paths (atomic: any thread);
   * the fleet's health gate reads their rate. */
  uint64_t events_ok, refusals;
  int inited, opened;
  /* Runs on the loop after every completion round: the daemon resumes
   * the paths paused for flow control and kicks its uplink. May be NULL. */
  void (*after_round)(void *arg);
  void *after_round_arg;

  /* Metrics. */
  sl_metric_t *pauses[SL_PATH_N]; /* times a client was paused */
  sl_metric_t *connections;       /* open native connections */
  sl_metric_t *commit_latency;    /* submit -> durable, seconds */
  /* Events beyond limits.max_future, per path: [0] clamped, [1] refused. */
  sl_metric_t *future[SL_PATH_N][2];
};

/* Initialises the mailbox's lock and registers the core's metrics in mx
 * (borrowed, must outlive ic). ic: zeroed by the caller. Returns 0 or a
 * negative errno. */
int sl_ingest_init(sl_ingest_t *ic, sl_metrics_t *mx);

/* Opens the mailbox's wake-up on loop (borrowed), before any path starts.
 * Returns 0 or a negative libuv error. */
int sl_ingest_open(sl_ingest_t *ic, uv_loop_t *loop);

/* Registers the per-stream, per-path counters once streams are set. */
void sl_ingest_stream_metrics(sl_ingest_t *ic);

/* Closes the mailbox's loop handle (the stop's finish step). No-op when
 * not opened. */
void sl_ingest_close(sl_ingest_t *ic);

/* Frees what the core owns (streams, mailbox lock). After the paths were
 * freed and the loop ended. */
void sl_ingest_free(sl_ingest_t *ic);

/* Submits g to the store; when it is durable, d->fn runs on the loop
 * thread. Returns 0, or the error of sl_store_group_submit() (d never runs
 * then, g is still owned by the caller). */
int sl_ingest_submit(sl_ingest_t *ic, sl_store_group_t *g, sl_done_t *d);

/* Finds a configured stream by name: its index in ic->streams. An empty
 * or NULL name means the default stream (the first configured).
 * Returns 0 or SL_ENOTFOUND. */
int sl_ingest_stream(sl_ingest_t *ic, const char *name, size_t *idx);

/* The decoder's view of an oip profile (o borrowed; *m points into it). */
void sl_ingest_oip_map(const sl_config_oip_t *o, sl_oip_map_t *m);

/* Counts events durably acknowledged on path for stream idx. */
void sl_ingest_accepted(sl_ingest_t *ic, sl_path_t path, size_t idx,
                        uint32_t events, size_t bytes);

/* Fills *r with the ingest rules of path (decode/event_check.h) from cfg
 * (borrowed: the config the path runs with) and the node clock now. */
void sl_ingest_rules(sl_ingest_t *ic, const sl_config_t *cfg, sl_path_t path,
                     sl_ingest_rules_t *r);

/* Counts one refusal on path, labelled with the error's name. Thread-safe;
 * registers the series the first time a reason is seen. */
void sl_ingest_rejected(sl_ingest_t *ic, sl_path_t path, int err);

/* Native listeners (ingest/native/native.c). */
int sl_native_start(sl_ingest_t *ic, sl_native_t **out, char *errstr,
                    size_t errlen);
/* Stops accepting and reading; connections finish their in-flight batches
 * and are closed. cb runs when every handle is closed. */
void sl_native_stop(sl_native_t *nt);
/* Called on every completion round: resumes paused connections. */
void sl_native_resume(sl_native_t *nt);
/* Closes connections idle for longer than limits.idle_timeout. */
void sl_native_sweep(sl_native_t *nt, uint64_t now_ns);
/* Frees the listener state once its handles are closed. */
void sl_native_free(sl_native_t *nt);
/* Listener and connection handles not yet closed. */
int sl_native_open_handles(const sl_native_t *nt);
/* The bound TCP port, or -1 (tests use port 0). */
int sl_native_port(const sl_native_t *nt);

/* HTTP ingest (ingest/http/http_ingest.c), on libmicrohttpd's thread. */
int sl_http_start(sl_ingest_t *ic, sl_http_t **out, char *errstr,
                  size_t errlen);
uint16_t sl_http_port(const sl_http_t *h);
/* New requests get 503 from now on. */
void sl_http_quiesce(sl_http_t *h);
/* Requests submitted to the store whose response is not finished. */
uint64_t sl_http_inflight(const sl_http_t *h);
/* Stops the server; only once sl_http_inflight() is 0. NULL: no-op. */
void sl_http_stop(sl_http_t *h);

#endif /* SL_INGEST_H */
