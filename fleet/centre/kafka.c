/*
 * fleet/centre/kafka.c: the fleet topics over librdkafka: one producer that
 * writes every record to the explicit partition sl_fleet_partition(key)
 * (librdkafka's default partitioner is not Java's, and a node reads only its
 * own partition), topic creation with the admin API, and readers that
 * assign() every partition from the beginning (no consumer group: the state
 * is the compacted topics themselves).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fleet/centre/centre.h"

static const char *const suffix[SL_FT_COUNT] = {
    "policies", "desired", "status", "inventory", "rollouts", "events"};

const char *sl_fleet_topic_suffix(int t) {
  return t >= 0 && t < SL_FT_COUNT ? suffix[t] : "?";
}

struct sl_fleet_kafka {
  rd_kafka_t *rk;
  char topic[SL_FT_COUNT][256];
  int32_t parts[SL_FT_COUNT];
  sl_fleet_kconf_t c;
  char **props;
  int dr_err; /* first delivery error */
  char dr_msg[256];
};

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  sl_fleet_kafka_t *k = opaque;
  (void)rk;
  if (m->err && !k->dr_err) {
    k->dr_err = m->err;
    snprintf(k->dr_msg, sizeof(k->dr_msg), "%s [%d]: %s",
             rd_kafka_topic_name(m->rkt), (int)m->partition,
             rd_kafka_err2str(m->err));
  }
}

/* A conf with the brokers and the user's properties applied. */
static rd_kafka_conf_t *make_conf(const sl_fleet_kconf_t *c, char *err,
                                  size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (!conf) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  /* librdkafka's own warnings (a coordinator still loading, a retry) are
   * not the command's errors: errors only, unless a property says else. */
  if (rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, err, errlen) !=
          RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "log_level", "3", err, errlen) !=
          RD_KAFKA_CONF_OK ||
      /* a missing fleet topic is an error (`sluice fleet init` makes them
       * compacted), never one the broker creates with its defaults */
      rd_kafka_conf_set(conf, "allow.auto.create.topics", "false", err,
                        errlen) != RD_KAFKA_CONF_OK)
    goto fail;
  for (size_t i = 0; i < c->n_props; i++) {
    char name[256];
    const char *eq = strchr(c->props[i], '=');
    if (!eq || eq == c->props[i] ||
        (size_t)(eq - c->props[i]) >= sizeof(name)) {
      snprintf(err, errlen, "--kafka-property '%s': expected NAME=VALUE",
               c->props[i]);
      goto fail;
    }
    memcpy(name, c->props[i], (size_t)(eq - c->props[i]));
    name[eq - c->props[i]] = 0;
    char e2[256];
    if (rd_kafka_conf_set(conf, name, eq + 1, e2, sizeof(e2)) !=
        RD_KAFKA_CONF_OK) {
      snprintf(err, errlen, "--kafka-property %s: %s", name, e2);
      goto fail;
    }
  }
  return conf;
fail:
  rd_kafka_conf_destroy(conf);
  return NULL;
}

static bool has_prop(const sl_fleet_kconf_t *c, const char *name) {
  size_t l = strlen(name);
  for (size_t i = 0; i < c->n_props; i++)
    if (!strncmp(c->props[i], name, l) && c->props[i][l] == '=')
      return true;
  return false;
}

int sl_fleet_kafka_open(const sl_fleet_kconf_t *c, sl_fleet_kafka_t **out,
                        char *err, size_t errlen) {
  sl_fleet_kafka_t *k = calloc(1, sizeof(*k));
  rd_kafka_conf_t *conf = NULL;

  *out = NULL;
  if (!k)
    return -ENOMEM;
  k->c = *c;
  if (!k->c.prefix)
    k->c.prefix = "sluice.fleet.";
  if (!c->brokers || !*c->brokers) {
    snprintf(err, errlen, "no brokers: give --brokers HOST:PORT[,...]");
    free(k);
    return SL_ECONFIG;
  }
  for (int t = 0; t < SL_FT_COUNT; t++)
    snprintf(k->topic[t], sizeof(k->topic[t]), "%s%s", k->c.prefix, suffix[t]);
  if (!(conf = make_conf(c, err, errlen))) {
    free(k);
    return SL_ECONFIG; /* a bad --kafka-property */
  }
  char e2[256];
  /* zstd: a Rollout lists the nodes released so far (ids compress well);
   * the user's properties were set first and win */
  if (rd_kafka_conf_set(conf, "enable.idempotence", "true", e2, sizeof(e2)) ||
      rd_kafka_conf_set(conf, "linger.ms", "5", e2, sizeof(e2)) ||
      (!has_prop(c, "compression.type") && !has_prop(c, "compression.codec") &&
       rd_kafka_conf_set(conf, "compression.type", "zstd", e2, sizeof(e2)))) {
    snprintf(err, errlen, "%s", e2);
    rd_kafka_conf_destroy(conf);
    goto fail;
  }
  rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
  rd_kafka_conf_set_opaque(conf, k);
  if (!(k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, errlen))) {
    rd_kafka_conf_destroy(conf);
    goto fail;
  }
  *out = k;
  return 0;
