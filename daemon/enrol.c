/*
 * daemon/enrol.c: zero-touch enrolment, the node side (docs/ENROLMENT.md).
 *
 * A new box has a bootstrap file and nothing else. On its first start it
 * makes its key (security/identity.c), takes its node id from the key,
 * and, connected with the fleet's claim certificate (which Kafka's ACLs
 * allow only this), sends an EnrolRequest (its CSR and what it can read
 * about itself) to <prefix>enrol.requests and reads its partition of
 * <prefix>enrol.responses. Meanwhile it runs: it ingests and stores, but
 * neither the uplink nor the fleet agent connects (dm->kx.blocked). Once
 * approved it installs its certificate and starts again (the same process,
 * executed again), now connecting as itself everywhere. At renew_at of the
 * certificate's life it asks again with its own certificate; through an
 * outage the old one serves until it expires. A REVOKED answer or the
 * fleet's decommission wipes the key and stops the uplink.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "daemon/daemon.h"
#include "daemon/enrol.h"
#include "daemon/kclient.h"
#include "fleet/fleet.h"
#include "security/identity.h"
#include "sluice/v1/enrol.pb-c.h"
#include "telemetry/log.h"

#ifndef SL_VERSION
#define SL_VERSION "0.1.0"
#endif

enum {
  ST_OFF,
  ST_REQUESTING,
  ST_LOBBY,
  ST_ENROLLED,
  ST_DENIED,
  ST_EXPIRED,
  ST_REVOKED,
  ST_RENEWING
};
static const char *const state_names[] = {"off",      "requesting", "lobby",
                                          "enrolled", "denied",     "expired",
                                          "revoked",  "renewing"};

struct sl_enrol {
  sl_daemon_t *dm;
  sl_config_bootstrap_t *bs;
  sl_identity_t *id;
  char node_id[72];
  char t_req[256], t_resp[256];
  char *props[8]; /* dm->kx.props */
  char **labels;  /* approved (identity/labels) or requested */
  size_t nlabels;
  int64_t not_before, not_after;

  /* The request thread (Kafka). */
  pthread_t thr;
  int thr_started;
  atomic_int stop;
  int renewal; /* the thread asks with the node's certificate */
  rd_kafka_t *prod, *cons;

  /* Mailbox: thread -> loop, the newest answer for this key. */
  pthread_mutex_t lock;
  uint8_t *mb;
  size_t mb_len;
  uv_async_t wake;
  uv_timer_t timer;
  int handles;

  /* Status (under lock). */
  int state;
  char reason[256];

  sl_metric_t *m_state, *m_expiry, *m_requests, *m_renewals;
};

