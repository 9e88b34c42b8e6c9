/*
 * The daemon's private wiring: one libuv loop thread owns every socket and
 * timer; the store's writer thread commits; completions come back to the
 * loop through a bounded mailbox and a uv_async_t. Private to broker/.
 */
#ifndef SL_DAEMON_H
#define SL_DAEMON_H

#include <pthread.h>
#include <stdint.h>

#include <uv.h>

#include "broker/admin.h"
#include "config/config.h"
#include "broker/guard.h"
#include "broker/ingest_check.h"
#include "broker/metrics.h"
#include "store/store.h"

typedef struct sl_daemon sl_daemon_t;
typedef struct sl_native sl_native_t;
typedef struct sl_http sl_http_t;
typedef struct sl_mqtt sl_mqtt_t; /* broker/mqtt.h */
typedef struct sl_uplink sl_uplink_t;

/*
 * A store completion carried from the writer thread to the loop. fn runs on
 * the loop thread with the status and the first offset of the group's first
 * batch.
 */
typedef struct sl_done {
  struct sl_done *next;
  sl_daemon_t *dm;
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

/* A configured stream: its store id and its ingest counters per path. */
typedef struct sl_dstream {
  char *name;
  uint32_t id;
  sl_metric_t *events[SL_PATH_N];  /* events acknowledged */
  sl_metric_t *bytes[SL_PATH_N];   /* serialized event bytes acknowledged */
  sl_metric_t *batches[SL_PATH_N]; /* batches acknowledged */
} sl_dstream_t;

struct sl_daemon {
  sl_config_t *cfg; /* current config, owned; loop thread only */
  char node_id[72]; /* copy of node.id for other threads */
  const char *config_path;
  uv_loop_t loop;
  sl_store_t *st;
  sl_metrics_t *mx;
  sl_admin_t *adm;
  sl_native_t *native;
  struct sl_pipes *pipes; /* edge pipelines, NULL when none configured */
  sl_http_t *http;
  sl_mqtt_t *mqtt;     /* MQTT ingest and fan-out, NULL when off */
  sl_uplink_t *uplink; /* Kafka uplink (broker/uplink.c), NULL when off */
  sl_guard_t guard;    /* node-wide ingest limits (broker/guard.h) */
  struct sl_sec *sec;  /* TLS and credentials (broker/security.h) */
  struct sl_storewatch *swatch; /* store clock and evictions (store_watch.c) */

  uv_async_t done_async; /* writer -> loop: completions are waiting */
  pthread_mutex_t done_lock;
  sl_done_t *done_head; /* completions waiting for the loop, FIFO */
  sl_done_t **done_tail;
  uint64_t pending; /* groups submitted and not yet completed (loop) */

  /* Configured streams, fixed after start (safe to read anywhere). */
  sl_dstream_t *streams;
  size_t nstreams;

  uv_signal_t sig_term, sig_int, sig_hup;
  /* SIGHUP reload: parsed on libuv's pool, applied on the loop. */
  uv_work_t reload_req;
  int reload_busy, reload_again; /* loop thread only */
  sl_config_t *reload_cfg;       /* worker's result, NULL on error */
  char reload_err[2048];         /* worker's errors */
  uv_timer_t tick;               /* 1 s housekeeping: idle sweep, gauges */
  uv_check_t finish;             /* ends the loop once a stop has drained */
  uint64_t started_ns;
  int stopping;
  int exit_code;

  /* Metrics. */
  sl_metric_t *pauses[SL_PATH_N]; /* times a client was paused */
  sl_metric_t *connections;       /* open native connections */
  sl_metric_t *commit_latency;    /* submit -> durable, seconds */
  sl_metric_t *store_used;        /* bytes */
  sl_metric_t *store_budget;      /* bytes */
  sl_metric_t *store_queue;       /* writer queue depth */
  sl_metric_t *backpressure_on;   /* 1 while the store refuses appends */
  sl_metric_t *reloads;           /* SIGHUP reloads applied */
  sl_metric_t *reload_errors;     /* SIGHUP reloads refused */
  /* Events beyond limits.max_future, per path: [0] clamped, [1] refused. */
  sl_metric_t *future[SL_PATH_N][2];
};

/* Submits g to the store; when it is durable, d->fn runs on the loop
 * thread. Returns 0, or the error of sl_store_group_submit() (d never runs
 * then, g is still owned by the caller). */
int sl_daemon__submit(sl_daemon_t *dm, sl_store_group_t *g, sl_done_t *d);

/* Finds a configured stream by name: its index in dm->streams. An empty
 * or NULL name means the default stream (the first configured).
 * Returns 0 or SL_ENOTFOUND. */
int sl_daemon__stream(sl_daemon_t *dm, const char *name, size_t *idx);

/* Starts a reload (SIGHUP, POST /v1/reload; loop thread): the file is read
 * and validated on a worker thread, then applied on the loop; a refusal is
 * logged and the running config stays. A start while one runs makes one
 * more run after it. Each round calls sl_sec_reload_begin() as its parse
 * starts and sl_sec_reload_finished() with 0 or -1 when it is decided. */
void sl_daemon__reload_start(sl_daemon_t *dm);

/* Counts events durably acknowledged on path for stream idx. */
void sl_daemon__accepted(sl_daemon_t *dm, sl_path_t path, size_t idx,
                         uint32_t events, size_t bytes);

/* Fills *r with the ingest rules of path (broker/ingest_check.h) from cfg
 * (borrowed: the config the path runs with) and the node clock now. */
void sl_daemon__ingest_rules(sl_daemon_t *dm, const sl_config_t *cfg,
                             sl_path_t path, sl_ingest_rules_t *r);

/* Counts one refusal on path, labelled with the error's name. Thread-safe;
 * registers the series the first time a reason is seen. */
void sl_daemon__rejected(sl_daemon_t *dm, sl_path_t path, int err);

/* Native listeners (broker/ingest_native.c). */
int sl_native_start(sl_daemon_t *dm, sl_native_t **out, char *errstr,
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

/* HTTP ingest (broker/ingest_http.c), on libmicrohttpd's thread. */
int sl_http_start(sl_daemon_t *dm, sl_http_t **out, char *errstr,
                  size_t errlen);
uint16_t sl_http_port(const sl_http_t *h);
/* New requests get 503 from now on. */
void sl_http_quiesce(sl_http_t *h);
/* Requests submitted to the store whose response is not finished. */
uint64_t sl_http_inflight(const sl_http_t *h);
/* Stops the server; only once sl_http_inflight() is 0. NULL: no-op. */
void sl_http_stop(sl_http_t *h);

/* Store watch (broker/store_watch.c): logs, metrics and status for what the
 * store reports but never logs (clock steps, evictions). start: after the
 * streams are open; tick: loop thread, every second; status: adds
 * store.clock and streams[].evicted (any thread). */
struct json_t;
void sl_storewatch_start(sl_daemon_t *dm);
void sl_storewatch_tick(sl_daemon_t *dm, const sl_store_info_t *info);
void sl_storewatch_status(sl_daemon_t *dm, struct json_t *root,
                          const sl_store_info_t *info);
void sl_storewatch_free(sl_daemon_t *dm);

/* Kafka uplink (broker/uplink.c, sync/sync.h). start: a no-op unless
 * kafka.enabled; after the streams exist. tick: metrics and state-change
 * logs (loop thread). status: adds "uplink" to /v1/status (any thread).
 * stop: joins the uplink thread; before the store closes. */
struct json_t;
int sl_uplink_start(sl_daemon_t *dm, char *err, size_t errlen);
void sl_uplink_tick(sl_daemon_t *dm);
void sl_uplink_kick(sl_daemon_t *dm);
void sl_uplink_status(sl_daemon_t *dm, struct json_t *root);
void sl_uplink_stop(sl_daemon_t *dm);
void sl_uplink_free(sl_daemon_t *dm);

/* Runs the daemon with the config at path until SIGTERM/SIGINT. Returns
 * the process exit code. */
int sl_daemon_run(const char *config_path);

#endif /* SL_DAEMON_H */
