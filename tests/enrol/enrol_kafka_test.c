/*
 * enrol_kafka: the centre's side of enrolment against a real broker with
 * an SSL listener (client certificates required), the StandardAuthorizer
 * and deny-by-default: a private Kafka from scripts/kafka.sh with
 * SLUICE_KAFKA_SSL=1, whose test CA is the fleet CA here. The admin (the
 * service, the CLI) uses the PLAINTEXT listener (a super user); the claim
 * and the nodes connect over SSL with certificates.
 *
 *   - the claim certificate is refused producing to a data topic and
 *     reading <prefix>desired (TOPIC_AUTHORIZATION_FAILED), and may send
 *     an enrolment request and read the answers;
 *   - `sluice fleet enroll` approves a request its rules accept (a
 *     certificate for the node's key, CN = node id) and leaves another
 *     PENDING, listed in the lobby, until `enroll approve` (with labels);
 *   - the node's certificate produces to its data topic, reads desired and
 *     commits a transaction with its own transactional id, and is refused
 *     another node's (TRANSACTIONAL_ID_AUTHORIZATION_FAILED); the service
 *     makes those ACLs through deploy/kafka/TxnAclHelper.java
 *     (--txn-acl-helper: librdkafka 2.0 cannot);
 *   - `enroll revoke` answers REVOKED and removes its ACLs: the broker
 *     refuses its next produce.
 *
 * usage: enrol_kafka_test SLUICE KAFKA_SH SRC_ROOT. Exits 77 when Java or the
 * Kafka jars are not available.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "fleet/fleet.h"
#include "sluice/v1/enrol.pb-c.h"

#define CHECK(c, ...)                                                          \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "enrol_kafka: FAIL %s:%d: ", __FILE__, __LINE__);        \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
      cleanup();                                                               \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define PARTS 3
#define BURST 10
#define PREFIX "sluice.fleet."

static char dir[] = "/tmp/enrol_kafka.XXXXXX";
static const char *sluice, *kafka_sh, *src_root;
/* When set, the next request's body names this node id (its record is
 * still keyed by the node's). */
static const char *body_id;
static char admin[128], ssl_boot[128];
static pid_t service = -1;
static bool kafka_up;

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  int st = system(cmd);
  return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static void cleanup(void) {
  if (service > 0) {
    kill(service, SIGTERM);
    waitpid(service, NULL, 0);
    service = -1;
  }
  if (kafka_up) {
    run("SLUICE_KAFKA_DIR=%s/kafka %s clean >>%s/kafka-sh.log 2>&1", dir,
        kafka_sh, dir);
    kafka_up = false;
  }
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f)
    return NULL;
  char *buf = calloc(1, 1 << 16);
  size_t n = fread(buf, 1, (1 << 16) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static void first_line(const char *path, char *out, size_t len) {
  char *s = slurp(path);
  CHECK(s, "read %s", path);
  snprintf(out, len, "%s", s);
  out[strcspn(out, "\n")] = '\0';
  free(s);
}

/* ---- clients ------------------------------------------------------------- */

/* An SSL client with the certificate name.crt / name.key in dir. */
static rd_kafka_conf_t *ssl_conf(const char *name) {
  char e[512], path[400];
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  CHECK(!rd_kafka_conf_set(c, "bootstrap.servers", ssl_boot, e, sizeof(e)) &&
            !rd_kafka_conf_set(c, "security.protocol", "ssl", e, sizeof(e)),
        "%s", e);
  snprintf(path, sizeof(path), "%s/kafka/ssl/ca.pem", dir);
  CHECK(!rd_kafka_conf_set(c, "ssl.ca.location", path, e, sizeof(e)), "%s", e);
  snprintf(path, sizeof(path), "%s/%s.crt", dir, name);
  CHECK(!rd_kafka_conf_set(c, "ssl.certificate.location", path, e, sizeof(e)),
        "%s", e);
  snprintf(path, sizeof(path), "%s/%s.key", dir, name);
  CHECK(!rd_kafka_conf_set(c, "ssl.key.location", path, e, sizeof(e)), "%s", e);
  return c;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *op) {
  (void)rk;
  (void)op;
  *(rd_kafka_resp_err_t *)m->_private = m->err;
}

/* Produces one record as name to topic (partition -1: any) and returns
 * the delivery's error. */
static rd_kafka_resp_err_t produce_as(const char *name, const char *topic,
                                      int32_t part, const char *key,
                                      const void *val, size_t len) {
  char e[512];
  rd_kafka_conf_t *c = ssl_conf(name);
  rd_kafka_conf_set(c, "message.timeout.ms", "15000", e, sizeof(e));
  rd_kafka_conf_set_dr_msg_cb(c, on_dr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
  CHECK(rk, "producer: %s", e);
  volatile rd_kafka_resp_err_t dr = RD_KAFKA_RESP_ERR__IN_PROGRESS;
  rd_kafka_resp_err_t err = rd_kafka_producev(
      rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
      RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)val, len),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE((void *)&dr),
      RD_KAFKA_V_END);
  CHECK(!err, "produce: %s", rd_kafka_err2str(err));
  uint64_t deadline = now_ms() + 30000;
  while (dr == RD_KAFKA_RESP_ERR__IN_PROGRESS && now_ms() < deadline)
    rd_kafka_poll(rk, 100);
  rd_kafka_destroy(rk);
  return dr;
}

