/*
 * `sluice run`: wires config, store, metrics, admin and the ingest
 * listeners around one libuv loop.
 *
 * Threads: the loop thread (this file, ingest/native/native.c), the store's
 * writer thread (group commit; its completions are queued to the loop
 * through done_lock + done_async), and the admin server's thread (reads
 * atomics and thread-safe store calls only).
 *
 * Stop (SIGTERM/SIGINT): stop accepting, stop reading, let every batch
 * already read reach a durable commit and its ack be written, close every
 * handle, then close the store (which commits whatever is still queued).
 * Exit 0.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/daemon.h"
#include "daemon/daemon_ops.h"
#include "daemon/enrol.h"
#include "daemon/fleet_agent.h"
#include "telemetry/log.h"
#include "ingest/pipes.h"
#include "ingest/mqtt/mqtt.h"
#include "daemon/notify.h"
#include "daemon/security.h"

#ifndef SL_VERSION
#define SL_VERSION "0.1.0"
#endif

/* ---- the ingest core's hooks -------------------------------------------- */

/* After every completion round: paused clients may go on, and there is
 * new data for the Kafka uplink. */
static void after_round(void *arg) {
  sl_daemon_t *dm = arg;
  if (dm->in.native)
    sl_native_resume(dm->in.native);
  sl_uplink_kick(dm);
  sl_mqtt_resume(dm->in.mqtt);
}

/* Storage errors make /readyz answer 503 until a commit succeeds. */
static void store_error(void *arg, const char *reason) {
  sl_admin_set_store_error(arg, reason);
}

/* ---- status and gauges ------------------------------------------------- */

static char *status_json(void *opaque) {
  sl_daemon_t *dm = opaque;
  sl_store_info_t info;
  json_t *root = json_object(), *streams = json_array();
  char *out;

  sl_store_env_info(dm->in.st, &info);
  /* Not dm->in.cfg: a reload swaps it on the loop thread. */
  json_object_set_new(root, "node_id", json_string(dm->in.node_id));
  json_object_set_new(root, "version", json_string(SL_VERSION));
  json_object_set_new(
      root, "uptime_s",
      json_integer(
          (json_int_t)((sl_now_mono_ns() - dm->started_ns) / 1000000000u)));
  json_t *store = json_object();
  json_object_set_new(
      store, "sync",
      json_string(info.sync == SL_STORE_SYNC_ALWAYS ? "always" : "interval"));
  json_object_set_new(store, "loss_window_ms",
                      json_integer((json_int_t)info.loss_window_ms));
  json_object_set_new(store, "used_bytes",
                      json_integer((json_int_t)info.used_bytes));
  json_object_set_new(store, "budget_bytes",
                      json_integer((json_int_t)info.budget_bytes));
  json_object_set_new(store, "queued", json_integer(info.queued));
  json_object_set_new(store, "poisoned", json_boolean(info.poisoned));
  json_object_set_new(store, "last_error",
                      json_string(sl_errname(info.last_error)));
  json_object_set_new(root, "store", store);
  /* dm->in.streams is fixed after start (reload does not change streams), so
   * reading it from the admin thread is safe. */
  for (size_t i = 0; i < dm->in.nstreams; i++) {
    sl_store_stream_stats_t ss;
    if (sl_store_stream_stats(dm->in.st, dm->in.streams[i].id, &ss) < 0)
      continue;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(ss.name));
    json_object_set_new(o, "first_offset",
                        json_integer((json_int_t)ss.first_offset));
    json_object_set_new(o, "next_offset",
                        json_integer((json_int_t)ss.next_offset));
    json_object_set_new(o, "events", json_integer((json_int_t)ss.events));
    json_object_set_new(o, "bytes", json_integer((json_int_t)ss.bytes));
    json_object_set_new(o, "oldest_time_ns", json_integer(ss.oldest_time_ns));
    json_array_append_new(streams, o);
  }
  json_object_set_new(root, "streams", streams);
  sl_storewatch_status(dm, root, &info);
  sl_uplink_status(dm, root);
  sl_cfgwatch_status(dm, root);
  sl_fleet_agent_status(dm, root);
  sl_enrol_status(dm, root);
  out = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return out;
}

