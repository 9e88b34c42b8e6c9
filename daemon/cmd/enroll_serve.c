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
#include <poll.h>
#include <sys/wait.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

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
  /* The answers of one pass, sent together after the pass (one CreateAcls
   * for its approvals, one wait for all deliveries). */
  struct out {
    char *id, *reason;
    uint8_t *buf;
    size_t len;
    int kind;
    bool grant;      /* the node's ACLs first */
    ev_node_t *node; /* stable through the pass: no record is read */
  } * out;
  size_t n_out, cap_out;
  /* --txn-acl-helper: its pid and pipes (0/NULL: not used). */
  pid_t helper;
  FILE *to_helper, *from_helper;
} svc_t;

/* Reads one line from the helper within timeout_ms into buf: 0, or -1. */
static int helper_line(svc_t *s, char *buf, size_t len, int timeout_ms) {
  struct pollfd pfd = {.fd = fileno(s->from_helper), .events = POLLIN};
  buf[0] = '\0';
  if (poll(&pfd, 1, timeout_ms) <= 0 || !fgets(buf, (int)len, s->from_helper))
    return -1;
  buf[strcspn(buf, "\n")] = '\0';
  return 0;
}

/* Starts the --txn-acl-helper command and waits for its "ready". */
static int helper_start(svc_t *s, const char *cmd) {
  int in[2], out[2];
  char line[512];
  if (pipe(in) < 0)
    return -1;
  if (pipe(out) < 0) {
    close(in[0]);
    close(in[1]);
    return -1;
  }
  signal(SIGPIPE, SIG_IGN); /* a dead helper is an error, not our end */
  s->helper = fork();
  if (s->helper < 0)
    return -1;
  if (s->helper == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[1]);
    close(out[0]);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  s->to_helper = fdopen(in[1], "w");
  s->from_helper = fdopen(out[0], "r");
  /* A JVM's start: up to two minutes on a busy machine. */
  if (!s->to_helper || !s->from_helper ||
      helper_line(s, line, sizeof(line), 120000) || strcmp(line, "ready")) {
    fprintf(stderr, "sluice fleet enroll: --txn-acl-helper did not start\n");
    return -1;
  }
  return 0;
}

static void helper_stop(svc_t *s) {
  if (s->to_helper)
    fclose(s->to_helper); /* EOF: it exits */
  if (s->from_helper)
    fclose(s->from_helper);
  if (s->helper > 0)
    waitpid(s->helper, NULL, 0);
}

/* One batch: "add|remove User:id=txn..." for the n lists' transactional
 * ids. 0, or -1 (printed). */
static int helper_call(svc_t *s, const char *verb, size_t n,
                       const char *const *principals,
                       const sl_enroll_acl_t *const *acls,
                       const size_t *counts) {
  char line[1024];
  size_t ids = 0;
  fputs(verb, s->to_helper);
  for (size_t p = 0; p < n; p++)
    for (size_t i = 0; i < counts[p]; i++)
      if (acls[p][i].resource == 5 &&
          acls[p][i].operation == RD_KAFKA_ACL_OPERATION_WRITE) {
        fprintf(s->to_helper, " %s=%s", principals[p], acls[p][i].name);
        ids++;
      }
  fputc('\n', s->to_helper);
  if (fflush(s->to_helper) || helper_line(s, line, sizeof(line), 60000) ||
      strcmp(line, "ok")) {
    fprintf(stderr,
            "sluice fleet enroll: --txn-acl-helper %s of %zu ids: "
            "%s\n",
            verb, ids, line);
    return -1;
  }
  return 0;
}

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
  if (s->n_out == s->cap_out) {
    size_t cap = s->cap_out ? s->cap_out * 2 : 64;
    struct out *no = realloc(s->out, cap * sizeof(*no));
    if (!no)
      return -ENOMEM;
    s->out = no;
    s->cap_out = cap;
  }
  struct out *o = &s->out[s->n_out];
  o->len = sluice__v1__enrol_response__get_packed_size(&r);
  o->buf = malloc(o->len ? o->len : 1);
  o->id = strdup(n->id);
  o->reason = strdup(reason);
  if (!o->buf || !o->id || !o->reason) {
    free(o->buf);
    free(o->id);
    free(o->reason);
    return -ENOMEM;
  }
  sluice__v1__enrol_response__pack(&r, o->buf);
  o->kind = kind;
  o->grant = kind == SL_ENROLL_APPROVED;
  o->node = n;
  s->n_out++;
  return 0;
}

