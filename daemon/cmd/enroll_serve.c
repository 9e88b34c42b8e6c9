/*
 * enroll_serve.c: the enrolment service (`sluice fleet enroll`,
 * docs/ENROLMENT.md) and the view of the enrolment topics it and `list`
 * read. Stateless over Kafka: it reads requests, decisions and its own
 * responses from the start (assign(), compacted topics), and answers every
 * request whose answer is missing or older than an operator's decision.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "common/common.h"
#include "daemon/cmd/enroll_int.h"

/* ---- the view ------------------------------------------------------------ */

static ev_node_t *ev_node(enroll_view_t *v, const char *id, size_t len) {
  for (size_t i = 0; i < v->n; i++)
    if (strlen(v->nodes[i].id) == len && !memcmp(v->nodes[i].id, id, len))
      return &v->nodes[i];
  if (v->n == v->cap) {
    size_t cap = v->cap ? v->cap * 2 : 64;
    ev_node_t *nn = realloc(v->nodes, cap * sizeof(*nn));
    if (!nn)
      return NULL;
    v->nodes = nn;
    v->cap = cap;
  }
  ev_node_t *n = &v->nodes[v->n];
  memset(n, 0, sizeof(*n));
  if (!(n->id = strndup(id, len)))
    return NULL;
  v->n++;
  return n;
}

static void node_free(ev_node_t *n) {
  free(n->id);
  if (n->req)
    sluice__v1__enrol_request__free_unpacked(n->req, NULL);
  if (n->dec)
    sluice__v1__enrol_decision__free_unpacked(n->dec, NULL);
  if (n->approved && n->approved != n->resp)
    sluice__v1__enrol_response__free_unpacked(n->approved, NULL);
  if (n->resp)
    sluice__v1__enrol_response__free_unpacked(n->resp, NULL);
}

void ev_free(enroll_view_t *v) {
  for (size_t i = 0; i < v->n; i++)
    node_free(&v->nodes[i]);
  free(v->nodes);
  memset(v, 0, sizeof(*v));
}

void ev_record(void *opaque, int t, const char *key, size_t klen,
               const void *val, size_t vlen) {
  enroll_view_t *v = opaque;
  ev_node_t *n;
  if (!key || !klen || !val || !(n = ev_node(v, key, klen)))
    return; /* tombstones and keyless records are not ours */
  n->dirty = true;
  if (t == SL_ENROLL_T_REQUESTS) {
    Sluice__V1__EnrolRequest *r =
        sluice__v1__enrol_request__unpack(NULL, vlen, val);
    if (!r)
      return;
    if (n->req)
      sluice__v1__enrol_request__free_unpacked(n->req, NULL);
    n->req = r;
  } else if (t == SL_ENROLL_T_DECISIONS) {
    Sluice__V1__EnrolDecision *d =
        sluice__v1__enrol_decision__unpack(NULL, vlen, val);
    if (!d)
      return;
    if (n->dec)
      sluice__v1__enrol_decision__free_unpacked(n->dec, NULL);
    n->dec = d;
  } else {
    Sluice__V1__EnrolResponse *r =
        sluice__v1__enrol_response__unpack(NULL, vlen, val);
    if (!r)
      return;
    if (n->resp && n->resp != n->approved)
      sluice__v1__enrol_response__free_unpacked(n->resp, NULL);
    n->resp = r;
    if (r->decision == SL_ENROLL_APPROVED) {
      if (n->approved && n->approved != r)
        sluice__v1__enrol_response__free_unpacked(n->approved, NULL);
      n->approved = r;
    } else if (r->decision == SL_ENROLL_REVOKED && n->approved) {
      sluice__v1__enrol_response__free_unpacked(n->approved, NULL);
      n->approved = NULL;
    }
  }
}

int ev_read_all(sl_enroll_kafka_t *k, enroll_view_t *v,
                sl_enroll_reader_t **keep) {
  sl_enroll_reader_t *r;
  char err[512];
  bool caught = false;
  int rc = sl_enroll_reader_open(k, &r, err, sizeof(err));
  if (rc) {
    fprintf(stderr, "sluice fleet enroll: %s%s\n", err,
            rc == SL_ENOTFOUND ? " (run `sluice fleet enroll init`)" : "");
    return rc == SL_ENOTFOUND ? 4 : 1;
  }
  uint64_t deadline = sl_now_mono_ns() + 60ull * 1000000000ull;
  while (!caught) {
    if (sl_enroll_reader_poll(r, 200, ev_record, v, &caught) < 0 ||
        sl_now_mono_ns() > deadline) {
      fprintf(stderr, "sluice fleet enroll: could not read the enrolment "
                      "topics to their end\n");
      sl_enroll_reader_close(r);
      return 1;
    }
  }
  if (keep)
    *keep = r;
  else
    sl_enroll_reader_close(r);
  return 0;
}

/* ---- the service ----------------------------------------------------------
 */

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
  (void)sig;
  stop = 1;
}

typedef struct svc {
  const enroll_opts_t *o;
  sl_enroll_kafka_t *k;
  sl_enroll_ca_t *ca;
  sl_enroll_rules_t *rules;
  uint64_t approved, pending, denied, revoked, failed;
} svc_t;

