/*
 * sync/uplink.c: the uplink thread and the public calls. One loop:
 * connect (producer, init_transactions), resume (checkpoints), then chunks:
 * begin a transaction, pump the lanes (live first, by stream priority),
 * forward gap records, add the checkpoints of the streams touched, commit,
 * then advance the local cursors.
 *
 * Pipelined commits (exactly-once, the default): two transactional
 * producers ("<prefix><node>" and "<prefix><node>.1") take turns. Once a
 * transaction's records are all acknowledged (flushed), the committer
 * thread runs its commit_transaction() (EndTxn and the markers) while this
 * thread begins the next transaction on the other producer. A commit used
 * to stall every live record for flush + EndTxn + the next
 * AddPartitionsToTxn, which the coordinator answers CONCURRENT_TRANSACTIONS
 * until its markers are written (librdkafka retries after 20 ms): ~30 ms
 * per commit, the live p99. Order holds: the next transaction's records
 * are produced only after every record of the previous one was appended,
 * and a transaction is committed only after the previous commit was
 * confirmed. A commit that fails leaves its outcome unknown here: both
 * producers are rebuilt (init_transactions aborts what was left open) and
 * delivery resumes from the checkpoints read back from Kafka.
 *
 * Errors:
 *   - abortable (a record failed, a timeout): abort, rewind every stream to
 *     its committed checkpoint, retry after a jittered backoff;
 *   - fenced: stop for good (SL_SYNC_FENCED), the newer instance owns the
 *     node's transactional id;
 *   - other fatal errors: destroy the producer, make a new one and resume
 *     from the checkpoints read back from Kafka.
 *
 * The phases live in their own files: sync/uplink_produce.c (plan and pump
 * the lanes, end a chunk's records), sync/uplink_commit.c (flush, commit,
 * the committer thread), sync/uplink_recover.c (abort and rewind after a
 * failed chunk). This file has the loop, the chunk that strings the
 * phases together, and the public calls.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sync/sync_int.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 10000

static_assert(SYNC_PRODUCERS >= 2, "pipelined commits take turns on two");

static const char *const state_names[] = {"stopped", "connecting",  "resuming",
                                          "running", "backoff",     "fenced",
                                          "failed",  "disconnected"};

const char *sl_sync_state_name(sl_sync_state_t state) {
  return (unsigned)state < SL_ARRAY_SIZE(state_names) ? state_names[state]
                                                      : "?";
}

void sl_sync_opts_init(sl_sync_opts_t *o) {
  memset(o, 0, sizeof(*o));
  o->checkpoint_topic = "sluice.checkpoints";
  o->txn_id_prefix = "sluice-";
  o->consumer = "uplink";
  o->gap_topic = "";
  o->chunk_events = 50000;
  o->commit_interval_ms = 100;
  o->queue_max_messages = 20000;
  o->queue_max_kbytes = 8192;
  o->max_record_bytes = 1000000;
  o->backlog_share = 0.5;
  o->backlog_threshold = 100000;
  o->txn_timeout_ms = 60000;
}

static void set_state(sl_sync_t *up, sl_sync_state_t state) {
  pthread_mutex_lock(&up->lock);
  up->stats.state = state;
  pthread_mutex_unlock(&up->lock);
}

/* Jittered exponential backoff, capped; a minute, jittered, after an
 * authentication failure (the producers were dropped: librdkafka would
 * otherwise retry on its own every reconnect.backoff.max.ms). */
static void backoff(sl_sync_t *up) {
  up->backoff_ms = up->backoff_ms ? SL_MIN(up->backoff_ms * 2, BACKOFF_MAX_MS)
                                  : BACKOFF_MIN_MS;
  uint64_t ms =
      up->backoff_ms / 2 + (uint64_t)rand() % (up->backoff_ms / 2 + 1);
  pthread_mutex_lock(&up->lock);
  bool auth = up->auth_failed;
  up->auth_failed = false;
  pthread_mutex_unlock(&up->lock);
  if (auth)
    ms = up->o.auth_backoff_ms / 2 +
         (uint64_t)rand() % (up->o.auth_backoff_ms / 2 + 1);
  set_state(up, SL_SYNC_BACKOFF);
  sync__wait_ms(up, ms);
}

/*
 * Idle and disconnected: nothing commits that would say the brokers are
 * back, so ask one for metadata (brokers only), at most once a second,
 * for at most 500 ms. An answer makes the uplink connected (and clears
 * last_error); the status would otherwise say disconnected until the next
 * event arrives.
 */
