/*
 * daemon/models.c: model distribution on the node (docs/EDGE-AI.md, "Model
 * distribution", "The quality gate"). The decisions are model/'s (one
 * sl_model_t per model, a machine over persisted state); this file gives
 * them a host:
 *
 *   - state: one value per model ("model/<name>") and an index
 *     ("models.index") in the store's state database, one synchronous LMDB
 *     transaction per transition (as daemon/fleet_agent.c);
 *   - inputs: a thread that reads every partition of <prefix>models from
 *     the beginning (compacted: one manifest per model) with assign(), offers
 *     each model's newest manifest once caught up, and fetches the pending
 *     version's chunks from <prefix>model.chunks starting at the offset of
 *     the first missing chunk (the manifest lists them), under the bandwidth
 *     cap (a quarter of it while the uplink sends a backlog) and inside
 *     models.window; acknowledgements from the admin server (POST
 *     /v1/models/<name>/ack); the trial version's aggregates from
 *     models.gate_stream (daemon/models_gate.c);
 *   - outputs: the retained MQTT message sluice/models/<name>/active (on the
 *     loop, retried until the publish link takes it), ModelStatus records
 *     to <prefix>model.status (key "<node>/<model>", Java's partition),
 *     GET /v1/models, metrics.
 *
 * Threads: the machines run on the models thread only; the loop thread
 * publishes the MQTT messages and samples the uplink's backlog; the admin
 * thread reads a JSON snapshot and queues acks under the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "daemon/models_int.h"
#include "fleet/fleet.h"
#include "model/model.h"
#include "telemetry/log.h"

/* A fetch holds four 512 KiB chunk batches and their record overhead with
 * 32 KiB to spare: the broker cuts a response at this size and the cut
 * (partial) batch is fetched again by the next request, so the limit must
 * not sit just below a whole number of batches (at 1 MiB every second
 * batch arrived twice: rx_bytes 2x the model). */
#define FETCH_BYTES "2129920"

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- the machines' host ------------------------------------------------ */

static int put_state(sl_models_t *ms, const char *key, const void *v,
                     size_t len) {
  sl_store_group_t *g;
  int rc = sl_store_group_new(ms->dm->in.st, &g);
  if (rc < 0)
    return rc;
  if ((rc = sl_store_group_state_put(g, key, strlen(key), v, len)) < 0) {
    sl_store_group_free(g);
    return rc;
  }
  return sl_store_group_commit(g, NULL, 0);
}

static int get_state(sl_models_t *ms, const char *key, uint8_t **out,
                     size_t *len) {
  size_t cap = 1 << 16, vlen = 0;
  uint8_t *buf = malloc(cap);
  int rc;
  *out = NULL;
  *len = 0;
  if (!buf)
    return -ENOMEM;
  rc = sl_store_state_get(ms->dm->in.st, key, strlen(key), buf, cap, &vlen);
  if (rc == SL_ETOOBIG) {
    uint8_t *nb = realloc(buf, vlen);
    if (!nb) {
      free(buf);
      return -ENOMEM;
    }
    buf = nb;
    rc = sl_store_state_get(ms->dm->in.st, key, strlen(key), buf, vlen, &vlen);
  }
  if (rc < 0) {
    free(buf);
    return rc == SL_ENOTFOUND ? 0 : rc;
  }
  *out = buf;
  *len = vlen;
  return 0;
}

static int op_persist(void *o, const char *model, const void *state,
                      size_t len) {
  char key[200];
  int rc;
  snprintf(key, sizeof(key), "model/%s", model);
  if ((rc = put_state(o, key, state, len)) < 0)
    sl_error(SL_LOG_CTX_CONFIG, model, "models: cannot store the state: %s",
             sl_strerror(rc));
  return rc;
}

static entry_t *find(sl_models_t *ms, const char *name) {
  for (size_t i = 0; i < ms->nents; i++)
    if (!strcmp(ms->ents[i].name, name))
      return &ms->ents[i];
  return NULL;
}

