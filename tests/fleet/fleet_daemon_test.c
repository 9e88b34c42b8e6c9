/*
 * The node side of the fleet control plane, end to end: the real daemon
 * with fleet.enabled against the harness's real Kafka. The test plays the
 * centre: it creates the fleet topics, signs desired documents with an
 * Ed25519 key made by the openssl CLI, produces them to the partition
 * Java's formula picks, and reads the node's FleetStatus records back.
 *
 *   apply      a reloadable generation commits in process; one that adds
 *              streams restarts the daemon (same pid) and commits; /v1/status
 *              and the metrics say so; a reload (SIGHUP) keeps the layer
 *   offline    a stopped node misses generations 3..5 and applies only 5
 *   reject     invalid (key and column named), foreign signature, lower
 *              generation (CONFLICT); a local file setting a fleet-owned key
 *              is refused by check-config
 *   rollback   a generation that removes a stream still written to is
 *              rolled back on its error rate, well before its timeout,
 *              and the previous config serves again
 *   crashloop  kill -9 during every start of a trial: after
 *              fleet.max_trial_starts the node starts on its last known good
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "fleet/fleet.h"
#include "sluice/v1/fleet.pb-c.h"
#include "tests/common/daemon_fixture.h"

#define NODE "fleet-node-1"
#define PARTS 3

static const char *kafka;
static char prefix[160], t_desired[200], t_status[200], keyfile[400],
    pubfile[400], otherkey[400];
static sl_fleet_key_t *skey, *okey;
static rd_kafka_t *prod, *scons;

/* Latest status of NODE and what was seen so far. */
static Sluice__V1__FleetStatus *last;
static uint64_t seen_observed; /* bit g: a status observed generation g */

static void on_fail(void) {}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  CHECK(system(cmd) == 0, "command failed: %s", cmd);
}

static rd_kafka_conf_t *kc(void) {
  rd_kafka_conf_t *c = rd_kafka_conf_new();
  char e[256];
  CHECK(rd_kafka_conf_set(c, "bootstrap.servers", kafka, e, sizeof(e)) == 0,
        "%s", e);
  return c;
}

static void create_topics(void) {
  static const char *const sfx[] = {"desired", "status", "inventory", "events"};
  rd_kafka_NewTopic_t *nt[4];
  char e[256], name[200];
  rd_kafka_queue_t *q = rd_kafka_queue_new(prod);
  for (int i = 0; i < 4; i++) {
    snprintf(name, sizeof(name), "%s%s", prefix, sfx[i]);
    nt[i] = rd_kafka_NewTopic_new(name, PARTS, 1, e, sizeof(e));
    CHECK(nt[i], "%s", e);
    rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy",
                                 i == 3 ? "delete" : "compact");
  }
  rd_kafka_CreateTopics(prod, nt, 4, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
  CHECK(ev && rd_kafka_event_type(ev) == RD_KAFKA_EVENT_CREATETOPICS_RESULT,
        "CreateTopics: no answer");
  const rd_kafka_CreateTopics_result_t *r =
      rd_kafka_event_CreateTopics_result(ev);
  size_t n;
  const rd_kafka_topic_result_t **tr =
      rd_kafka_CreateTopics_result_topics(r, &n);
  for (size_t i = 0; i < n; i++)
    CHECK(rd_kafka_topic_result_error(tr[i]) == 0 ||
              rd_kafka_topic_result_error(tr[i]) ==
                  RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS,
          "create %s: %s", rd_kafka_topic_result_name(tr[i]),
          rd_kafka_topic_result_error_string(tr[i]));
  rd_kafka_event_destroy(ev);
  for (int i = 0; i < 4; i++)
    rd_kafka_NewTopic_destroy(nt[i]);
  rd_kafka_queue_destroy(q);
}

