/*
 * The daemon's private wiring: one libuv loop thread owns every socket and
 * timer; the store's writer thread commits; completions come back to the
 * loop through a bounded mailbox and a uv_async_t. Private to the daemon layer.
 */
#ifndef SL_DAEMON_H
#define SL_DAEMON_H

#include <pthread.h>
#include <stdint.h>

#include <uv.h>

#include "daemon/admin.h"
#include "config/config.h"
#include "ingest/ingest.h"
#include "telemetry/metrics.h"
#include "store/store.h"

typedef struct sl_daemon sl_daemon_t;
typedef struct sl_uplink sl_uplink_t;

struct sl_daemon {
  /* The ingest core (ingest/ingest.h): the current config (owned here;
   * loop thread only), node id, store, metrics, streams, guard, the paths
   * and the completion mailbox. */
  sl_ingest_t in;
  const char *config_path;
  uv_loop_t loop;
  sl_admin_t *adm;
  sl_uplink_t
      *uplink; /* Kafka uplink (daemon/uplink_service.c), NULL when off */
  struct sl_sec *sec;           /* TLS and credentials (daemon/security.h) */
  struct sl_storewatch *swatch; /* store clock and evictions (store_watch.c) */
  struct sl_notify *ntf;        /* sd_notify, NULL when off (notify.c) */
  struct sl_cfgwatch *cwatch;   /* config identity and watch (config_watch.c) */
  struct sl_fleet_agent *fleet; /* fleet control plane (fleet_agent.c) */
  int reexec;                   /* stop, then re-execute (fleet restart) */
  char *reload_remote;          /* the fleet layer for the reload's worker */
  struct sl_enrol *enrol;       /* zero-touch enrolment (enrol.c), or NULL */
  /* Kafka connection as enrolment decided it (daemon/enrol.c); empty
   * without enrolment. blocked: not enrolled yet: neither the uplink nor
   * the fleet agent connects (data is stored, delivered once enrolled). */
  struct {
    const char *brokers; /* used where kafka.brokers/fleet.brokers "" */
    const char **props;  /* "key=value": ssl.* of the node's identity */
    size_t nprops;
    const char *verify_key; /* used where fleet.verify_key is "" */
    const char *topic_prefix;
    char **labels; /* "key=value": the approved labels, NULL: config's */
    size_t nlabels;
    int blocked;
  } kx;

  uv_signal_t sig_term, sig_int, sig_hup;
  /* SIGHUP reload: parsed on libuv's pool, applied on the loop. */
  uv_work_t reload_req;
  int reload_busy, reload_again; /* loop thread only */
  sl_config_t *reload_cfg;       /* worker's result, NULL on error */
  char reload_err[2048];         /* worker's errors */
  char reload_sha[65];           /* worker's SHA-256 of the file read */
  int reload_watch;              /* this round was started by the watch */
  int reload_unchanged;          /* worker: watch round, same file: skip */
  uv_timer_t tick;               /* 1 s housekeeping: idle sweep, gauges */
  uv_check_t finish;             /* ends the loop once a stop has drained */
  uint64_t started_ns;
  int stopping;
  int exit_code;

  /* Metrics. */
  sl_metric_t *store_used;      /* bytes */
  sl_metric_t *store_budget;    /* bytes */
  sl_metric_t *store_queue;     /* writer queue depth */
  sl_metric_t *backpressure_on; /* 1 while the store refuses appends */
  sl_metric_t *reloads;         /* SIGHUP reloads applied */
  sl_metric_t *reload_errors;   /* SIGHUP reloads refused */
};

/* Starts a reload (SIGHUP, POST /v1/reload; loop thread): the file is read
 * and validated on a worker thread, then applied on the loop; a refusal is
 * logged and the running config stays. A start while one runs makes one
 * more run after it. Each round calls sl_sec_reload_begin() as its parse
 * starts and sl_sec_reload_finished() with 0 or -1 when it is decided. */
void sl_daemon__reload_start(sl_daemon_t *dm);

