/*
 * Zero-touch enrolment end to end: a private Kafka with an SSL listener,
 * client certificates and the StandardAuthorizer (scripts/kafka.sh,
 * SLUICE_KAFKA_SSL=1), the real enrolment service (`sluice fleet enroll`)
 * with the broker's CA as the fleet CA, the claim's ACLs (`sluice fleet acl
 * apply`), and the real daemon with only a bootstrap file.
 *
 *   auto     one node approved by a rule: the node restarts as itself and the
 * event it stored before is in Kafka; the broker refuses the claim certificate
 * on the data topic and on <prefix>desired, so what arrived was produced under
 * the node's own principal a second node asks for a label no rule allows: it
 * waits, stores, delivers nothing; `sluice fleet enroll approve` lets
 *            everything through
 *            then a signed Decommission document wipes the key and stops
 *            the uplink
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "fleet/fleet.h"
#include "sluice/v1/fleet.pb-c.h"
#include "tests/common/daemon_fixture.h"

static const char *kafka_sh;
static char kdir[400], plain[128], ssl[128], ca[500], cakey[500];
static char prefix[64] = "sluice.fleet.";
static pid_t service_pid;
static int kafka_up;

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
  char cmd[4096];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  CHECK(system(cmd) == 0, "command failed: %s", cmd);
}

static int kafka_cmd(const char *verb) {
  char cmd[1500];
  snprintf(cmd, sizeof(cmd),
           "SLUICE_KAFKA_SSL=1 SLUICE_KAFKA_DIR=%s %s %s >>%s/kafka-sh.log "
           "2>&1",
           kdir, kafka_sh, verb, dir);
  int st = system(cmd);
  return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static void cleanup(void) {
  char cmd[1200];
  /* What the service and the centre's commands said (on a failure). */
  snprintf(cmd, sizeof(cmd),
           "tail -n 15 %s/service.log %s/fleet.log 2>/dev/null | cut -c1-300",
           dir, dir);
  if (system(cmd) != 0) {
    /* nothing to show */
  }
  if (service_pid > 0) {
    kill(service_pid, SIGTERM);
    waitpid(service_pid, NULL, 0);
    service_pid = 0;
  }
  if (kafka_up) {
    kafka_cmd("stop");
    kafka_up = 0;
  }
}

static void read_file(const char *path, char *buf, size_t len) {
  FILE *f = fopen(path, "r");
  CHECK(f, "open %s", path);
  CHECK(fgets(buf, (int)len, f), "read %s", path);
  buf[strcspn(buf, "\n")] = '\0';
  fclose(f);
}

static rd_kafka_t *client(rd_kafka_type_t type, const char *cert,
                          const char *key) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char e[256];
  rd_kafka_conf_set(c, "bootstrap.servers", cert ? ssl : plain, e, sizeof(e));
  if (cert) {
    rd_kafka_conf_set(c, "security.protocol", "ssl", e, sizeof(e));
    rd_kafka_conf_set(c, "ssl.ca.location", ca, e, sizeof(e));
    rd_kafka_conf_set(c, "ssl.certificate.location", cert, e, sizeof(e));
    rd_kafka_conf_set(c, "ssl.key.location", key, e, sizeof(e));
  }
  if (type == RD_KAFKA_CONSUMER) {
    char g[64];
    snprintf(g, sizeof(g), "t-%d-%ld", (int)getpid(), (long)now_ms());
    rd_kafka_conf_set(c, "group.id", g, e, sizeof(e));
  }
  rd_kafka_t *rk = rd_kafka_new(type, c, e, sizeof(e));
  CHECK(rk, "%s", e);
  return rk;
}

