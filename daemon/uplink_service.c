/*
 * daemon/uplink_service.c: the daemon's side of the Kafka uplink (sync/sync.h):
 * builds its options from the config, starts it once the streams exist,
 * renders its stats as metrics (every tick) and in /v1/status, logs its
 * state changes (sync/ never logs), and stops it before the store closes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "daemon/daemon.h"
#include "telemetry/log.h"
#include "ingest/pipes.h"
#include "sync/sync.h"

/* Metric series of one stream. */
typedef struct up_series {
  sl_metric_t *backlog, *backlog_bytes, *oldest, *rate, *eta, *delivered,
      *delivered_bytes, *dead, *gaps;
  uint64_t last_delivered, last_delivered_bytes, last_dead, last_gaps;
} up_series_t;

struct sl_uplink {
  sl_sync_t *sync;
  sl_sync_stats_t stats; /* last snapshot (loop thread) */
  up_series_t *series;   /* per daemon stream */
  size_t *idx;           /* uplink stream -> daemon stream index */
  sl_metric_t *state, *connected, *commits, *aborts, *retries, *restarts,
      *commit_s, *commit_max_s, *queue, *throttled, *auth, *dlq_failed,
      *ts_refused, *ts_blocked, *skew;
  uint64_t last_commits, last_aborts, last_retries, last_restarts,
      last_throttled, last_auth, last_dlq_failed, last_ts_refused;
  int last_state;
  char last_err[256];
};

/* Fills o from cfg. props (np + 2 slots, caller-freed) and keyprop
 * (caller's) receive the passthrough properties. */
static void sync_opts(const sl_daemon_t *dm, const sl_config_t *cfg,
                      sl_sync_opts_t *o, const char **props, char *keyprop,
                      size_t keycap) {
  size_t np = cfg->kafka.properties.n;
  sl_sync_opts_init(o);
  o->node_id = cfg->node.id;
  sl_config_bind(cfg, SL_CONFIG_LIB_SYNC, o); /* the table's bound rows */
  o->log_cb = sl_log_kafka_cb; /* log.format json holds for librdkafka too */
  /* ssl.key.location joins the passthrough properties. */
  for (size_t i = 0; i < np; i++)
    props[i] = cfg->kafka.properties.v[i];
  if (*cfg->kafka.ssl_key_location) {
    snprintf(keyprop, keycap, "ssl.key.location=%s",
             cfg->kafka.ssl_key_location);
    props[np++] = keyprop;
  }
  /* Enrolment: the node's own certificate, the fleet's brokers. */
  for (size_t i = 0; i < dm->kx.nprops; i++)
    props[np++] = dm->kx.props[i];
  if (!*o->brokers && dm->kx.brokers)
    o->brokers = dm->kx.brokers;
  o->props = props;
  o->nprops = np;
  o->serial_commits = !cfg->kafka.commit_pipeline;
  o->omit_headers = cfg->kafka.omit_headers; /* a FLAGS row: not bindable */
  o->queue_max_kbytes = (uint32_t)(cfg->kafka.queue_max_bytes / 1024);
}

/* The streams the uplink forwards, into sc (nstreams slots); returns how
 * many. Streams a `route: local` keeps on the node are not forwarded; a
 * `route: kafka` topic overrides the stream's (docs/PROCESSING.md).
 * ul->idx maps the uplink's streams back to the daemon's. */
