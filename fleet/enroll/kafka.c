/*
 * fleet/enroll/kafka.c: the enrolment topics over librdkafka (enroll.h):
 * create them, produce a record to its node's partition and wait for it,
 * read all three from the start with assign(), apply ACLs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "fleet/enroll/enroll.h"
#include "fleet/fleet.h"

struct sl_enroll_kafka {
  rd_kafka_t *rk;
  sl_enroll_kconf_t c;
  char topics[SL_ENROLL_T_N][256];
  int parts[SL_ENROLL_T_N]; /* partition counts once known (0: not yet) */
};

struct sl_enroll_reader {
  rd_kafka_t *rk;
  size_t n_parts, n_eof;
  unsigned char *eof; /* per assigned partition */
  rd_kafka_topic_partition_list_t *parts;
  sl_enroll_kafka_t *k;
};

static const char *const names[SL_ENROLL_T_N] = {
    "enrol.requests", "enrol.responses", "enrol.decisions"};

static rd_kafka_conf_t *mkconf(const sl_enroll_kconf_t *c, char *err,
                               size_t errlen) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char e[512];
  if (!c->brokers || !*c->brokers) {
    snprintf(err, errlen, "no brokers (--brokers)");
    goto fail;
  }
  if (rd_kafka_conf_set(conf, "bootstrap.servers", c->brokers, e, sizeof(e)))
    goto bad;
  for (size_t i = 0; i < c->n_props; i++) {
    char name[256];
    const char *eq = strchr(c->props[i], '=');
    if (!eq || (size_t)(eq - c->props[i]) >= sizeof(name)) {
      snprintf(e, sizeof(e), "%s: expected NAME=VALUE", c->props[i]);
      goto bad;
    }
    memcpy(name, c->props[i], (size_t)(eq - c->props[i]));
    name[eq - c->props[i]] = '\0';
    if (rd_kafka_conf_set(conf, name, eq + 1, e, sizeof(e)))
      goto bad;
  }
  return conf;
bad:
  snprintf(err, errlen, "kafka property: %s", e);
fail:
  rd_kafka_conf_destroy(conf);
  return NULL;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op) {
  (void)rk;
  (void)op;
  *(rd_kafka_resp_err_t *)m->_private = m->err;
}

int sl_enroll_kafka_open(const sl_enroll_kconf_t *c, sl_enroll_kafka_t **out,
                         char *err, size_t errlen) {
  sl_enroll_kafka_t *k = calloc(1, sizeof(*k));
  rd_kafka_conf_t *conf;
  *out = NULL;
  if (!k)
    return -ENOMEM;
  k->c = *c;
  for (int t = 0; t < SL_ENROLL_T_N; t++)
    snprintf(k->topics[t], sizeof(k->topics[t]), "%s%s",
             c->prefix && *c->prefix ? c->prefix : "sluice.fleet.", names[t]);
  if (!(conf = mkconf(c, err, errlen))) {
    free(k);
    return SL_ECONFIG;
  }
  char e[512];
  rd_kafka_conf_set(conf, "enable.idempotence", "true", e, sizeof(e));
  rd_kafka_conf_set(conf, "linger.ms", "0", e, sizeof(e));
  rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
  if (!(k->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e)))) {
    snprintf(err, errlen, "producer: %s", e);
    free(k);
    return SL_EKAFKA;
  }
  *out = k;
  return 0;
}

void sl_enroll_kafka_close(sl_enroll_kafka_t *k) {
  if (!k)
    return;
  rd_kafka_flush(k->rk, 5000);
  rd_kafka_destroy(k->rk);
  free(k);
}

const char *sl_enroll_topic(const sl_enroll_kafka_t *k, int t) {
  return k->topics[t];
}

/* Waits for the one result event of an admin call on q. */
static rd_kafka_event_t *admin_wait(rd_kafka_queue_t *q) {
  return rd_kafka_queue_poll(q, 30000);
}