/* Reads partition part of topic as name from the start until the end:
 * returns the first error the broker reports (0: reached the end). The
 * simple consumer (as kcat -p): no group id, so the refusal seen is the
 * topic's, not a group's. */
static rd_kafka_resp_err_t read_as(const char *name, const char *topic,
                                   int32_t part) {
  char e[512];
  rd_kafka_conf_t *c = ssl_conf(name);
  rd_kafka_conf_set(c, "enable.partition.eof", "true", e, sizeof(e));
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e));
  CHECK(rk, "consumer: %s", e);
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  CHECK(rd_kafka_consume_start(rkt, part, RD_KAFKA_OFFSET_BEGINNING) == 0,
        "consume_start");
  rd_kafka_resp_err_t res = RD_KAFKA_RESP_ERR__TIMED_OUT;
  uint64_t deadline = now_ms() + 30000;
  while (now_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consume(rkt, part, 200);
    if (!m)
      continue;
    rd_kafka_resp_err_t me = m->err;
    rd_kafka_message_destroy(m);
    if (me == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      res = RD_KAFKA_RESP_ERR_NO_ERROR;
      break;
    }
    if (me > 0) { /* the broker's (not local ones such as _TRANSPORT) */
      res = me;
      break;
    }
  }
  rd_kafka_consume_stop(rkt, part);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return res;
}

/* What the broker says when name asks for topic's metadata (as kcat -L
 * -t): a fetch of a topic the principal may not DESCRIBE is never
 * answered with records, and this is where the refusal is reported. */
static rd_kafka_resp_err_t describe_as(const char *name, const char *topic) {
  char e[512];
  rd_kafka_conf_t *c = ssl_conf(name);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e));
  CHECK(rk, "consumer: %s", e);
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 15000);
  if (!err)
    err = md->topic_cnt == 1 ? md->topics[0].err
                             : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
  if (md)
    rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_destroy(rk);
  return err;
}

/* ---- nodes ------------------------------------------------------------- */

typedef struct node {
  char name[16];
  char id[32];
  char sha[65];
  char *csr;
} node_t;

/* A node key and CSR made by the openssl CLI; its id derived from the key
 * as the node derives it ("sl-" + 20 hex digits of the key's SHA-256). */
static void mknode(node_t *n, const char *name) {
  char path[400];
  snprintf(n->name, sizeof(n->name), "%s", name);
  CHECK(run("cd %s && openssl req -new -newkey ec -pkeyopt "
            "ec_paramgen_curve:P-256 -nodes -keyout %s.key -out %s.csr "
            "-subj /CN=%s 2>/dev/null && chmod 600 %s.key && "
            "openssl req -in %s.csr -pubkey -noout | openssl pkey -pubin "
            "-outform DER | sha256sum | cut -c1-64 > %s.sha",
            dir, name, name, name, name, name, name) == 0,
        "openssl: node %s", name);
  snprintf(path, sizeof(path), "%s/%s.sha", dir, name);
  first_line(path, n->sha, sizeof(n->sha));
  snprintf(n->id, sizeof(n->id), "sl-%.20s", n->sha);
  snprintf(path, sizeof(path), "%s/%s.csr", dir, name);
  n->csr = slurp(path);
}