static void produce_status(sl_models_t *ms, entry_t *e) {
  char key[400];
  if (!e->status || ms->status_parts <= 0 || !ms->prod)
    return;
  snprintf(key, sizeof(key), "%s/%s", ms->node_id, e->name);
  if (rd_kafka_producev(ms->prod, RD_KAFKA_V_TOPIC(ms->topic[2]),
                        RD_KAFKA_V_PARTITION(sl_fleet_partition(
                            key, strlen(key), ms->status_parts)),
                        RD_KAFKA_V_KEY(key, strlen(key)),
                        RD_KAFKA_V_VALUE(e->status, e->status_len),
                        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                        RD_KAFKA_V_END) == 0)
    e->status = NULL; /* librdkafka frees it */
}

static void op_status(void *o, const char *model, const void *rec, size_t len) {
  sl_models_t *ms = o;
  entry_t *e = find(ms, model);
  sl_model_info_t in;
  if (!e)
    return;
  if (e->m) { /* NULL while it opens: the status still goes */
    sl_model_info(e->m, &in);
    if (in.phase == SL_MODEL_REJECTED || in.phase == SL_MODEL_ROLLED_BACK)
      sl_warn(SL_LOG_CTX_CONFIG, model, "models: %s (%s): %s",
              sl_model_phase_name(in.phase), in.reason, in.message);
    else
      sl_info(SL_LOG_CTX_CONFIG, model, "models: %s%s%s",
              sl_model_phase_name(in.phase), *in.message ? ": " : "",
              in.message);
  }
  free(e->status);
  if (!(e->status = malloc(len)))
    return;
  memcpy(e->status, rec, len);
  e->status_len = len;
  produce_status(ms, e);
}

static int64_t op_now(void *o) {
  (void)o;
  return now_ns();
}

static const sl_model_ops_t model_ops = {op_persist, models__announce,
                                         op_status, op_now, NULL};

static int save_index(sl_models_t *ms) {
  char buf[MAX_MODELS * 130] = "";
  for (size_t i = 0; i < ms->nents; i++) {
    strcat(buf, ms->ents[i].name);
    strcat(buf, "\n");
  }
  return put_state(ms, INDEX_KEY, buf, strlen(buf));
}

static entry_t *open_entry(sl_models_t *ms, const char *name, bool index) {
  entry_t *e = find(ms, name);
  sl_model_conf_t c = {.dir = ms->dir,
                       .name = name,
                       .key = ms->key,
                       .max_bytes = ms->max_bytes,
                       .node_id = ms->node_id};
  char key[200];
  uint8_t *st;
  size_t len;
  int rc;
  if (e)
    return e;
  if (ms->nents == MAX_MODELS)
    return NULL;
  e = &ms->ents[ms->nents];
  memset(e, 0, sizeof(*e));
  snprintf(e->name, sizeof(e->name), "%s", name);
  ms->nents++; /* before open: its callbacks find it */
  snprintf(key, sizeof(key), "model/%s", name);
  if ((rc = get_state(ms, key, &st, &len)) < 0 ||
      (rc = sl_model_open(&c, &model_ops, ms, st, len, &e->m)) < 0) {
    sl_error(SL_LOG_CTX_CONFIG, name, "models: cannot open: %s",
             sl_strerror(rc));
    free(st);
    ms->nents--;
    return NULL;
  }
  free(st);
  if (index)
    (void)save_index(ms);
  return e;
}

static bool wanted(const sl_models_t *ms, const char *name) {
  if (!ms->nnames)
    return true;
  for (size_t i = 0; i < ms->nnames; i++)
    if (!strcmp(ms->names[i], name))
      return true;
  return false;
}

/* ---- the models thread ------------------------------------------------- */