int sl_enroll_kafka_init(sl_enroll_kafka_t *k, int partitions, int replication,
                         char *err, size_t errlen) {
  rd_kafka_NewTopic_t *nt[SL_ENROLL_T_N] = {0};
  rd_kafka_queue_t *q = rd_kafka_queue_new(k->rk);
  rd_kafka_event_t *ev = NULL;
  char e[512];
  int rc = SL_EKAFKA;
  for (int t = 0; t < SL_ENROLL_T_N; t++) {
    if (!(nt[t] = rd_kafka_NewTopic_new(k->topics[t], partitions, replication,
                                        e, sizeof(e)))) {
      snprintf(err, errlen, "%s: %s", k->topics[t], e);
      goto done;
    }
    rd_kafka_NewTopic_set_config(nt[t], "cleanup.policy", "compact");
  }
  rd_kafka_CreateTopics(k->rk, nt, SL_ENROLL_T_N, NULL, q);
  if (!(ev = admin_wait(q))) {
    snprintf(err, errlen, "CreateTopics: no answer in 30 s");
    goto done;
  }
  if (rd_kafka_event_error(ev)) {
    snprintf(err, errlen, "CreateTopics: %s", rd_kafka_event_error_string(ev));
    goto done;
  }
  size_t cnt;
  const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
      rd_kafka_event_CreateTopics_result(ev), &cnt);
  rc = 0;
  for (size_t i = 0; i < cnt; i++) {
    rd_kafka_resp_err_t te = rd_kafka_topic_result_error(res[i]);
    if (te && te != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      snprintf(err, errlen, "%s: %s", rd_kafka_topic_result_name(res[i]),
               rd_kafka_err2str(te));
      rc = SL_EKAFKA;
    }
  }
done:
  if (ev)
    rd_kafka_event_destroy(ev);
  for (int t = 0; t < SL_ENROLL_T_N; t++)
    if (nt[t])
      rd_kafka_NewTopic_destroy(nt[t]);
  rd_kafka_queue_destroy(q);
  return rc;
}

static int topic_parts(rd_kafka_t *rk, const char *topic, char *err,
                       size_t errlen) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
  int n = SL_EKAFKA;
  if (e)
    snprintf(err, errlen, "%s: metadata: %s", topic, rd_kafka_err2str(e));
  else if (md->topic_cnt != 1 || md->topics[0].err ||
           md->topics[0].partition_cnt <= 0) {
    snprintf(err, errlen, "%s: %s", topic,
             md->topic_cnt == 1 && md->topics[0].err
                 ? rd_kafka_err2str(md->topics[0].err)
                 : "no partitions");
    n = SL_ENOTFOUND;
  } else
    n = md->topics[0].partition_cnt;
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  return n;
}

int sl_enroll_partitions(sl_enroll_kafka_t *k, int t, char *err,
                         size_t errlen) {
  return topic_parts(k->rk, k->topics[t], err, errlen);
}

int sl_enroll_produce(sl_enroll_kafka_t *k, int t, const char *node_id,
                      const void *val, size_t len, char *err, size_t errlen) {
  /* The count is asked once (a metadata round trip per answer slowed a
   * burst of enrolments); partitions are never removed, and one added
   * later moves keys: the topics are created once, with their count. */
  int parts =
      k->parts[t] ? k->parts[t] : topic_parts(k->rk, k->topics[t], err, errlen);
  if (parts < 0)
    return parts;
  k->parts[t] = parts;
  int32_t p = sl_fleet_partition(node_id, strlen(node_id), parts);
  volatile rd_kafka_resp_err_t dr = RD_KAFKA_RESP_ERR__IN_PROGRESS;
  rd_kafka_resp_err_t e = rd_kafka_producev(
      k->rk, RD_KAFKA_V_TOPIC(k->topics[t]), RD_KAFKA_V_PARTITION(p),
      RD_KAFKA_V_KEY(node_id, strlen(node_id)),
      RD_KAFKA_V_VALUE((void *)val, len),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE((void *)&dr),
      RD_KAFKA_V_END);
  if (e) {
    snprintf(err, errlen, "%s: %s", k->topics[t], rd_kafka_err2str(e));
    return SL_EKAFKA;
  }
  for (int i = 0; i < 600 && dr == RD_KAFKA_RESP_ERR__IN_PROGRESS; i++)
    rd_kafka_poll(k->rk, 100);
  if (dr) {
    k->parts[t] = 0; /* asked again next time */
    snprintf(err, errlen, "%s: %s", k->topics[t],
             dr == RD_KAFKA_RESP_ERR__IN_PROGRESS ? "not delivered in 60 s"
                                                  : rd_kafka_err2str(dr));
    return SL_EKAFKA;
  }
  return 0;
}