static void create_topics(void) {
  static const char *const names[] = {"desired", "status", "inventory",
                                      "events", NULL};
  rd_kafka_t *rk = client(RD_KAFKA_PRODUCER, NULL, NULL);
  rd_kafka_NewTopic_t *nt[8];
  char e[256], name[200];
  size_t n = 0;
  for (int i = 0; names[i]; i++) {
    snprintf(name, sizeof(name), "%s%s", prefix, names[i]);
    nt[n] = rd_kafka_NewTopic_new(name, 3, 1, e, sizeof(e));
    rd_kafka_NewTopic_set_config(nt[n++], "cleanup.policy",
                                 i == 3 ? "delete" : "compact");
  }
  nt[n++] = rd_kafka_NewTopic_new("sluice.default", 1, 1, e, sizeof(e));
  nt[n++] = rd_kafka_NewTopic_new("sluice.checkpoints", 1, 1, e, sizeof(e));
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, nt, n, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
  CHECK(ev, "CreateTopics: no answer");
  rd_kafka_event_destroy(ev);
  for (size_t i = 0; i < n; i++)
    rd_kafka_NewTopic_destroy(nt[i]);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
}

/* The node's bootstrap file (asking for labels) and config (data in
 * ddir). */
static void node_files(const char *labels, const char *ddir) {
  char path[600];
  snprintf(path, sizeof(path), "%s/bootstrap.yaml", dir);
  FILE *f = fopen(path, "w");
  CHECK(f, "bootstrap");
  fprintf(f,
          "brokers: %s\nca: %s\nclaim:\n  cert: %s/claim.crt\n  key: "
          "%s/claim.key\n  name: plant-7\nlabels: [%s]\n"
          "verify_key: %s/fleet.pub\n"
          "properties: [ssl.endpoint.identification.algorithm=none]\n",
          ssl, ca, dir, dir, labels, dir);
  fclose(f);
  chmod(path, 0644);
  write_config_fmt("node:\n  data_dir: %s\n"
                   "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
                   "    unix: %s\n  http:\n    address: \"127.0.0.1:0\"\n"
                   "admin:\n  address: \"127.0.0.1:0\"\n"
                   "kafka:\n  enabled: true\n  link_timeout: 2s\n"
                   "fleet:\n  enabled: true\n  heartbeat: 1s\n"
                   "enrol:\n  bootstrap: %s/bootstrap.yaml\n  retry: 2s\n",
                   ddir, sock_path, dir);
}

/* The broker, the claim, the service with rules; the node's files. */
static void setup_fleet(const char *rules) {
  char path[600];
  CHECK(kafka_cmd("start") == 0 && kafka_cmd("wait-ready") == 0,
        "private kafka did not start (see %s/kafka-sh.log)", dir);
  kafka_up = 1;
  snprintf(path, sizeof(path), "%s/bootstrap", kdir);
  read_file(path, plain, sizeof(plain));
  snprintf(path, sizeof(path), "%s/ssl_bootstrap", kdir);
  read_file(path, ssl, sizeof(ssl));
  snprintf(ca, sizeof(ca), "%s/ssl/ca.pem", kdir);
  snprintf(cakey, sizeof(cakey), "%s/ssl/ca.key", kdir);
  /* The claim certificate, signed by the fleet CA (the broker's). */
  sh("cd %s && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
     "-nodes -keyout claim.key -out claim.csr -subj /CN=claim-plant-7 "
     "2>/dev/null && openssl x509 -req -in claim.csr -CA %s -CAkey %s "
     "-CAcreateserial -out claim.crt -days 2 2>/dev/null && chmod 600 "
     "claim.key && openssl genpkey -algorithm ed25519 -out fleet.key "
     "2>/dev/null && openssl pkey -in fleet.key -pubout -out fleet.pub",
     dir, ca, cakey);
  create_topics();
  sh("%s fleet enroll init --brokers %s >>%s/fleet.log 2>&1", sluice_bin, plain,
     dir);
  sh("%s fleet acl apply --claim plant-7 --brokers %s >>%s/fleet.log "
     "2>&1",
     sluice_bin, plain, dir);
  snprintf(path, sizeof(path), "%s/rules.yaml", dir);
  FILE *f = fopen(path, "w");
  fputs(rules, f);
  fclose(f);
  chmod(path, 0644);
  /* Transactional-id ACLs go through Kafka's AclCommand (Debian 12's
   * librdkafka cannot name them). */
  static char txncmd[1200];
  snprintf(txncmd, sizeof(txncmd),
           "exec java -cp \"$(%s classpath)\" "
           "\"$(dirname %s)/../deploy/kafka/TxnAclHelper.java\" %s",
           kafka_sh, kafka_sh, plain);
  service_pid = fork();
  CHECK(service_pid >= 0, "fork");
  if (service_pid == 0) {
    char lg[500];
    snprintf(lg, sizeof(lg), "%s/service.log", dir);
    FILE *o = freopen(lg, "a", stdout);
    (void)o;
    dup2(1, 2);
    execl(sluice_bin, sluice_bin, "fleet", "enroll", "serve", "--ca-cert", ca,
          "--ca-key", cakey, "--rules", path, "--brokers", plain,
          "--txn-acl-helper", txncmd, (char *)NULL);
    _exit(127);
  }
  node_files("site=plant-7", data_dir);
}