static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void set_state(struct sl_enrol *e, int st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_state(struct sl_enrol *e, int st, const char *fmt, ...) {
  va_list ap;
  pthread_mutex_lock(&e->lock);
  e->state = st;
  e->reason[0] = '\0';
  if (fmt) {
    va_start(ap, fmt);
    vsnprintf(e->reason, sizeof(e->reason), fmt, ap);
    va_end(ap);
  }
  pthread_mutex_unlock(&e->lock);
  sl_metric_set(e->m_state, st);
}

/* ---- labels file (approved labels, one key=value per line) -------------- */

static void labels_free(struct sl_enrol *e) {
  for (size_t i = 0; i < e->nlabels; i++)
    free(e->labels[i]);
  free(e->labels);
  e->labels = NULL;
  e->nlabels = 0;
}

static int labels_add(struct sl_enrol *e, const char *k, const char *v) {
  char **nl = realloc(e->labels, (e->nlabels + 1) * sizeof(char *));
  size_t n = strlen(k) + strlen(v) + 2;
  if (!nl)
    return -ENOMEM;
  e->labels = nl;
  if (!(e->labels[e->nlabels] = malloc(n)))
    return -ENOMEM;
  snprintf(e->labels[e->nlabels++], n, "%s=%s", k, v);
  return 0;
}

static void labels_path(struct sl_enrol *e, char *buf, size_t len) {
  snprintf(buf, len, "%s.labels", sl_identity_cert_path(e->id));
}

static void labels_load(struct sl_enrol *e) {
  char path[700], line[512];
  FILE *f;
  labels_path(e, path, sizeof(path));
  if (!(f = fopen(path, "re"))) {
    /* Not approved yet: the bootstrap's requested labels. */
    for (size_t i = 0; i < e->bs->labels.n; i++) {
      const char *l = e->bs->labels.v[i], *eq = strchr(l, '=');
      if (eq) {
        char k[256];
        snprintf(k, sizeof(k), "%.*s", (int)(eq - l), l);
        (void)labels_add(e, k, eq + 1);
      }
    }
    return;
  }
  while (fgets(line, sizeof(line), f)) {
    char *eq = strchr(line, '=');
    line[strcspn(line, "\n")] = '\0';
    if (eq) {
      *eq = '\0';
      (void)labels_add(e, line, eq + 1);
    }
  }
  fclose(f);
}

static int labels_save(struct sl_enrol *e, const Sluice__V1__EnrolResponse *r) {
  char path[700], tmp[720];
  FILE *f;
  labels_path(e, path, sizeof(path));
  snprintf(tmp, sizeof(tmp), "%s.tmp", path);
  if (!(f = fopen(tmp, "we")))
    return -errno;
  for (size_t i = 0; i < r->n_labels; i++)
    fprintf(f, "%s=%s\n", r->labels[i]->key, r->labels[i]->value);
  if (fflush(f) != 0 || fsync(fileno(f)) != 0) {
    fclose(f);
    return -EIO;
  }
  fclose(f);
  return rename(tmp, path) < 0 ? -errno : 0;
}

/* ---- the request ------------------------------------------------------- */

static void read_line(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "re");
  buf[0] = '\0';
  if (!f)
    return;
  if (fgets(buf, (int)len, f))
    buf[strcspn(buf, "\n")] = '\0';
  fclose(f);
}

static uint8_t *make_request(struct sl_enrol *e, size_t *len) {
  Sluice__V1__EnrolRequest r = SLUICE__V1__ENROL_REQUEST__INIT;
  Sluice__V1__EnrolRequest__LabelsEntry *ents = NULL, **ep = NULL;
  char host[256] = "", mid[128], prod[128], serial[128];
  struct utsname u;
  char *csr = NULL;
  uint8_t *buf = NULL;
  const char *fl = getenv("SLUICE_FLIGHTCTL_DEVICE");

  if (sl_identity_csr(e->id, e->node_id, &csr) < 0)
    return NULL;
  if (e->nlabels && (!(ents = calloc(e->nlabels, sizeof(*ents))) ||
                     !(ep = calloc(e->nlabels, sizeof(*ep)))))
    goto out;
  for (size_t i = 0; i < e->nlabels; i++) {
    char *eq = strchr(e->labels[i], '=');
    sluice__v1__enrol_request__labels_entry__init(&ents[i]);
    *eq = '\0';
    ents[i].key = e->labels[i];
    ents[i].value = eq + 1;
    ep[i] = &ents[i];
  }
  (void)gethostname(host, sizeof(host) - 1);
  read_line("/etc/machine-id", mid, sizeof(mid));
  read_line("/sys/class/dmi/id/product_name", prod, sizeof(prod));
  read_line("/sys/class/dmi/id/product_serial", serial, sizeof(serial));
  r.node_id = e->node_id;
  r.csr_pem = csr;
  r.hostname = host;
  r.machine_id = mid;
  r.dmi_product = prod;
  r.dmi_serial = serial;
  r.arch = uname(&u) == 0 ? u.machine : "";
  r.agent_version = SL_VERSION;
  r.n_labels = e->nlabels;
  r.labels = ep;
  r.claim = e->bs->claim_name;
  r.time_ns = wall_ns();
  r.renewal = e->renewal;
  r.key_sha256 = (char *)sl_identity_key_sha256(e->id);
  r.flightctl_device = fl ? (char *)fl : "";
  *len = sluice__v1__enrol_request__get_packed_size(&r);
  if ((buf = malloc(*len ? *len : 1)))
    sluice__v1__enrol_request__pack(&r, buf);
  for (size_t i = 0; i < e->nlabels; i++) /* restore "key=value" */
    e->labels[i][strlen(e->labels[i])] = '=';
out:
  free(ents);
  free(ep);
  free(csr);
  return buf;
}