/* The node's request, sent with the claim certificate. */
static int64_t wall_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Sends n's request (a renewal with renewal) through producer rk, made
 * with the claim certificate; returns its time. */
static int64_t request_on(rd_kafka_t *rk, const node_t *n, const char *serial,
                          const char *label, bool renewal);

static void request(const node_t *n, const char *serial, const char *label) {
  (void)request_on(NULL, n, serial, label, false);
}

static int64_t request_on(rd_kafka_t *rk, const node_t *n, const char *serial,
                          const char *label, bool renewal) {
  Sluice__V1__EnrolRequest r = SLUICE__V1__ENROL_REQUEST__INIT;
  Sluice__V1__EnrolRequest__LabelsEntry e =
      SLUICE__V1__ENROL_REQUEST__LABELS_ENTRY__INIT;
  Sluice__V1__EnrolRequest__LabelsEntry *ep = &e;
  char kv[64];
  r.node_id = (char *)(body_id ? body_id : n->id);
  r.csr_pem = n->csr;
  r.key_sha256 = (char *)n->sha;
  r.hostname = (char *)n->name;
  r.dmi_serial = (char *)serial;
  r.claim = "plant-7";
  r.arch = "x86_64";
  r.time_ns = wall_ns();
  r.renewal = renewal;
  if (label) {
    snprintf(kv, sizeof(kv), "%s", label);
    char *eq = strchr(kv, '=');
    *eq = '\0';
    e.key = kv;
    e.value = eq + 1;
    r.labels = &ep;
    r.n_labels = 1;
  }
  size_t len = sluice__v1__enrol_request__get_packed_size(&r);
  uint8_t *buf = malloc(len);
  sluice__v1__enrol_request__pack(&r, buf);
  int32_t part = sl_fleet_partition(n->id, strlen(n->id), PARTS);
  if (rk) { /* a burst: queued on one producer, flushed by the caller */
    rd_kafka_resp_err_t pe = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(PREFIX "enrol.requests"),
        RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_KEY(n->id, strlen(n->id)),
        RD_KAFKA_V_VALUE(buf, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_END);
    CHECK(!pe, "produce: %s", rd_kafka_err2str(pe));
    free(buf);
    return r.time_ns;
  }
  rd_kafka_resp_err_t err =
      produce_as("claim", PREFIX "enrol.requests", part, n->id, buf, len);
  free(buf);
  CHECK(!err, "the claim could not send %s's request: %s", n->name,
        rd_kafka_err2str(err));
  return r.time_ns;
}

/* Waits (as the claim, from the node's partition) for a response to n
 * with decision want; returns it (owned). */
static Sluice__V1__EnrolResponse *await_as(const char *cert, const node_t *n,
                                           int want, int64_t since_ns);

static Sluice__V1__EnrolResponse *await(const node_t *n, int want) {
  return await_as("claim", n, want, 0);
}

static Sluice__V1__EnrolResponse *await_since(const node_t *n, int want,
                                              int64_t since_ns) {
  return await_as("claim", n, want, since_ns);
}

/* ... one no older than since_ns, read with certificate cert. */
static Sluice__V1__EnrolResponse *await_as(const char *cert, const node_t *n,
                                           int want, int64_t since_ns) {
  char e[512];
  rd_kafka_conf_t *c = ssl_conf(cert);
  char group[64];
  /* The group id the node's enrolment client names (daemon/enrol.c): the
   * claim's ACLs allow it. */
  snprintf(group, sizeof(group), "sluice-enrol-%s", n->id);
  rd_kafka_conf_set(c, "group.id", group, e, sizeof(e));
  rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof(e));
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e));
  CHECK(rk, "consumer: %s", e);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(
      l, PREFIX "enrol.responses",
      sl_fleet_partition(n->id, strlen(n->id), PARTS))
      ->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  Sluice__V1__EnrolResponse *got = NULL;
  uint64_t deadline = now_ms() + 45000;
  while (!got && now_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m)
      continue;
    CHECK(!m->err || m->err == RD_KAFKA_RESP_ERR__TRANSPORT,
          "claim reading responses: %s", rd_kafka_err2str(m->err));
    if (!m->err && m->key_len == strlen(n->id) &&
        !memcmp(m->key, n->id, m->key_len)) {
      Sluice__V1__EnrolResponse *r =
          sluice__v1__enrol_response__unpack(NULL, m->len, m->payload);
      if (r && (int)r->decision == want && !strcmp(r->key_sha256, n->sha) &&
          r->time_ns >= since_ns)
        got = r;
      else if (r)
        sluice__v1__enrol_response__free_unpacked(r, NULL);
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(rk, NULL);
  rd_kafka_destroy(rk);
  CHECK(got, "no %d answer for %s (service log: %s/service.log)", want, n->name,
        dir);
  return got;
}