static int32_t partitions_of(rd_kafka_t *rk, const char *topic) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
  int32_t n = -1;
  if (rd_kafka_metadata(rk, 0, t, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    if (md->topic_cnt == 1 && !md->topics[0].err)
      n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_topic_destroy(t);
  return n;
}

static bool in_window(const sl_models_t *ms) {
  time_t t = time(NULL);
  struct tm tm;
  int now;
  if (ms->win_start < 0)
    return true;
  gmtime_r(&t, &tm);
  now = tm.tm_hour * 60 + tm.tm_min;
  if (ms->win_start <= ms->win_end)
    return now >= ms->win_start && now < ms->win_end;
  return now >= ms->win_start || now < ms->win_end;
}

/* Waits for len bytes of the cap; false when stopping. */
static bool take_tokens(sl_models_t *ms, size_t len) {
  if (!ms->rate)
    return true;
  for (;;) {
    int64_t t = mono_ns();
    double rate = (double)ms->rate / (atomic_load(&ms->slow) ? 4.0 : 1.0);
    double burst = rate > SL_MODEL_MAX_CHUNK ? rate : SL_MODEL_MAX_CHUNK;
    ms->tokens += rate * (double)(t - ms->refill_ns) / 1e9;
    if (ms->tokens > burst)
      ms->tokens = burst;
    ms->refill_ns = t;
    if (ms->tokens >= (double)len) {
      ms->tokens -= (double)len;
      return true;
    }
    if (atomic_load(&ms->stop))
      return false;
    double wait_s = ((double)len - ms->tokens) / rate;
    usleep((useconds_t)(wait_s > 0.05 ? 50000 : wait_s * 1e6 + 1));
  }
}

static void assign_chunks(sl_models_t *ms, const sl_model_manifest_info_t *mi,
                          int64_t next) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  int64_t off =
      mi->chunk_offsets ? mi->chunk_offsets[next] : RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_topic_partition_list_add(l, ms->topic[1], mi->chunk_partition)
      ->offset = off;
  if (rd_kafka_assign(ms->cc, l) == 0) {
    snprintf(ms->fetching, sizeof(ms->fetching), "%s", mi->sha256);
    ms->next_expected = off;
  }
  rd_kafka_topic_partition_list_destroy(l);
}

static void unassign_chunks(sl_models_t *ms) {
  if (ms->fetching[0])
    rd_kafka_assign(ms->cc, NULL);
  ms->fetching[0] = 0;
}

/* One step of the download of the first model with chunks missing. */
static void download(sl_models_t *ms) {
  entry_t *e = NULL;
  sl_model_manifest_info_t mi;
  rd_kafka_message_t *msg;
  int64_t next = -1;

  /* A model taken off models.names keeps what it has, fetches nothing. */
  for (size_t i = 0; i < ms->nents && !e; i++)
    if (ms->ents[i].m && wanted(ms, ms->ents[i].name) &&
        (next = sl_model_next_chunk(ms->ents[i].m)) >= 0)
      e = &ms->ents[i];
  sl_metric_set(ms->m_downloading, e ? 1 : 0);
  if (!e || !in_window(ms)) {
    unassign_chunks(ms);
    rd_kafka_message_t *idle = rd_kafka_consumer_poll(ms->cc, 100);
    if (idle) /* unassigned: only statistics and errors come */
      rd_kafka_message_destroy(idle);
    return;
  }
  sl_model_manifest_info(sl_model_pending(e->m), &mi);
  if (strcmp(ms->fetching, mi.sha256))
    assign_chunks(ms, &mi, next);
  if (!(msg = rd_kafka_consumer_poll(ms->cc, 200)))
    return;
  if (!msg->err && msg->key) {
    char key[100];
    size_t kl = msg->key_len < sizeof(key) - 1 ? msg->key_len : sizeof(key) - 1;
    memcpy(key, msg->key, kl);
    key[kl] = 0;
    ms->next_expected = msg->offset + 1;
    char *slash = strchr(key, '/');
    if (slash && (size_t)(slash - key) == 64 && !strncmp(key, mi.sha256, 64)) {
      uint32_t idx = (uint32_t)strtoul(slash + 1, NULL, 10);
      if (take_tokens(ms, msg->len)) {
        int rc = sl_model_put_chunk(e->m, idx, msg->payload, msg->len);
        sl_metric_add(ms->m_bytes, msg->len);
        sl_metric_add(rc == 0 ? ms->m_chunks_ok : ms->m_chunks_bad, 1);
        if (rc < 0 && rc != SL_ECORRUPT)
          sl_warn(SL_LOG_CTX_CONFIG, e->name, "models: chunk %u: %s", idx,
                  sl_strerror(rc));
      }
    }
  }
  rd_kafka_message_destroy(msg);
  if (sl_model_pending(e->m) && (next = sl_model_next_chunk(e->m)) < 0) {
    unassign_chunks(ms);
    int rc = sl_model_activate(e->m);
    if (rc < 0)
      sl_warn(SL_LOG_CTX_CONFIG, e->name, "models: activation: %s",
              sl_strerror(rc));
  } else if (next >= 0 && mi.chunk_offsets &&
             mi.chunk_offsets[next] != ms->next_expected) {
    /* A corrupt chunk to fetch again, or chunks already there skipped. */
    assign_chunks(ms, &mi, next);
  } else if (!sl_model_pending(e->m)) {
    unassign_chunks(ms);
  }
}