/* Sends the pass's answers: the approved nodes' ACLs in one request (the
 * transactional ids through enroll_acls(), which librdkafka 2.0 cannot
 * name), then every answer, waiting for all deliveries. */
static void flush_answers(svc_t *s) {
  size_t n = s->n_out, ng = 0;
  char err[512], ts[32];
  if (!n)
    return;
  const char **principals = calloc(n, sizeof(*principals));
  const sl_enroll_acl_t **acls = calloc(n, sizeof(*acls));
  size_t *counts = calloc(n, sizeof(*counts));
  sl_enroll_acl_t(*lists)[SL_ENROLL_MAX_ACLS] = calloc(n, sizeof(*lists));
  char(*names)[300] = calloc(n, sizeof(*names));
  const char **ids = calloc(n, sizeof(*ids));
  const void **vals = calloc(n, sizeof(*vals));
  size_t *lens = calloc(n, sizeof(*lens));
  int *errs = calloc(n, sizeof(*errs));
  if (!principals || !acls || !counts || !lists || !names || !ids || !vals ||
      !lens || !errs) {
    s->failed += n;
    for (size_t i = 0; i < n; i++)
      s->out[i].node->dirty = true;
    goto done;
  }
  for (size_t i = 0; i < n && s->o->manage_acls; i++) {
    if (!s->out[i].grant)
      continue;
    sl_enroll_acl_t all[SL_ENROLL_MAX_ACLS], txn[SL_ENROLL_MAX_ACLS];
    size_t na = sl_enroll_acls_node(&s->o->acl, s->out[i].id, all), nt = 0;
    snprintf(names[ng], sizeof(names[ng]), "User:%s", s->out[i].id);
    counts[ng] = 0;
    for (size_t j = 0; j < na; j++) {
      if (all[j].resource == 5 && !s->helper)
        txn[nt++] = all[j];
      else
        lists[ng][counts[ng]++] = all[j]; /* with a helper: sent below */
    }
    if (nt && enroll_acls(s->k, names[ng], txn, nt, false))
      s->failed++;
    principals[ng] = names[ng];
    acls[ng] = lists[ng];
    ng++;
  }
  if (ng && s->helper &&
      helper_call(s, "add", ng, principals, acls, counts) < 0)
    s->failed++;
  /* The helper made the transactional ids' ACLs: the rest in one request. */
  for (size_t p = 0; p < ng && s->helper; p++) {
    size_t m = 0;
    for (size_t j = 0; j < counts[p]; j++)
      if (lists[p][j].resource != 5)
        lists[p][m++] = lists[p][j];
    counts[p] = m;
  }
  if (ng && sl_enroll_acls_apply_many(s->k, ng, principals, acls, counts, false,
                                      err, sizeof(err))) {
    fprintf(stderr, "sluice fleet enroll: ACLs: %s\n", err);
    s->failed++;
  }
  for (size_t i = 0; i < n; i++) {
    ids[i] = s->out[i].id;
    vals[i] = s->out[i].buf;
    lens[i] = s->out[i].len;
  }
  sl_enroll_produce_many(s->k, SL_ENROLL_T_RESPONSES, n, ids, vals, lens, errs,
                         err, sizeof(err));
  stamp(ts, sizeof(ts));
  for (size_t i = 0; i < n; i++) {
    struct out *o = &s->out[i];
    if (errs[i]) {
      s->failed++;
      o->node->dirty = true; /* answered again in the next pass */
      printf("%s %s: answer %s not delivered: %s\n", ts, o->id,
             sl_enroll_decision_name(o->kind), err);
      continue;
    }
    switch (o->kind) {
    case SL_ENROLL_APPROVED:
      s->approved++;
      break;
    case SL_ENROLL_PENDING:
      s->pending++;
      break;
    case SL_ENROLL_DENIED:
      s->denied++;
      break;
    default:
      s->revoked++;
    }
    printf("%s %s: %s: %s\n", ts, o->id, sl_enroll_decision_name(o->kind),
           o->reason);
  }
  fflush(stdout);
done:
  for (size_t i = 0; i < n; i++) {
    free(s->out[i].id);
    free(s->out[i].reason);
    free(s->out[i].buf);
  }
  s->n_out = 0;
  free(principals);
  free(acls);
  free(counts);
  free(lists);
  free(names);
  free(ids);
  free(vals);
  free(lens);
  free(errs);
}