/* Waits, with one consumer over every partition of the responses, until
 * each of the n nodes has an APPROVED answer for its key. */
static void await_all(const node_t *nodes, int n) {
  char e[512];
  bool done[64] = {0};
  int left = n;
  rd_kafka_conf_t *c = ssl_conf("claim");
  rd_kafka_conf_set(c, "group.id", "sluice-enrol-burst", e, sizeof(e));
  rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof(e));
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e));
  CHECK(rk && n <= 64, "consumer: %s", e);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
  for (int p = 0; p < PARTS; p++)
    rd_kafka_topic_partition_list_add(l, PREFIX "enrol.responses", p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  uint64_t deadline = now_ms() + 60000;
  while (left && now_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m)
      continue;
    Sluice__V1__EnrolResponse *r =
        m->err ? NULL
               : sluice__v1__enrol_response__unpack(NULL, m->len, m->payload);
    for (int i = 0; r && i < n; i++)
      if (!done[i] && !strcmp(r->node_id, nodes[i].id) &&
          !strcmp(r->key_sha256, nodes[i].sha) &&
          r->decision == SLUICE__V1__ENROL_DECISION_KIND__ENROL_APPROVED) {
        done[i] = true;
        left--;
      }
    if (r)
      sluice__v1__enrol_response__free_unpacked(r, NULL);
    rd_kafka_message_destroy(m);
  }
  rd_kafka_assign(rk, NULL);
  rd_kafka_destroy(rk);
  CHECK(!left, "%d of %d burst nodes not approved (%s/service.log)", left, n,
        dir);
}

static void start_service(void) {
  char log[400], ca[400], cakey[400], rules[400];
  snprintf(log, sizeof(log), "%s/service.log", dir);
  snprintf(ca, sizeof(ca), "%s/kafka/ssl/ca.pem", dir);
  snprintf(cakey, sizeof(cakey), "%s/kafka/ssl/ca.key", dir);
  snprintf(rules, sizeof(rules), "%s/rules.yaml", dir);
  fflush(stdout);
  service = fork();
  CHECK(service >= 0, "fork");
  if (service == 0) {
    FILE *f = freopen(log, "w", stdout);
    (void)f;
    dup2(1, 2);
    /* Transactional-id ACLs through the helper (one JVM for the run):
     * Debian 12's librdkafka cannot make them. */
    char helper[1500];
    snprintf(helper, sizeof(helper),
             "exec java -cp \"$(%s classpath)\" %s/deploy/kafka/"
             "TxnAclHelper.java %s",
             kafka_sh, src_root, admin);
    execl(sluice, sluice, "fleet", "enroll", "--brokers", admin, "--ca-cert",
          ca, "--ca-key", cakey, "--rules", rules, "--partitions", "3",
          "--txn-acl-helper", helper, (char *)NULL);
    _exit(127);
  }
}