fail:
  free(k);
  return SL_EKAFKA;
}

void sl_fleet_kafka_close(sl_fleet_kafka_t *k) {
  if (!k)
    return;
  if (k->rk) {
    rd_kafka_flush(k->rk, 10000);
    rd_kafka_destroy(k->rk);
  }
  free(k);
}

const char *sl_fleet_kafka_topic(sl_fleet_kafka_t *k, int t) {
  return k->topic[t];
}

rd_kafka_t *sl_fleet_kafka_handle(sl_fleet_kafka_t *k) {
  return k->rk;
}

int sl_fleet_kafka_partitions(sl_fleet_kafka_t *k, int t, int32_t *out,
                              char *err, size_t errlen) {
  if (k->parts[t] > 0) {
    *out = k->parts[t];
    return 0;
  }
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->rk, k->topic[t], NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(k->rk, 0, rkt, &md, 10000);
  int rc = 0;
  if (e) {
    snprintf(err, errlen, "metadata of %s: %s", k->topic[t],
             rd_kafka_err2str(e));
    rc = SL_EKAFKA;
  } else if (md->topic_cnt != 1 || md->topics[0].err ||
             md->topics[0].partition_cnt <= 0) {
    snprintf(err, errlen, "topic %s does not exist: run `sluice fleet init`",
             k->topic[t]);
    rc = SL_ENOTFOUND;
  } else {
    *out = k->parts[t] = md->topics[0].partition_cnt;
  }
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return rc;
}

int sl_fleet_kafka_produce(sl_fleet_kafka_t *k, int t, const char *key,
                           const void *val, size_t len, char *err,
                           size_t errlen) {
  int32_t parts;
  int rc = sl_fleet_kafka_partitions(k, t, &parts, err, errlen);
  if (rc)
    return rc;
  int32_t p = sl_fleet_partition(key, strlen(key), parts);
  for (;;) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->rk, RD_KAFKA_V_TOPIC(k->topic[t]), RD_KAFKA_V_PARTITION(p),
        RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)val, len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(k->rk, 100);
      continue;
    }
    if (e) {
      snprintf(err, errlen, "produce to %s: %s", k->topic[t],
               rd_kafka_err2str(e));
      return SL_EKAFKA;
    }
    rd_kafka_poll(k->rk, 0);
    return 0;
  }
}

int sl_fleet_kafka_flush(sl_fleet_kafka_t *k, int timeout_ms, char *err,
                         size_t errlen) {
  rd_kafka_resp_err_t e = rd_kafka_flush(k->rk, timeout_ms);
  if (k->dr_err) {
    snprintf(err, errlen, "delivery failed: %s", k->dr_msg);
    k->dr_err = 0;
    return SL_EKAFKA;
  }
  if (e) {
    snprintf(err, errlen, "not acknowledged within %d ms: %s", timeout_ms,
             rd_kafka_err2str(e));
    return SL_EKAFKA;
  }
  return 0;
}

/* 0 once topic t exists and each of its partitions has a leader. */
static int wait_leaders(sl_fleet_kafka_t *k, int t, int timeout_ms, char *err,
                        size_t errlen) {
  uint64_t end = sl_now_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->rk, k->topic[t], NULL);
    const struct rd_kafka_metadata *md = NULL;
    bool ready = false;
    if (!rd_kafka_metadata(k->rk, 0, rkt, &md, 5000) && md->topic_cnt == 1 &&
        !md->topics[0].err && md->topics[0].partition_cnt > 0) {
      ready = true;
      for (int i = 0; i < md->topics[0].partition_cnt; i++)
        ready &= !md->topics[0].partitions[i].err &&
                 md->topics[0].partitions[i].leader >= 0;
    }
    if (md)
      rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (ready)
      return 0;
    if (sl_now_mono_ns() > end) {
      snprintf(err, errlen,
               "topic %s: no leader for every partition within "
               "%d ms",
               k->topic[t], timeout_ms);
      return SL_EKAFKA;
    }
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
  }
}

