/*
 * daemon/fleet_agent.c: the node side of the fleet control plane
 * (docs/FLEET.md). The decisions are fleet/node.c's (a pure state machine);
 * this file gives it a host:
 *
 *   - its state: one value ("fleet/node") in the store's state database,
 *     written in one transaction per transition (the same LMDB as the
 *     data, so a restored backup cannot pair data with a foreign config);
 *   - its inputs: a Kafka thread that reads this node's partition of
 *     <prefix>desired with assign() (no consumer group per node) from the
 *     persisted offset, keeps the newest record keyed by this node, and
 *     hands it to the loop once caught up with the partition's end (so a
 *     node back from an outage applies only the newest generation);
 *   - its actions: validate = the check-config load of the local file with
 *     the candidate remote layer; apply = the SIGHUP reload's apply step
 *     when every changed key is reloadable, else a clean stop and
 *     re-execution of the daemon (the trial then runs from the first
 *     start); health = /readyz, the uplink's state, the ingest refusal rate;
 *   - its outputs: FleetStatus, Inventory and FleetEvent records produced to
 *     explicit partitions (sl_fleet_partition: Java's formula).
 *
 * Threads: the machine, the timer and the mailbox's consumer side run on
 * the loop thread; the Kafka thread only polls the consumer and the
 * producer's delivery reports; the admin thread reads a snapshot under
 * lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "daemon/daemon.h"
#include "daemon/enrol.h"
#include "daemon/kclient.h"
#include "daemon/fleet_agent.h"
#include "fleet/fleet.h"
#include "sluice/v1/fleet.pb-c.h"
#include "telemetry/log.h"

#ifndef SL_VERSION
#define SL_VERSION "0.1.0"
#endif

#define STATE_KEY "fleet/node"
enum { T_DESIRED, T_STATUS, T_INVENTORY, T_EVENTS, T_N };
static const char *const topic_suffix[T_N] = {"desired", "status", "inventory",
                                              "events"};

struct sl_fleet_agent {
  sl_daemon_t *dm;
  sl_fleet_node_t *node;
  sl_fleet_key_t *key;
  sl_fleet_label_t *labels;
  size_t nlabels;
  char *running; /* remote layer running now (loop thread), owned */
  char topic[T_N][256];

  rd_kafka_t *cons, *prod;
  pthread_t thr;
  int thr_started;
  atomic_int stop;
  _Atomic int32_t parts[T_N]; /* 0 until the metadata said */
  int64_t start_offset;

  /* Mailbox: Kafka thread -> loop. */
  pthread_mutex_t lock;
  uint8_t *mb_rec;
  size_t mb_len;
  int64_t mb_off;
  uv_async_t wake;
  uv_timer_t timer;
  int handles_open;

  /* Latest status (loop thread) for when the partitions become known. */
  uint8_t *held_status;
  size_t held_len;

  /* Snapshot for /v1/status (under lock). */
  sl_fleet_node_info_t snap;
  char snap_reason[64], snap_message[1024], snap_sha[65];
  sl_fleet_phase_t last_phase;
  uint64_t last_n[4]; /* rejected, rolled back, conflicts, committed */

  sl_metric_t *m_applied, *m_lkg, *m_observed, *m_phase, *m_rollbacks,
      *m_rejects, *m_conflicts, *m_dropped, *m_connected;
};

/* ---- state in the store ------------------------------------------------ */

static int read_state(sl_store_t *st, uint8_t **out, size_t *len) {
  size_t cap = 65536, vlen = 0;
  uint8_t *buf = malloc(cap);
  int rc;
  *out = NULL;
  *len = 0;
  if (!buf)
    return -ENOMEM;
  rc = sl_store_state_get(st, STATE_KEY, strlen(STATE_KEY), buf, cap, &vlen);
  if (rc == SL_ETOOBIG) {
    uint8_t *nb = realloc(buf, vlen);
    if (!nb) {
      free(buf);
      return -ENOMEM;
    }
    buf = nb;
    rc = sl_store_state_get(st, STATE_KEY, strlen(STATE_KEY), buf, vlen, &vlen);
  }
  if (rc == SL_ENOTFOUND) {
    free(buf);
    return 0;
  }
  if (rc < 0) {
    free(buf);
    return rc;
  }
  *out = buf;
  *len = vlen;
  return 0;
}