int sl_enroll_reader_open(sl_enroll_kafka_t *k, sl_enroll_reader_t **out,
                          char *err, size_t errlen) {
  char e[512];
  sl_enroll_reader_t *r = calloc(1, sizeof(*r));
  rd_kafka_conf_t *conf = NULL;
  int rc = -ENOMEM;
  *out = NULL;
  if (!r)
    return rc;
  r->k = k;
  r->parts = rd_kafka_topic_partition_list_new(16);
  for (int t = 0; t < SL_ENROLL_T_N; t++) {
    int n = topic_parts(k->rk, k->topics[t], err, errlen);
    if (n < 0) {
      rc = n;
      goto fail;
    }
    for (int p = 0; p < n; p++)
      rd_kafka_topic_partition_list_add(r->parts, k->topics[t], p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
  }
  r->n_parts = (size_t)r->parts->cnt;
  if (!(r->eof = calloc(r->n_parts, 1)))
    goto fail;
  rc = SL_ECONFIG;
  if (!(conf = mkconf(&k->c, err, errlen)))
    goto fail;
  /* assign() only: the group id is never joined nor committed to. */
  if (rd_kafka_conf_set(conf, "group.id", "sluice-fleet-enroll", e,
                        sizeof(e)) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof(e))) {
    snprintf(err, errlen, "%s", e);
    rd_kafka_conf_destroy(conf);
    goto fail;
  }
  rc = SL_EKAFKA;
  if (!(r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e)))) {
    snprintf(err, errlen, "consumer: %s", e);
    goto fail;
  }
  if (rd_kafka_assign(r->rk, r->parts)) {
    snprintf(err, errlen, "assign failed");
    goto fail;
  }
  *out = r;
  return 0;
fail:
  sl_enroll_reader_close(r);
  return rc;
}

void sl_enroll_reader_close(sl_enroll_reader_t *r) {
  if (!r)
    return;
  if (r->rk) {
    rd_kafka_assign(r->rk, NULL);
    rd_kafka_destroy(r->rk);
  }
  if (r->parts)
    rd_kafka_topic_partition_list_destroy(r->parts);
  free(r->eof);
  free(r);
}

static int topic_index(const sl_enroll_reader_t *r, const char *name) {
  for (int t = 0; t < SL_ENROLL_T_N; t++)
    if (!strcmp(r->k->topics[t], name))
      return t;
  return -1;
}

int sl_enroll_reader_poll(sl_enroll_reader_t *r, int timeout_ms,
                          sl_enroll_record_cb cb, void *opaque,
                          bool *caught_up) {
  int n = 0;
  rd_kafka_message_t *m;
  int wait = timeout_ms;
  while ((m = rd_kafka_consumer_poll(r->rk, wait))) {
    wait = 0;
    const char *tn = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
    int t = topic_index(r, tn);
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      for (size_t i = 0; i < r->n_parts; i++)
        if (!strcmp(r->parts->elems[i].topic, tn) &&
            r->parts->elems[i].partition == m->partition && !r->eof[i]) {
          r->eof[i] = 1;
          r->n_eof++;
        }
    } else if (!m->err && t >= 0) {
      cb(opaque, t, m->key, m->key_len, m->payload, m->len);
      n++;
    } else if (m->err && m->err != RD_KAFKA_RESP_ERR__TRANSPORT) {
      rd_kafka_message_destroy(m);
      return SL_EKAFKA;
    }
    rd_kafka_message_destroy(m);
    if (n >= 1000)
      break;
  }
  if (caught_up)
    *caught_up = r->n_eof == r->n_parts;
  return n;
}

int sl_enroll_acls_apply(sl_enroll_kafka_t *k, const char *principal,
                         const sl_enroll_acl_t *acls, size_t n, bool del,
                         char *err, size_t errlen) {
  return sl_enroll_acls_apply_many(k, 1, &principal, &acls, &n, del, err,
                                   errlen);
}