int sl_fleet_kafka_create_topics(sl_fleet_kafka_t *k, int partitions,
                                 int replication, int64_t retention_ms,
                                 char *err, size_t errlen) {
  rd_kafka_NewTopic_t *nt[SL_FT_COUNT] = {0};
  rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
  rd_kafka_AdminOptions_t *o =
      rd_kafka_AdminOptions_new(k->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  int rc = 0;
  char e2[256], ret[32];

  snprintf(ret, sizeof(ret), "%lld", (long long)retention_ms);
  rd_kafka_AdminOptions_set_operation_timeout(o, 30000, e2, sizeof(e2));
  for (int t = 0; t < SL_FT_COUNT; t++) {
    nt[t] = rd_kafka_NewTopic_new(k->topic[t], partitions, replication, e2,
                                  sizeof(e2));
    if (!nt[t]) {
      snprintf(err, errlen, "%s: %s", k->topic[t], e2);
      rc = SL_ECONFIG;
      goto out;
    }
    if (t == SL_FT_EVENTS) {
      rd_kafka_NewTopic_set_config(nt[t], "cleanup.policy", "delete");
      rd_kafka_NewTopic_set_config(nt[t], "retention.ms", ret);
    } else {
      rd_kafka_NewTopic_set_config(nt[t], "cleanup.policy", "compact");
    }
  }
  rd_kafka_CreateTopics(k->rk, nt, SL_FT_COUNT, o, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 40000);
  if (!ev) {
    snprintf(err, errlen, "no answer from the brokers within 40 s");
    rc = SL_EKAFKA;
    goto out;
  }
  if (rd_kafka_event_error(ev)) {
    snprintf(err, errlen, "create topics: %s", rd_kafka_event_error_string(ev));
    rc = SL_EKAFKA;
  } else {
    const rd_kafka_CreateTopics_result_t *res =
        rd_kafka_event_CreateTopics_result(ev);
    size_t cnt;
    const rd_kafka_topic_result_t **tr =
        rd_kafka_CreateTopics_result_topics(res, &cnt);
    for (size_t i = 0; i < cnt; i++) {
      rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
      if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        snprintf(err, errlen, "create %s: %s",
                 rd_kafka_topic_result_name(tr[i]),
                 rd_kafka_topic_result_error_string(tr[i])
                     ? rd_kafka_topic_result_error_string(tr[i])
                     : rd_kafka_err2str(e));
        rc = SL_EKAFKA;
        break;
      }
    }
  }
  rd_kafka_event_destroy(ev);
  /* A topic just created has no leader for a moment: wait until every
   * partition of every topic has one, so the next command can use them. */
  for (int t = 0; !rc && t < SL_FT_COUNT; t++)
    rc = wait_leaders(k, t, 30000, err, errlen);
out:
  for (int t = 0; t < SL_FT_COUNT; t++)
    if (nt[t])
      rd_kafka_NewTopic_destroy(nt[t]);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_queue_destroy(q);
  return rc;
}

/* ---- readers ---------------------------------------------------------------
 */

struct sl_fleet_reader {
  sl_fleet_kafka_t *k;
  rd_kafka_t *rk;
  rd_kafka_topic_partition_list_t *ends; /* offset = end at open */
  size_t remaining;                      /* partitions not at end yet */
};

static int topic_index(sl_fleet_kafka_t *k, const char *name) {
  for (int t = 0; t < SL_FT_COUNT; t++)
    if (!strcmp(k->topic[t], name))
      return t;
  return -1;
}