static int op_persist(void *o, const void *state, size_t len) {
  sl_fleet_agent_t *fa = o;
  sl_store_group_t *g;
  int rc = sl_store_group_new(fa->dm->in.st, &g);
  if (rc < 0)
    return rc;
  if ((rc = sl_store_group_state_put(g, STATE_KEY, strlen(STATE_KEY), state,
                                     len)) < 0) {
    sl_store_group_free(g);
    return rc;
  }
  /* Synchronous (an fsync): transitions are rare and must be durable
   * before the machine acts on them. */
  rc = sl_store_group_commit(g, NULL, 0);
  if (rc < 0)
    sl_error(SL_LOG_CTX_CONFIG, NULL, "fleet: cannot store the node state: %s",
             sl_strerror(rc));
  return rc;
}

/* ---- validate and apply ------------------------------------------------ */

/* The effective config of the local file with remote as its fleet layer. */
static int load_with(sl_fleet_agent_t *fa, const char *remote,
                     sl_config_t **out, char *err, size_t errlen) {
  extern char **environ;
  char *text;
  size_t len;
  int rc = sl_config_read_file(fa->dm->config_path, &text, &len, err, errlen);
  if (rc < 0)
    return rc;
  rc = sl_config_load_layers(fa->dm->config_path, text, len, remote,
                             "fleet layer", environ, out, err, errlen);
  free(text);
  return rc;
}

static int op_validate(void *o, const char *json, char *err, size_t errlen) {
  sl_config_t *cfg;
  if (load_with(o, json, &cfg, err, errlen) < 0)
    return -1;
  sl_config_free(cfg);
  return 0;
}

