/*
 * The fleet centre against the harness's Kafka (SLUICE_TEST_KAFKA_BOOTSTRAP;
 * exit 77 without it). Runs the real `sluice fleet` commands and the render
 * service; the nodes are simulated here: each publishes an Inventory, reads
 * the desired topic, verifies the signature with the fleet's public key and
 * reports a FleetStatus (COMMITTED, or ROLLED_BACK when its document sets
 * log.level "error": the "bad" policy of these tests).
 *
 * usage: fleet_centre_test SLUICE SCENARIO
 *   partition  every desired record is on partition sl_fleet_partition(key)
 *              == librdkafka's murmur2_random partitioner, signed, sha right;
 *              a restarted renderer writes nothing new (deterministic)
 *   canary     a bad revision fails in the canary batch: the rollout stops
 *              and the rest of the fleet never gets a document of it
 *   delete     `policy delete` re-renders the nodes it covered to {}
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "fleet/centre/centre.h"
#include "sluice/v1/fleet.pb-c.h"

#define NODES 20
#define CHECK(c, ...)                                                          \
  do {                                                                         \
    if (!(c)) {                                                                \
      fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                     \
      fprintf(stderr, __VA_ARGS__);                                            \
      fprintf(stderr, "\n");                                                   \
      cleanup();                                                               \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static const char *sluice, *brokers;
static char dir[128], prefix[128], keyfile[256];
static pid_t render_pid;
static sl_fleet_kafka_t *K;
static sl_fleet_key_t *pub;
static sl_fleet_reader_t *R;
static int32_t desired_parts;

typedef struct node {
  char id[32];
  bool canary;
  uint64_t gen, lkg;
  char level[32]; /* log.level of the newest document */
  int docs;       /* documents received */
  int docs_bad;   /* documents with log.level "error" */
} node_t;
static node_t nodes[NODES];
static int bad_partition, bad_sig, bad_sha;

static void cleanup(void) {
  if (render_pid > 0) {
    kill(render_pid, SIGTERM);
    waitpid(render_pid, NULL, 0);
    render_pid = 0;
  }
  if (dir[0]) {
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) < 0)
      perror("system");
  }
}

static uint64_t now_ms(void) { return sl_now_mono_ns() / 1000000u; }

/* Runs `sluice fleet ARGS... --brokers B --topic-prefix P`; exit code. */
static int fleet(const char *fmt, ...) {
  char args[1024], cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof(args), fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof(cmd), "%s fleet %s --brokers %s --topic-prefix %s",
           sluice, args, brokers, prefix);
  int rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void start_render(void) {
  char log[256];
  snprintf(log, sizeof(log), "%s/render.log", dir);
  render_pid = fork();
  CHECK(render_pid >= 0, "fork");
  if (render_pid == 0) {
    FILE *f = freopen(log, "a", stderr);
    (void)f;
    execl(sluice, sluice, "fleet", "render", "--brokers", brokers,
          "--topic-prefix", prefix, "--signing-key", keyfile, "--interval",
          "100ms", (char *)NULL);
    _exit(127);
  }
}

static void stop_render(void) {
  kill(render_pid, SIGTERM);
  int st;
  waitpid(render_pid, &st, 0);
  render_pid = 0;
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "render exit %d",
        WIFEXITED(st) ? WEXITSTATUS(st) : -1);
}

static void write_policy(const char *name, const char *body) {
  char path[256];
  snprintf(path, sizeof(path), "%s/%s.yaml", dir, name);
  FILE *f = fopen(path, "w");
  CHECK(f, "write %s", path);
  fprintf(f, "name: %s\n%s", name, body);
  fclose(f);
  CHECK(fleet("policy apply %s", path) == 0, "policy apply %s", name);
}

static void publish_status(node_t *n, int phase, const char *reason) {
  Sluice__V1__FleetStatus s = SLUICE__V1__FLEET_STATUS__INIT;
  uint8_t buf[1024];
  char err[256];
  s.node_id = n->id;
  s.observed_generation = n->gen;
  s.applied_generation = phase == SL_FLEET_COMMITTED ? n->gen : n->lkg;
  s.lkg_generation = n->lkg;
  s.phase = (Sluice__V1__FleetPhase)phase;
  s.reason = (char *)reason;
  s.time_ns = sl_now_wall_ns();
  size_t len = sluice__v1__fleet_status__pack(&s, buf);
  CHECK(!sl_fleet_kafka_produce(K, SL_FT_STATUS, n->id, buf, len, err,
                                sizeof(err)),
        "status: %s", err);
}