static void take_acks(sl_models_t *ms) {
  ack_t *a;
  pthread_mutex_lock(&ms->lock);
  a = ms->acks;
  ms->acks = NULL;
  pthread_mutex_unlock(&ms->lock);
  while (a) {
    ack_t *next = a->next;
    entry_t *e = find(ms, a->name);
    if (e && e->m) {
      int rc = sl_model_ack(e->m, a->version, a->ok, a->message);
      if (rc < 0)
        sl_warn(SL_LOG_CTX_CONFIG, a->name, "models: acknowledgement of %s: %s",
                a->version, sl_strerror(rc));
    }
    free(a);
    a = next;
  }
}

static void read_manifests(sl_models_t *ms, bool *caught_up, int *eofs,
                           int32_t parts) {
  rd_kafka_message_t *msg;
  while ((msg = rd_kafka_consumer_poll(ms->cm, 0))) {
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (!*caught_up && ++*eofs >= parts)
        *caught_up = true;
    } else if (!msg->err && msg->key && msg->key_len < 129 && msg->len) {
      char name[129];
      entry_t *e;
      memcpy(name, msg->key, msg->key_len);
      name[msg->key_len] = 0;
      if (wanted(ms, name) && (e = open_entry(ms, name, true))) {
        free(e->newest);
        if ((e->newest = malloc(msg->len))) {
          memcpy(e->newest, msg->payload, msg->len);
          e->newest_len = msg->len;
        }
      }
    }
    rd_kafka_message_destroy(msg);
  }
  if (!*caught_up)
    return;
  for (size_t i = 0; i < ms->nents; i++) {
    entry_t *e = &ms->ents[i];
    if (e->newest && e->m) {
      (void)sl_model_offer(e->m, e->newest, e->newest_len);
      free(e->newest);
      e->newest = NULL;
    }
  }
}

static void *models_thread(void *arg) {
  sl_models_t *ms = arg;
  int32_t parts = -1;
  int eofs = 0;
  bool caught_up = false;
  int64_t last_tick = 0, last_meta = 0, last_smeta = 0;

  ms->refill_ns = mono_ns();
  while (!atomic_load(&ms->stop)) {
    int64_t t = mono_ns();
    if (parts <= 0 && t - last_meta > 2000000000LL) {
      last_meta = t;
      if ((parts = partitions_of(ms->cm, ms->topic[0])) > 0) {
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(parts);
        for (int32_t p = 0; p < parts; p++)
          rd_kafka_topic_partition_list_add(l, ms->topic[0], p)->offset =
              RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_assign(ms->cm, l);
        rd_kafka_topic_partition_list_destroy(l);
      }
    }
    if (ms->status_parts <= 0 && t - last_smeta > 1000000000LL &&
        (last_smeta = t) &&
        (ms->status_parts = partitions_of(ms->prod, ms->topic[2])) > 0)
      for (size_t i = 0; i < ms->nents; i++)
        produce_status(ms, &ms->ents[i]);
    if (parts > 0)
      read_manifests(ms, &caught_up, &eofs, parts);
    take_acks(ms);
    download(ms);
    rd_kafka_poll(ms->prod, 0);
    if (t - last_tick >= 1000000000LL) {
      last_tick = t;
      for (size_t i = 0; i < ms->nents; i++)
        if (ms->ents[i].m)
          sl_model_tick(ms->ents[i].m);
      if (ms->gate)
        sl_models_gate_poll(ms->gate);
      models__counters(ms);
      models__snapshot(ms);
    }
  }
  return NULL;
}

/* ---- the loop side ----------------------------------------------------- */

/* ---- admin ------------------------------------------------------------- */

/* ---- start and stop ---------------------------------------------------- */

static void klog(const rd_kafka_t *rk, int level, const char *fac,
                 const char *buf) {
  (void)rk;
  sl_log_kafka_cb(NULL, level, fac, buf);
}