static size_t uplink_streams(sl_daemon_t *dm, sl_uplink_t *ul,
                             sl_sync_stream_conf_t *sc) {
  const sl_config_t *cfg = dm->in.cfg;
  size_t nsc = 0;
  for (size_t i = 0; i < dm->in.nstreams; i++) {
    const char *rtopic;
    if (sl_pipes_route_of(cfg, dm->in.streams[i].name, &rtopic))
      continue;
    if (!strcmp(dm->in.streams[i].name, cfg->kafka.dead_letter_stream))
      continue; /* what Kafka refused stays on the node */
    sc[nsc].name = dm->in.streams[i].name;
    sc[nsc].topic = "sluice.default";
    sc[nsc].priority = 5;
    for (size_t j = 0; j < cfg->streams.n; j++)
      if (!strcmp(cfg->streams.v[j].name, sc[nsc].name)) {
        sc[nsc].topic = cfg->streams.v[j].topic;
        sc[nsc].priority = (uint8_t)cfg->streams.v[j].priority;
        sc[nsc].json = cfg->streams.v[j].format == 1;
        sc[nsc].json_compact = cfg->streams.v[j].json_layout == 1;
        sc[nsc].compression = cfg->streams.v[j].compression;
        sc[nsc].compression_level = (int)cfg->streams.v[j].compression_level;
      }
    if (rtopic)
      sc[nsc].topic = rtopic;
    ul->idx[nsc++] = i;
  }
  return nsc;
}

/* Registers the uplink's series, per stream and node-wide. */
static void uplink_metrics(sl_daemon_t *dm, sl_uplink_t *ul) {
  char labels[SL_STORE_NAME_MAX * 2 + 32], esc[SL_STORE_NAME_MAX * 2 + 1];
  sl_metrics_t *mx = dm->in.mx;
  for (size_t i = 0; i < dm->in.nstreams; i++) {
    up_series_t *m = &ul->series[i];
    sl_metrics_escape(esc, sizeof(esc), dm->in.streams[i].name);
    snprintf(labels, sizeof(labels), "stream=\"%s\"", esc);
    m->backlog = sl_metrics_gauge(mx, "sluice_uplink_backlog_events",
                                  "Stored events not yet delivered", labels);
    m->backlog_bytes =
        sl_metrics_gauge(mx, "sluice_uplink_backlog_bytes",
                         "Stored bytes not yet delivered (estimate)", labels);
    m->oldest = sl_metrics_gauge(
        mx, "sluice_uplink_oldest_undelivered_age_seconds",
        "Age of the oldest undelivered event (event time; grows with the "
        "monotonic clock, never negative)",
        labels);
    m->rate = sl_metrics_gauge(mx, "sluice_uplink_drain_rate_events",
                               "Events delivered per second", labels);
    m->eta = sl_metrics_gauge(
        mx, "sluice_uplink_catch_up_eta_seconds",
        "Estimated time to deliver the backlog, -1 = not catching up "
        "(stalled, not running, or drain not above ingest)",
        labels);
    m->delivered = sl_metrics_counter(mx, "sluice_uplink_delivered_total",
                                      "Events committed to Kafka", labels);
    m->delivered_bytes =
        sl_metrics_counter(mx, "sluice_uplink_delivered_bytes_total",
                           "Record bytes committed to Kafka", labels);
    m->dead = sl_metrics_counter(
        mx, "sluice_uplink_dead_lettered_total",
        "Events rejected for good (too large, invalid)", labels);
    m->gaps = sl_metrics_counter(mx, "sluice_uplink_gaps_total",
                                 "Gap records forwarded", labels);
  }
  ul->state = sl_metrics_gauge(
      mx, "sluice_uplink_state",
      "0 stopped 1 connecting 2 resuming 3 running 4 backoff 5 fenced "
      "6 failed 7 disconnected (running only while a broker answers)",
      NULL);
  ul->connected = sl_metrics_gauge(mx, "sluice_uplink_connected",
                                   "1 when a Kafka broker is up", NULL);
  ul->commits = sl_metrics_counter(mx, "sluice_uplink_txn_commits_total",
                                   "Chunks (transactions) committed", NULL);
  ul->aborts = sl_metrics_counter(mx, "sluice_uplink_txn_aborts_total",
                                  "Transactions aborted and retried", NULL);
  ul->retries = sl_metrics_counter(mx, "sluice_uplink_retries_total",
                                   "Chunks retried, any cause", NULL);
  ul->restarts =
      sl_metrics_counter(mx, "sluice_uplink_producer_restarts_total",
                         "Producers recreated after fatal errors", NULL);
  ul->auth = sl_metrics_counter(
      mx, "sluice_uplink_auth_failures_total",
      "Authentication/authorization errors (retried after about a minute)",
      NULL);
  ul->dlq_failed = sl_metrics_counter(
      mx, "sluice_uplink_dead_letter_copy_failed_total",
      "Refused events whose copy to kafka.dead_letter_stream failed (they "
      "stay in their own stream)",
      NULL);
  ul->ts_refused = sl_metrics_counter(
      mx, "sluice_uplink_timestamp_refused_total",
      "Records Kafka refused with INVALID_TIMESTAMP (outside the broker's "
      "message.timestamp.after/before.max.ms)",
      NULL);
  ul->ts_blocked = sl_metrics_gauge(
      mx, "sluice_uplink_timestamp_blocked",
      "1 while delivery is refused for record timestamps", NULL);
  ul->skew = sl_metrics_gauge(
      mx, "sluice_uplink_clock_skew_seconds",
      "Node clock minus the broker's, estimated from LogAppendTime "
      "(0 until known)",
      NULL);
  ul->commit_s = sl_metrics_gauge(mx, "sluice_uplink_txn_commit_seconds",
                                  "Latency of the last commit", NULL);
  ul->commit_max_s =
      sl_metrics_gauge(mx, "sluice_uplink_txn_commit_max_seconds",
                       "Longest commit since start", NULL);
  ul->queue = sl_metrics_gauge(mx, "sluice_uplink_queue_depth",
                               "Messages in librdkafka's queue", NULL);
  ul->throttled =
      sl_metrics_counter(mx, "sluice_uplink_throttled_ms_total",
                         "Milliseconds waited for the bandwidth cap", NULL);
}