/* Values of sluice.default read over the admin listener, until want. */
static int count_records(int want, int timeout_ms) {
  rd_kafka_t *rk = client(RD_KAFKA_CONSUMER, NULL, NULL);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, "sluice.default", 0)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  int n = 0;
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  while (n < want && now_ms() < deadline) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (m && !m->err)
      n++;
    if (m)
      rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return n;
}

/* The claim certificate: refused on the data topic and on desired. */
static void claim_refused(void) {
  char cert[500], key[500];
  snprintf(cert, sizeof(cert), "%s/claim.crt", dir);
  snprintf(key, sizeof(key), "%s/claim.key", dir);
  rd_kafka_t *p = client(RD_KAFKA_PRODUCER, cert, key);
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_topic_t *t = rd_kafka_topic_new(p, "sluice.default", NULL);
  rd_kafka_resp_err_t e = rd_kafka_metadata(p, 0, t, &md, 10000);
  CHECK(e == 0 && md->topic_cnt == 1 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        "the claim may see sluice.default: %s",
        e ? rd_kafka_err2str(e) : rd_kafka_err2str(md->topics[0].err));
  printf("claim on sluice.default: %s\n", rd_kafka_err2str(md->topics[0].err));
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  char desired[128];
  snprintf(desired, sizeof(desired), "%sdesired", prefix);
  t = rd_kafka_topic_new(p, desired, NULL);
  e = rd_kafka_metadata(p, 0, t, &md, 10000);
  CHECK(e == 0 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
        "the claim may see %s", desired);
  printf("claim on %s: %s\n", desired, rd_kafka_err2str(md->topics[0].err));
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(t);
  rd_kafka_destroy(p);
}

static void post(int v) {
  char body[512], ev[128];
  snprintf(ev, sizeof(ev), "{\"source\":\"s\",\"value\":%d}", v);
  CHECK(http_post("application/json", NULL, ev, body, sizeof(body)) / 100 == 2,
        "ingest: %s", body);
}

static void node_id_of(char *id, size_t len) {
  char line[1024];
  await_log("enrolment: node sl-", line, sizeof(line), 10000);
  CHECK(sscanf(strstr(line, "node sl-") + 5, "%63s", id) == 1, "%s", line);
  (void)len;
}