static void probe_idle(sl_sync_t *up) {
  const struct rd_kafka_metadata *md = NULL;
  uint64_t now = sl_now_mono_ns();
  pthread_mutex_lock(&up->lock);
  bool connected = up->stats.connected;
  pthread_mutex_unlock(&up->lock);
  if (connected || !up->rk || now - up->probe_ns < 1000000000u)
    return;
  up->probe_ns = now;
  if (rd_kafka_metadata(up->rk, 0, NULL, &md, 500) ==
          RD_KAFKA_RESP_ERR_NO_ERROR &&
      md) {
    if (md->broker_cnt > 0)
      sync__set_connected(up, 1);
  }
  if (md)
    rd_kafka_metadata_destroy(md);
}

/*
 * One chunk: collect a finished commit, plan the lanes, and when there is
 * work begin a transaction (exactly-once), produce, end the records and
 * commit; a failure on the way is recovered (abort and rewind). Returns 1
 * when something was committed (or handed to the committer), 0 when idle,
 * SL_EFENCED, or SL_EKAFKA with *fatal when the producer must be rebuilt.
 */
static int run_chunk(sl_sync_t *up, bool *fatal) {
  bool eos = !up->o.at_least_once, abortable, retriable;
  int rc;
  *fatal = false;

  if ((rc = sync__collect(up, false, fatal)) < 0)
    goto fail;
  bool collected = rc == 1;
  sync__plan_lanes(up);
  if (!sync__has_work(up))
    return collected ? 1 : 0;
  if (eos) {
    assert(!up->in_txn); /* every chunk ends its transaction */
    rd_kafka_error_t *error = rd_kafka_begin_transaction(up->rk);
    if ((rc = sync__txn_call(up, error, "begin_transaction", fatal, &abortable,
                             &retriable)) < 0)
      return rc;
    up->in_txn = true;
  }
  up->dr_ok = up->dr_failed = 0;
  up->dr_first_err = 0;
  if (eos && up->need_probe)
    sync__probe_clock(up);
  if ((rc = sync__chunk_produce(up, eos, fatal)) < 0 ||
      (rc = sync__chunk_finish(up)) < 0 ||
      (rc = sync__chunk_commit(up, eos, fatal)) < 0)
    goto fail;
  return 1;

fail:
  return sync__chunk_recover(up, eos, rc, fatal);
}

/*
 * Makes the producers and resumes from the checkpoints: every stream
 * rewinds to them and the stats show them. Returns 0 (running), or the
 * error (already in the status) after which the loop backs off, or stops
 * for good on SL_EFENCED and SL_ECONFIG.
 */
static int connect_resume(sl_sync_t *up) {
  char err[512];
  int rc;
  set_state(up, SL_SYNC_CONNECTING);
  if ((rc = sync__producer_open(up, err, sizeof(err))) < 0) {
    sync__set_error(up, rc, "%s", err);
    return rc;
  }
  set_state(up, SL_SYNC_RESUMING);
  if ((rc = sync__resume(up, err, sizeof(err))) < 0) {
    sync__set_error(up, rc, "%s", err);
    sync__producer_close(up);
    return SL_EKAFKA; /* back off and connect again */
  }
  if (up->gap_cp)
    sl_store_gap_ack(up->st, up->gap_cp); /* sent before a crash */
  sync__rewind_all(up);
  pthread_mutex_lock(&up->lock);
  for (size_t i = 0; i < up->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    s->st.next_offset = s->cp.backlog_next;
    s->st.live_start = s->cp.live_start;
    s->st.live_next = s->cp.live_next;
  }
  pthread_mutex_unlock(&up->lock);
  /* broker_estimate: learn the broker's clock before the first
   * record (the first transaction sends a checkpoint record first). */
  up->need_probe = up->o.record_timestamp != SL_SYNC_TS_NODE;
  set_state(up, SL_SYNC_RUNNING);
  return 0;
}

/* The loop ended: a pending commit is collected, an open transaction
 * aborted (bounded), the committer joined and the producers closed. */
static void uplink_shutdown(sl_sync_t *up) {
  if (up->committing) {
    bool f;
    sync__collect(up, true, &f);
  }
  if (up->rk && up->in_txn) {
    rd_kafka_error_t *e =
        rd_kafka_abort_transaction(up->rk, SYNC_STOP_GRACE_MS);
    if (e)
      rd_kafka_error_destroy(e);
  }
  sync__committer_stop(up);
  sync__producer_close(up);
  for (size_t i = 0; i < up->nstreams; i++) {
    sync__lane_close(&up->streams[i].live);
    sync__lane_close(&up->streams[i].backlog);
  }
  pthread_mutex_lock(&up->lock);
  if (up->stats.state != SL_SYNC_FENCED && up->stats.state != SL_SYNC_FAILED)
    up->stats.state = SL_SYNC_STOPPED;
  up->stats.connected = 0;
  pthread_mutex_unlock(&up->lock);
}