/* Produces a signed desired document for node at generation gen. */
static void put_desired(const sl_fleet_key_t *k, const char *node, uint64_t gen,
                        const char *json, uint64_t min_ms,
                        uint64_t timeout_ms) {
  Sluice__V1__DesiredConfig d = SLUICE__V1__DESIRED_CONFIG__INIT;
  Sluice__V1__HealthGate g = SLUICE__V1__HEALTH_GATE__INIT;
  char sha[65];
  uint8_t *buf, *env;
  size_t n, len;
  sl_fleet_sha256_hex(json, strlen(json), sha);
  g.min_healthy_ms = min_ms;
  g.timeout_ms = timeout_ms;
  g.max_error_rate = 0.2;
  d.node_id = (char *)node;
  d.generation = gen;
  d.config_json = (char *)json;
  d.config_sha256 = sha;
  d.gate = &g;
  n = sluice__v1__desired_config__get_packed_size(&d);
  buf = malloc(n);
  sluice__v1__desired_config__pack(&d, buf);
  CHECK(sl_fleet_sign(k, SL_FLEET_DESIRED, buf, n, &env, &len) == 0, "sign");
  free(buf);
  int32_t part = sl_fleet_partition(node, strlen(node), PARTS);
  CHECK(rd_kafka_producev(
            prod, RD_KAFKA_V_TOPIC(t_desired), RD_KAFKA_V_PARTITION(part),
            RD_KAFKA_V_KEY(node, strlen(node)), RD_KAFKA_V_VALUE(env, len),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) == 0,
        "produce");
  free(env);
  CHECK(rd_kafka_flush(prod, 10000) == 0, "flush");
}

static uint64_t min_seq; /* statuses at or below this seq are ignored */

/* Reads at most one status record of NODE (waiting up to ms). */
static void poll_status(int ms) {
  rd_kafka_message_t *m = rd_kafka_consumer_poll(scons, ms);
  if (!m)
    return;
  if (!m->err && m->key_len == strlen(NODE) &&
      !memcmp(m->key, NODE, m->key_len)) {
    Sluice__V1__FleetStatus *s =
        sluice__v1__fleet_status__unpack(NULL, m->len, m->payload);
    CHECK(s, "undecodable status at offset %lld", (long long)m->offset);
    /* Records keyed by the node are on Java's partition. */
    CHECK(m->partition == sl_fleet_partition(NODE, strlen(NODE), PARTS),
          "status on partition %d", (int)m->partition);
    if (s->observed_generation < 64)
      seen_observed |= 1ull << s->observed_generation;
    if (s->seq <= min_seq || (last && s->seq <= last->seq)) {
      /* Older than what was seen (the seq grows across restarts). */
      sluice__v1__fleet_status__free_unpacked(s, NULL);
    } else {
      if (last)
        sluice__v1__fleet_status__free_unpacked(last, NULL);
      last = s;
    }
  }
  rd_kafka_message_destroy(m);
}

/* Reads status records (bounded) until pred(last) holds. */
static void await_status(int (*pred)(void *), void *arg, int timeout_ms,
                         const char *what) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  while (!last || !pred(arg)) {
    CHECK(now_ms() < deadline,
          "no status %s within %d ms (last: %s gen %llu reason %s: %s)", what,
          timeout_ms,
          last ? sl_fleet_phase_name((sl_fleet_phase_t)last->phase) : "none",
          last ? (unsigned long long)last->applied_generation : 0ULL,
          last ? last->reason : "", last ? last->message : "");
    poll_status(200);
  }
}

/* Forgets the statuses seen so far: the next one must be newer. */
static void forget_status(void) {
  if (!last)
    return;
  min_seq = last->seq;
  sluice__v1__fleet_status__free_unpacked(last, NULL);
  last = NULL;
}

typedef struct want {
  int phase;
  uint64_t applied;
  const char *reason;
} want_t;

static int want_pred(void *arg) {
  const want_t *w = arg;
  return (int)last->phase == w->phase &&
         last->applied_generation == w->applied &&
         (!w->reason || !strcmp(last->reason, w->reason));
}

static void await_phase(sl_fleet_phase_t phase, uint64_t applied,
                        const char *reason, int timeout_ms) {
  want_t w = {phase, applied, reason};
  char what[128];
  snprintf(what, sizeof(what), "%s applied %llu", sl_fleet_phase_name(phase),
           (unsigned long long)applied);
  await_status(want_pred, &w, timeout_ms, what);
}