static rd_kafka_conf_t *conf_for(struct sl_enrol *e, int node_cert, char *err,
                                 size_t errlen) {
  rd_kafka_conf_t *c = sl_kclient_conf();
  const char *cert =
      node_cert ? sl_identity_cert_path(e->id) : e->bs->claim_cert;
  const char *key = node_cert ? sl_identity_key_path(e->id) : e->bs->claim_key;
  if (rd_kafka_conf_set(c, "bootstrap.servers", e->bs->brokers, err, errlen) ||
      rd_kafka_conf_set(c, "security.protocol", "ssl", err, errlen) ||
      rd_kafka_conf_set(c, "ssl.ca.location", e->bs->ca, err, errlen) ||
      rd_kafka_conf_set(c, "ssl.certificate.location", cert, err, errlen) ||
      rd_kafka_conf_set(c, "ssl.key.location", key, err, errlen) ||
      rd_kafka_conf_set(c, "client.id", "sluice-enrol", err, errlen))
    goto fail;
  if (sl_kclient_props(c, e->bs->properties.v, e->bs->properties.n, NULL, err,
                       errlen) < 0)
    goto fail;
  return c;
fail:
  rd_kafka_conf_destroy(c);
  return NULL;
}

static void *enrol_thread(void *arg) {
  struct sl_enrol *e = arg;
  size_t idlen = strlen(e->node_id);
  int32_t preq = 0, presp = 0;
  uint64_t next_send = 0, retry = e->dm->in.cfg->enrol.retry_ms * 1000000;
  uint8_t *best = NULL;
  size_t best_len = 0;
  int warned = -1; /* the last reason logged */

  while (!atomic_load(&e->stop)) {
    if (!preq || !presp) {
      rd_kafka_resp_err_t w1 = 0, w2 = 0;
      preq = sl_kclient_partitions(e->prod, e->t_req, 500, &w1);
      presp = sl_kclient_partitions(e->cons, e->t_resp, 500, &w2);
      if (!preq || !presp) {
        rd_kafka_resp_err_t w = w1 ? w1 : w2;
        if ((int)w != warned) /* each new reason once */
          sl_warn(SL_LOG_CTX_CONFIG, NULL,
                  "enrolment: %s or %s not reachable yet (%s); retrying",
                  e->t_req, e->t_resp, rd_kafka_err2str(w));
        warned = (int)w;
        preq = presp = 0;
        rd_kafka_poll(e->prod, 200);
        continue;
      }
      rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
      rd_kafka_topic_partition_list_add(
          l, e->t_resp, sl_fleet_partition(e->node_id, idlen, presp))
          ->offset = RD_KAFKA_OFFSET_BEGINNING;
      rd_kafka_assign(e->cons, l);
      rd_kafka_topic_partition_list_destroy(l);
    }
    if (sl_now_mono_ns() >= next_send) {
      size_t len;
      uint8_t *req = make_request(e, &len);
      if (req &&
          rd_kafka_producev(
              e->prod, RD_KAFKA_V_TOPIC(e->t_req),
              RD_KAFKA_V_PARTITION(sl_fleet_partition(e->node_id, idlen, preq)),
              RD_KAFKA_V_KEY(e->node_id, idlen), RD_KAFKA_V_VALUE(req, len),
              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == 0)
        sl_metric_add(e->m_requests, 1);
      free(req);
      next_send = sl_now_mono_ns() + retry;
    }
    rd_kafka_poll(e->prod, 0);
    rd_kafka_message_t *m = rd_kafka_consumer_poll(e->cons, 200);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && best) {
      pthread_mutex_lock(&e->lock);
      free(e->mb);
      e->mb = best;
      e->mb_len = best_len;
      pthread_mutex_unlock(&e->lock);
      best = NULL;
      uv_async_send(&e->wake);
    } else if (!m->err && m->key_len == idlen &&
               !memcmp(m->key, e->node_id, idlen)) {
      Sluice__V1__EnrolResponse *r =
          sluice__v1__enrol_response__unpack(NULL, m->len, m->payload);
      /* Answers for this key only (a reinstalled box has another). */
      if (r && !strcmp(r->key_sha256, sl_identity_key_sha256(e->id))) {
        uint8_t *c = malloc(m->len ? m->len : 1);
        if (c) {
          memcpy(c, m->payload, m->len);
          free(best);
          best = c;
          best_len = m->len;
        }
        /* Answered (even PENDING): the service has the request. */
        next_send = sl_now_mono_ns() + 10 * retry;
      }
      if (r)
        sluice__v1__enrol_response__free_unpacked(r, NULL);
    }
    rd_kafka_message_destroy(m);
  }
  free(best);
  return NULL;
}