static void *uplink_main(void *arg) {
  sl_sync_t *up = arg;
  int rc;
  bool fatal;

  if (up->nprod > 1 && sync__committer_start(up) < 0)
    up->nprod = 1; /* serial commits */
  while (!sync__stopping(up)) {
    if (!up->rk && (rc = connect_resume(up)) < 0) {
      if (rc == SL_EFENCED || rc == SL_ECONFIG) {
        set_state(up, rc == SL_EFENCED ? SL_SYNC_FENCED : SL_SYNC_FAILED);
        break;
      }
      backoff(up);
      continue;
    }
    rc = run_chunk(up, &fatal);
    sync__update_rates(up);
    if (rc == 1) {
      set_state(up, SL_SYNC_RUNNING);
      continue;
    }
    if (rc == 0) {
      rd_kafka_poll(up->rk, 0);
      probe_idle(up);
      if (up->nprod > 1 && !up->committing)
        rd_kafka_poll(up->prod[(up->cur + 1) % up->nprod].rk, 0);
      sync__wait_ms(up, 2);
      continue;
    }
    if (rc == SL_EFENCED) {
      set_state(up, SL_SYNC_FENCED);
      break;
    }
    if (fatal || sync__auth_failed(up)) {
      pthread_mutex_lock(&up->lock);
      up->stats.producer_restarts++;
      pthread_mutex_unlock(&up->lock);
      sync__producer_close(up);
    }
    backoff(up);
  }
  uplink_shutdown(up);
  return NULL;
}

/* ---- public ----------------------------------------------------------- */

/* ---- public ----------------------------------------------------------- */
static char *dup_or(const char *s, const char *def) {
  char *p = strdup(s && *s ? s : def);
  if (!p)
    abort(); /* tiny control allocation */
  return p;
}

/* The owned copies of the options' strings, the transactional ids of the
 * producers, and the defaults of options left at 0. */
static void copy_opts(sl_sync_t *up, const sl_sync_opts_t *opts) {
  char tmp[64];
  up->o = *opts;
  up->node_id = dup_or(opts->node_id, "");
  up->brokers = dup_or(opts->brokers, "");
  up->ckpt_topic = dup_or(opts->checkpoint_topic, "sluice.checkpoints");
  up->consumer = dup_or(opts->consumer, "uplink");
  up->gap_topic = dup_or(opts->gap_topic, "");
  snprintf(tmp, sizeof(tmp), "%.60s",
           opts->txn_id_prefix ? opts->txn_id_prefix : "sluice-");
  size_t tl = strlen(tmp) + strlen(up->node_id) + 1;
  if (!(up->txn_id = malloc(tl)))
    abort();
  snprintf(up->txn_id, tl, "%s%s", tmp, up->node_id);
  up->nprod = !up->o.at_least_once && !up->o.serial_commits ? 2 : 1;
  assert(up->nprod <= SYNC_PRODUCERS);
  for (int k = 0; k < up->nprod; k++) {
    if (!(up->prod[k].txn_id = malloc(tl + 8)))
      abort();
    if (k)
      snprintf(up->prod[k].txn_id, tl + 8, "%s.%d", up->txn_id, k);
    else
      snprintf(up->prod[k].txn_id, tl + 8, "%s", up->txn_id);
  }
  if (!up->o.chunk_events)
    up->o.chunk_events = 50000;
  if (!up->o.commit_interval_ms)
    up->o.commit_interval_ms = 100;
  if (!up->o.queue_max_messages)
    up->o.queue_max_messages = 20000;
  if (!up->o.queue_max_kbytes)
    up->o.queue_max_kbytes = 8192;
  if (!up->o.max_record_bytes)
    up->o.max_record_bytes = 1000000;
  if (!up->o.txn_timeout_ms)
    up->o.txn_timeout_ms = 60000;
  if (!up->o.auth_backoff_ms)
    up->o.auth_backoff_ms = 60000;
  if (opts->nprops && !(up->props = calloc(opts->nprops, sizeof(char *))))
    abort();
  for (size_t i = 0; i < opts->nprops; i++)
    up->props[i] = dup_or(opts->props[i], "");
  up->o.props = NULL;
  up->o.streams = NULL;
}

/* Stream i's codec and level, and the same as any earlier stream's of its
 * topic: librdkafka compresses per topic handle, and a second
 * rd_kafka_topic_new() of a topic keeps the first one's settings. */