static void publish_inventory(node_t *n) {
  Sluice__V1__Inventory iv = SLUICE__V1__INVENTORY__INIT;
  Sluice__V1__Inventory__LabelsEntry e[2], *ep[2];
  uint8_t buf[1024];
  char err[256];
  sluice__v1__inventory__labels_entry__init(&e[0]);
  sluice__v1__inventory__labels_entry__init(&e[1]);
  e[0].key = "site";
  e[0].value = (n - nodes) % 2 ? "a" : "b";
  e[1].key = n->canary ? "canary" : "role";
  e[1].value = n->canary ? "yes" : "edge";
  ep[0] = &e[0];
  ep[1] = &e[1];
  iv.node_id = n->id;
  iv.labels = ep;
  iv.n_labels = 2;
  iv.time_ns = sl_now_wall_ns();
  size_t len = sluice__v1__inventory__pack(&iv, buf);
  CHECK(!sl_fleet_kafka_produce(K, SL_FT_INVENTORY, n->id, buf, len, err,
                                sizeof(err)),
        "inventory: %s", err);
}

/* The simulated nodes' handling of one desired record. */
static void on_record(void *opaque, int topic, int32_t partition,
                      int64_t offset, const char *key, size_t klen,
                      const void *val, size_t vlen) {
  (void)opaque;
  (void)offset;
  if (topic != SL_FT_DESIRED)
    return;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(
      sl_fleet_kafka_handle(K), sl_fleet_kafka_topic(K, SL_FT_DESIRED), NULL);
  int32_t java = sl_fleet_partition(key, klen, desired_parts);
  int32_t rdk = rd_kafka_msg_partitioner_murmur2_random(
      rkt, key, klen, desired_parts, NULL, NULL);
  rd_kafka_topic_destroy(rkt);
  if (partition != java || partition != rdk) {
    fprintf(stderr, "partition of %.*s: %d, formula %d, librdkafka %d\n",
            (int)klen, key, (int)partition, (int)java, (int)rdk);
    bad_partition++;
  }
  int kind;
  const uint8_t *payload;
  size_t plen;
  void *hold = NULL;
  char err[256];
  if (sl_fleet_verify(pub, val, vlen, &kind, &payload, &plen, &hold, err,
                      sizeof(err))) {
    fprintf(stderr, "signature of %.*s: %s\n", (int)klen, key, err);
    bad_sig++;
    return;
  }
  if (kind != SL_FLEET_DESIRED) {
    free(hold);
    return;
  }
  Sluice__V1__DesiredConfig *dc =
      sluice__v1__desired_config__unpack(NULL, plen, payload);
  free(hold);
  CHECK(dc, "DesiredConfig unpack");
  node_t *n = NULL;
  for (int i = 0; i < NODES; i++)
    if (strlen(nodes[i].id) == klen && !memcmp(nodes[i].id, key, klen))
      n = &nodes[i];
  CHECK(n && !strcmp(dc->node_id, n->id), "document for an unknown node");
  char sha[65];
  sl_fleet_sha256_hex(dc->config_json, strlen(dc->config_json), sha);
  if (strcmp(sha, dc->config_sha256))
    bad_sha++;
  CHECK(dc->generation > n->gen, "%s: generation %llu after %llu", n->id,
        (unsigned long long)dc->generation, (unsigned long long)n->gen);
  json_error_t je;
  json_t *j = json_loads(dc->config_json, 0, &je);
  CHECK(j, "config_json: %s", je.text);
  const char *lvl = json_string_value(json_object_get(json_object_get(j, "log"),
                                                      "level"));
  snprintf(n->level, sizeof(n->level), "%s", lvl ? lvl : "");
  json_decref(j);
  n->gen = dc->generation;
  n->docs++;
  if (!strcmp(n->level, "error")) {
    n->docs_bad++;
    publish_status(n, SL_FLEET_ROLLED_BACK, "health");
  } else {
    n->lkg = n->gen;
    publish_status(n, SL_FLEET_COMMITTED, "");
  }
  sluice__v1__desired_config__free_unpacked(dc, NULL);
}