static int start_thread(struct sl_enrol *e, int renewal) {
  char err[512], group[128];
  rd_kafka_conf_t *pc, *cc;
  e->renewal = renewal;
  if (!(pc = conf_for(e, renewal, err, sizeof(err))))
    goto fail;
  if (!(e->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, sizeof(err))))
    goto fail;
  if (!(cc = conf_for(e, renewal, err, sizeof(err))))
    goto fail;
  snprintf(group, sizeof(group), "sluice-enrol-%s", e->node_id);
  if (rd_kafka_conf_set(cc, "group.id", group, err, sizeof(err)) ||
      rd_kafka_conf_set(cc, "enable.auto.commit", "false", err, sizeof(err)) ||
      rd_kafka_conf_set(cc, "enable.partition.eof", "true", err, sizeof(err))) {
    rd_kafka_conf_destroy(cc);
    goto fail;
  }
  if (!(e->cons = rd_kafka_new(RD_KAFKA_CONSUMER, cc, err, sizeof(err))))
    goto fail;
  atomic_store(&e->stop, 0);
  if (pthread_create(&e->thr, NULL, enrol_thread, e) != 0) {
    snprintf(err, sizeof(err), "cannot start its thread");
    goto fail;
  }
  e->thr_started = 1;
  return 0;
fail:
  sl_error(SL_LOG_CTX_CONFIG, NULL, "enrolment: %s", err);
  return -1;
}

static void stop_thread(struct sl_enrol *e) {
  atomic_store(&e->stop, 1);
  if (e->thr_started)
    pthread_join(e->thr, NULL);
  e->thr_started = 0;
  if (e->cons) {
    rd_kafka_consumer_close(e->cons);
    rd_kafka_destroy(e->cons);
    e->cons = NULL;
  }
  if (e->prod) {
    rd_kafka_flush(e->prod, 1000);
    rd_kafka_destroy(e->prod);
    e->prod = NULL;
  }
}

/* ---- loop side --------------------------------------------------------- */