static int check_compression(sl_sync_t *up, size_t i, char *errstr,
                             size_t errlen) {
  const sync_stream_t *s = &up->streams[i];
  const char *why =
      sl_sync_compression_check(s->compression, s->compression_level);
  if (why) {
    snprintf(errstr, errlen, "sync: stream '%s': compression: %s", s->name,
             why);
    return SL_ECONFIG;
  }
  for (size_t j = 0; j < i; j++) {
    const sync_stream_t *o = &up->streams[j];
    if (!strcmp(o->topic, s->topic) &&
        (o->compression != s->compression ||
         o->compression_level != s->compression_level)) {
      snprintf(errstr, errlen,
               "sync: streams '%s' and '%s' share topic %s but not its "
               "compression (librdkafka compresses per topic): give them "
               "the same compression and compression_level",
               o->name, s->name, s->topic);
      return SL_ECONFIG;
    }
  }
  return 0;
}

/* The streams (looked up in the store) and their priority order. Returns 0
 * or an error with errstr. */
static int open_streams(sl_sync_t *up, const sl_sync_opts_t *opts, char *errstr,
                        size_t errlen) {
  int rc;
  if (!(up->streams = calloc(opts->nstreams ? opts->nstreams : 1,
                             sizeof(*up->streams))) ||
      !(up->order =
            calloc(opts->nstreams ? opts->nstreams : 1, sizeof(size_t))))
    abort();
  for (size_t i = 0; i < opts->nstreams; i++) {
    sync_stream_t *s = &up->streams[i];
    const sl_sync_stream_conf_t *c = &opts->streams[i];
    s->name = dup_or(c->name, "");
    s->topic = dup_or(c->topic, "");
    s->priority = c->priority;
    s->json = c->json;
    s->json_compact = c->json && c->json_compact;
    s->compression = c->compression;
    s->compression_level = c->compression_level;
    up->nstreams++;
    if ((rc = check_compression(up, i, errstr, errlen)) < 0)
      return rc;
    if ((rc = sl_store_stream_lookup(up->st, s->name, &s->id)) < 0) {
      snprintf(errstr, errlen, "sync: stream '%s': %s", s->name,
               sl_strerror(rc));
      return rc;
    }
    snprintf(s->ckpt_key, sizeof(s->ckpt_key), "%s/%s", up->node_id, s->name);
    snprintf(s->st.name, sizeof(s->st.name), "%s", s->name);
    up->order[i] = i;
  }
  /* Priority order, stable: higher first. */
  for (size_t i = 1; i < up->nstreams; i++)
    for (size_t j = i; j > 0 && up->streams[up->order[j]].priority >
                                    up->streams[up->order[j - 1]].priority;
         j--) {
      size_t t = up->order[j];
      up->order[j] = up->order[j - 1];
      up->order[j - 1] = t;
    }
  return 0;
}

/* Validates the librdkafka properties now, not on the uplink thread.
 * Returns 0 or SL_ECONFIG with errstr. */
static int check_props(sl_sync_t *up, char *errstr, size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char e[256];
  int rc = 0;
  for (size_t i = 0; i < up->o.nprops && rc == 0; i++) {
    char *eq = strchr(up->props[i], '=');
    if (!eq) {
      snprintf(errstr, errlen, "kafka property '%s' is not key=value",
               up->props[i]);
      rc = SL_ECONFIG;
      break;
    }
    *eq = '\0';
    rd_kafka_conf_res_t r =
        rd_kafka_conf_set(conf, up->props[i], eq + 1, e, sizeof(e));
    *eq = '=';
    if (r != RD_KAFKA_CONF_OK) {
      snprintf(errstr, errlen, "kafka property %s", e);
      rc = SL_ECONFIG;
    }
  }
  rd_kafka_conf_destroy(conf);
  return rc;
}