static void pump(int ms) {
  char err[256];
  CHECK(sl_fleet_reader_poll(R, ms, false, on_record, NULL, NULL, err,
                             sizeof(err)) >= 0,
        "poll: %s", err);
  sl_fleet_kafka_flush(K, 5000, err, sizeof(err));
}

typedef bool (*cond_t)(void);
static void wait_for(cond_t c, int seconds, const char *what) {
  uint64_t end = now_ms() + (uint64_t)seconds * 1000;
  while (!c()) {
    if (now_ms() > end) {
      char cmd[300];
      snprintf(cmd, sizeof(cmd), "tail -n 30 %s/render.log >&2", dir);
      if (system(cmd) < 0)
        perror("system");
      CHECK(false, "timed out waiting for %s", what);
    }
    pump(200);
  }
}

static bool all_level(const char *lvl) {
  for (int i = 0; i < NODES; i++)
    if (strcmp(nodes[i].level, lvl) || nodes[i].lkg != nodes[i].gen)
      return false;
  return true;
}
static bool all_info(void) { return all_level("info"); }
static bool all_empty(void) { return all_level(""); }
static bool all_warn(void) { return all_level("warn"); }

/* The rollout's state from `sluice fleet rollout status NAME --json`. */
static char ro_state[32];
static bool rollout_is(const char *name, const char *state) {
  char cmd[1024], out[4096] = "";
  snprintf(cmd, sizeof(cmd),
           "%s fleet rollout status %s --json --brokers %s --topic-prefix %s",
           sluice, name, brokers, prefix);
  FILE *p = popen(cmd, "r");
  if (!p)
    return false;
  size_t n = fread(out, 1, sizeof(out) - 1, p);
  pclose(p);
  out[n] = 0;
  json_error_t je;
  json_t *j = json_loads(out, 0, &je);
  const char *s = json_string_value(json_object_get(json_array_get(j, 0), "state"));
  snprintf(ro_state, sizeof(ro_state), "%s", s ? s : "?");
  json_decref(j);
  return !strcmp(ro_state, state);
}
static bool stopped(void) {
  pump(300);
  return rollout_is("logs", "STOPPED");
}

static void setup(const char *scenario) {
  char cmd[512], err[256];
  snprintf(dir, sizeof(dir), "/tmp/sl_fleet_test.XXXXXX");
  CHECK(mkdtemp(dir), "mkdtemp");
  snprintf(prefix, sizeof(prefix), "t%d.%s.%llu.", (int)getpid(), scenario,
           (unsigned long long)(sl_now_wall_ns() / 1000000));
  snprintf(keyfile, sizeof(keyfile), "%s/fleet.pem", dir);
  snprintf(cmd, sizeof(cmd),
           "openssl genpkey -algorithm ed25519 -out %s 2>/dev/null", keyfile);
  if (system(cmd) != 0) {
    fprintf(stderr, "SKIP: openssl cannot make an Ed25519 key\n");
    cleanup();
    exit(77);
  }
  CHECK(!sl_fleet_key_load(keyfile, false, &pub, err, sizeof(err)), "key: %s",
        err);
  CHECK(fleet("init --partitions 5") == 0, "fleet init");
  CHECK(fleet("init --partitions 5") == 0, "fleet init is idempotent");
  sl_fleet_kconf_t kc = {.brokers = brokers, .prefix = prefix};
  CHECK(!sl_fleet_kafka_open(&kc, &K, err, sizeof(err)), "kafka: %s", err);
  CHECK(!sl_fleet_kafka_partitions(K, SL_FT_DESIRED, &desired_parts, err,
                                   sizeof(err)),
        "%s", err);
  CHECK(desired_parts == 5, "desired has %d partitions", (int)desired_parts);
  for (int i = 0; i < NODES; i++) {
    snprintf(nodes[i].id, sizeof(nodes[i].id), "node-%02d.%s", i, scenario);
    nodes[i].canary = i < 2;
    publish_inventory(&nodes[i]);
  }
  CHECK(!sl_fleet_kafka_flush(K, 10000, err, sizeof(err)), "%s", err);
  CHECK(!sl_fleet_reader_open(K, 1u << SL_FT_DESIRED, &R, err, sizeof(err)),
        "reader: %s", err);
}