static void write_fleet_config(void) {
  write_config_fmt("node:\n"
                   "  id: " NODE "\n"
                   "  data_dir: %s\n"
                   "listeners:\n"
                   "  native:\n"
                   "    tcp: \"127.0.0.1:0\"\n"
                   "    unix: %s\n"
                   "  http:\n"
                   "    address: \"127.0.0.1:0\"\n"
                   "admin:\n"
                   "  address: \"127.0.0.1:0\"\n"
                   "fleet:\n"
                   "  enabled: true\n"
                   "  brokers: \"%s\"\n"
                   "  topic_prefix: \"%s\"\n"
                   "  verify_key: %s\n"
                   "  labels: [site=plant-1, line=press]\n"
                   "  max_trial_starts: 2\n"
                   "  heartbeat: 1s\n",
                   data_dir, sock_path, kafka, prefix, pubfile);
}

static const char *const LAYER_AB =
    "{\"log\": {\"level\": \"info\"}, \"streams\": [{\"name\": \"a\"}, "
    "{\"name\": \"b\"}]}";

SL_SCENARIO(apply) {
  char body[8192];
  write_fleet_config();
  start_daemon(NULL);
  await_phase(SL_FLEET_IDLE, 0, NULL, 30000);
  CHECK(last->n_labels == 2, "labels in the status: %zu", last->n_labels);

  /* Reloadable: applied in process, then verified for 1 s. */
  put_desired(skey, NODE, 1, "{\"log\": {\"level\": \"debug\"}}", 1000, 20000);
  await_phase(SL_FLEET_COMMITTED, 1, NULL, 20000);
  CHECK(log_has("config applied by fleet"), "applied in process");
  CHECK(!log_has("starting again"), "no restart for a reloadable change");
  CHECK(metric("sluice_fleet_generation{kind=\"lkg\"}") == 1, "lkg metric");
  CHECK(http_get(admin_port, "/v1/status", body, sizeof(body)) == 200 &&
            strstr(body, "\"lkg_generation\":1") &&
            strstr(body, "\"phase\":\"COMMITTED\""),
        "/v1/status: %s", body);

  /* New streams need a restart: the daemon executes itself again (the
   * same process) and verifies the generation from its first start. */
  pid_t pid = daemon_pid;
  put_desired(skey, NODE, 2, LAYER_AB, 1000, 20000);
  await_phase(SL_FLEET_COMMITTED, 2, NULL, 30000);
  CHECK(log_has("starting again (fleet)"), "restarted for new streams");
  await_ready(2, 20000);
  CHECK(daemon_pid == pid && kill(pid, 0) == 0, "same process");
  CHECK(http_req(http_port, "POST", "/v1/events?stream=b", "application/json",
                 "{\"source\":\"s\",\"value\":1}", NULL, body, sizeof(body)) /
                100 ==
            2,
        "stream b after the restart: %s", body);

  /* A reload of the local file keeps the fleet's layer. */
  kill(daemon_pid, SIGHUP);
  await_log("config reloaded", NULL, 0, 10000);
  CHECK(http_req(http_port, "POST", "/v1/events?stream=b", "application/json",
                 "{\"source\":\"s\",\"value\":2}", NULL, body, sizeof(body)) /
                100 ==
            2,
        "stream b after the reload: %s", body);
  stop_daemon_ok();
  printf("apply: generation 1 in process, generation 2 by a restart of pid "
         "%d, both committed\n",
         (int)pid);
}