static void on_tick(uv_timer_t *t) {
  sl_daemon_t *dm = t->data;
  sl_store_info_t info;
  sl_pipes_metrics(dm->in.pipes);
  if (sl_store_env_info(dm->in.st, &info) == SL_EPOISONED) {
    sl_error(SL_LOG_CTX_STORE, NULL,
             "store poisoned (LMDB panic): exiting, restart to recover");
    /* Nothing can be committed any more and LMDB says the environment
     * must be reopened: exit with EX_SOFTWARE so the supervisor restarts
     * us. Everything acknowledged is already durable. */
    exit(70);
  }
  sl_metric_set(dm->store_used, (double)info.used_bytes);
  sl_metric_set(dm->store_budget, (double)info.budget_bytes);
  sl_metric_set(dm->store_queue, info.queued);
  sl_metric_set(dm->backpressure_on, info.last_error == SL_EBACKPRESSURE);
  sl_storewatch_tick(dm, &info);
  if (dm->in.native)
    sl_native_sweep(dm->in.native, sl_now_mono_ns());
  sl_uplink_tick(dm);
}

/* ---- stop and reload --------------------------------------------------- */

static void on_finish_check(uv_check_t *h) {
  sl_daemon_t *dm = h->data;
  if (!dm->stopping || dm->in.pending > 0)
    return;
  if (dm->in.native && sl_native_open_handles(dm->in.native) > 0)
    return;
  if (dm->in.http && sl_http_inflight(dm->in.http) > 0)
    return; /* their completions resume them; the tick re-checks */
  if (sl_mqtt_open_handles(dm->in.mqtt) > 0)
    return; /* closes once its last commit is acknowledged */
  uv_check_stop(h);
  sl_sec_close(dm);
  sl_notify_close(dm);
  sl_cfgwatch_close(dm);
  sl_fleet_agent_close(dm);
  sl_enrol_close(dm);
  sl_ingest_close(&dm->in);
  uv_close((uv_handle_t *)&dm->sig_term, NULL);
  uv_close((uv_handle_t *)&dm->sig_int, NULL);
  uv_close((uv_handle_t *)&dm->sig_hup, NULL);
  uv_close((uv_handle_t *)&dm->tick, NULL);
  uv_close((uv_handle_t *)&dm->finish, NULL);
}

static void begin_stop(sl_daemon_t *dm, const char *why);

void sl_daemon__restart(sl_daemon_t *dm, const char *why) {
  dm->reexec = 1;
  begin_stop(dm, why);
}

static void begin_stop(sl_daemon_t *dm, const char *why) {
  if (dm->stopping)
    return;
  dm->stopping = 1;
  sl_notify_stopping(dm, why);
  sl_info(SL_LOG_CTX_ADMIN, NULL, "%s: draining (%llu batches in flight)", why,
          (unsigned long long)dm->in.pending);
  if (dm->adm)
    sl_admin_set_ready(dm->adm, 0, "shutting down");
  if (dm->in.native)
    sl_native_stop(dm->in.native);
  if (dm->in.http)
    sl_http_quiesce(dm->in.http);
  sl_mqtt_stop(dm->in.mqtt);
  uv_check_start(&dm->finish, on_finish_check);
}

static sl_store_stream_conf_t stream_conf(const sl_config_stream_t *s) {
  sl_store_stream_conf_t conf = {0};
  /* Config priorities are 0..9; the store has SL_STORE_PRIORITY_MAX + 1
   * classes: scale, keeping 0 lowest and 9 highest. */
  conf.priority = (uint8_t)(s->priority * SL_STORE_PRIORITY_MAX / 9);
  conf.policy = (sl_store_policy_t)s->policy;
  conf.ttl_ns = (int64_t)s->ttl_ms * 1000000;
  return conf;
}

static void apply_log(const sl_config_t *cfg) {
  sl_log_configure((sl_log_level_t)cfg->log.level, cfg->log.debug,
                   (sl_log_format_t)cfg->log.format);
}

/* The apply step of a reload, on the loop thread: nw was loaded and
 * validated by reload_work() (NULL: dm->reload_err says why). Returns 0,
 * or -1 when refused (logged, counted, recorded in /v1/status; the running
 * config stays). */