static void stamp(char *buf, size_t len) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int answer(svc_t *s, ev_node_t *n, int kind, const char *reason,
                  const char *cert, int64_t not_after_s,
                  Sluice__V1__EnrolResponse__LabelsEntry **labels,
                  size_t n_labels) {
  Sluice__V1__EnrolResponse r = SLUICE__V1__ENROL_RESPONSE__INIT;
  char err[512], ts[32];
  int64_t now = sl_now_wall_ns();
  r.node_id = n->id;
  r.decision = (Sluice__V1__EnrolDecisionKind)kind;
  r.reason = (char *)reason;
  r.cert_pem = (char *)(cert ? cert : "");
  r.ca_pem = (char *)(cert ? sl_enroll_ca_pem(s->ca) : "");
  r.labels = labels;
  r.n_labels = n_labels;
  r.key_sha256 = n->req && n->req->key_sha256 ? n->req->key_sha256 : "";
  /* Never older than what it answers (the node's clock may run ahead):
   * the view tells an answered request by this. */
  r.time_ns = n->req && n->req->time_ns > now ? n->req->time_ns : now;
  if (n->dec && n->dec->time_ns >= r.time_ns)
    r.time_ns = n->dec->time_ns + 1;
  r.not_after_ns = not_after_s * 1000000000LL;
  size_t len = sluice__v1__enrol_response__get_packed_size(&r);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf)
    return -ENOMEM;
  sluice__v1__enrol_response__pack(&r, buf);
  int rc = sl_enroll_produce(s->k, SL_ENROLL_T_RESPONSES, n->id, buf, len, err,
                             sizeof(err));
  free(buf);
  stamp(ts, sizeof(ts));
  if (rc)
    printf("%s %s: answer %s not delivered: %s\n", ts, n->id,
           sl_enroll_decision_name(kind), err);
  else
    printf("%s %s: %s: %s\n", ts, n->id, sl_enroll_decision_name(kind), reason);
  fflush(stdout);
  return rc;
}

static void node_acls(svc_t *s, const char *id, bool del) {
  sl_enroll_acl_t acls[SL_ENROLL_MAX_ACLS];
  char principal[300];
  if (!s->o->manage_acls)
    return;
  size_t n = sl_enroll_acls_node(&s->o->acl, id, acls);
  snprintf(principal, sizeof(principal), "User:%s", id);
  if (enroll_acls(s->k, principal, acls, n, del))
    s->failed++;
}

/* True when n's latest response answers its request and no operator
 * decision came after it. */
static bool answered(const ev_node_t *n) {
  const Sluice__V1__EnrolResponse *r = n->resp;
  if (!r || !n->req || !r->key_sha256 || !n->req->key_sha256 ||
      strcmp(r->key_sha256, n->req->key_sha256) || r->time_ns < n->req->time_ns)
    return false;
  return !n->dec || n->dec->time_ns < r->time_ns;
}

static void handle(svc_t *s, ev_node_t *n) {
  char reason[700], key_hex[65], err[512];
  Sluice__V1__EnrolDecision *d = n->dec;
  n->dirty = false;

  if (d && d->decision == SL_ENROLL_REVOKED) {
    if (n->resp && n->resp->decision == SL_ENROLL_REVOKED &&
        n->resp->time_ns > d->time_ns)
      return;
    snprintf(reason, sizeof(reason), "revoked by %s%s%s",
             d->actor && *d->actor ? d->actor : "an operator",
             d->reason && *d->reason ? ": " : "", d->reason ? d->reason : "");
    node_acls(s, n->id, true);
    if (!answer(s, n, SL_ENROLL_REVOKED, reason, NULL, 0, NULL, 0))
      s->revoked++;
    return;
  }
  if (!n->req)
    return;
  /* A PENDING answer is looked at again (the rules may have changed since
   * the service last ran); a final one only after a newer decision. */
  if (answered(n) && n->resp->decision != SL_ENROLL_PENDING)
    return;
  int kind;
  if (sl_enroll_csr_check(n->req->csr_pem, n->req->key_sha256, key_hex, err,
                          sizeof(err))) {
    kind = SL_ENROLL_DENIED;
    snprintf(reason, sizeof(reason), "bad request: %s", err);
  } else {
    sl_enroll_state_t st = {.decision = d,
                            .approved = n->approved,
                            .revoked = false,
                            .now_ns = sl_now_wall_ns()};
    kind = sl_enroll_decide(s->rules, n->req, &st, reason, sizeof(reason));
  }
  if (kind == SL_ENROLL_PENDING && answered(n) &&
      n->resp->decision == SL_ENROLL_PENDING && n->resp->reason &&
      !strcmp(n->resp->reason, reason))
    return; /* said already */
  if (kind != SL_ENROLL_APPROVED) {
    if (!answer(s, n, kind, reason, NULL, 0, NULL, 0))
      *(kind == SL_ENROLL_PENDING ? &s->pending : &s->denied) += 1;
    return;
  }
  /* Approved: the labels an operator gave, else the requested ones (a
   * renewal keeps what was approved). Map entries of the three messages
   * have the same fields; they are copied into the response's type. */
  Sluice__V1__EnrolResponse__LabelsEntry ents[64], *ep[64];
  size_t n_labels = 0;
  size_t src_n = 0;
  const void *const *src = NULL;
  if (d && d->decision == SL_ENROLL_APPROVED && d->n_labels &&
      (!n->approved || d->time_ns > n->approved->time_ns)) {
    src = (const void *const *)d->labels;
    src_n = d->n_labels;
  } else if (n->req->renewal && n->approved && n->approved->n_labels) {
    src = (const void *const *)n->approved->labels;
    src_n = n->approved->n_labels;
  } else {
    src = (const void *const *)n->req->labels;
    src_n = n->req->n_labels;
  }
  for (size_t i = 0; i < src_n && i < 64; i++) {
    const Sluice__V1__EnrolRequest__LabelsEntry *e = src[i];
    sluice__v1__enrol_response__labels_entry__init(&ents[i]);
    ents[i].key = e->key;
    ents[i].value = e->value;
    ep[n_labels++] = &ents[i];
  }
  Sluice__V1__EnrolResponse__LabelsEntry **labels = ep;
  char *cert = NULL;
  int64_t not_after = 0;
  uint64_t life_s =
      (s->rules ? s->rules->cert_lifetime : 90ull * 86400000) / 1000;
  if (sl_enroll_sign(s->ca, n->req->csr_pem, n->req->key_sha256, n->id, life_s,
                     sl_now_wall_ns() / 1000000000LL, &cert, &not_after, err,
                     sizeof(err))) {
    snprintf(reason, sizeof(reason), "cannot sign: %s", err);
    if (!answer(s, n, SL_ENROLL_DENIED, reason, NULL, 0, NULL, 0))
      s->denied++;
    return;
  }
  node_acls(s, n->id, false); /* before the answer: it connects at once */
  if (!answer(s, n, SL_ENROLL_APPROVED, reason, cert, not_after, labels,
              n_labels))
    s->approved++;
  else
    s->failed++;
  free(cert);
}

