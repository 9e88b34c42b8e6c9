/*
 * The fleet centre against the harness's Kafka (SLUICE_TEST_KAFKA_BOOTSTRAP;
 * exit 77 without it). Runs the real `sluice fleet` commands and the render
 * service; the nodes are simulated (loadtest/fleet/sim.h): each runs the
 * REAL node machine (fleet/node.c) over in-memory ops, which verifies the
 * signature and the sha, applies, runs the health gate and publishes its
 * FleetStatus. A document setting log.level "error" fails the gate (every
 * event refused) and is rolled back: the tests' bad policy.
 *
 * usage: fleet_centre_test SLUICE SCENARIO
 *   partition  every desired record is on partition sl_fleet_partition(key)
 *              == librdkafka's murmur2_random partitioner; a restarted
 *              renderer writes nothing new (deterministic, stateless); a
 *              second policy changes only the nodes it selects; a document
 *              from another writer is warned about and taken over
 *   canary     a bad revision fails in the canary batch: the rollout stops
 *              and the rest of the fleet never gets a document of it; a
 *              fixed revision then rolls out to every node
 *   delete     `decommission` a node (DECOMMISSIONED, never rendered again);
 *              `policy delete` re-renders the nodes it covered to {}
 *   offline    a node offline through two generations applies only the
 *              newest when it is back
 *   pause      `rollout pause` after the canaries holds the rest back until
 *              `rollout resume`; then the rollout completes
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
#include "loadtest/fleet/sim.h"
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

static fsim_t *S;
static size_t canaries = 2;
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

static uint64_t now_ms(void) {
  return sl_now_mono_ns() / 1000000u;
}

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

static void pump(int ms) {
  char err[256];
  CHECK(!fsim_poll(S, ms, err, sizeof(err)), "simulated nodes: %s", err);
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

/* Every online node runs a committed layer with this log.level. */
static bool all_level(const char *lvl) {
  for (size_t i = 0; i < NODES; i++) {
    sl_fleet_node_info_t in;
    fsim_info(S, i, &in);
    if (in.decommissioned)
      continue;
    if (strcmp(fsim_level(S, i), lvl) || in.phase != SL_FLEET_COMMITTED ||
        in.lkg != in.applied)
      return false;
  }
  return true;
}
static bool all_info(void) {
  return all_level("info");
}
static bool all_debug(void) {
  return all_level("debug");
}
static bool others_level(const char *lvl) {
  for (size_t i = 0; i < NODES; i++) {
    sl_fleet_node_info_t in;
    fsim_info(S, i, &in);
    if (i != 5 &&
        (strcmp(fsim_level(S, i), lvl) || in.phase != SL_FLEET_COMMITTED))
      return false;
  }
  return true;
}
static bool node3_gone(void) {
  sl_fleet_node_info_t in;
  fsim_info(S, 3, &in);
  return in.decommissioned && in.phase == SL_FLEET_DECOMMISSIONED;
}
static void foreign_write(const char *node, uint64_t gen) {
  sl_fleet_kconf_t kc = {.brokers = brokers, .prefix = prefix};
  sl_fleet_kafka_t *k;
  sl_fleet_key_t *key;
  char err[256], sha[65];
  const char *json = "{}";
  CHECK(!sl_fleet_key_load(keyfile, true, &key, err, sizeof(err)), "%s", err);
  CHECK(!sl_fleet_kafka_open(&kc, &k, err, sizeof(err)), "%s", err);
  Sluice__V1__DesiredConfig dc = SLUICE__V1__DESIRED_CONFIG__INIT;
  sl_fleet_sha256_hex(json, strlen(json), sha);
  dc.node_id = (char *)node;
  dc.generation = gen;
  dc.config_json = (char *)json;
  dc.config_sha256 = sha;
  uint8_t buf[512], *env;
  size_t len = sluice__v1__desired_config__pack(&dc, buf), envlen;
  CHECK(!sl_fleet_sign(key, SL_FLEET_DESIRED, buf, len, &env, &envlen), "sign");
  CHECK(!sl_fleet_kafka_produce(k, SL_FT_DESIRED, node, env, envlen, err,
                                sizeof(err)) &&
            !sl_fleet_kafka_flush(k, 10000, err, sizeof(err)),
        "%s", err);
  free(env);
  sl_fleet_kafka_close(k);
  sl_fleet_key_free(key);
}
static bool node0_back(void) {
  sl_fleet_node_info_t in;
  fsim_info(S, 0, &in);
  return in.lkg == 101 && in.phase == SL_FLEET_COMMITTED &&
         !strcmp(fsim_level(S, 0), "info");
}
static bool others_warn(void) {
  return others_level("warn");
}
static bool others_debug(void) {
  return others_level("debug");
}
static bool all_empty(void) {
  return all_level("");
}
static bool all_warn(void) {
  return all_level("warn");
}

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
  const char *s =
      json_string_value(json_object_get(json_array_get(j, 0), "state"));
  snprintf(ro_state, sizeof(ro_state), "%s", s ? s : "?");
  json_decref(j);
  return !strcmp(ro_state, state);
}
static bool stopped(void) {
  pump(300);
  return rollout_is("logs", "STOPPED");
}
static bool done(void) {
  pump(300);
  return rollout_is("logs", "DONE");
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
  /* before init: exit 4, and asking did not make the broker create the
   * topic with its defaults (the harness's broker auto-creates) */
  CHECK(fleet("policy list") == 4, "policy list before init");
  CHECK(fleet("policy list") == 4, "policy list before init, again");
  CHECK(fleet("init --partitions 5") == 0, "fleet init");
  CHECK(fleet("init --partitions 5") == 0, "fleet init is idempotent");
  fsim_conf_t fc = {.brokers = brokers,
                    .prefix = prefix,
                    .verify_key = keyfile,
                    .nodes = NODES,
                    .id_prefix = scenario,
                    .canaries = canaries,
                    .sites = 2,
                    .heartbeat_ms = 2000};
  CHECK(!fsim_open(&fc, &S, err, sizeof(err)), "simulated nodes: %s", err);
}