static rd_kafka_conf_t *kconf(const sl_daemon_t *dm, const char *brokers,
                              char *err, size_t errlen) {
  const sl_config_t *cfg = dm->in.cfg;
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(c, klog);
  if (rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, errlen) ||
      rd_kafka_conf_set(c, "client.id", "sluice-models", err, errlen))
    goto fail;
  for (size_t i = 0; i < cfg->kafka.properties.n; i++) {
    const char *p = cfg->kafka.properties.v[i], *eq = strchr(p, '=');
    char k[128];
    if (!eq || (size_t)(eq - p) >= sizeof(k))
      continue;
    memcpy(k, p, (size_t)(eq - p));
    k[eq - p] = '\0';
    if (!strncmp(k, "transactional.", 14) || !strcmp(k, "enable.idempotence"))
      continue;
    if (rd_kafka_conf_set(c, k, eq + 1, err, errlen))
      goto fail;
  }
  if (*cfg->kafka.ssl_key_location &&
      rd_kafka_conf_set(c, "ssl.key.location", cfg->kafka.ssl_key_location, err,
                        errlen))
    goto fail;
  for (size_t i = 0; i < dm->kx.nprops; i++) {
    const char *p = dm->kx.props[i], *eq = strchr(p, '=');
    char k[128];
    if (!eq || (size_t)(eq - p) >= sizeof(k))
      continue;
    memcpy(k, p, (size_t)(eq - p));
    k[eq - p] = '\0';
    if (rd_kafka_conf_set(c, k, eq + 1, err, errlen))
      goto fail;
  }
  return c;
fail:
  rd_kafka_conf_destroy(c);
  return NULL;
}

/* librdkafka's statistics of the chunk consumer: bytes received from the
 * brokers (protocol and prefetch included), for the benchmark's
 * bytes-per-node figure. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque) {
  sl_models_t *ms = opaque;
  const char *p = strstr(json, "\"rx_bytes\":");
  (void)rk;
  (void)len;
  if (p)
    sl_metric_set(ms->m_rx, strtod(p + 11, NULL));
  return 0;
}

static rd_kafka_t *consumer(sl_models_t *ms, const char *brokers,
                            const char *what, bool small, char *err,
                            size_t errlen) {
  rd_kafka_conf_t *c = kconf(ms->dm, brokers, err, errlen);
  char group[300];
  if (!c)
    return NULL;
  snprintf(group, sizeof(group), "sluice-models-%s-%s", what, ms->node_id);
  /* assign() only: no group joined, no offset committed (progress lives in
   * the store, per chunk). A small fetch queue keeps the network near what
   * the cap lets through. */
  if (rd_kafka_conf_set(c, "group.id", group, err, errlen) ||
      rd_kafka_conf_set(c, "enable.auto.commit", "false", err, errlen) ||
      rd_kafka_conf_set(c, "enable.partition.eof", "true", err, errlen) ||
      rd_kafka_conf_set(c, "auto.offset.reset", "earliest", err, errlen) ||
      (small &&
       (rd_kafka_conf_set(c, "queued.max.messages.kbytes", "2080", err,
                          errlen) ||
        rd_kafka_conf_set(c, "fetch.max.bytes", FETCH_BYTES, err, errlen) ||
        rd_kafka_conf_set(c, "max.partition.fetch.bytes", FETCH_BYTES, err,
                          errlen) ||
        rd_kafka_conf_set(c, "statistics.interval.ms", "1000", err, errlen)))) {
    rd_kafka_conf_destroy(c);
    return NULL;
  }
  if (small) {
    rd_kafka_conf_set_stats_cb(c, on_stats);
    rd_kafka_conf_set_opaque(c, ms);
  }
  return rd_kafka_new(RD_KAFKA_CONSUMER, c, err, errlen);
}

