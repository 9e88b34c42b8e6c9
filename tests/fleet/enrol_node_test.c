/*
 * Enrolment, the node side, with the real daemon and no broker to answer:
 * a box with only a bootstrap file (and a claim certificate made by the
 * openssl CLI) makes its key (0600) and takes its id from it, says it is
 * requesting in /v1/status and the metrics, does not connect its uplink,
 * and keeps storing what its clients send; a restart keeps the same id;
 * a bad bootstrap file is refused with its errors.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/common/daemon_fixture.h"

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  CHECK(system(cmd) == 0, "command failed: %s", cmd);
}

static void write_bootstrap(const char *extra) {
  char path[400];
  snprintf(path, sizeof(path), "%s/bootstrap.yaml", dir);
  FILE *f = fopen(path, "w");
  CHECK(f, "bootstrap");
  /* 127.0.0.1:1: nobody answers, the node stays in "requesting". */
  fprintf(f,
          "brokers: 127.0.0.1:1\n"
          "ca: %s/ca.crt\n"
          "claim:\n"
          "  cert: %s/claim.crt\n"
          "  key: %s/claim.key\n"
          "  name: plant-7\n"
          "labels: [site=plant-7]\n"
          "verify_key: %s/fleet.pub\n%s",
          dir, dir, dir, dir, extra ? extra : "");
  fclose(f);
  chmod(path, 0644);
}

static void write_node_config(void) {
  write_config_fmt("node:\n"
                   "  data_dir: %s\n"
                   "listeners:\n"
                   "  native:\n"
                   "    tcp: \"127.0.0.1:0\"\n"
                   "    unix: %s\n"
                   "  http:\n"
                   "    address: \"127.0.0.1:0\"\n"
                   "admin:\n"
                   "  address: \"127.0.0.1:0\"\n"
                   "kafka:\n"
                   "  enabled: true\n"
                   "fleet:\n"
                   "  enabled: true\n"
                   "enrol:\n"
                   "  bootstrap: %s/bootstrap.yaml\n",
                   data_dir, sock_path, dir);
}

SL_SCENARIO(lobby) {
  char body[8192], line[1024], id1[64] = "", id2[64] = "";
  struct stat sb;
  sh("cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
     "-nodes -keyout ca.key -out ca.crt -subj /CN=fleet-ca -days 2 "
     "2>/dev/null && openssl req -newkey ec -pkeyopt "
     "ec_paramgen_curve:P-256 -nodes -keyout claim.key -out claim.csr -subj "
     "/CN=claim-plant-7 2>/dev/null && openssl x509 -req -in claim.csr -CA "
     "ca.crt -CAkey ca.key -CAcreateserial -out claim.crt -days 2 "
     "2>/dev/null && chmod 600 claim.key && openssl genpkey -algorithm "
     "ed25519 -out fleet.key 2>/dev/null && openssl pkey -in fleet.key "
     "-pubout -out fleet.pub",
     dir);
  write_bootstrap(NULL);
  write_node_config();
  start_daemon(NULL);
  await_log("enrolment: node sl-", line, sizeof(line), 10000);
  CHECK(sscanf(strstr(line, "node sl-") + 5, "%63s", id1) == 1, "%s", line);
  CHECK(strlen(id1) == 23, "derived id %s", id1);
  CHECK(strstr(line, "not enrolled yet: storing locally"), "%s", line);
  /* The key: made here, 0600 in a 0700 directory. */
  char path[600];
  snprintf(path, sizeof(path), "%s/identity/node.key", data_dir);
  CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600, "key mode");
  snprintf(path, sizeof(path), "%s/identity", data_dir);
  CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0700, "dir mode");
  /* Requesting; the uplink does not connect (no sluice_uplink_* yet). */
  CHECK(http_get(admin_port, "/v1/status", body, sizeof(body)) == 200, "st");
  CHECK(strstr(body, "\"enrolment\":{\"state\":\"requesting\"") ||
            strstr(body, "\"state\":\"requesting\""),
        "status: %s", body);
  char want[128];
  snprintf(want, sizeof(want), "\"node_id\":\"%s\"", id1);
  CHECK(strstr(body, want), "node id in the status: %s", body);
  CHECK(metric("sluice_enrol_state") == 1, "state metric");
  CHECK(metric("sluice_uplink_connected") < 0, "the uplink is not started");
  /* Ingest goes on: stored, delivered once enrolled. */
  CHECK(http_post("application/json", NULL, "{\"source\":\"s\",\"value\":1}",
                  body, sizeof(body)) /
                100 ==
            2,
        "ingest while not enrolled: %s", body);
  stop_daemon_ok();

  /* The same key, the same id. */
  daemon_start(&(daemon_opts_t){.append_log = 1});
  await_log_count("enrolment: node sl-", 2, 10000);
  FILE *f = fopen(log_path, "r");
  while (f && fgets(line, sizeof(line), f))
    if (strstr(line, "enrolment: node sl-"))
      sscanf(strstr(line, "node sl-") + 5, "%63s", id2);
  if (f)
    fclose(f);
  CHECK(!strcmp(id1, id2), "id %s after a restart, was %s", id2, id1);
  stop_daemon_ok();

  /* A bootstrap file with a mistake: refused with file, line and key. */
  write_bootstrap("topic_prefix: [a]\n");
  CHECK(daemon_try_start(NULL) == 1002, "a bad bootstrap stops the start");
  CHECK(log_has("bootstrap.yaml:9:") && log_has("topic_prefix"),
        "the bootstrap's error is named");
  printf("lobby: node %s made its key, stores while not enrolled, keeps its "
         "id\n",
         id1);
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "enrol", NULL, NULL);
}