SL_SCENARIO(offline) {
  write_fleet_config();
  start_daemon(NULL);
  put_desired(skey, NODE, 1, "{\"log\": {\"level\": \"debug\"}}", 500, 20000);
  await_phase(SL_FLEET_COMMITTED, 1, NULL, 20000);
  stop_daemon_ok();
  seen_observed = 0;
  /* Three generations while the node is off. */
  put_desired(skey, NODE, 3, "{\"log\": {\"level\": \"warn\"}}", 500, 20000);
  put_desired(skey, NODE, 4, "{\"log\": {\"level\": \"error\"}}", 500, 20000);
  put_desired(skey, NODE, 5, LAYER_AB, 500, 20000);
  daemon_start(&(daemon_opts_t){.append_log = 1});
  await_phase(SL_FLEET_COMMITTED, 5, NULL, 30000);
  CHECK(!(seen_observed & (1u << 3 | 1u << 4)),
        "generations 3 or 4 were looked at (seen mask %#llx)",
        (unsigned long long)seen_observed);
  stop_daemon_ok();
  printf("offline: generations 3 and 4 skipped, 5 committed\n");
}

SL_SCENARIO(reject) {
  char out[4096];
  write_fleet_config();
  start_daemon(NULL);
  put_desired(skey, NODE, 2, "{\"log\": {\"level\": \"debug\"}}", 500, 20000);
  await_phase(SL_FLEET_COMMITTED, 2, NULL, 20000);

  /* Invalid: the validator's position and key, generation 2 keeps running. */
  put_desired(skey, NODE, 3,
              "{\"streams\": [{\"name\": \"a\", \"priority\": 12}]}", 500,
              20000);
  await_phase(SL_FLEET_REJECTED, 2, "validate", 20000);
  CHECK(strstr(last->message, "fleet layer:1:") &&
            strstr(last->message, "streams[0].priority"),
        "message names position and key: %s", last->message);
  /* Another key's signature. */
  put_desired(okey, NODE, 4, "{\"log\": {\"level\": \"info\"}}", 500, 20000);
  await_phase(SL_FLEET_REJECTED, 2, "signature", 20000);
  /* Below the committed generation. */
  put_desired(skey, NODE, 1, "{\"log\": {\"level\": \"info\"}}", 500, 20000);
  await_phase(SL_FLEET_CONFLICT, 2, "lower_generation", 20000);
  CHECK(metric("sluice_fleet_rejections_total") == 2, "rejections metric");
  CHECK(metric("sluice_fleet_conflicts_total") == 1, "conflicts metric");
  stop_daemon_ok();

  /* The local file may not set a fleet-owned key. */
  append_config("streams:\n  - name: local\n");
  char cmd[1200];
  snprintf(cmd, sizeof(cmd), "%s check-config -c %s > %s/check.out 2>&1",
           sluice_bin, cfg_path, dir);
  int st = system(cmd);
  snprintf(cmd, sizeof(cmd), "%s/check.out", dir);
  FILE *f = fopen(cmd, "r");
  size_t n = f ? fread(out, 1, sizeof(out) - 1, f) : 0;
  if (f)
    fclose(f);
  out[n] = 0;
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0 &&
            strstr(out, "streams: owned by the fleet"),
        "check-config refused the local stream: %s", out);
  printf("reject: validate, signature, conflict and a local edit refused\n");
}

SL_SCENARIO(rollback) {
  char body[4096];
  write_fleet_config();
  start_daemon(NULL);
  put_desired(skey, NODE, 1, LAYER_AB, 500, 30000);
  await_phase(SL_FLEET_COMMITTED, 1, NULL, 30000);
  await_ready(2, 20000);
  /* Generation 2 removes stream b, which clients still write: refusals
   * beyond the gate's 20% roll it back long before its 60 s timeout. */
  put_desired(skey, NODE, 2, "{\"streams\": [{\"name\": \"a\"}]}", 30000,
              60000);
  await_ready(3, 30000); /* the trial's start */
  uint64_t t0 = now_ms();
  int refused = 0;
  while (!(last && last->phase == SLUICE__V1__FLEET_PHASE__ROLLED_BACK)) {
    CHECK(now_ms() - t0 < 40000, "not rolled back within 40 s");
    int code =
        http_req(http_port, "POST", "/v1/events?stream=b", "application/json",
                 "{\"source\":\"s\",\"value\":1}", NULL, body, sizeof(body));
    if (code / 100 != 2)
      refused++;
    poll_status(0);
  }
  CHECK(refused >= 1, "stream b was refused during the trial");
  await_phase(SL_FLEET_ROLLED_BACK, 1, "health", 30000);
  CHECK(now_ms() - t0 < 30000, "rolled back on the error rate, before the "
                               "gate's 30 s healthy time");
  await_ready(4, 30000); /* restarted on generation 1 */
  CHECK(http_req(http_port, "POST", "/v1/events?stream=b", "application/json",
                 "{\"source\":\"s\",\"value\":1}", NULL, body, sizeof(body)) /
                100 ==
            2,
        "stream b serves again: %s", body);
  stop_daemon_ok();
  printf("rollback: %d refusals, rolled back in %llu ms\n", refused,
         (unsigned long long)(now_ms() - t0));
}