static int op_apply(void *o, const char *json, char *err, size_t errlen) {
  sl_fleet_agent_t *fa = o;
  sl_config_t *nw;
  char *copy;
  int rc;

  if (load_with(fa, json, &nw, err, errlen) < 0)
    return -1;
  if (!(copy = strdup(json))) {
    sl_config_free(nw);
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  rc = sl_daemon__apply_config(fa->dm, nw, "fleet", err, errlen);
  if (rc < 0) {
    free(copy);
    return -1;
  }
  if (rc == 1) { /* a restart-only key changed: the next start runs it */
    free(copy);
    return SL_FLEET_NEEDS_RESTART;
  }
  free(fa->running);
  fa->running = copy;
  return SL_FLEET_APPLIED;
}

static void op_restart(void *o, const char *why) {
  sl_fleet_agent_t *fa = o;
  sl_info(SL_LOG_CTX_CONFIG, NULL, "%s: restarting", why);
  sl_daemon__restart(fa->dm, why);
}

static void op_health(void *o, sl_fleet_health_t *h) {
  sl_fleet_agent_t *fa = o;
  sl_daemon_t *dm = fa->dm;
  char why[256];
  int connected = 0, state;

  h->ready = dm->adm ? sl_admin_get_ready(dm->adm, why, sizeof(why)) : 1;
  if (dm->stopping)
    h->ready = 0;
  state = sl_uplink_health(dm, &connected, &h->backlog);
  if (state < 0) {
    h->uplink = 1;
    h->uplink_state = 4; /* UPLINK_DISABLED */
  } else {
    h->uplink = connected && state != 5 && state != 6;
    h->uplink_state = connected ? 1 : state == 5 ? 3 : 2;
  }
  h->events_in = __atomic_load_n(&dm->in.events_ok, __ATOMIC_RELAXED);
  h->events_bad = __atomic_load_n(&dm->in.refusals, __ATOMIC_RELAXED);
}

static int produce(sl_fleet_agent_t *fa, int t, const void *rec, size_t len) {
  int32_t parts = atomic_load(&fa->parts[t]);
  const char *id = fa->dm->in.node_id;
  rd_kafka_resp_err_t e;
  if (!fa->prod || parts <= 0)
    return -1;
  e = rd_kafka_producev(
      fa->prod, RD_KAFKA_V_TOPIC(fa->topic[t]),
      RD_KAFKA_V_PARTITION(sl_fleet_partition(id, strlen(id), parts)),
      RD_KAFKA_V_KEY(id, strlen(id)), RD_KAFKA_V_VALUE((void *)rec, len),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  return e ? -1 : 0;
}

static void op_status(void *o, const void *rec, size_t len) {
  sl_fleet_agent_t *fa = o;
  uint8_t *copy;
  if (produce(fa, T_STATUS, rec, len) == 0) {
    free(fa->held_status);
    fa->held_status = NULL;
    return;
  }
  /* Not connected yet: the newest status waits (older ones are moot). */
  if ((copy = malloc(len ? len : 1))) {
    memcpy(copy, rec, len);
    free(fa->held_status);
    fa->held_status = copy;
    fa->held_len = len;
  }
}

static void op_event(void *o, const void *rec, size_t len) {
  sl_fleet_agent_t *fa = o;
  if (produce(fa, T_EVENTS, rec, len) < 0)
    sl_metric_add(fa->m_dropped, 1);
}

static int64_t op_now(void *o) {
  struct timespec ts;
  (void)o;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t op_mono(void *o) {
  (void)o;
  return (int64_t)sl_now_mono_ns();
}

static const sl_fleet_ops_t agent_ops = {op_validate, op_apply,  op_restart,
                                         op_persist,  op_health, op_status,
                                         op_event,    op_now,    op_mono};

/* ---- snapshot, metrics, logs ------------------------------------------- */

static void after_step(sl_fleet_agent_t *fa) {
  sl_fleet_node_info_t i;
  sl_fleet_node_info(fa->node, &i);
  pthread_mutex_lock(&fa->lock);
  fa->snap = i;
  snprintf(fa->snap_reason, sizeof(fa->snap_reason), "%s", i.reason);
  snprintf(fa->snap_message, sizeof(fa->snap_message), "%s", i.message);
  snprintf(fa->snap_sha, sizeof(fa->snap_sha), "%s", i.running_sha256);
  pthread_mutex_unlock(&fa->lock);
  sl_metric_set(fa->m_applied, (double)i.applied);
  sl_metric_set(fa->m_lkg, (double)i.lkg);
  sl_metric_set(fa->m_observed, (double)i.observed);
  sl_metric_set(fa->m_phase, i.phase);
  sl_metric_set(fa->m_connected, atomic_load(&fa->parts[T_DESIRED]) > 0);
  /* Each transition is logged and counted once, also a second rejection
   * in a row. */
  if (i.n_rolled_back != fa->last_n[1]) {
    sl_metric_add(fa->m_rollbacks, i.n_rolled_back - fa->last_n[1]);
    sl_error(SL_LOG_CTX_CONFIG, NULL,
             "fleet: rolled back to generation %llu (%s): %s",
             (unsigned long long)i.lkg, i.reason, i.message);
  } else if (i.n_rejected != fa->last_n[0]) {
    sl_metric_add(fa->m_rejects, i.n_rejected - fa->last_n[0]);
    sl_error(SL_LOG_CTX_CONFIG, NULL, "fleet: document rejected (%s): %s",
             i.reason, i.message);
  } else if (i.n_conflicts != fa->last_n[2]) {
    sl_metric_add(fa->m_conflicts, i.n_conflicts - fa->last_n[2]);
    sl_warn(SL_LOG_CTX_CONFIG, NULL, "fleet: %s", i.message);
  } else if (i.n_committed != fa->last_n[3]) {
    sl_info(SL_LOG_CTX_CONFIG, NULL,
            "fleet: generation %llu committed (config sha256 %.12s)%s%s",
            (unsigned long long)i.lkg, i.running_sha256, *i.reason ? ": " : "",
            i.message);
  } else if (i.phase != fa->last_phase) {
    if (i.phase == SL_FLEET_DECOMMISSIONED) {
      sl_error(SL_LOG_CTX_CONFIG, NULL, "fleet: node decommissioned: %s",
               i.message);
      /* Enrolled nodes wipe their key; every node stops its uplink. */
      sl_enrol_revoke(fa->dm, "decommissioned by the fleet");
      sl_uplink_stop(fa->dm);
    } else
      sl_info(SL_LOG_CTX_CONFIG, NULL, "fleet: %s (generation %llu)",
              sl_fleet_phase_name(i.phase), (unsigned long long)i.observed);
  }
  fa->last_phase = i.phase;
  fa->last_n[0] = i.n_rejected;
  fa->last_n[1] = i.n_rolled_back;
  fa->last_n[2] = i.n_conflicts;
  fa->last_n[3] = i.n_committed;
}

/* ---- the Kafka thread -------------------------------------------------- */

static void publish_inventory(sl_fleet_agent_t *fa) {
  Sluice__V1__Inventory inv = SLUICE__V1__INVENTORY__INIT;
  Sluice__V1__Inventory__LabelsEntry *ents = NULL, **ep = NULL;
  struct utsname u;
  char host[256] = "";
  uint8_t *buf;
  size_t len;

  if (fa->nlabels) {
    ents = calloc(fa->nlabels, sizeof(*ents));
    ep = calloc(fa->nlabels, sizeof(*ep));
    if (!ents || !ep)
      goto out;
  }
  for (size_t i = 0; i < fa->nlabels; i++) {
    sluice__v1__inventory__labels_entry__init(&ents[i]);
    ents[i].key = (char *)fa->labels[i].key;
    ents[i].value = (char *)fa->labels[i].value;
    ep[i] = &ents[i];
  }
  (void)gethostname(host, sizeof(host) - 1);
  inv.node_id = fa->dm->in.node_id;
  inv.labels = ep;
  inv.n_labels = fa->nlabels;
  inv.agent_version = SL_VERSION;
  inv.hostname = host;
  inv.arch = uname(&u) == 0 ? u.machine : "";
  inv.time_ns = op_now(NULL);
  len = sluice__v1__inventory__get_packed_size(&inv);
  if ((buf = malloc(len ? len : 1))) {
    sluice__v1__inventory__pack(&inv, buf);
    (void)produce(fa, T_INVENTORY, buf, len);
    free(buf);
  }
out:
  free(ents);
  free(ep);
}

/* Partition counts of the four topics; 0 when all are known. */
static int learn_partitions(sl_fleet_agent_t *fa) {
  int missing = 0;
  for (int t = 0; t < T_N; t++) {
    int32_t n;
    if (atomic_load(&fa->parts[t]) > 0)
      continue;
    if ((n = sl_kclient_partitions(fa->prod, fa->topic[t], 500, NULL)) > 0)
      atomic_store(&fa->parts[t], n);
    else
      missing++;
  }
  return missing ? -1 : 0;
}

static void *kafka_thread(void *arg) {
  sl_fleet_agent_t *fa = arg;
  const char *id = fa->dm->in.node_id;
  size_t idlen = strlen(id);
  uint8_t *best = NULL;
  size_t best_len = 0;
  int64_t best_off = -1;
  int assigned = 0, warned = 0;

  while (!atomic_load(&fa->stop)) {
    if (!assigned) {
      if (learn_partitions(fa) < 0) {
        if (!warned++)
          sl_warn(SL_LOG_CTX_CONFIG, NULL,
                  "fleet: topic %s (and its siblings) not readable yet (not "
                  "created, or the "
                  "brokers are down); retrying",
                  fa->topic[T_DESIRED]);
        rd_kafka_poll(fa->prod, 200);
        continue;
      }
      int32_t p = sl_fleet_partition(id, idlen, atomic_load(&fa->parts[0]));
      rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(l, fa->topic[T_DESIRED], p)->offset =
          fa->start_offset >= 0 ? fa->start_offset : RD_KAFKA_OFFSET_BEGINNING;
      rd_kafka_resp_err_t e = rd_kafka_assign(fa->cons, l);
      rd_kafka_topic_partition_list_destroy(l);
      if (e) {
        rd_kafka_poll(fa->prod, 500);
        continue;
      }
      assigned = 1;
      sl_info(SL_LOG_CTX_CONFIG, NULL,
              "fleet: reading %s partition %d from offset %lld",
              fa->topic[T_DESIRED], p, (long long)fa->start_offset);
      publish_inventory(fa);
      uv_async_send(&fa->wake); /* a held status can go now */
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(fa->cons, 200);
    rd_kafka_poll(fa->prod, 0);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (best) { /* caught up: the newest record for this node */
        pthread_mutex_lock(&fa->lock);
        free(fa->mb_rec);
        fa->mb_rec = best;
        fa->mb_len = best_len;
        fa->mb_off = best_off;
        pthread_mutex_unlock(&fa->lock);
        best = NULL;
        uv_async_send(&fa->wake);
      }
    } else if (!m->err && m->key_len == idlen && !memcmp(m->key, id, idlen) &&
               m->payload) {
      uint8_t *c = malloc(m->len ? m->len : 1);
      if (c) {
        memcpy(c, m->payload, m->len);
        free(best);
        best = c;
        best_len = m->len;
        best_off = m->offset;
      }
    }
    rd_kafka_message_destroy(m);
  }
  free(best);
  return NULL;
}

/* ---- loop side --------------------------------------------------------- */

static void on_wake(uv_async_t *h) {
  sl_fleet_agent_t *fa = h->data;
  uint8_t *rec;
  size_t len;
  int64_t off;

  if (fa->held_status && atomic_load(&fa->parts[T_STATUS]) > 0)
    op_status(fa, fa->held_status, fa->held_len);
  if (fa->dm->stopping)
    return; /* re-read from the persisted offset after the restart */
  pthread_mutex_lock(&fa->lock);
  rec = fa->mb_rec;
  len = fa->mb_len;
  off = fa->mb_off;
  fa->mb_rec = NULL;
  pthread_mutex_unlock(&fa->lock);
  if (!rec)
    return;
  sl_fleet_node_offer(fa->node, rec, len, off);
  free(rec);
  after_step(fa);
}

static void on_timer(uv_timer_t *t) {
  sl_fleet_agent_t *fa = t->data;
  if (fa->dm->stopping)
    return;
  sl_fleet_node_tick(fa->node);
  after_step(fa);
}

static int parse_labels(sl_fleet_agent_t *fa, const sl_config_t *cfg) {
  /* Labels approved at enrolment win over the config's. */
  char **items = fa->dm->kx.labels ? fa->dm->kx.labels : cfg->fleet.labels.v;
  size_t n = fa->dm->kx.labels ? fa->dm->kx.nlabels : cfg->fleet.labels.n;
  if (!n)
    return 0;
  if (!(fa->labels = calloc(n, sizeof(*fa->labels))))
    return -ENOMEM;
  for (size_t i = 0; i < n; i++) {
    const char *l = items[i], *eq = strchr(l, '=');
    if (!eq)
      continue;
    char *k = strndup(l, (size_t)(eq - l)), *v = strdup(eq + 1);
    if (!k || !v) {
      free(k);
      free(v);
      return -ENOMEM;
    }
    fa->labels[i].key = k;
    fa->labels[i].value = v;
    fa->nlabels++;
  }
  return 0;
}

int sl_fleet_agent_boot(sl_daemon_t *dm, char *err, size_t errlen) {
  const sl_config_t *cfg = dm->in.cfg;
  sl_fleet_agent_t *fa;
  sl_fleet_node_conf_t conf = {0};
  uint8_t *state = NULL;
  size_t slen = 0;
  const char *remote;
  sl_config_t *nw;
  int rc;

  if (!cfg->fleet.enabled)
    return 0;
  if (!(fa = calloc(1, sizeof(*fa))))
    return -ENOMEM;
  dm->fleet = fa;
  fa->dm = dm;
  fa->last_phase = SL_FLEET_PHASE_UNKNOWN;
  pthread_mutex_init(&fa->lock, NULL);
  for (int t = 0; t < T_N; t++)
    snprintf(fa->topic[t], sizeof(fa->topic[t]), "%s%s",
             dm->kx.topic_prefix ? dm->kx.topic_prefix
                                 : cfg->fleet.topic_prefix,
             topic_suffix[t]);
  if ((rc = sl_fleet_key_load(*cfg->fleet.verify_key || !dm->kx.verify_key
                                  ? cfg->fleet.verify_key
                                  : dm->kx.verify_key,
                              false, &fa->key, err, errlen)) < 0)
    return rc;
  if ((rc = parse_labels(fa, cfg)) < 0)
    return rc;
  if ((rc = read_state(dm->in.st, &state, &slen)) < 0) {
    snprintf(err, errlen, "fleet: cannot read the node state: %s",
             sl_strerror(rc));
    return rc;
  }
  conf.node_id = dm->in.node_id;
  conf.verify_key = fa->key;
  conf.labels = fa->labels;
  conf.n_labels = fa->nlabels;
  conf.agent_version = SL_VERSION;
  conf.max_trial_starts = (unsigned)cfg->fleet.max_trial_starts;
  conf.heartbeat_ns = (int64_t)cfg->fleet.heartbeat_ms * 1000000;
  rc = sl_fleet_node_open(&conf, &agent_ops, fa, state, slen, &fa->node);
  free(state);
  if (rc < 0) {
    snprintf(err, errlen,
             "fleet: the node state in the store is unreadable (%s); "
             "refusing to guess which config to run",
             sl_strerror(rc));
    return rc;
  }
  fa->start_offset = sl_fleet_node_resume_offset(fa->node);
  if ((rc = sl_fleet_node_boot(fa->node, &remote)) < 0) {
    snprintf(err, errlen, "fleet: cannot store the node state: %s",
             sl_strerror(rc));
    return rc;
  }
  if (!(fa->running = strdup(remote)))
    return -ENOMEM;
  if (strcmp(remote, "{}") != 0) {
    if ((rc = load_with(fa, remote, &nw, err, errlen)) < 0)
      return rc; /* a trial that cannot load counts as a failed start */
    sl_config_free(dm->in.cfg);
    dm->in.cfg = nw;
  }
  after_step(fa);
  sl_info(SL_LOG_CTX_CONFIG, NULL,
          "fleet: node %s starts on generation %llu (%s), config sha256 "
          "%.12s",
          dm->in.node_id, (unsigned long long)fa->snap.applied,
          sl_fleet_phase_name(fa->snap.phase),
          *fa->snap_sha ? fa->snap_sha : "none");
  return 0;
}

static rd_kafka_conf_t *kconf(const sl_daemon_t *dm, const char *brokers,
                              char *err, size_t errlen) {
  const sl_config_t *cfg = dm->in.cfg;
  rd_kafka_conf_t *c = sl_kclient_conf();
  if (rd_kafka_conf_set(c, "bootstrap.servers", brokers, err, errlen) ||
      rd_kafka_conf_set(c, "client.id", "sluice-fleet", err, errlen))
    goto fail;
  /* The uplink's transactional settings are not the fleet's. */
  if (sl_kclient_props(c, cfg->kafka.properties.v, cfg->kafka.properties.n,
                       "transactional.", err, errlen) < 0)
    goto fail;
  if (*cfg->kafka.ssl_key_location &&
      rd_kafka_conf_set(c, "ssl.key.location", cfg->kafka.ssl_key_location, err,
                        errlen))
    goto fail;
  /* Enrolment's identity. */
  if (sl_kclient_props(c, (char *const *)dm->kx.props, dm->kx.nprops, NULL, err,
                       errlen) < 0)
    goto fail;
  return c;
fail:
  rd_kafka_conf_destroy(c);
  return NULL;
}

int sl_fleet_agent_start(sl_daemon_t *dm, char *err, size_t errlen) {
  sl_fleet_agent_t *fa = dm->fleet;
  const sl_config_t *cfg = dm->in.cfg;
  const char *brokers = *cfg->fleet.brokers   ? cfg->fleet.brokers
                        : *cfg->kafka.brokers ? cfg->kafka.brokers
                                              : dm->kx.brokers;
  rd_kafka_conf_t *pc, *cc;
  char group[128];

  if (!fa || dm->kx.blocked)
    return 0; /* blocked: connects after enrolment (a restart) */
  fa->m_applied = sl_metrics_gauge(dm->in.mx, "sluice_fleet_generation",
                                   "Fleet generation", "kind=\"applied\"");
  fa->m_lkg = sl_metrics_gauge(dm->in.mx, "sluice_fleet_generation",
                               "Fleet generation", "kind=\"lkg\"");
  fa->m_observed = sl_metrics_gauge(dm->in.mx, "sluice_fleet_generation",
                                    "Fleet generation", "kind=\"observed\"");
  fa->m_phase = sl_metrics_gauge(dm->in.mx, "sluice_fleet_phase",
                                 "Fleet apply phase (FleetPhase number)", NULL);
  fa->m_rollbacks =
      sl_metrics_counter(dm->in.mx, "sluice_fleet_rollbacks_total",
                         "Fleet generations rolled back", NULL);
  fa->m_rejects = sl_metrics_counter(dm->in.mx, "sluice_fleet_rejections_total",
                                     "Fleet documents rejected", NULL);
  fa->m_conflicts = sl_metrics_counter(
      dm->in.mx, "sluice_fleet_conflicts_total",
      "Fleet documents below the committed generation", NULL);
  fa->m_dropped = sl_metrics_counter(
      dm->in.mx, "sluice_fleet_events_dropped_total",
      "Fleet audit events not produced (topics unknown or queue full)", NULL);
  fa->m_connected =
      sl_metrics_gauge(dm->in.mx, "sluice_fleet_connected",
                       "1 once the fleet topics were found", NULL);
  if (!(pc = kconf(dm, brokers, err, errlen)))
    return SL_ECONFIG;
  if (rd_kafka_conf_set(pc, "enable.idempotence", "true", err, errlen) ||
      rd_kafka_conf_set(pc, "message.timeout.ms", "0", err, errlen) ||
      rd_kafka_conf_set(pc, "queue.buffering.max.messages", "10000", err,
                        errlen) ||
      rd_kafka_conf_set(pc, "linger.ms", "5", err, errlen)) {
    rd_kafka_conf_destroy(pc);
    return SL_ECONFIG;
  }
  if (!(fa->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, errlen)))
    return SL_EKAFKA;
  if (!(cc = kconf(dm, brokers, err, errlen)))
    return SL_ECONFIG;
  snprintf(group, sizeof(group), "sluice-fleet-%s", dm->in.node_id);
  /* assign() only: the group id is never joined nor committed to (the
   * offset lives in the node state, with the generation it led to). */
  if (rd_kafka_conf_set(cc, "group.id", group, err, errlen) ||
      rd_kafka_conf_set(cc, "enable.auto.commit", "false", err, errlen) ||
      rd_kafka_conf_set(cc, "enable.partition.eof", "true", err, errlen) ||
      rd_kafka_conf_set(cc, "auto.offset.reset", "earliest", err, errlen)) {
    rd_kafka_conf_destroy(cc);
    return SL_ECONFIG;
  }
  if (!(fa->cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, errlen)))
    return SL_EKAFKA;
  uv_async_init(&dm->loop, &fa->wake, on_wake);
  fa->wake.data = fa;
  uv_timer_init(&dm->loop, &fa->timer);
  fa->timer.data = fa;
  uv_timer_start(&fa->timer, on_timer, 0, 1000);
  fa->handles_open = 1;
  if (pthread_create(&fa->thr, NULL, kafka_thread, fa) != 0) {
    snprintf(err, errlen, "fleet: cannot start its thread");
    return -EAGAIN;
  }
  fa->thr_started = 1;
  return 0;
}

const char *sl_fleet_agent_remote(sl_daemon_t *dm) {
  return dm->fleet ? dm->fleet->running : NULL;
}

void sl_fleet_agent_status(sl_daemon_t *dm, json_t *root) {
  sl_fleet_agent_t *fa = dm->fleet;
  json_t *o;
  if (!fa)
    return;
  o = json_object();
  pthread_mutex_lock(&fa->lock);
  json_object_set_new(o, "phase",
                      json_string(sl_fleet_phase_name(fa->snap.phase)));
  json_object_set_new(o, "observed_generation",
                      json_integer((json_int_t)fa->snap.observed));
  json_object_set_new(o, "applied_generation",
                      json_integer((json_int_t)fa->snap.applied));
  json_object_set_new(o, "lkg_generation",
                      json_integer((json_int_t)fa->snap.lkg));
  json_object_set_new(o, "failed_generation",
                      json_integer((json_int_t)fa->snap.failed));
  json_object_set_new(o, "reason", json_string(fa->snap_reason));
  json_object_set_new(o, "message", json_string(fa->snap_message));
  json_object_set_new(o, "running_sha256", json_string(fa->snap_sha));
  json_object_set_new(o, "decommissioned",
                      json_boolean(fa->snap.decommissioned));
  pthread_mutex_unlock(&fa->lock);
  json_object_set_new(o, "connected",
                      json_boolean(atomic_load(&fa->parts[T_DESIRED]) > 0));
  json_object_set_new(root, "fleet", o);
}

void sl_fleet_agent_close(sl_daemon_t *dm) {
  sl_fleet_agent_t *fa = dm->fleet;
  if (!fa || !fa->handles_open)
    return;
  fa->handles_open = 0;
  uv_timer_stop(&fa->timer);
  uv_close((uv_handle_t *)&fa->timer, NULL);
  uv_close((uv_handle_t *)&fa->wake, NULL);
}

void sl_fleet_agent_free(sl_daemon_t *dm) {
  sl_fleet_agent_t *fa = dm->fleet;
  if (!fa)
    return;
  atomic_store(&fa->stop, 1);
  if (fa->thr_started)
    pthread_join(fa->thr, NULL);
  if (fa->cons) {
    rd_kafka_consumer_close(fa->cons);
    rd_kafka_destroy(fa->cons);
  }
  if (fa->prod) {
    /* The last status (e.g. the restart's) gets a moment to leave. */
    rd_kafka_flush(fa->prod, 2000);
    rd_kafka_destroy(fa->prod);
  }
  sl_fleet_node_free(fa->node);
  sl_fleet_key_free(fa->key);
  for (size_t i = 0; i < fa->nlabels; i++) {
    free((char *)fa->labels[i].key);
    free((char *)fa->labels[i].value);
  }
  free(fa->labels);
  free(fa->running);
  free(fa->mb_rec);
  free(fa->held_status);
  pthread_mutex_destroy(&fa->lock);
  free(fa);
  dm->fleet = NULL;
}