int sl_models_start(sl_daemon_t *dm, char *err, size_t errlen) {
  const sl_config_t *cfg = dm->in.cfg;
  sl_models_t *ms;
  const char *brokers = *cfg->models.brokers  ? cfg->models.brokers
                        : *cfg->fleet.brokers ? cfg->fleet.brokers
                        : *cfg->kafka.brokers ? cfg->kafka.brokers
                                              : dm->kx.brokers;
  const char *prefix = *cfg->models.topic_prefix ? cfg->models.topic_prefix
                       : dm->kx.topic_prefix     ? dm->kx.topic_prefix
                                                 : cfg->fleet.topic_prefix;
  const char *vk = *cfg->models.verify_key  ? cfg->models.verify_key
                   : *cfg->fleet.verify_key ? cfg->fleet.verify_key
                                            : dm->kx.verify_key;
  rd_kafka_conf_t *pc;
  uint8_t *idx = NULL;
  size_t idx_len = 0;
  int rc;

  if (!cfg->models.enabled || dm->kx.blocked)
    return 0;
  if (!brokers || !*brokers || !vk || !*vk) {
    snprintf(err, errlen,
             "models.enabled needs brokers (models.brokers, "
             "fleet.brokers or kafka.brokers) and a verify key "
             "(models.verify_key or fleet.verify_key)");
    return SL_ECONFIG;
  }
  if (!(ms = calloc(1, sizeof(*ms))))
    return -ENOMEM;
  dm->models = ms;
  ms->dm = dm;
  pthread_mutex_init(&ms->lock, NULL);
  if ((rc = sl_fleet_key_load(vk, false, &ms->key, err, errlen)) < 0)
    return rc;
  if (*cfg->models.dir)
    snprintf(ms->dir, sizeof(ms->dir), "%s", cfg->models.dir);
  else
    snprintf(ms->dir, sizeof(ms->dir), "%s/models", cfg->node.data_dir);
  snprintf(ms->topic[0], sizeof(ms->topic[0]), "%smodels", prefix);
  snprintf(ms->topic[1], sizeof(ms->topic[1]), "%smodel.chunks", prefix);
  snprintf(ms->topic[2], sizeof(ms->topic[2]), "%smodel.status", prefix);
  snprintf(ms->node_id, sizeof(ms->node_id), "%s", dm->in.node_id);
  ms->max_bytes = cfg->models.max_bytes;
  ms->rate = cfg->models.bandwidth_bytes_per_s;
  ms->names = (const char *const *)cfg->models.names.v;
  ms->nnames = cfg->models.names.n;
  ms->win_start = ms->win_end = -1;
  if (*cfg->models.window) {
    unsigned h1, m1, h2, m2;
    if (sscanf(cfg->models.window, "%u:%u-%u:%u", &h1, &m1, &h2, &m2) == 4 &&
        (h1 * 60 + m1) != (h2 * 60 + m2)) {
      ms->win_start = (int)(h1 * 60 + m1);
      ms->win_end = (int)(h2 * 60 + m2);
    }
  }
  ms->m_bytes =
      sl_metrics_counter(dm->in.mx, "sluice_model_bytes_fetched_total",
                         "Model chunk bytes received", NULL);
  ms->m_chunks_ok =
      sl_metrics_counter(dm->in.mx, "sluice_model_chunks_total",
                         "Model chunks received", "result=\"ok\"");
  ms->m_chunks_bad =
      sl_metrics_counter(dm->in.mx, "sluice_model_chunks_total",
                         "Model chunks received", "result=\"refused\"");
  ms->m_activations =
      sl_metrics_counter(dm->in.mx, "sluice_model_activations_total",
                         "Model versions activated", NULL);
  ms->m_commits =
      sl_metrics_counter(dm->in.mx, "sluice_model_commits_total",
                         "Model versions that passed the gate", NULL);
  ms->m_rollbacks =
      sl_metrics_counter(dm->in.mx, "sluice_model_rollbacks_total",
                         "Model versions rolled back", NULL);
  ms->m_rejections =
      sl_metrics_counter(dm->in.mx, "sluice_model_rejections_total",
                         "Model versions refused before activation", NULL);
  ms->m_rx = sl_metrics_gauge(dm->in.mx, "sluice_model_rx_bytes",
                              "Bytes the chunk consumer received from the "
                              "brokers since start (librdkafka statistics)",
                              NULL);
  ms->m_downloading =
      sl_metrics_gauge(dm->in.mx, "sluice_model_downloading",
                       "1 while a model version is being downloaded", NULL);

  /* The machines first: recovery and the retained messages do not wait
   * for Kafka. */
  if ((rc = get_state(ms, INDEX_KEY, &idx, &idx_len)) < 0)
    return rc;
  for (size_t i = 0; idx && i < idx_len;) {
    char name[129];
    size_t j = i;
    while (j < idx_len && idx[j] != '\n')
      j++;
    if (j - i < sizeof(name) && j > i) {
      memcpy(name, idx + i, j - i);
      name[j - i] = 0;
      (void)open_entry(ms, name, false);
    }
    i = j + 1;
  }
  free(idx);
  models__snapshot(ms);

  if (!(pc = kconf(dm, brokers, err, errlen)))
    return SL_ECONFIG;
  /* The status topic's metadata must not create it (with the broker's
   * defaults, not compacted): `sluice model publish` or the centre does. */
  if (rd_kafka_conf_set(pc, "linger.ms", "5", err, errlen) ||
      rd_kafka_conf_set(pc, "allow.auto.create.topics", "false", err, errlen) ||
      rd_kafka_conf_set(pc, "message.timeout.ms", "0", err, errlen)) {
    rd_kafka_conf_destroy(pc);
    return SL_ECONFIG;
  }
  if (!(ms->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, errlen)) ||
      !(ms->cm = consumer(ms, brokers, "manifests", false, err, errlen)) ||
      !(ms->cc = consumer(ms, brokers, "chunks", true, err, errlen)))
    return SL_EKAFKA;
  /* Its statistics (and logs) are served by consumer_poll. */
  rd_kafka_poll_set_consumer(ms->cc);
  if (*cfg->models.gate_stream &&
      (rc = sl_models_gate_new(dm, cfg->models.gate_stream, &ms->gate, err,
                               errlen)) < 0)
    return rc;
  uv_async_init(&dm->loop, &ms->wake, models__on_wake);
  ms->wake.data = ms;
  uv_timer_init(&dm->loop, &ms->timer);
  ms->timer.data = ms;
  uv_timer_start(&ms->timer, models__on_timer, 0, 1000);
  ms->handles_open = 1;
  if (dm->adm) {
    sl_admin_models_t am = {models__admin_list, models__admin_ack, ms};
    sl_admin_set_models(dm->adm, &am);
  }
  if (pthread_create(&ms->thr, NULL, models_thread, ms) != 0) {
    snprintf(err, errlen, "models: cannot start its thread");
    return -EAGAIN;
  }
  ms->thr_started = 1;
  return 0;
}