int main(int argc, char **argv) {
  char path[400];
  if (argc != 4) {
    fprintf(stderr, "usage: enrol_kafka_test SLUICE KAFKA_SH SRC_ROOT\n");
    return 2;
  }
  sluice = argv[1];
  kafka_sh = argv[2];
  src_root = argv[3]; /* deploy/kafka/TxnAclHelper.java */
  if (run("command -v java >/dev/null && command -v openssl >/dev/null && "
          "command -v kcat >/dev/null") != 0) {
    printf("enrol_kafka: SKIP: java, openssl or kcat is not installed\n");
    return 77;
  }
  CHECK(mkdtemp(dir), "mkdtemp");
  if (run("%s fetch >%s/fetch.log 2>&1", kafka_sh, dir) != 0) {
    printf("enrol_kafka: SKIP: the Kafka jars are not available:\n");
    run("tail -5 %s/fetch.log; rm -rf %s", dir, dir);
    return 77;
  }
  kafka_up = true;
  CHECK(run("SLUICE_KAFKA_SSL=1 SLUICE_KAFKA_DIR=%s/kafka %s start "
            ">>%s/kafka-sh.log 2>&1 && SLUICE_KAFKA_DIR=%s/kafka %s "
            "wait-ready >>%s/kafka-sh.log 2>&1",
            dir, kafka_sh, dir, dir, kafka_sh, dir) == 0,
        "private Kafka with SSL did not start (%s/kafka-sh.log)", dir);
  snprintf(path, sizeof(path), "%s/kafka/bootstrap", dir);
  first_line(path, admin, sizeof(admin));
  snprintf(path, sizeof(path), "%s/kafka/ssl_bootstrap", dir);
  first_line(path, ssl_boot, sizeof(ssl_boot));

  /* The operator's part: topics, the claim's ACLs, the claim certificate
   * (signed by the fleet CA, CN claim-plant-7), the rules. */
  CHECK(run("%s fleet enroll init --brokers %s --partitions %d >/dev/null",
            sluice, admin, PARTS) == 0,
        "enroll init");
  CHECK(run("%s fleet acl apply --brokers %s --claim plant-7", sluice, admin) ==
            0,
        "acl apply --claim");
  CHECK(run("cd %s && openssl req -new -newkey ec -pkeyopt "
            "ec_paramgen_curve:P-256 -nodes -keyout claim.key -out claim.csr "
            "-subj /CN=claim-plant-7 2>/dev/null && openssl x509 -req -in "
            "claim.csr -CA kafka/ssl/ca.pem -CAkey kafka/ssl/ca.key -days 1 "
            "-out claim.crt 2>/dev/null && chmod 600 claim.key",
            dir) == 0,
        "claim certificate");
  /* The topics a stolen claim would go for: a data topic, desired. */
  CHECK(run("echo x | kcat -b %s -P -t sluice.readings -p 0 && echo x | kcat "
            "-b %s -P -t " PREFIX "desired -p 0",
            admin, admin) == 0,
        "kcat: create topics");
  snprintf(path, sizeof(path), "%s/rules.yaml", dir);
  FILE *f = fopen(path, "w");
  CHECK(f, "rules");
  fputs("auto_approve: true\n"
        "cert_lifetime: 2d\n"
        "serials: [\"SN-2026-*\"]\n"
        "claims: [plant-7]\n"
        "labels:\n"
        "  - key: site\n"
        "    values: [\"plant-*\"]\n",
        f);
  fclose(f);
  chmod(path, 0600);

  /* 1. The claim: refused data and desired, allowed its enrolment. */
  rd_kafka_resp_err_t err =
      produce_as("claim", "sluice.readings", 0, "k", "v", 1);
  printf("claim producing to sluice.readings: %s (%s)\n",
         rd_kafka_err2name(err), rd_kafka_err2str(err));
  CHECK(err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        "the claim's produce to a data topic was not refused for "
        "authorization: %s",
        rd_kafka_err2name(err));
  err = describe_as("claim", PREFIX "desired");
  printf("claim reading %sdesired: %s (%s)\n", PREFIX, rd_kafka_err2name(err),
         rd_kafka_err2str(err));
  CHECK(err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        "the claim's read of desired was not refused for authorization: %s",
        rd_kafka_err2name(err));

  /* 2. The service: a by-rule approval, a request left in the lobby. */
  start_service();
  node_t a, b;
  mknode(&a, "node-a");
  mknode(&b, "node-b");
  request(&a, "SN-2026-0001", "site=plant-7");
  request(&b, "LAB-9", "site=plant-7");
  Sluice__V1__EnrolResponse *ra = await(&a, 1 /* APPROVED */);
  CHECK(ra->cert_pem && *ra->cert_pem && ra->ca_pem && *ra->ca_pem,
        "an approval without certificate or CA");
  CHECK(ra->n_labels == 1 && !strcmp(ra->labels[0]->value, "plant-7"),
        "approved labels");
  snprintf(path, sizeof(path), "%s/node-a.crt", dir);
  f = fopen(path, "w");
  fputs(ra->cert_pem, f);
  fclose(f);
  /* The certificate as the openssl CLI sees it: CN = node id, its key,
   * a client certificate of the fleet CA. */
  CHECK(run("cd %s && openssl verify -CAfile kafka/ssl/ca.pem -purpose "
            "sslclient node-a.crt >/dev/null && openssl x509 -in node-a.crt "
            "-noout -subject | grep -q 'CN *= *%s$' && test \"$(openssl x509 "
            "-in node-a.crt -pubkey -noout | openssl pkey -pubin -outform DER "
            "| sha256sum | cut -c1-64)\" = %s",
            dir, a.id, a.sha) == 0,
        "node-a's certificate: not the CA's, not CN=%s or not its key", a.id);
  sluice__v1__enrol_response__free_unpacked(ra, NULL);
  Sluice__V1__EnrolResponse *rb = await(&b, 0 /* PENDING */);
  printf("node-b: PENDING: %s\n", rb->reason);
  CHECK(strstr(rb->reason, "allow-list"), "node-b pending for: %s", rb->reason);
  sluice__v1__enrol_response__free_unpacked(rb, NULL);
  CHECK(run("%s fleet enroll list --brokers %s > %s/lobby.txt", sluice, admin,
            dir) == 0,
        "enroll list");
  snprintf(path, sizeof(path), "%s/lobby.txt", dir);
  char *lobby = slurp(path);
  CHECK(lobby && strstr(lobby, b.id) && !strstr(lobby, a.id),
        "the lobby should list node-b only:\n%s", lobby ? lobby : "");
  free(lobby);
  CHECK(run("%s fleet enroll approve %s --brokers %s --label site=plant-9 "
            "--reason 'checked by hand' >/dev/null",
            sluice, b.id, admin) == 0,
        "enroll approve");
  rb = await(&b, 1);
  CHECK(rb->n_labels == 1 && !strcmp(rb->labels[0]->value, "plant-9"),
        "the operator's labels were not the approved ones");
  sluice__v1__enrol_response__free_unpacked(rb, NULL);

  /* 3. node-a as itself: its data topic, desired and its own
   * transactional id yes; node-b's transactional id no. */
  err = produce_as("node-a", "sluice.readings", 0, a.id, "event", 5);
  CHECK(!err, "node-a could not produce to its data topic: %s",
        rd_kafka_err2name(err));
  err = describe_as("node-a", PREFIX "desired");
  CHECK(!err, "node-a may not describe desired: %s", rd_kafka_err2name(err));
  err = read_as("node-a", PREFIX "desired", 0);
  CHECK(!err, "node-a could not read desired: %s", rd_kafka_err2name(err));
  {
    char e[512], txn[64];
    rd_kafka_conf_t *c = ssl_conf("node-a");
    snprintf(txn, sizeof(txn), "sluice-%s", b.id);
    CHECK(!rd_kafka_conf_set(c, "transactional.id", txn, e, sizeof(e)), "%s",
          e);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
    CHECK(rk, "%s", e);
    rd_kafka_error_t *te = rd_kafka_init_transactions(rk, 30000);
    CHECK(te, "node-a was allowed node-b's transactional id");
    printf("node-a with transactional id %s: %s (%s)\n", txn,
           rd_kafka_err2name(rd_kafka_error_code(te)),
           rd_kafka_error_string(te));
    CHECK(rd_kafka_error_code(te) ==
              RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
          "refused for another reason: %s", rd_kafka_error_string(te));
    rd_kafka_error_destroy(te);
    rd_kafka_destroy(rk);
    /* Its own: the transactional producer the uplink runs. */
    c = ssl_conf("node-a");
    snprintf(txn, sizeof(txn), "sluice-%s", a.id);
    CHECK(!rd_kafka_conf_set(c, "transactional.id", txn, e, sizeof(e)), "%s",
          e);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
    CHECK(rk, "%s", e);
    te = rd_kafka_init_transactions(rk, 30000);
    CHECK(!te, "node-a refused its own transactional id: %s",
          rd_kafka_error_string(te));
    te = rd_kafka_begin_transaction(rk);
    CHECK(!te, "begin_transaction: %s", rd_kafka_error_string(te));
    CHECK(!rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("sluice.readings"),
                             RD_KAFKA_V_VALUE("txn", 3), RD_KAFKA_V_END),
          "produce in a transaction");
    te = rd_kafka_commit_transaction(rk, 30000);
    CHECK(!te, "node-a could not commit with its transactional id: %s",
          rd_kafka_error_string(te));
    printf("node-a committed a transaction as %s\n", txn);
    rd_kafka_destroy(rk);
  }

  /* A forged request: keyed by a pinned id ("press-07"), its body naming
   * the id derived from its own key, which the rules would approve. */
  {
    node_t evil;
    mknode(&evil, "evil");
    char derived[32];
    snprintf(derived, sizeof(derived), "%s", evil.id);
    snprintf(evil.id, sizeof(evil.id), "press-07");
    body_id = derived;
    request(&evil, "SN-2026-0666", "site=plant-7");
    body_id = NULL;
    Sluice__V1__EnrolResponse *r = await(&evil, 2 /* DENIED */);
    printf("forged request: DENIED: %s\n", r->reason);
    CHECK(!r->cert_pem || !*r->cert_pem, "a certificate for a forged id");
    sluice__v1__enrol_response__free_unpacked(r, NULL);
    free(evil.csr);
  }

  /* 4. A renewal of node-a's key: approved by itself, a new certificate
   * (another serial), the labels approved before. */
  /* Serial and labels that no rule would approve: only the key counts. */
  int64_t renewal_ns = request_on(NULL, &a, "whatever", "site=x", true);
  Sluice__V1__EnrolResponse *rn = NULL;
  rn = await_since(&a, 1, renewal_ns);
  CHECK(rn->n_labels == 1 && !strcmp(rn->labels[0]->value, "plant-7"),
        "a renewal must keep the approved labels");
  snprintf(path, sizeof(path), "%s/node-a2.crt", dir);
  f = fopen(path, "w");
  fputs(rn->cert_pem, f);
  fclose(f);
  CHECK(run("cd %s && test \"$(openssl x509 -in node-a.crt -noout -serial)\" "
            "!= \"$(openssl x509 -in node-a2.crt -noout -serial)\"",
            dir) == 0,
        "the renewal did not sign a new certificate");
  sluice__v1__enrol_response__free_unpacked(rn, NULL);

  /* 5. A burst: BURST new boxes ask at once; time until all are approved
   * (what the service adds to a node's enrolment). */
  {
    node_t burst[BURST];
    char e[512];
    rd_kafka_conf_t *c = ssl_conf("claim");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof(e));
    CHECK(rk, "%s", e);
    for (int i = 0; i < BURST; i++) {
      char name[16];
      snprintf(name, sizeof(name), "burst-%d", i);
      mknode(&burst[i], name);
    }
    uint64_t t1 = now_ms();
    for (int i = 0; i < BURST; i++)
      (void)request_on(rk, &burst[i], "SN-2026-1000", "site=plant-7", false);
    CHECK(rd_kafka_flush(rk, 30000) == 0, "burst not sent");
    rd_kafka_destroy(rk);
    await_all(burst, BURST);
    for (int i = 0; i < BURST; i++)
      free(burst[i].csr);
    printf("burst: %d requests approved in %.2f s\n", BURST,
           (double)(now_ms() - t1) / 1000.0);
  }

  /* 6. Revocation: REVOKED, and the broker refuses node-a from then on. */
  CHECK(run("%s fleet enroll revoke %s --brokers %s --reason stolen "
            ">/dev/null",
            sluice, a.id, admin) == 0,
        "enroll revoke");
  /* Read as node-a itself: a revoked node keeps reading its answers. */
  ra = await_as("node-a", &a, 3 /* REVOKED */, 0);
  sluice__v1__enrol_response__free_unpacked(ra, NULL);
  uint64_t deadline = now_ms() + 30000;
  do {
    err = produce_as("node-a", "sluice.readings", 0, a.id, "event", 5);
  } while (err != RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED &&
           now_ms() < deadline);
  CHECK(err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        "a revoked node still produces: %s", rd_kafka_err2name(err));

  free(a.csr);
  free(b.csr);
  cleanup();
  run("rm -rf %s", dir);
  printf("enrol_kafka: ok\n");
  return 0;
}