int sl_fleet_reader_open(sl_fleet_kafka_t *k, unsigned topics,
                         sl_fleet_reader_t **out, char *err, size_t errlen) {
  sl_fleet_reader_t *r = calloc(1, sizeof(*r));
  rd_kafka_conf_t *conf = NULL;
  rd_kafka_topic_partition_list_t *as = NULL;
  int rc = SL_EKAFKA;
  char gid[64], e2[256];

  *out = NULL;
  if (!r)
    return -ENOMEM;
  r->k = k;
  if (!(conf = make_conf(&k->c, err, errlen)))
    goto fail;
  snprintf(gid, sizeof(gid), "sluice-fleet-reader-%d", (int)getpid());
  if (rd_kafka_conf_set(conf, "group.id", gid, e2, sizeof(e2)) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", e2, sizeof(e2)) ||
      rd_kafka_conf_set(conf, "enable.partition.eof", "true", e2, sizeof(e2))) {
    snprintf(err, errlen, "%s", e2);
    rd_kafka_conf_destroy(conf);
    goto fail;
  }
  if (!(r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, errlen))) {
    rd_kafka_conf_destroy(conf);
    goto fail;
  }
  as = rd_kafka_topic_partition_list_new(16);
  r->ends = rd_kafka_topic_partition_list_new(16);
  for (int t = 0; t < SL_FT_COUNT; t++) {
    if (!(topics & (1u << t)))
      continue;
    int32_t parts;
    if ((rc = sl_fleet_kafka_partitions(k, t, &parts, err, errlen)))
      goto fail;
    rc = SL_EKAFKA;
    for (int32_t p = 0; p < parts; p++) {
      int64_t lo, hi;
      rd_kafka_resp_err_t e;
      uint64_t end = sl_now_mono_ns() + 15000000000ull;
      /* leadership moving (a new topic, a broker restarting): retry */
      while ((e = rd_kafka_query_watermark_offsets(r->rk, k->topic[t], p, &lo,
                                                   &hi, 10000)) &&
             (e == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
              e == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
              e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
              e == RD_KAFKA_RESP_ERR__TRANSPORT) &&
             sl_now_mono_ns() < end) {
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
      }
      if (e) {
        snprintf(err, errlen, "offsets of %s [%d]: %s", k->topic[t], (int)p,
                 rd_kafka_err2str(e));
        goto fail;
      }
      rd_kafka_topic_partition_list_add(as, k->topic[t], p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
      rd_kafka_topic_partition_t *en =
          rd_kafka_topic_partition_list_add(r->ends, k->topic[t], p);
      en->offset = hi;
      if (hi > lo)
        r->remaining++;
      else
        en->offset = -1; /* nothing to wait for */
    }
  }
  if (rd_kafka_assign(r->rk, as)) {
    snprintf(err, errlen, "assign failed");
    goto fail;
  }
  rd_kafka_topic_partition_list_destroy(as);
  *out = r;
  return 0;
fail:
  if (as)
    rd_kafka_topic_partition_list_destroy(as);
  sl_fleet_reader_close(r);
  return rc;
}

void sl_fleet_reader_close(sl_fleet_reader_t *r) {
  if (!r)
    return;
  if (r->rk) {
    rd_kafka_consumer_close(r->rk);
    rd_kafka_destroy(r->rk);
  }
  if (r->ends)
    rd_kafka_topic_partition_list_destroy(r->ends);
  free(r);
}

static void reached(sl_fleet_reader_t *r, const char *topic, int32_t p,
                    int64_t next) {
  rd_kafka_topic_partition_t *en =
      rd_kafka_topic_partition_list_find(r->ends, topic, p);
  if (en && en->offset >= 0 && next >= en->offset) {
    en->offset = -1;
    r->remaining--;
  }
}

int sl_fleet_reader_poll(sl_fleet_reader_t *r, int timeout_ms, bool until_end,
                         sl_fleet_record_cb cb, void *opaque, bool *at_end,
                         char *err, size_t errlen) {
  int n = 0;
  uint64_t deadline = sl_now_mono_ns() + (uint64_t)timeout_ms * 1000000u;
  for (;;) {
    if (until_end && r->remaining == 0)
      break;
    uint64_t now = sl_now_mono_ns();
    if (now >= deadline)
      break;
    int wait = (int)((deadline - now) / 1000000u);
    rd_kafka_message_t *m =
        rd_kafka_consumer_poll(r->rk, wait > 100 ? 100 : wait);
    if (!m)
      continue;
    const char *tn = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      reached(r, tn, m->partition, m->offset);
    } else if (m->err) {
      if (m->err == RD_KAFKA_RESP_ERR__TRANSPORT ||
          m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        rd_kafka_message_destroy(m);
        continue; /* librdkafka retries */
      }
      snprintf(err, errlen, "consume %s: %s", tn, rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      return SL_EKAFKA;
    } else {
      int t = topic_index(r->k, tn);
      if (t >= 0)
        cb(opaque, t, m->partition, m->offset, m->key, m->key_len, m->payload,
           m->len);
      n++;
      reached(r, tn, m->partition, m->offset + 1);
    }
    rd_kafka_message_destroy(m);
  }
  if (at_end)
    *at_end = r->remaining == 0;
  return n;
}