int enroll_serve(const enroll_opts_t *o) {
  svc_t s = {.o = o};
  enroll_view_t v = {0};
  sl_enroll_reader_t *r = NULL;
  char err[2048];
  int rc = 1;
  bool caught = false;

  if (sl_enroll_ca_load(o->ca_cert, o->ca_key, &s.ca, err, sizeof(err))) {
    fprintf(stderr, "sluice fleet enroll: %s\n", err);
    return 2;
  }
  if (o->rules && sl_enroll_rules_load(o->rules, NULL, NULL, 0, &s.rules, err,
                                       sizeof(err))) {
    fprintf(stderr, "sluice fleet enroll: %s\n", err);
    sl_enroll_ca_free(s.ca);
    return 2;
  }
  if (sl_enroll_kafka_open(&o->k, &s.k, err, sizeof(err))) {
    fprintf(stderr, "sluice fleet enroll: %s\n", err);
    goto done;
  }
  if (sl_enroll_kafka_init(s.k, o->partitions, o->replication, err,
                           sizeof(err)))
    fprintf(stderr, "sluice fleet enroll: creating the topics: %s\n", err);
  /* Topics just created (by init, or by the line above) take a moment to
   * show in every broker's metadata: wait for them (bounded) instead of
   * stopping a service that a supervisor would only restart. */
  for (int tries = 0;; tries++) {
    if (!sl_enroll_reader_open(s.k, &r, err, sizeof(err)))
      break;
    if (tries >= 60 || stop) {
      fprintf(stderr, "sluice fleet enroll: %s\n", err);
      rc = 4;
      goto done;
    }
    if (tries == 0)
      fprintf(stderr, "sluice fleet enroll: %s: waiting for the topics\n", err);
    sleep(1); /* a service start waiting for its topics: not a test */
  }
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  printf("enroll: serving %s (rules: %s)\n",
         sl_enroll_topic(s.k, SL_ENROLL_T_REQUESTS),
         o->rules ? o->rules : "none: every new request waits");
  fflush(stdout);
  while (!stop) {
    int n = sl_enroll_reader_poll(r, (int)(o->interval_s * 1000), ev_record, &v,
                                  &caught);
    if (n < 0) {
      fprintf(stderr, "sluice fleet enroll: reading the topics failed\n");
      goto done;
    }
    if (!caught)
      continue;
    for (size_t i = 0; i < v.n && !stop; i++)
      if (v.nodes[i].dirty)
        handle(&s, &v.nodes[i]);
    if (o->once)
      break;
  }
  rc = 0;
  printf("enroll: stopped: %llu approved, %llu pending, %llu denied, %llu "
         "revoked, %llu failed\n",
         (unsigned long long)s.approved, (unsigned long long)s.pending,
         (unsigned long long)s.denied, (unsigned long long)s.revoked,
         (unsigned long long)s.failed);
done:
  sl_enroll_reader_close(r);
  ev_free(&v);
  sl_enroll_kafka_close(s.k);
  sl_enroll_rules_free(s.rules);
  sl_enroll_ca_free(s.ca);
  return rc;
}