int sl_daemon__apply_config(sl_daemon_t *dm, sl_config_t *nw,
                            const char *origin, char *why, size_t len) {
  sl_config_diff_t diff;
  sl_sec_next_t sec;
  char err[2048];

  sl_config_diff(dm->in.cfg, nw, &diff);
  if (diff.verdict == SL_CONFIG_RESTART) {
    const char *key = "?";
    for (size_t i = 0; i < diff.n_changed && i < SL_CONFIG_DIFF_MAX; i++)
      if (!diff.changed[i].reloadable) {
        key = diff.changed[i].key;
        break;
      }
    snprintf(why, len, "%s changed and needs a restart", key);
    sl_config_free(nw);
    return 1;
  }
  /* Certificates and credentials are loaded before anything changes. */
  if (sl_sec_prepare(dm, nw, &sec, err, sizeof(err)) < 0) {
    snprintf(why, len, "%s", err);
    sl_config_free(nw);
    return -1;
  }
  /* Everything that changed is reloadable. Per-stream settings (priority,
   * policy, TTL) live in the store: update them first, so a failure keeps
   * the old config whole. The set of streams is the same (adding or
   * removing one needs a restart), so names match one to one. */
  for (size_t i = 0; i < nw->streams.n; i++) {
    sl_store_stream_conf_t conf = stream_conf(&nw->streams.v[i]);
    uint32_t id;
    int rc =
        sl_store_stream_create(dm->in.st, nw->streams.v[i].name, &conf, &id);
    if (rc < 0) {
      snprintf(why, len, "cannot update stream '%s': %s", nw->streams.v[i].name,
               sl_strerror(rc));
      sl_sec_next_free(&sec);
      sl_config_free(nw);
      return -1;
    }
  }
  /* Swap. Only the loop thread reads dm->in.cfg after start (status uses
   * dm->in.node_id, HTTP copied its limits at start). */
  sl_config_free(dm->in.cfg);
  dm->in.cfg = nw;
  sl_sec_commit(dm, &sec);
  apply_log(nw);
  sl_info(SL_LOG_CTX_CONFIG, NULL, "config applied by %s (%zu keys changed)",
          origin, diff.n_changed);
  return 0;
}

/* The apply step of a reload, on the loop thread: nw was loaded and
 * validated by reload_work() (NULL: dm->reload_err says why). Returns 0,
 * or -1 when refused (logged, counted, recorded in /v1/status; the running
 * config stays). */
static int reload(sl_daemon_t *dm, sl_config_t *nw) {
  char why[2100];
  int rc;

  if (!nw) {
    snprintf(why, sizeof(why), "%s", dm->reload_err);
    goto refuse;
  }
  if ((rc = sl_daemon__apply_config(dm, nw, "reload", why, sizeof(why))) != 0)
    goto refuse;
  sl_metric_add(dm->reloads, 1);
  sl_cfgwatch_result(dm, 0, dm->reload_sha, NULL);
  sl_info(SL_LOG_CTX_CONFIG, NULL, "config reloaded (sha256 %.12s)",
          dm->reload_sha);
  return 0;
refuse:
  sl_error(SL_LOG_CTX_CONFIG, NULL,
           "reload refused, keeping the running config: %s", why);
  sl_metric_add(dm->reload_errors, 1);
  sl_cfgwatch_result(dm, -1, dm->reload_sha, why);
  return -1;
}

/* SIGHUP's parse and validation run on libuv's thread pool, never on the
 * loop: a slow file (NFS, a FIFO) or a large one would stall every
 * listener (issue 14: 14.6 s). Touches only dm->reload_*. The file is read
 * once: the hash is of the bytes parsed. */
static void reload_work(uv_work_t *req) {
  sl_daemon_t *dm = req->data;
  /* A watch round leaves a file with the running hash alone (the watch saw
   * another change in the directory). */
  if (sl_cfgwatch_load(dm, dm->reload_watch, &dm->reload_cfg, dm->reload_sha,
                       &dm->reload_unchanged, dm->reload_err,
                       sizeof(dm->reload_err)) < 0)
    dm->reload_cfg = NULL;
}