SL_SCENARIO(auto) {
  char id[64];
  setup_fleet("auto_approve: true\nclaims: [plant-7]\n"
              "labels:\n  - key: site\n");
  claim_refused();
  uint64_t t0 = now_ms();
  start_daemon(NULL);
  node_id_of(id, sizeof(id));
  post(1); /* stored while not enrolled */
  await_log("starting again to connect as itself", NULL, 0, 60000);
  await_ready(2, 30000);
  post(2);
  CHECK(count_records(2, 60000) == 2, "both events in Kafka");
  printf("auto: node %s enrolled and delivered in %llu ms\n", id,
         (unsigned long long)(now_ms() - t0));

  /* Decommission: a signed document on desired wipes the key. */
  Sluice__V1__Decommission d = SLUICE__V1__DECOMMISSION__INIT;
  sl_fleet_key_t *fk;
  char e[256], path[600];
  uint8_t *buf, *env;
  size_t n, len;
  snprintf(path, sizeof(path), "%s/fleet.key", dir);
  CHECK(sl_fleet_key_load(path, true, &fk, e, sizeof(e)) == 0, "%s", e);
  d.node_id = id;
  d.reason = "replaced";
  n = sluice__v1__decommission__get_packed_size(&d);
  buf = malloc(n);
  sluice__v1__decommission__pack(&d, buf);
  CHECK(sl_fleet_sign(fk, SL_FLEET_DECOMMISSION, buf, n, &env, &len) == 0,
        "sign");
  rd_kafka_t *p = client(RD_KAFKA_PRODUCER, NULL, NULL);
  char desired[128];
  snprintf(desired, sizeof(desired), "%sdesired", prefix);
  CHECK(rd_kafka_producev(
            p, RD_KAFKA_V_TOPIC(desired),
            RD_KAFKA_V_PARTITION(sl_fleet_partition(id, strlen(id), 3)),
            RD_KAFKA_V_KEY(id, strlen(id)), RD_KAFKA_V_VALUE(env, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == 0 &&
            rd_kafka_flush(p, 10000) == 0,
        "produce the decommission");
  rd_kafka_destroy(p);
  free(buf);
  free(env);
  sl_fleet_key_free(fk);
  await_log("decommissioned", NULL, 0, 30000);
  await_log("key wiped, uplink stopped", NULL, 0, 10000);
  struct stat sb;
  snprintf(path, sizeof(path), "%s/identity/node.key", data_dir);
  CHECK(stat(path, &sb) != 0 && errno == ENOENT, "the key is gone");
  stop_daemon_ok();

  /* A second box asks for a label no rule allows: it waits in the lobby,
   * stores, delivers nothing until an operator approves it. */
  char id2[64], cmd[1500], ddir2[400];
  snprintf(ddir2, sizeof(ddir2), "%s/data2", dir);
  node_files("site=plant-7, line=press", ddir2);
  daemon_start(&(daemon_opts_t){.append_log = 1});
  await_log_count("enrolment: node sl-", 3, 10000);
  {
    char line[1024];
    FILE *lf = fopen(log_path, "r");
    while (lf && fgets(line, sizeof(line), lf))
      if (strstr(line, "enrolment: node sl-") && !strstr(line, id))
        sscanf(strstr(line, "node sl-") + 5, "%63s", id2);
    if (lf)
      fclose(lf);
  }
  CHECK(strlen(id2) == 23 && strcmp(id, id2), "a second node id: %s", id2);
  post(3);
  await_log("waits in the lobby", NULL, 0, 60000);
  post(4);
  CHECK(count_records(3, 3000) == 2, "nothing delivered from the lobby");
  snprintf(cmd, sizeof(cmd),
           "%s fleet enroll approve %s --label site=plant-7 --brokers %s "
           ">>%s/fleet.log 2>&1",
           sluice_bin, id2, plain, dir);
  CHECK(system(cmd) == 0, "approve");
  await_log_count("starting again to connect as itself", 2, 60000);
  CHECK(count_records(4, 60000) == 4, "what was stored in the lobby arrived");
  stop_daemon_ok();
  printf("lobby: node %s waited, was approved, delivered both events\n", id2);
  cleanup();
}

static int setup(int argc, char **argv) {
  (void)argc;
  const char *k = getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (!k || !*k) {
    /* The harness fetched Kafka's jars; a private broker needs them. */
    printf("SKIP: no harness Kafka (run under scripts/harness)\n");
    return 77;
  }
  kafka_sh = argv[2];
  snprintf(kdir, sizeof(kdir), "%s/kafka", dir);
  fixture_on_fail = cleanup;
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "enrol2", "KAFKA_SH", setup);
}