int sl_enroll_acls_apply_many(sl_enroll_kafka_t *k, size_t np,
                              const char *const *principals,
                              const sl_enroll_acl_t *const *acls,
                              const size_t *n, bool del, char *err,
                              size_t errlen) {
  rd_kafka_queue_t *q = NULL;
  rd_kafka_event_t *ev = NULL;
  rd_kafka_AclBinding_t **b = NULL;
  const sl_enroll_acl_t **of = NULL; /* the ACL of each binding */
  char e[512];
  size_t nb = 0, total = 0;
  int rc = -ENOMEM;
  for (size_t p = 0; p < np; p++)
    total += n[p];
  if (!total)
    return 0;
  if (!(b = calloc(total, sizeof(*b))) || !(of = calloc(total, sizeof(*of))))
    goto done;
  rc = SL_ECONFIG;
  for (size_t p = 0; p < np; p++)
    for (size_t i = 0; i < n[p]; i++) {
      const sl_enroll_acl_t *a = &acls[p][i];
      if (del)
        b[nb] = rd_kafka_AclBindingFilter_new(
            (rd_kafka_ResourceType_t)a->resource, a->name,
            (rd_kafka_ResourcePatternType_t)a->pattern, principals[p], "*",
            (rd_kafka_AclOperation_t)a->operation,
            RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, e, sizeof(e));
      else
        b[nb] = rd_kafka_AclBinding_new(
            (rd_kafka_ResourceType_t)a->resource, a->name,
            (rd_kafka_ResourcePatternType_t)a->pattern, principals[p], "*",
            (rd_kafka_AclOperation_t)a->operation,
            RD_KAFKA_ACL_PERMISSION_TYPE_ALLOW, e, sizeof(e));
      if (!b[nb]) {
        snprintf(err, errlen, "%s %s: %s", principals[p], a->name, e);
        goto done;
      }
      of[nb++] = a;
    }
  rc = SL_EKAFKA;
  q = rd_kafka_queue_new(k->rk);
  if (del)
    rd_kafka_DeleteAcls(k->rk, b, nb, NULL, q);
  else
    rd_kafka_CreateAcls(k->rk, b, nb, NULL, q);
  if (!(ev = admin_wait(q))) {
    snprintf(err, errlen, "%sAcls: no answer in 30 s",
             del ? "Delete" : "Create");
    goto done;
  }
  if (rd_kafka_event_error(ev)) {
    snprintf(err, errlen, "%sAcls: %s", del ? "Delete" : "Create",
             rd_kafka_event_error_string(ev));
    goto done;
  }
  rc = 0;
  if (!del) {
    size_t cnt;
    const rd_kafka_acl_result_t **res = rd_kafka_CreateAcls_result_acls(
        rd_kafka_event_CreateAcls_result(ev), &cnt);
    for (size_t i = 0; i < cnt && i < nb; i++) {
      const rd_kafka_error_t *ae = rd_kafka_acl_result_error(res[i]);
      if (ae) {
        snprintf(err, errlen, "CreateAcls %s: %s", of[i]->name,
                 rd_kafka_error_string(ae));
        rc = SL_EKAFKA;
      }
    }
  }
done:
  if (ev)
    rd_kafka_event_destroy(ev);
  for (size_t i = 0; i < nb; i++)
    rd_kafka_AclBinding_destroy(b[i]);
  free(b);
  free(of);
  if (q)
    rd_kafka_queue_destroy(q);
  return rc;
}

int sl_enroll_produce_many(sl_enroll_kafka_t *k, int t, size_t n,
                           const char *const *ids, const void *const *vals,
                           const size_t *lens, int *errs, char *err,
                           size_t errlen) {
  rd_kafka_resp_err_t *dr = calloc(n ? n : 1, sizeof(*dr));
  int parts =
      k->parts[t] ? k->parts[t] : topic_parts(k->rk, k->topics[t], err, errlen);
  int rc = 0;
  if (!dr)
    return -ENOMEM;
  if (parts < 0) {
    free(dr);
    return parts;
  }
  k->parts[t] = parts;
  for (size_t i = 0; i < n; i++) {
    dr[i] = RD_KAFKA_RESP_ERR__IN_PROGRESS;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        k->rk, RD_KAFKA_V_TOPIC(k->topics[t]),
        RD_KAFKA_V_PARTITION(sl_fleet_partition(ids[i], strlen(ids[i]), parts)),
        RD_KAFKA_V_KEY(ids[i], strlen(ids[i])),
        RD_KAFKA_V_VALUE((void *)vals[i], lens[i]),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE((void *)&dr[i]), RD_KAFKA_V_END);
    if (e)
      dr[i] = e;
  }
  /* Every delivery report comes back (message.timeout.ms bounds it). */
  for (bool busy = true; busy;) {
    busy = false;
    for (size_t i = 0; i < n && !busy; i++)
      busy = dr[i] == RD_KAFKA_RESP_ERR__IN_PROGRESS;
    if (busy)
      rd_kafka_poll(k->rk, 50);
  }
  for (size_t i = 0; i < n; i++) {
    errs[i] = dr[i] ? SL_EKAFKA : 0;
    if (dr[i]) {
      snprintf(err, errlen, "%s: %s", k->topics[t], rd_kafka_err2str(dr[i]));
      k->parts[t] = 0;
      rc = SL_EKAFKA;
    }
  }
  free(dr);
  return rc;
}