int sl_uplink_start(sl_daemon_t *dm, char *err, size_t errlen) {
  const sl_config_t *cfg = dm->in.cfg;
  sl_sync_opts_t o;
  sl_sync_stream_conf_t *sc = NULL;
  const char **props = NULL;
  char keyprop[600];
  sl_uplink_t *ul;
  int rc;

  if (!cfg->kafka.enabled || dm->kx.blocked)
    return 0; /* blocked: started after enrolment (a restart) */
  if (!(ul = calloc(1, sizeof(*ul))) ||
      !(sc = calloc(dm->in.nstreams, sizeof(*sc))) ||
      !(ul->series = calloc(dm->in.nstreams, sizeof(*ul->series))) ||
      !(ul->idx = calloc(dm->in.nstreams, sizeof(*ul->idx))) ||
      !(props = calloc(cfg->kafka.properties.n + 1 + dm->kx.nprops,
                       sizeof(char *))))
    abort();
  sync_opts(dm, cfg, &o, props, keyprop, sizeof(keyprop));
  o.streams = sc;
  o.nstreams = uplink_streams(dm, ul, sc);
  rc = sl_sync_new(dm->in.st, &o, &ul->sync, err, errlen);
  free(props);
  free(sc);
  if (rc < 0)
    goto fail;
  if ((rc = sl_sync_start(ul->sync)) < 0) {
    snprintf(err, errlen, "uplink thread: %s", sl_strerror(rc));
    goto fail;
  }
  uplink_metrics(dm, ul);
  dm->uplink = ul;
  return 0;
fail:
  sl_sync_free(ul->sync);
  free(ul->series);
  free(ul->idx);
  free(ul);
  return rc;
}

static void add_delta(sl_metric_t *m, uint64_t now, uint64_t *last) {
  if (now > *last)
    sl_metric_add(m, now - *last);
  *last = now;
}

int sl_uplink_health(sl_daemon_t *dm, int *connected, uint64_t *backlog) {
  sl_uplink_t *ul = dm->uplink;
  *connected = 0;
  *backlog = 0;
  if (!ul)
    return -1;
  *connected = ul->stats.connected;
  for (size_t i = 0; i < ul->stats.nstreams && i < SL_SYNC_STREAMS_MAX; i++)
    *backlog += ul->stats.streams[i].backlog_events;
  return (int)ul->stats.state;
}