SL_SCENARIO(crashloop) {
  write_fleet_config();
  start_daemon(NULL);
  put_desired(skey, NODE, 1, "{\"log\": {\"level\": \"debug\"}}", 500, 20000);
  await_phase(SL_FLEET_COMMITTED, 1, NULL, 20000);
  /* Generation 2 needs a restart and a long healthy time; the daemon is
   * killed in each start of its trial (fleet.max_trial_starts: 2). */
  put_desired(skey, NODE, 2, LAYER_AB, 60000, 120000);
  for (int start = 0; start < 2; start++) {
    await_phase(SL_FLEET_VERIFYING, 2, NULL, 30000);
    CHECK(stop_daemon(daemon_pid, SIGKILL) != 0, "killed");
    forget_status();
    daemon_start(&(daemon_opts_t){.append_log = 1});
  }
  await_phase(SL_FLEET_ROLLED_BACK, 1, "crash_loop", 30000);
  CHECK(log_has("starts on generation 1 (ROLLED_BACK)"), "boot line");
  stop_daemon_ok();
  printf("crashloop: two starts of generation 2 killed, the third started "
         "on generation 1\n");
}

static int setup(int argc, char **argv) {
  (void)argc;
  (void)argv;
  char e[256];
  kafka = getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (!kafka || !*kafka) {
    printf("SKIP: no harness Kafka (run under scripts/harness)\n");
    return 77;
  }
  fixture_on_fail = on_fail;
  snprintf(prefix, sizeof(prefix), "f%d-%ld-%s.", (int)getpid(),
           (long)time(NULL), fixture_scenario);
  snprintf(t_desired, sizeof(t_desired), "%sdesired", prefix);
  snprintf(t_status, sizeof(t_status), "%sstatus", prefix);
  snprintf(keyfile, sizeof(keyfile), "%s/fleet.key", dir);
  snprintf(pubfile, sizeof(pubfile), "%s/fleet.pub", dir);
  snprintf(otherkey, sizeof(otherkey), "%s/other.key", dir);
  sh("openssl genpkey -algorithm ed25519 -out %s 2>/dev/null", keyfile);
  sh("openssl pkey -in %s -pubout -out %s", keyfile, pubfile);
  sh("openssl genpkey -algorithm ed25519 -out %s 2>/dev/null", otherkey);
  CHECK(sl_fleet_key_load(keyfile, true, &skey, e, sizeof(e)) == 0, "%s", e);
  CHECK(sl_fleet_key_load(otherkey, true, &okey, e, sizeof(e)) == 0, "%s", e);
  prod = rd_kafka_new(RD_KAFKA_PRODUCER, kc(), e, sizeof(e));
  CHECK(prod, "%s", e);
  create_topics();
  rd_kafka_conf_t *c = kc();
  rd_kafka_conf_set(c, "group.id", prefix, e, sizeof(e));
  scons = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof(e));
  CHECK(scons, "%s", e);
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(PARTS);
  for (int p = 0; p < PARTS; p++)
    rd_kafka_topic_partition_list_add(l, t_status, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  CHECK(rd_kafka_assign(scons, l) == 0, "assign");
  rd_kafka_topic_partition_list_destroy(l);
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "fleet", NULL, setup);
}