int sl_sync_new(sl_store_t *st, const sl_sync_opts_t *opts, sl_sync_t **out,
                char *errstr, size_t errlen) {
  sl_sync_t *up;
  sl_store_info_t info;
  int rc;

  *out = NULL;
  if (!opts->node_id || !*opts->node_id || !opts->brokers || !*opts->brokers) {
    snprintf(errstr, errlen, "sync: node id and brokers are required");
    return SL_ECONFIG;
  }
  if (opts->nstreams > SL_SYNC_STREAMS_MAX) {
    snprintf(errstr, errlen, "sync: %zu streams, at most %d", opts->nstreams,
             SL_SYNC_STREAMS_MAX);
    return SL_ETOOBIG;
  }
  if (!(up = calloc(1, sizeof(*up))))
    return -ENOMEM;
  pthread_mutex_init(&up->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&up->cond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&up->cm_lock, NULL);
  pthread_cond_init(&up->cm_cond, NULL);
  up->st = st;
  copy_opts(up, opts);
  if (opts->dead_letter_stream && *opts->dead_letter_stream) {
    if ((rc = sl_store_stream_lookup(st, opts->dead_letter_stream,
                                     &up->dlq_stream)) < 0) {
      snprintf(errstr, errlen, "sync: dead-letter stream '%s': %s",
               opts->dead_letter_stream, sl_strerror(rc));
      goto fail;
    }
    up->has_dlq = true;
  }
  if ((rc = sl_store_env_info(st, &info)) < 0) {
    snprintf(errstr, errlen, "sync: store: %s", sl_strerror(rc));
    goto fail;
  }
  snprintf(up->store_id, sizeof(up->store_id), "%s", info.node_id);
  if ((rc = open_streams(up, opts, errstr, errlen)) < 0)
    goto fail;
  up->stats.nstreams = up->nstreams;
  sync__local_positions(up); /* the backlog before the first connection */
  up->rate_t_ns = sl_now_mono_ns();
  if (opts->bandwidth_bytes_per_s) {
    double rate = (double)opts->bandwidth_bytes_per_s;
    double share = opts->backlog_share > 0 && opts->backlog_share <= 1
                       ? opts->backlog_share
                       : 0.5;
    uint64_t now = sl_now_mono_ns();
    sl_sync_bucket_init(&up->bucket, rate, SL_MAX(rate / 20, 16384), now);
    sl_sync_bucket_init(&up->backlog_bucket, rate * share,
                        SL_MAX(rate * share / 20, 16384), now);
  }
  if ((rc = check_props(up, errstr, errlen)) < 0)
    goto fail;
  *out = up;
  return 0;
fail:
  sl_sync_free(up);
  return rc;
}

int sl_sync_start(sl_sync_t *up) {
  int rc;
  if (up->started)
    return SL_ECLOSED;
  up->rate_t_ns = sl_now_mono_ns();
  if ((rc = pthread_create(&up->thread, NULL, uplink_main, up)) != 0)
    return -rc;
  up->started = true;
  return 0;
}

void sl_sync_kick(sl_sync_t *up) {
  pthread_mutex_lock(&up->lock);
  up->kick = true;
  pthread_cond_signal(&up->cond);
  pthread_mutex_unlock(&up->lock);
}

void sl_sync_stop(sl_sync_t *up, int timeout_ms) {
  (void)timeout_ms; /* every blocking call on the thread is bounded */
  if (!up->started || up->joined)
    return;
  pthread_mutex_lock(&up->lock);
  up->stop = true;
  pthread_cond_signal(&up->cond);
  pthread_mutex_unlock(&up->lock);
  pthread_join(up->thread, NULL);
  up->joined = true;
}

void sl_sync_free(sl_sync_t *up) {
  if (!up)
    return;
  sl_sync_stop(up, 0);
  for (size_t i = 0; i < up->nstreams; i++) {
    free(up->streams[i].name);
    free(up->streams[i].topic);
  }
  for (size_t i = 0; i < up->o.nprops; i++)
    free(up->props ? up->props[i] : NULL);
  free(up->props);
  free(up->streams);
  free(up->order);
  free(up->scratch);
  free(up->jbuf);
  free(up->arena_mem);
  free(up->node_id);
  free(up->brokers);
  free(up->ckpt_topic);
  free(up->txn_id);
  for (int k = 0; k < SYNC_PRODUCERS; k++) {
    free(up->prod[k].txn_id);
    free(up->prod[k].rkt);
  }
  pthread_cond_destroy(&up->cm_cond);
  pthread_mutex_destroy(&up->cm_lock);
  free(up->consumer);
  free(up->gap_topic);
  pthread_cond_destroy(&up->cond);
  pthread_mutex_destroy(&up->lock);
  free(up);
}

void sl_sync_stats(sl_sync_t *up, sl_sync_stats_t *stats) {
  pthread_mutex_lock(&up->lock);
  sync__sample(up);
  *stats = up->stats;
  for (size_t i = 0; i < up->nstreams; i++)
    stats->streams[i] = up->streams[i].st;
  pthread_mutex_unlock(&up->lock);
  /* State and connection agree: "running" means a broker answers. */
  if (stats->state == SL_SYNC_RUNNING && !stats->connected)
    stats->state = SL_SYNC_DISCONNECTED;
}