static int total_docs(void) {
  int d = 0;
  for (int i = 0; i < NODES; i++)
    d += nodes[i].docs;
  return d;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: fleet_centre_test SLUICE SCENARIO\n");
    return 2;
  }
  sluice = argv[1];
  brokers = getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (!brokers || !*brokers) {
    fprintf(stderr, "SKIP: SLUICE_TEST_KAFKA_BOOTSTRAP is not set (run under "
                    "scripts/harness run)\n");
    return 77;
  }
  const char *sc = argv[2];
  setup(sc);
  start_render();
  write_policy("logs", "selector: \"\"\npriority: 1\n"
                       "patch: {log: {level: info}}\n");
  wait_for(all_info, 60, "every node COMMITTED with log.level info");
  CHECK(!bad_partition && !bad_sig && !bad_sha,
        "%d wrong partitions, %d bad signatures, %d bad sha", bad_partition,
        bad_sig, bad_sha);

  if (!strcmp(sc, "partition")) {
    /* deterministic and stateless: a restarted renderer writes nothing */
    int before = total_docs();
    stop_render();
    start_render();
    uint64_t end = now_ms() + 4000;
    while (now_ms() < end)
      pump(200);
    CHECK(total_docs() == before, "a restarted renderer wrote %d document(s)",
          total_docs() - before);
    /* a second, higher-priority policy for site=a only */
    write_policy("site-a", "selector: \"site=a\"\npriority: 5\n"
                           "patch: {log: {level: debug, format: json}}\n");
    int want_a = 0;
    for (int i = 0; i < NODES; i++)
      want_a += i % 2;
    end = now_ms() + 30000;
    int got = 0;
    while (got < want_a && now_ms() < end) {
      pump(200);
      got = 0;
      for (int i = 0; i < NODES; i++)
        got += !strcmp(nodes[i].level, "debug");
    }
    CHECK(got == want_a, "%d of %d site=a nodes at debug", got, want_a);
    for (int i = 0; i < NODES; i += 2)
      CHECK(!strcmp(nodes[i].level, "info"), "%s (site=b) changed",
            nodes[i].id);
    CHECK(!bad_partition && !bad_sig && !bad_sha, "partition/signature/sha");
  } else if (!strcmp(sc, "canary")) {
    int before[NODES];
    for (int i = 0; i < NODES; i++)
      before[i] = nodes[i].docs;
    write_policy("logs",
                 "selector: \"\"\npriority: 1\n"
                 "patch: {log: {level: error}}\n"
                 "rollout: {canary_selector: \"canary\", steps_percent: [50, "
                 "100], success_threshold: 1.0, batch_deadline: 60s, "
                 "max_failures: 1}\n");
    wait_for(stopped, 60, "the rollout STOPPED");
    /* a little longer: nothing else may be released */
    uint64_t end = now_ms() + 3000;
    while (now_ms() < end)
      pump(200);
    for (int i = 0; i < NODES; i++) {
      if (nodes[i].canary) {
        CHECK(nodes[i].docs_bad == 1, "canary %s got %d bad document(s)",
              nodes[i].id, nodes[i].docs_bad);
      } else {
        CHECK(nodes[i].docs == before[i] && nodes[i].docs_bad == 0,
              "%s (not a canary) got %d document(s) of the failed revision",
              nodes[i].id, nodes[i].docs - before[i]);
        CHECK(!strcmp(nodes[i].level, "info"), "%s left info", nodes[i].id);
      }
    }
    /* a fixed revision goes out to everyone, canary first */
    write_policy("logs",
                 "selector: \"\"\npriority: 1\n"
                 "patch: {log: {level: warn}}\n"
                 "rollout: {canary_selector: \"canary\", steps_percent: [50, "
                 "100], batch_deadline: 60s}\n");
    wait_for(all_warn, 60, "every node COMMITTED with log.level warn");
  } else if (!strcmp(sc, "delete")) {
    CHECK(fleet("policy delete nosuch") == 3, "delete of an unknown policy");
    CHECK(fleet("policy delete logs") == 0, "policy delete");
    wait_for(all_empty, 60, "every node re-rendered without the policy");
    CHECK(fleet("policy delete logs") == 3, "a second delete is not found");
  } else {
    CHECK(false, "unknown scenario %s", sc);
  }
  CHECK(!bad_partition && !bad_sig && !bad_sha, "partition/signature/sha");
  stop_render();
  sl_fleet_reader_close(R);
  sl_fleet_kafka_close(K);
  sl_fleet_key_free(pub);
  cleanup();
  printf("PASS fleet_centre %s\n", sc);
  return 0;
}