static void on_answer(uv_async_t *h) {
  struct sl_enrol *e = h->data;
  Sluice__V1__EnrolResponse *r;
  char err[512];
  uint8_t *buf;
  size_t len;

  pthread_mutex_lock(&e->lock);
  buf = e->mb;
  len = e->mb_len;
  e->mb = NULL;
  pthread_mutex_unlock(&e->lock);
  if (!buf || e->dm->stopping) {
    free(buf);
    return;
  }
  r = sluice__v1__enrol_response__unpack(NULL, len, buf);
  free(buf);
  if (!r)
    return;
  switch (r->decision) {
  case SLUICE__V1__ENROL_DECISION_KIND__ENROL_PENDING:
    if (e->state != ST_LOBBY && !e->renewal) {
      set_state(e, ST_LOBBY, "%s", r->reason);
      sl_info(SL_LOG_CTX_CONFIG, NULL,
              "enrolment: node %s waits in the lobby for approval%s%s "
              "(storing locally meanwhile)",
              e->node_id, *r->reason ? ": " : "", r->reason);
    }
    break;
  case SLUICE__V1__ENROL_DECISION_KIND__ENROL_DENIED:
    if (e->state != ST_DENIED) {
      set_state(e, ST_DENIED, "%s", r->reason);
      sl_error(SL_LOG_CTX_CONFIG, NULL,
               "enrolment: node %s denied: %s (it keeps storing locally and "
               "waits for an operator)",
               e->node_id, r->reason);
    }
    break;
  case SLUICE__V1__ENROL_DECISION_KIND__ENROL_REVOKED:
    sl_enrol_revoke(e->dm, *r->reason ? r->reason : "revoked by the fleet");
    break;
  case SLUICE__V1__ENROL_DECISION_KIND__ENROL_APPROVED: {
    int64_t nb, na, old_after = e->not_after;
    if (e->renewal && r->not_after_ns <= old_after)
      break; /* the answer to an earlier request */
    if (sl_identity_install(e->id, r->cert_pem, r->ca_pem, err, sizeof(err)) <
        0) {
      sl_error(SL_LOG_CTX_CONFIG, NULL,
               "enrolment: the certificate from the fleet is refused: %s", err);
      break;
    }
    (void)labels_save(e, r);
    sl_identity_cert_times(e->id, &nb, &na);
    e->not_before = nb;
    e->not_after = na;
    if (e->renewal)
      sl_metric_add(e->m_renewals, 1);
    set_state(e, ST_ENROLLED, NULL);
    sl_info(SL_LOG_CTX_CONFIG, NULL,
            "enrolment: node %s %s (certificate valid until %lld); starting "
            "again to connect as itself",
            e->node_id, e->renewal ? "renewed its certificate" : "approved",
            (long long)(na / 1000000000));
    sl_daemon__restart(e->dm, e->renewal ? "enrolment: certificate renewed"
                                         : "enrolment: approved");
    break;
  }
  default:
    break;
  }
  sluice__v1__enrol_response__free_unpacked(r, NULL);
}

static void on_timer(uv_timer_t *t) {
  struct sl_enrol *e = t->data;
  int64_t now = wall_ns();
  if (e->dm->stopping || e->state == ST_REVOKED)
    return;
  if (e->not_after)
    sl_metric_set(e->m_expiry, (double)(e->not_after - now) / 1e9);
  if (e->state == ST_ENROLLED && e->not_after && now >= e->not_after) {
    set_state(e, ST_EXPIRED, "the certificate expired at %lld",
              (long long)(e->not_after / 1000000000));
    sl_error(SL_LOG_CTX_CONFIG, NULL,
             "enrolment: node %s's certificate expired (%s): Kafka refuses "
             "it; enrolling again with the claim (data is stored meanwhile)",
             e->node_id, e->reason);
    stop_thread(e);
    (void)start_thread(e, 0);
    return;
  }
  if (e->state == ST_ENROLLED && !e->thr_started && e->not_after &&
      now >= e->not_before + (int64_t)((double)(e->not_after - e->not_before) *
                                       e->dm->in.cfg->enrol.renew_at)) {
    set_state(e, ST_RENEWING, NULL);
    sl_info(SL_LOG_CTX_CONFIG, NULL,
            "enrolment: renewing the certificate (valid until %lld)",
            (long long)(e->not_after / 1000000000));
    (void)start_thread(e, 1);
  }
}