static void reload_done(uv_work_t *req, int status) {
  sl_daemon_t *dm = req->data;
  sl_config_t *nw = dm->reload_cfg;
  int rc;
  dm->reload_cfg = NULL;
  dm->reload_busy = 0;
  free(dm->reload_remote);
  dm->reload_remote = NULL;
  if (dm->stopping || status) {
    sl_config_free(nw);
    sl_sec_reload_finished(dm, -1);
    return;
  }
  if (dm->reload_unchanged) {
    sl_sec_reload_finished(dm, 0); /* nobody asked: a watch round */
  } else {
    if (dm->reload_watch) { /* the watch's rounds say so only now */
      sl_info(SL_LOG_CTX_CONFIG, NULL, "config file changed: reloading");
      sl_notify_reloading(dm);
    }
    /* POST /v1/reload requests made before this parse began get the
     * result; later ones wait for the next round. */
    rc = reload(dm, nw);
    sl_sec_reload_finished(dm, rc);
    sl_notify_ready(dm, rc == 0 ? "ready: config reloaded"
                                : "ready: reload refused, old config runs");
  }
  if (dm->reload_again) { /* a SIGHUP arrived during the parse */
    dm->reload_again = 0;
    sl_daemon__reload_start(dm);
  }
}

static void reload_round(sl_daemon_t *dm) {
  int rc;
  const char *remote = sl_fleet_agent_remote(dm);
  dm->reload_req.data = dm;
  /* The worker loads the file under the fleet layer running now (a copy:
   * the fleet may apply another while the worker parses). */
  free(dm->reload_remote);
  dm->reload_remote = remote ? strdup(remote) : NULL;
  if (!dm->reload_watch)
    sl_notify_reloading(dm);
  sl_sec_reload_begin(dm);
  if ((rc = uv_queue_work(&dm->loop, &dm->reload_req, reload_work,
                          reload_done)) < 0) {
    sl_error(SL_LOG_CTX_CONFIG, NULL, "reload not started: %s",
             uv_strerror(rc));
    sl_metric_add(dm->reload_errors, 1);
    sl_sec_reload_finished(dm, -1);
    if (!dm->reload_watch)
      sl_notify_ready(dm, "ready: reload not started");
    return;
  }
  dm->reload_busy = 1;
}

void sl_daemon__reload_start(sl_daemon_t *dm) {
  if (dm->reload_busy) {
    dm->reload_again = 1;
    return;
  }
  dm->reload_watch = 0;
  reload_round(dm);
}

void sl_daemon__reload_watch(sl_daemon_t *dm) {
  int asked = 0;
  if (dm->reload_busy) {
    dm->reload_again = 1;
    return;
  }
  if (dm->sec) { /* a POST waiting must get a real reload, not a skip */
    pthread_mutex_lock(&dm->sec->lock);
    asked = dm->sec->asked != dm->sec->done;
    pthread_mutex_unlock(&dm->sec->lock);
  }
  dm->reload_watch = !asked;
  reload_round(dm);
}