static void node_acls(svc_t *s, const char *id, bool del) {
  sl_enroll_acl_t acls[SL_ENROLL_MAX_ACLS];
  char principal[300];
  if (!s->o->manage_acls)
    return;
  size_t n = sl_enroll_acls_node(&s->o->acl, id, acls), m = 0;
  snprintf(principal, sizeof(principal), "User:%s", id);
  /* A revoked node keeps reading its enrolment answers (and the group its
   * consumer names): it learns it was revoked from <prefix>enrol.responses
   * and wipes its key. Everything else goes. */
  for (size_t i = 0; i < n; i++) {
    bool keep = del && acls[i].operation == RD_KAFKA_ACL_OPERATION_READ &&
                (acls[i].resource == RD_KAFKA_RESOURCE_GROUP ||
                 strstr(acls[i].name, "enrol.responses"));
    if (!keep)
      acls[m++] = acls[i];
  }
  if (s->helper) { /* its transactional ids through the helper */
    const char *pr = principal;
    const sl_enroll_acl_t *ap = acls;
    size_t k = 0;
    if (helper_call(s, del ? "remove" : "add", 1, &pr, &ap, &m) < 0)
      s->failed++;
    for (size_t i = 0; i < m; i++)
      if (acls[i].resource != 5)
        acls[k++] = acls[i];
    m = k;
  }
  if (enroll_acls(s->k, principal, acls, m, del))
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
    if (answer(s, n, SL_ENROLL_REVOKED, reason, NULL, 0, NULL, 0))
      s->failed++;
    return;
  }
  if (!n->req)
    return;
  /* A PENDING answer is looked at again (the rules may have changed since
   * the service last ran); a final one only after a newer decision. */
  if (answered(n) && n->resp->decision != SL_ENROLL_PENDING)
    return;
  int kind;
  if (!n->req->node_id || strcmp(n->req->node_id, n->id)) {
    /* The certificate's CN is the record's key: a request naming another
     * id in its body would have the rules judge one id and sign another. */
    kind = SL_ENROLL_DENIED;
    snprintf(reason, sizeof(reason),
             "the request's node_id \"%.64s\" is not its record's key",
             n->req->node_id ? n->req->node_id : "");
  } else if (sl_enroll_csr_check(n->req->csr_pem, n->req->key_sha256, key_hex,
                                 err, sizeof(err))) {
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
    if (answer(s, n, kind, reason, NULL, 0, NULL, 0))
      s->failed++;
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
    if (answer(s, n, SL_ENROLL_DENIED, reason, NULL, 0, NULL, 0))
      s->failed++;
    return;
  }
  /* Its ACLs are made before the answer is sent (flush_answers()): the
   * node connects as itself at once. */
  if (answer(s, n, SL_ENROLL_APPROVED, reason, cert, not_after, labels,
             n_labels))
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
  if (o->txn_acl_helper && o->manage_acls &&
      helper_start(&s, o->txn_acl_helper) < 0)
    goto done;
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
    flush_answers(&s);
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
  helper_stop(&s);
  sl_enroll_reader_close(r);
  ev_free(&v);
  sl_enroll_kafka_close(s.k);
  sl_enroll_rules_free(s.rules);
  sl_enroll_ca_free(s.ca);
  return rc;
}