int sl_enrol_prepare(sl_daemon_t *dm, char *err, size_t errlen) {
  const sl_config_t *cfg = dm->in.cfg;
  struct sl_enrol *e;
  char dir[600];
  int64_t nb = 0, na = 0;
  int rc;

  if (!*cfg->enrol.bootstrap)
    return 0;
  if (!(e = calloc(1, sizeof(*e))))
    return -ENOMEM;
  dm->enrol = e;
  e->dm = dm;
  pthread_mutex_init(&e->lock, NULL);
  if ((rc = sl_config_bootstrap_load(cfg->enrol.bootstrap, &e->bs, err,
                                     errlen)) < 0)
    return rc;
  if (*cfg->enrol.identity_dir) {
    snprintf(dir, sizeof(dir), "%s", cfg->enrol.identity_dir);
  } else {
    /* The store makes data_dir later; the identity lives in it. */
    if (mkdir(cfg->node.data_dir, 0700) < 0 && errno != EEXIST) {
      snprintf(err, errlen, "%s: cannot create: %s", cfg->node.data_dir,
               strerror(errno));
      return -errno;
    }
    snprintf(dir, sizeof(dir), "%s/identity", cfg->node.data_dir);
  }
  if ((rc = sl_identity_open(dir, true, &e->id, err, errlen)) < 0)
    return rc;
  if (!*cfg->node.id) {
    /* The id comes from the key: every later load (reloads, the restart)
     * sees it through the environment, as if the operator had set it. */
    char sha[65];
    int unchanged;
    sl_config_t *nw;
    setenv("SLUICE_NODE_ID", sl_identity_node_id(e->id), 1);
    if ((rc = sl_cfgwatch_load(dm, 0, &nw, sha, &unchanged, err, errlen)) < 0)
      return rc;
    sl_config_free(dm->in.cfg);
    dm->in.cfg = nw;
    cfg = nw;
  }
  snprintf(e->node_id, sizeof(e->node_id), "%s", cfg->node.id);
  snprintf(e->t_req, sizeof(e->t_req), "%senrol.requests", e->bs->topic_prefix);
  snprintf(e->t_resp, sizeof(e->t_resp), "%senrol.responses",
           e->bs->topic_prefix);
  labels_load(e);
  dm->kx.brokers = e->bs->brokers;
  dm->kx.verify_key = e->bs->verify_key;
  dm->kx.topic_prefix = e->bs->topic_prefix;
  dm->kx.labels = e->labels;
  dm->kx.nlabels = e->nlabels;
  if (sl_identity_cert_times(e->id, &nb, &na) == 0 && na > wall_ns()) {
    size_t n = 0;
    e->not_before = nb;
    e->not_after = na;
    e->state = ST_ENROLLED;
    if (asprintf(&e->props[n++], "security.protocol=ssl") < 0 ||
        asprintf(&e->props[n++], "ssl.ca.location=%s", e->bs->ca) < 0 ||
        asprintf(&e->props[n++], "ssl.certificate.location=%s",
                 sl_identity_cert_path(e->id)) < 0 ||
        asprintf(&e->props[n++], "ssl.key.location=%s",
                 sl_identity_key_path(e->id)) < 0)
      return -ENOMEM;
    dm->kx.props = (const char **)e->props;
    dm->kx.nprops = n;
  } else {
    e->state = na ? ST_EXPIRED : ST_REQUESTING;
    dm->kx.blocked = 1;
  }
  sl_info(SL_LOG_CTX_CONFIG, NULL, "enrolment: node %s (key sha256 %.16s) %s",
          e->node_id, sl_identity_key_sha256(e->id),
          e->state == ST_ENROLLED ? "enrolled: connecting as itself"
          : e->state == ST_EXPIRED
              ? "has an expired certificate: enrolling again"
              : "not enrolled yet: storing locally until approved");
  return 0;
}