static void on_signal(uv_signal_t *h, int signum) {
  sl_daemon_t *dm = h->data;
  if (signum == SIGHUP)
    sl_daemon__reload_start(dm);
  else
    begin_stop(dm, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- start ------------------------------------------------------------- */

static void register_metrics(sl_daemon_t *dm) {
  sl_metrics_t *mx = dm->in.mx;
  dm->store_used = sl_metrics_gauge(mx, "sluice_store_used_bytes",
                                    "Bytes used by the store", NULL);
  dm->store_budget = sl_metrics_gauge(mx, "sluice_store_budget_bytes",
                                      "Configured store budget", NULL);
  dm->store_queue = sl_metrics_gauge(mx, "sluice_store_queue_depth",
                                     "Groups waiting for the writer", NULL);
  dm->backpressure_on = sl_metrics_gauge(
      mx, "sluice_store_backpressure",
      "1 while the last commit was refused by the budget", NULL);
  dm->reloads = sl_metrics_counter(mx, "sluice_config_reloads_total",
                                   "Config reloads applied", NULL);
  dm->reload_errors = sl_metrics_counter(
      mx, "sluice_config_reload_errors_total", "Config reloads refused", NULL);
}

static int open_streams(sl_daemon_t *dm, char *err, size_t errlen) {
  const sl_config_t *cfg = dm->in.cfg;
  size_t n = cfg->streams.n ? cfg->streams.n : 1;
  int rc;

  if (!(dm->in.streams = calloc(n, sizeof(*dm->in.streams))))
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    sl_store_stream_conf_t conf = {0};
    const char *name = "default";
    if (cfg->streams.n) {
      name = cfg->streams.v[i].name;
      conf = stream_conf(&cfg->streams.v[i]);
    }
    if (!(dm->in.streams[i].name = strdup(name)))
      return -ENOMEM;
    if ((rc = sl_store_stream_create(dm->in.st, name, &conf,
                                     &dm->in.streams[i].id)) < 0) {
      snprintf(err, errlen, "stream '%s': %s", name, sl_strerror(rc));
      return rc;
    }
    dm->in.nstreams++;
  }
  return 0;
}

static void daemon_free(sl_daemon_t *dm) {
  sl_http_stop(dm->in.http);
  sl_admin_stop(dm->adm);
  sl_native_free(dm->in.native);
  sl_sec_free(dm);
  sl_mqtt_free(dm->in.mqtt);
  sl_pipes_free(dm->in.pipes);
  /* The uplink reads the store: stop it before the store closes. */
  sl_uplink_stop(dm);
  sl_uplink_free(dm);
  sl_fleet_agent_free(dm); /* persists through the store too */
  free(dm->reload_remote);
  if (dm->in.st)
    sl_store_env_close(dm->in.st);
  sl_storewatch_free(dm);
  sl_notify_free(dm);
  sl_cfgwatch_free(dm);
  sl_ingest_free(&dm->in);
  sl_enrol_free(dm); /* after everything that read dm->kx */
  sl_metrics_free(dm->in.mx);
  sl_config_free(dm->in.cfg);
}

/* Opens the store from dm's config. Returns 0, or the process exit code
 * (logged): distinct codes, so a supervisor does not restart into the same
 * wall (3 locked, 4 another node's store, 5 key). */
static int open_store(sl_daemon_t *dm) {
  sl_store_opts_t so;
  char err[2048];
  int rc;

  sl_store_opts_init(&so);
  sl_config_bind(dm->in.cfg, SL_CONFIG_LIB_STORE, &so); /* the table's rows */
  if (dm->in.cfg->store.accept_new)
    so.flags |= SL_STORE_ACCEPT_NEW;
  if ((rc = sl_store_env_open(dm->in.cfg->node.data_dir, &so, &dm->in.st, err,
                              sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_STORE, NULL, "cannot open the store in %s: %s (%s)",
             dm->in.cfg->node.data_dir, err, sl_errname(rc));
    return rc == SL_ELOCKED ? 3 : rc == SL_ESTOREID ? 4 : rc == SL_EKEY ? 5 : 1;
  }
  {
    sl_store_info_t si;
    char enc[64] = "off";
    sl_store_env_info(dm->in.st, &si);
    if (si.seal_key_id)
      snprintf(enc, sizeof(enc), "on (sealing with key id %u)", si.seal_key_id);
    sl_info(SL_LOG_CTX_STORE, NULL, "store %s: id %s%s, encryption at rest %s",
            dm->in.cfg->node.data_dir, si.node_id,
            dm->in.cfg->store.accept_new ? " (accept_new)" : "", enc);
  }
  return 0;
}

/* The daemon's own loop handles: signals, the 1 s tick, the stop check. */
static void loop_handles(sl_daemon_t *dm) {
  uv_signal_init(&dm->loop, &dm->sig_term);
  uv_signal_init(&dm->loop, &dm->sig_int);
  uv_signal_init(&dm->loop, &dm->sig_hup);
  dm->sig_term.data = dm->sig_int.data = dm->sig_hup.data = dm;
  uv_signal_start(&dm->sig_term, on_signal, SIGTERM);
  uv_signal_start(&dm->sig_int, on_signal, SIGINT);
  uv_signal_start(&dm->sig_hup, on_signal, SIGHUP);
  uv_timer_init(&dm->loop, &dm->tick);
  dm->tick.data = dm;
  uv_timer_start(&dm->tick, on_tick, 1000, 1000);
  uv_check_init(&dm->loop, &dm->finish);
  dm->finish.data = dm;
}

/* Starts, in order: credentials, the admin server, the listeners, drops
 * privileges, the uplink, MQTT. Returns 0 or a negative error (logged). */
static int start_services(sl_daemon_t *dm) {
  char err[2048];
  int rc;

  if ((rc = sl_sec_start(dm, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_ADMIN, NULL, "%s", err);
    return rc;
  }
  if (dm->in.cfg->admin.address && *dm->in.cfg->admin.address) {
    sl_admin_sec_t asec = {dm->sec->creds.admin, sl_sec_admin_allowed,
                           sl_sec_reload_request};
    if ((rc = sl_admin_start_secure(dm->in.cfg->admin.address, dm->in.mx,
                                    status_json, dm, &asec, &dm->adm, err,
                                    sizeof(err))) < 0) {
      sl_error(SL_LOG_CTX_ADMIN, NULL, "%s", err);
      return rc;
    }
  }
  if (dm->adm) /* before any listener: commits report to it */
    sl_guard_set_notify(&dm->in.guard, store_error, dm->adm);
  dm->in.creds = &dm->sec->creds;
  if ((rc = sl_native_start(&dm->in, &dm->in.native, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_INGEST, NULL, "%s", err);
    return rc;
  }
  if (dm->in.cfg->listeners.http_address &&
      *dm->in.cfg->listeners.http_address &&
      (rc = sl_http_start(&dm->in, &dm->in.http, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_HTTP, NULL, "%s", err);
    return rc;
  }
  /* Listeners are bound and the store is open: drop root before any
   * peer data is parsed by the uplink or MQTT (docs/security/ops.md). */
  if ((rc = sl_ops_drop_privileges(dm->in.cfg->run.user, dm->in.cfg->run.group,
                                   err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_ADMIN, NULL, "%s", err);
    return rc;
  }
  if ((rc = sl_uplink_start(dm, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_SYNC, NULL, "kafka uplink: %s", err);
    return rc;
  }
  /* MQTT last: it connects in the background; "mqtt subscribed" is
   * logged once the broker acknowledged the subscriptions. */
  if ((rc = sl_mqtt_start(&dm->in, &dm->in.mqtt, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_MQTT, NULL, "mqtt: %s", err);
    return rc;
  }
  return 0;
}

/* The ready line. */
static void log_ready(sl_daemon_t *dm) {
  /* Tests and operators read the bound ports from this line (port 0 in
   * the config picks a free one); a listener that is off says "off" and
   * no port. */
  char native[300], http[64], admin[300];
  if (*dm->in.cfg->listeners.native_tcp)
    snprintf(native, sizeof(native), "%s (port %d)",
             dm->in.cfg->listeners.native_tcp, sl_native_port(dm->in.native));
  else
    snprintf(native, sizeof(native), "off");
  if (dm->in.http)
    snprintf(http, sizeof(http), "port %u", sl_http_port(dm->in.http));
  else
    snprintf(http, sizeof(http), "off");
  if (dm->adm)
    snprintf(admin, sizeof(admin), "%s (port %u)", dm->in.cfg->admin.address,
             sl_admin_port(dm->adm));
  else
    snprintf(admin, sizeof(admin), "off");
  sl_info(SL_LOG_CTX_ADMIN, NULL,
          "sluice %s node %s ready: native tcp %s, unix %s, http %s, admin %s, "
          "store %s",
          SL_VERSION, dm->in.cfg->node.id, native,
          *dm->in.cfg->listeners.native_unix ? dm->in.cfg->listeners.native_unix
                                             : "off",
          http, admin, dm->in.cfg->node.data_dir);
}

int sl_daemon_run(const char *config_path) {
  sl_daemon_t dmv, *dm = &dmv;
  char err[2048];
  int rc;

  memset(dm, 0, sizeof(*dm));
  dm->config_path = config_path;
  dm->started_ns = sl_now_mono_ns();
  signal(SIGPIPE, SIG_IGN);

  char sha[65];
  int unchanged;
  if (sl_cfgwatch_load(dm, 0, &dm->in.cfg, sha, &unchanged, err, sizeof(err)) <
      0) {
    fprintf(stderr, "sluice: %s\n", err);
    daemon_free(dm);
    return 2;
  }
  /* Enrolment may derive node.id from the node's key (a reload). */
  if ((rc = sl_enrol_prepare(dm, err, sizeof(err))) < 0) {
    fprintf(stderr, "sluice: enrolment: %s\n", err);
    daemon_free(dm);
    return 2;
  }
  apply_log(dm->in.cfg);
  if (sl_cfgwatch_init(dm, sha) < 0)
    goto fail_nomem;
  snprintf(dm->in.node_id, sizeof(dm->in.node_id), "%s", dm->in.cfg->node.id);
  if (sl_metrics_new(&dm->in.mx) < 0 || sl_ingest_init(&dm->in, dm->in.mx) < 0)
    goto fail_nomem;
  register_metrics(dm);
  sl_guard_init(&dm->in.guard, dm->in.mx, dm->in.cfg->limits.max_inflight_bytes,
                dm->in.cfg->limits.max_connections);

  if ((rc = open_store(dm)) != 0) {
    daemon_free(dm);
    return rc;
  }
  /* The fleet's layer decides the effective config (streams, pipelines)
   * before anything is built from it. */
  if ((rc = sl_fleet_agent_boot(dm, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_CONFIG, NULL, "%s", err);
    daemon_free(dm);
    return 2;
  }
  apply_log(dm->in.cfg);
  if ((rc = open_streams(dm, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_STORE, NULL, "%s", err);
    goto fail;
  }
  sl_ingest_stream_metrics(&dm->in);
  sl_storewatch_start(dm);
  sl_ops_check_budget(dm);
  /* Pipelines load their state before any listener opens. */
  {
    char warn[300];
    if ((rc = sl_pipes_new(&dm->in, &dm->in.pipes, err, sizeof(err), warn,
                           sizeof(warn))) < 0) {
      sl_error(SL_LOG_CTX_CONFIG, NULL, "%s", err);
      goto fail;
    }
    if (*warn)
      sl_warn(SL_LOG_CTX_STORE, NULL, "%s", warn);
  }

  uv_loop_init(&dm->loop);
  if ((rc = sl_ingest_open(&dm->in, &dm->loop)) < 0) {
    sl_error(SL_LOG_CTX_INGEST, NULL, "cannot open the ingest core: %s",
             uv_strerror(rc));
    uv_loop_close(&dm->loop);
    goto fail;
  }
  dm->in.after_round = after_round;
  dm->in.after_round_arg = dm;
  loop_handles(dm);
  sl_notify_start(dm);

  if (start_services(dm) < 0)
    goto fail_loop;
  if ((rc = sl_fleet_agent_start(dm, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_CONFIG, NULL, "fleet: %s", err);
    goto fail_loop;
  }
  if ((rc = sl_enrol_start(dm, err, sizeof(err))) < 0) {
    sl_error(SL_LOG_CTX_CONFIG, NULL, "enrolment: %s", err);
    goto fail_loop;
  }
  if (dm->adm)
    sl_admin_set_ready(dm->adm, 1, NULL);
  sl_cfgwatch_start(dm); /* a failure is logged; the daemon runs on */
  log_ready(dm);
  /* systemd: ready only now, with every listener bound. */
  sl_notify_ready(dm, "ready");

  uv_run(&dm->loop, UV_RUN_DEFAULT);
  uv_loop_close(&dm->loop);
  rc = dm->reexec;
  daemon_free(dm);
  sl_info(SL_LOG_CTX_ADMIN, NULL, "stopped cleanly%s",
          rc ? ": starting again (fleet)" : "");
  return rc ? SL_DAEMON_REEXEC : 0;

fail_loop:
  begin_stop(dm, "startup failed");
  uv_run(&dm->loop, UV_RUN_DEFAULT);
  uv_loop_close(&dm->loop);
fail:
  daemon_free(dm);
  return 1;
fail_nomem:
  fprintf(stderr, "sluice: out of memory\n");
  daemon_free(dm);
  return 1;
}