void sl_uplink_tick(sl_daemon_t *dm) {
  sl_uplink_t *ul = dm->uplink;
  sl_sync_stats_t *s;
  if (!ul)
    return;
  s = &ul->stats;
  sl_sync_stats(ul->sync, s);
  if ((int)s->state != ul->last_state) {
    if (s->state == SL_SYNC_FENCED)
      sl_error(SL_LOG_CTX_SYNC, NULL,
               "uplink fenced: another daemon with node id %s took over the "
               "transactional id; this uplink has stopped (%s)",
               dm->in.node_id, s->last_error_text);
    else if (s->state == SL_SYNC_FAILED)
      sl_error(SL_LOG_CTX_SYNC, NULL, "uplink failed: %s", s->last_error_text);
    else
      sl_info(SL_LOG_CTX_SYNC, NULL, "uplink %s", sl_sync_state_name(s->state));
    ul->last_state = (int)s->state;
  }
  if (s->last_error && strcmp(s->last_error_text, ul->last_err)) {
    sl_warn(SL_LOG_CTX_SYNC, NULL, "uplink: %s", s->last_error_text);
    snprintf(ul->last_err, sizeof(ul->last_err), "%s", s->last_error_text);
  } else if (!s->last_error && *ul->last_err) {
    /* Cleared: the uplink delivers again; the same error later is news. */
    sl_info(SL_LOG_CTX_SYNC, NULL, "uplink: recovered from: %s", ul->last_err);
    ul->last_err[0] = '\0';
  }
  sl_metric_set(ul->state, s->state);
  sl_metric_set(ul->connected, s->connected);
  add_delta(ul->commits, s->txn_commits, &ul->last_commits);
  add_delta(ul->aborts, s->txn_aborts, &ul->last_aborts);
  add_delta(ul->retries, s->retries, &ul->last_retries);
  add_delta(ul->restarts, s->producer_restarts, &ul->last_restarts);
  add_delta(ul->auth, s->auth_failures, &ul->last_auth);
  add_delta(ul->dlq_failed, s->dlq_copy_failed, &ul->last_dlq_failed);
  add_delta(ul->throttled, s->throttled_ms, &ul->last_throttled);
  add_delta(ul->ts_refused, s->ts_refused, &ul->last_ts_refused);
  sl_metric_set(ul->ts_blocked, s->ts_blocked);
  sl_metric_set(ul->skew, s->skew_known ? s->skew_s : 0);
  sl_metric_set(ul->commit_s, s->txn_commit_ms_last / 1e3);
  sl_metric_set(ul->commit_max_s, s->txn_commit_ms_max / 1e3);
  sl_metric_set(ul->queue, s->queue_depth);
  for (size_t i = 0; i < s->nstreams && i < dm->in.nstreams; i++) {
    const sl_sync_stream_stats_t *ss = &s->streams[i];
    up_series_t *m = &ul->series[ul->idx[i]];
    sl_metric_set(m->backlog, (double)ss->backlog_events);
    sl_metric_set(m->backlog_bytes, (double)ss->backlog_bytes);
    sl_metric_set(m->oldest, ss->backlog_events ? ss->oldest_age_s : 0);
    sl_metric_set(m->rate, ss->drain_rate);
    sl_metric_set(m->eta, ss->eta_s);
    add_delta(m->delivered, ss->delivered, &m->last_delivered);
    add_delta(m->delivered_bytes, ss->delivered_bytes,
              &m->last_delivered_bytes);
    add_delta(m->dead, ss->dead_lettered, &m->last_dead);
    add_delta(m->gaps, ss->gaps, &m->last_gaps);
  }
}

void sl_uplink_kick(sl_daemon_t *dm) {
  if (dm->uplink)
    sl_sync_kick(dm->uplink->sync);
}