static unsigned docs_of(size_t i, unsigned *bad) {
  unsigned d, b;
  fsim_docs(S, i, &d, &b);
  if (bad)
    *bad = b;
  return d;
}

static unsigned total_docs(void) {
  unsigned d = 0;
  for (size_t i = 0; i < NODES; i++)
    d += docs_of(i, NULL);
  return d;
}

/* The policies of these tests commit after 200 ms of health. */
#define GATE "gate: {min_healthy: 200ms, timeout: 20s, max_error_rate: 0.1}\n"

static void check_clean(void) {
  CHECK(fsim_bad_partitions(S) == 0,
        "%u desired record(s) not on partition sl_fleet_partition(key) == "
        "librdkafka's murmur2_random choice",
        fsim_bad_partitions(S));
  for (size_t i = 0; i < NODES; i++) {
    sl_fleet_node_info_t in;
    fsim_info(S, i, &in);
    CHECK(in.phase != SL_FLEET_REJECTED && in.phase != SL_FLEET_CONFLICT,
          "%s: %s (%s: %s)", fsim_id(S, i), sl_fleet_phase_name(in.phase),
          in.reason, in.message);
  }
}

static void settle(int ms) {
  uint64_t end = now_ms() + (uint64_t)ms;
  while (now_ms() < end)
    pump(100);
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
                       "patch: {log: {level: info}}\n" GATE);
  wait_for(all_info, 60, "every node COMMITTED with log.level info");
  check_clean();

  if (!strcmp(sc, "partition")) {
    /* deterministic and stateless: a restarted renderer writes nothing */
    unsigned before = total_docs();
    CHECK(before == NODES, "%u documents for %d nodes", before, NODES);
    stop_render();
    start_render();
    settle(4000);
    CHECK(total_docs() == before, "a restarted renderer wrote %u document(s)",
          total_docs() - before);
    /* a higher-priority policy for site=s1 only (odd nodes) */
    write_policy("site-a", "selector: \"site=s1\"\npriority: 5\n"
                           "patch: {log: {level: debug, format: json}}\n" GATE);
    uint64_t end = now_ms() + 30000;
    unsigned got = 0;
    while (got < NODES / 2 && now_ms() < end) {
      pump(200);
      got = 0;
      for (size_t i = 1; i < NODES; i += 2) {
        sl_fleet_node_info_t in;
        fsim_info(S, i, &in);
        got += !strcmp(fsim_level(S, i), "debug") &&
               in.phase == SL_FLEET_COMMITTED;
      }
    }
    CHECK(got == NODES / 2, "%u of %d site=s1 nodes at debug", got, NODES / 2);
    settle(1000);
    for (size_t i = 0; i < NODES; i += 2)
      CHECK(!strcmp(fsim_level(S, i), "info") && docs_of(i, NULL) == 1,
            "%s (site=s0) changed", fsim_id(S, i));
    /* another writer (a second renderer) writes generation 100 for node 0:
     * the renderer warns, takes the generation over and writes 101 with
     * what the policies say */
    foreign_write(fsim_id(S, 0), 100);
    wait_for(node0_back, 30, "node 0 on generation 101 at info");
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "grep -q 'WARNING: 1 desired' %s/render.log",
             dir);
    CHECK(system(cmd) == 0, "the renderer did not warn about another writer");
  } else if (!strcmp(sc, "canary")) {
    unsigned before[NODES];
    for (size_t i = 0; i < NODES; i++)
      before[i] = docs_of(i, NULL);
    write_policy("logs",
                 "selector: \"\"\npriority: 1\n"
                 "patch: {log: {level: error}}\n" GATE
                 "rollout: {canary_selector: \"canary=yes\", steps_percent: "
                 "[50, 100], success_threshold: 1.0, batch_deadline: 60s, "
                 "max_failures: 1}\n");
    wait_for(stopped, 60, "the rollout STOPPED");
    settle(3000); /* nothing else may be released meanwhile */
    CHECK(rollout_is("logs", "STOPPED"), "rollout %s", ro_state);
    for (size_t i = 0; i < NODES; i++) {
      unsigned bad, d = docs_of(i, &bad);
      sl_fleet_node_info_t in;
      fsim_info(S, i, &in);
      if (i < canaries) {
        CHECK(bad == 1, "canary %s validated %u bad document(s)", fsim_id(S, i),
              bad);
        CHECK(in.phase == SL_FLEET_ROLLED_BACK &&
                  !strcmp(fsim_level(S, i), "info"),
              "canary %s: %s, level %s", fsim_id(S, i),
              sl_fleet_phase_name(in.phase), fsim_level(S, i));
      } else {
        CHECK(d == before[i] && bad == 0,
              "%s (not a canary) got %u document(s) of the failed revision",
              fsim_id(S, i), d - before[i]);
      }
    }
    /* a fixed revision goes out to everyone, canary first */
    write_policy("logs",
                 "selector: \"\"\npriority: 1\n"
                 "patch: {log: {level: warn}}\n" GATE
                 "rollout: {canary_selector: \"canary=yes\", steps_percent: "
                 "[50, 100], batch_deadline: 60s}\n");
    wait_for(all_warn, 60, "every node COMMITTED with log.level warn");
    wait_for(done, 30, "the rollout DONE");
  } else if (!strcmp(sc, "pause")) {
    /* paused after the canaries' release: nobody else gets the revision
     * until resume; then it completes */
    unsigned before[NODES];
    for (size_t i = 0; i < NODES; i++)
      before[i] = docs_of(i, NULL);
    write_policy("logs", "selector: \"\"\npriority: 1\n"
                         "patch: {log: {level: warn}}\n"
                         "gate: {min_healthy: 3s, timeout: 30s}\n"
                         "rollout: {canary_selector: \"canary=yes\", "
                         "steps_percent: [100]}\n");
    CHECK(fleet("rollout pause logs") == 0, "rollout pause");
    settle(8000); /* the canaries commit meanwhile */
    CHECK(rollout_is("logs", "PAUSED"), "rollout %s, not PAUSED", ro_state);
    for (size_t i = canaries; i < NODES; i++)
      CHECK(docs_of(i, NULL) == before[i], "%s got a document while paused",
            fsim_id(S, i));
    CHECK(fleet("rollout resume logs") == 0, "rollout resume");
    wait_for(all_warn, 60, "every node at warn after the resume");
    wait_for(done, 30, "the rollout DONE");
    CHECK(fleet("rollout pause logs") == 1, "pausing a finished rollout");
    CHECK(fleet("rollout pause nosuch") == 3, "pausing an unknown rollout");
  } else if (!strcmp(sc, "delete")) {
    /* node 3 is decommissioned first: a signed document; it reports
     * DECOMMISSIONED and the renderer leaves it alone afterwards */
    CHECK(fleet("decommission %s --signing-key %s --reason retired",
                fsim_id(S, 3), keyfile) == 0,
          "decommission");
    CHECK(fleet("decommission nosuch --signing-key %s", keyfile) == 3,
          "decommission of an unknown node");
    CHECK(fleet("decommission %s", fsim_id(S, 4)) == 2,
          "decommission without a signing key");
    wait_for(node3_gone, 30, "node 3 DECOMMISSIONED");
    unsigned d3 = docs_of(3, NULL);
    CHECK(fleet("policy delete nosuch") == 3, "delete of an unknown policy");
    CHECK(fleet("policy delete logs") == 0, "policy delete");
    wait_for(all_empty, 60, "every node re-rendered without the policy");
    CHECK(fleet("policy delete logs") == 3, "a second delete is not found");
    CHECK(docs_of(3, NULL) == d3 && !strcmp(fsim_level(S, 3), "info"),
          "the decommissioned node got a document");
    /* `sluice fleet status --json` shows the fleet as the nodes report it */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "%s fleet status --json --brokers %s --topic-prefix %s", sluice,
             brokers, prefix);
    FILE *p = popen(cmd, "r");
    CHECK(p, "popen");
    json_error_t je;
    json_t *st = json_loadf(p, 0, &je);
    pclose(p);
    CHECK(json_is_array(st) && json_array_size(st) == NODES,
          "status --json: %zu nodes", json_array_size(st));
    size_t k;
    json_t *row;
    json_array_foreach(st, k, row) {
      const char *id = json_string_value(json_object_get(row, "node"));
      const char *ph = json_string_value(json_object_get(row, "phase"));
      bool gone = !strcmp(id, fsim_id(S, 3));
      CHECK(!strcmp(ph, gone ? "DECOMMISSIONED" : "COMMITTED"),
            "status of %s: %s", id, ph);
      CHECK(json_is_true(json_object_get(row, "decommissioned")) == gone,
            "%s decommissioned flag", id);
      CHECK(json_integer_value(json_object_get(row, "lkg_generation")) ==
                (gone ? 1 : 2),
            "%s lkg generation", id);
    }
    json_decref(st);
  } else if (!strcmp(sc, "offline")) {
    /* node 5 misses two generations and applies only the newest */
    fsim_set_online(S, 5, false);
    unsigned before = docs_of(5, NULL);
    write_policy("logs", "selector: \"\"\npriority: 1\n"
                         "patch: {log: {level: warn}}\n" GATE);
    wait_for(others_warn, 60, "the online nodes at warn");
    write_policy("logs", "selector: \"\"\npriority: 1\n"
                         "patch: {log: {level: debug}}\n" GATE);
    wait_for(others_debug, 60, "the online nodes at debug");
    CHECK(docs_of(5, NULL) == before, "an offline node validated documents");
    fsim_set_online(S, 5, true);
    wait_for(all_debug, 60, "every node at debug");
    CHECK(docs_of(5, NULL) == before + 1,
          "the node back online validated %u documents, not just the newest",
          docs_of(5, NULL) - before);
  } else {
    CHECK(false, "unknown scenario %s", sc);
  }
  check_clean();
  stop_render();
  fsim_close(S);
  cleanup();
  printf("PASS fleet_centre %s\n", sc);
  return 0;
}