/* A reload round started by the config watch: like
 * sl_daemon__reload_start(), but a file whose SHA-256 equals the running
 * one is left alone (loop thread). */
void sl_daemon__reload_watch(sl_daemon_t *dm);

/* Config identity and watch (daemon/config_watch.c). hash_file: hex
 * SHA-256 of a file's bytes, 0 or -errno. init: identity of the config
 * the daemon starts with (sha). start: the directory watch when
 * reload.watch (loop). result: a reload was decided (rc 0 applied, else
 * refused with err), from the loop. same: sha is the running config's
 * (any thread). status: adds "config" to /v1/status (any thread). */
int sl_cfgwatch_hash_file(const char *path, char hex[65]);
/* load: reads dm->config_path once, its SHA-256 into sha; with skip_same
 * and that hash running, *unchanged = 1 and nothing is parsed; else as
 * sl_config_load_file(). Any thread (the reload's worker). */
int sl_cfgwatch_load(sl_daemon_t *dm, int skip_same, sl_config_t **out,
                     char sha[65], int *unchanged, char *err, size_t errlen);
int sl_cfgwatch_init(sl_daemon_t *dm, const char *sha);
int sl_cfgwatch_start(sl_daemon_t *dm);
void sl_cfgwatch_result(sl_daemon_t *dm, int rc, const char *sha,
                        const char *err);
int sl_cfgwatch_same(sl_daemon_t *dm, const char *sha);
struct json_t;
void sl_cfgwatch_status(sl_daemon_t *dm, struct json_t *root);
void sl_cfgwatch_close(sl_daemon_t *dm);
void sl_cfgwatch_free(sl_daemon_t *dm);

/* Store watch (daemon/store_watch.c): logs, metrics and status for what the
 * store reports but never logs (clock steps, evictions). start: after the
 * streams are open; tick: loop thread, every second; status: adds
 * store.clock and streams[].evicted (any thread). */
struct json_t;
void sl_storewatch_start(sl_daemon_t *dm);
void sl_storewatch_tick(sl_daemon_t *dm, const sl_store_info_t *info);
void sl_storewatch_status(sl_daemon_t *dm, struct json_t *root,
                          const sl_store_info_t *info);
void sl_storewatch_free(sl_daemon_t *dm);

/* Kafka uplink (daemon/uplink_service.c, sync/sync.h). start: a no-op unless
 * kafka.enabled; after the streams exist. tick: metrics and state-change
 * logs (loop thread). status: adds "uplink" to /v1/status (any thread).
 * stop: joins the uplink thread; before the store closes. */
struct json_t;
int sl_uplink_start(sl_daemon_t *dm, char *err, size_t errlen);
void sl_uplink_tick(sl_daemon_t *dm);
void sl_uplink_kick(sl_daemon_t *dm);
void sl_uplink_status(sl_daemon_t *dm, struct json_t *root);
void sl_uplink_stop(sl_daemon_t *dm);
/* The last snapshot's state (sl_sync_state_t), connected flag and events
 * stored but not delivered, all streams; -1 when the uplink is off (loop
 * thread). */
int sl_uplink_health(sl_daemon_t *dm, int *connected, uint64_t *backlog);
void sl_uplink_free(sl_daemon_t *dm);

/* Applies nw (owned: kept or freed) on the loop thread as a reload does:
 * returns 0 (applied), 1 (a changed key needs a restart: nothing applied)
 * or -1 (refused, reason in why). origin names the caller in logs. */
int sl_daemon__apply_config(sl_daemon_t *dm, sl_config_t *nw,
                            const char *origin, char *why, size_t len);

/* Stops as SIGTERM does, then sl_daemon_run() returns SL_DAEMON_REEXEC so
 * `sluice run` executes itself again (loop thread). */
void sl_daemon__restart(sl_daemon_t *dm, const char *why);
#define SL_DAEMON_REEXEC 1000

/* Runs the daemon with the config at path until SIGTERM/SIGINT. Returns
 * the process exit code, or SL_DAEMON_REEXEC. */
int sl_daemon_run(const char *config_path);

#endif /* SL_DAEMON_H */