void sl_models_close(sl_daemon_t *dm) {
  sl_models_t *ms = dm->models;
  if (!ms || !ms->handles_open)
    return;
  if (dm->adm)
    sl_admin_set_models(dm->adm, NULL);
  ms->handles_open = 0;
  uv_timer_stop(&ms->timer);
  uv_close((uv_handle_t *)&ms->timer, NULL);
  uv_close((uv_handle_t *)&ms->wake, NULL);
}

void sl_models_free(sl_daemon_t *dm) {
  sl_models_t *ms = dm->models;
  if (!ms)
    return;
  /* The admin server is gone by now (daemon_free stops it first; the
   * routes were turned off in sl_models_close). */
  atomic_store(&ms->stop, 1);
  if (ms->thr_started)
    pthread_join(ms->thr, NULL);
  if (ms->cm) {
    rd_kafka_consumer_close(ms->cm);
    rd_kafka_destroy(ms->cm);
  }
  if (ms->cc) {
    rd_kafka_consumer_close(ms->cc);
    rd_kafka_destroy(ms->cc);
  }
  if (ms->prod) {
    rd_kafka_flush(ms->prod, 2000);
    rd_kafka_destroy(ms->prod);
  }
  sl_models_gate_free(ms->gate);
  for (size_t i = 0; i < ms->nents; i++) {
    sl_model_free(ms->ents[i].m);
    free(ms->ents[i].newest);
    free(ms->ents[i].status);
  }
  for (size_t i = 0; i < ms->nann; i++)
    free(ms->ann[i].payload);
  while (ms->acks) {
    ack_t *n = ms->acks->next;
    free(ms->acks);
    ms->acks = n;
  }
  free(ms->snap);
  sl_fleet_key_free(ms->key);
  pthread_mutex_destroy(&ms->lock);
  free(ms);
  dm->models = NULL;
}

sl_model_t *sl_models__find(sl_models_t *ms, const char *name) {
  entry_t *e = find(ms, name);
  return e ? e->m : NULL;
}