void sl_uplink_status(sl_daemon_t *dm, json_t *root) {
  sl_uplink_t *ul = dm->uplink;
  sl_sync_stats_t *s;
  json_t *o, *arr;
  if (!ul)
    return;
  /* Any thread: a fresh snapshot, not the loop's copy. */
  if (!(s = malloc(sizeof(*s))))
    return;
  sl_sync_stats(ul->sync, s);
  o = json_object();
  arr = json_array();
  json_object_set_new(o, "state", json_string(sl_sync_state_name(s->state)));
  json_object_set_new(o, "connected", json_boolean(s->connected));
  json_object_set_new(o, "last_error", json_string(s->last_error_text));
  json_object_set_new(o, "txn_commits",
                      json_integer((json_int_t)s->txn_commits));
  json_object_set_new(o, "txn_aborts", json_integer((json_int_t)s->txn_aborts));
  json_object_set_new(o, "txn_commit_ms", json_real(s->txn_commit_ms_last));
  json_object_set_new(o, "queue_depth", json_integer(s->queue_depth));
  json_object_set_new(o, "dead_lettered",
                      json_integer((json_int_t)s->dead_lettered));
  /* Clocks (docs/DELIVERY.md "Clocks"): timestamp refusals, what the
   * records carry, and the node's skew against the broker. */
  json_object_set_new(o, "timestamp_refused",
                      json_integer((json_int_t)s->ts_refused));
  json_object_set_new(o, "timestamp_blocked", json_boolean(s->ts_blocked));
  json_object_set_new(
      o, "record_timestamp",
      json_string(dm->in.cfg->kafka.record_timestamp == 2   ? "broker_estimate"
                  : dm->in.cfg->kafka.record_timestamp == 1 ? "event"
                                                            : "node"));
  json_object_set_new(o, "clock_skew_s",
                      s->skew_known ? json_real(s->skew_s) : json_null());
  for (size_t i = 0; i < s->nstreams; i++) {
    const sl_sync_stream_stats_t *ss = &s->streams[i];
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(ss->name));
    json_object_set_new(j, "backlog_events",
                        json_integer((json_int_t)ss->backlog_events));
    json_object_set_new(j, "backlog_bytes",
                        json_integer((json_int_t)ss->backlog_bytes));
    json_object_set_new(j, "oldest_undelivered_ns",
                        json_integer(ss->oldest_undelivered_ns));
    json_object_set_new(j, "oldest_age_s", json_real(ss->oldest_age_s));
    json_object_set_new(j, "oldest_age_clamped", json_boolean(ss->age_clamped));
    json_object_set_new(j, "delivered",
                        json_integer((json_int_t)ss->delivered));
    json_object_set_new(j, "dead_lettered",
                        json_integer((json_int_t)ss->dead_lettered));
    json_object_set_new(j, "next_offset",
                        json_integer((json_int_t)ss->next_offset));
    json_object_set_new(j, "live_start",
                        json_integer((json_int_t)ss->live_start));
    json_object_set_new(j, "live_next",
                        json_integer((json_int_t)ss->live_next));
    json_object_set_new(j, "drain_rate", json_real(ss->drain_rate));
    json_object_set_new(j, "eta_s", json_real(ss->eta_s));
    json_array_append_new(arr, j);
  }
  json_object_set_new(o, "streams", arr);
  json_object_set_new(root, "uplink", o);
  free(s);
}

void sl_uplink_stop(sl_daemon_t *dm) {
  sl_uplink_t *ul = dm->uplink;
  if (!ul)
    return;
  sl_sync_stop(ul->sync, 10000);
  sl_uplink_tick(dm); /* final state in the log */
}

void sl_uplink_free(sl_daemon_t *dm) {
  sl_uplink_t *ul = dm->uplink;
  if (!ul)
    return;
  sl_sync_free(ul->sync);
  free(ul->series);
  free(ul->idx);
  free(ul);
  dm->uplink = NULL;
}