int sl_enrol_start(sl_daemon_t *dm, char *err, size_t errlen) {
  struct sl_enrol *e = dm->enrol;
  (void)err;
  (void)errlen;
  if (!e)
    return 0;
  e->m_state = sl_metrics_gauge(
      dm->in.mx, "sluice_enrol_state",
      "Enrolment state: 1 requesting, 2 lobby, 3 enrolled, 4 denied, 5 "
      "expired, 6 revoked, 7 renewing",
      NULL);
  e->m_expiry =
      sl_metrics_gauge(dm->in.mx, "sluice_enrol_cert_expiry_seconds",
                       "Seconds until the node's certificate expires", NULL);
  e->m_requests = sl_metrics_counter(dm->in.mx, "sluice_enrol_requests_total",
                                     "Enrolment requests sent", NULL);
  e->m_renewals = sl_metrics_counter(dm->in.mx, "sluice_enrol_renewals_total",
                                     "Certificates renewed", NULL);
  sl_metric_set(e->m_state, e->state);
  uv_async_init(&dm->loop, &e->wake, on_answer);
  e->wake.data = e;
  uv_timer_init(&dm->loop, &e->timer);
  e->timer.data = e;
  uv_timer_start(&e->timer, on_timer, 1000, 5000);
  e->handles = 1;
  if (e->state != ST_ENROLLED)
    return start_thread(e, 0) < 0 ? SL_EKAFKA : 0;
  return 0;
}

void sl_enrol_revoke(sl_daemon_t *dm, const char *why) {
  struct sl_enrol *e = dm->enrol;
  int rc;
  if (!e || e->state == ST_REVOKED)
    return;
  set_state(e, ST_REVOKED, "%s", why);
  rc = sl_identity_wipe(e->id);
  sl_uplink_stop(dm);
  sl_error(SL_LOG_CTX_CONFIG, NULL,
           "enrolment: node %s decommissioned (%s): key %s, uplink stopped; "
           "the data stays in the store",
           e->node_id, why, rc == 0 ? "wiped" : "NOT wiped");
}

void sl_enrol_status(sl_daemon_t *dm, json_t *root) {
  struct sl_enrol *e = dm->enrol;
  json_t *o;
  if (!e)
    return;
  o = json_object();
  pthread_mutex_lock(&e->lock);
  json_object_set_new(o, "state", json_string(state_names[e->state]));
  json_object_set_new(o, "reason", json_string(e->reason));
  pthread_mutex_unlock(&e->lock);
  json_object_set_new(o, "node_id", json_string(e->node_id));
  json_object_set_new(o, "claim", json_string(e->bs->claim_name));
  json_object_set_new(o, "not_after",
                      json_integer((json_int_t)(e->not_after / 1000000000)));
  json_object_set_new(o, "key_sha256",
                      json_string(e->id ? sl_identity_key_sha256(e->id) : ""));
  json_object_set_new(root, "enrolment", o);
}

void sl_enrol_close(sl_daemon_t *dm) {
  struct sl_enrol *e = dm->enrol;
  if (!e || !e->handles)
    return;
  e->handles = 0;
  uv_timer_stop(&e->timer);
  uv_close((uv_handle_t *)&e->timer, NULL);
  uv_close((uv_handle_t *)&e->wake, NULL);
}

void sl_enrol_free(sl_daemon_t *dm) {
  struct sl_enrol *e = dm->enrol;
  if (!e)
    return;
  stop_thread(e);
  for (size_t i = 0; i < sizeof(e->props) / sizeof(e->props[0]); i++)
    free(e->props[i]);
  labels_free(e);
  free(e->mb);
  sl_identity_free(e->id);
  sl_config_bootstrap_free(e->bs);
  pthread_mutex_destroy(&e->lock);
  free(e);
  dm->enrol = NULL;
}
