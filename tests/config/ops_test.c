/*
 * End-to-end tests of the daemon's operational hardening (issue 14, config,
 * logs and privilege; docs/security/ops.md): the real binary, a generated
 * config, loopback only, no brokers.
 *
 *   ops_test SLUICE_BINARY jsonlog   log.format json holds for librdkafka
 *   ops_test SLUICE_BINARY perms     a config writable by others is refused
 *   ops_test SLUICE_BINARY runuser   run.user drops root (root only, else 77)
 *   ops_test SLUICE_BINARY budget    a budget beyond the filesystem is flagged
 *   ops_test SLUICE_BINARY reload    SIGHUP's parse does not stall ingest
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sluice/client.h"
#include "tests/common/daemon_fixture.h"

/* Writes the config (mode 0644) with extra appended. */
static void write_ops_config(const char *extra) {
  write_config_fmt("node:\n"
                   "  id: ops-node\n"
                   "  data_dir: %s\n"
                   "listeners:\n"
                   "  native:\n"
                   "    tcp: \"127.0.0.1:0\"\n"
                   "  http:\n"
                   "    address: \"127.0.0.1:0\"\n"
                   "admin:\n"
                   "  address: \"127.0.0.1:0\"\n"
                   "streams:\n"
                   "  - name: readings\n"
                   "%s",
                   data_dir, extra ? extra : "");
}

/* Runs the daemon where it must refuse to start: its wait status. */
static int run_refused(void) {
  CHECK(daemon_try_start(NULL) != 0, "the daemon started");
  return daemon_status;
}

static int post_event(void) {
  char buf[2048];
  return http_req(http_port, "POST", "/v1/events", "application/json",
                  "{\"source\":\"ops\",\"value\":1}", NULL, buf, sizeof(buf));
}

/* A TCP port on loopback with nothing listening (bound, then closed). */
static int closed_port(void) {
  struct sockaddr_in sa = {.sin_family = AF_INET};
  socklen_t len = sizeof(sa);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "bind");
  CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0, "getsockname");
  close(fd);
  return ntohs(sa.sin_port);
}

/* ---- scenarios --------------------------------------------------------- */

/*
 * log.format json with an unreachable Kafka broker: librdkafka logs its
 * connection failures, and a malformed request makes libmicrohttpd log on
 * the admin server. Every line on stderr must be a JSON object.
 */
SL_SCENARIO(jsonlog) {
  char extra[512];
  snprintf(extra, sizeof(extra),
           "log:\n  format: json\n"
           "kafka:\n  enabled: true\n  brokers: \"127.0.0.1:%d\"\n",
           closed_port());
  write_ops_config(extra);
  pid_t pid = start_daemon(NULL);
  await_log("librdkafka", NULL, 0, 20000);
  /* A malformed Content-Length makes libmicrohttpd log (admin server). */
  {
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)admin_port)};
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                       "Content-Length: abc\r\n\r\n";
    char buf[512];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
    CHECK(write(fd, req, sizeof(req) - 1) == (ssize_t)sizeof(req) - 1, "write");
    CHECK(read(fd, buf, sizeof(buf)) > 0, "an answer");
    close(fd);
    await_log("libmicrohttpd", NULL, 0, 10000);
  }
  CHECK(post_event() == 200, "ingest works");
  /* With the broker unreachable the uplink takes ~30 s to give up on
   * stop (not this test's subject): allow for it. */
  kill(pid, SIGTERM);
  int st = daemon_wait_exit(pid, 90000);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  FILE *f = fopen(log_path, "r");
  char line[16384];
  int lines = 0, kafka = 0, mhd = 0;
  CHECK(f, "open log");
  while (fgets(line, sizeof(line), f)) {
    json_error_t jerr;
    json_t *j = json_loads(line, 0, &jerr);
    CHECK(j && json_is_object(j), "stderr line is not JSON: %s", line);
    CHECK(json_is_string(json_object_get(j, "msg")) &&
              json_is_string(json_object_get(j, "level")),
          "no msg/level: %s", line);
    const char *msg = json_string_value(json_object_get(j, "msg"));
    kafka += strstr(msg, "librdkafka") != NULL;
    mhd += strstr(msg, "libmicrohttpd") != NULL;
    json_decref(j);
    lines++;
  }
  fclose(f);
  CHECK(kafka > 0 && mhd > 0, "librdkafka %d, libmicrohttpd %d lines", kafka,
        mhd);
  printf("jsonlog: %d lines, %d from librdkafka, %d from libmicrohttpd, all "
         "JSON\n",
         lines, kafka, mhd);
}

/* A config file group or others may write is refused at start, naming it;
 * check-config says the same. */
SL_SCENARIO(perms) {
  write_ops_config(NULL);
  CHECK(chmod(cfg_path, 0646) == 0, "chmod o+w");
  int st = run_refused();
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0, "started with o+w config");
  CHECK(log_has(cfg_path) && log_has("writable by group or others"),
        "the refusal names the file");
  char cmd[700];
  snprintf(cmd, sizeof(cmd), "%s check-config -c %s >%s 2>&1", sluice_bin,
           cfg_path, log_path);
  CHECK(system(cmd) != 0, "check-config accepted an o+w config");
  CHECK(log_has("writable by group or others"), "check-config names it");
  CHECK(chmod(cfg_path, 0664) == 0, "chmod g+w");
  st = run_refused();
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0, "started with g+w config");
  CHECK(chmod(cfg_path, 0644) == 0, "chmod 0644");
  pid_t pid = start_daemon(NULL);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "0644 config runs");
  printf("perms: o+w and g+w configs refused, 0644 runs\n");
}

/* Reads "Uid:" or "Gid:" of /proc/pid/status: all four ids must be want. */
static void check_ids(pid_t pid, const char *field, unsigned want) {
  char path[64], line[256];
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  bool seen = false;
  CHECK(f, "open %s", path);
  while (fgets(line, sizeof(line), f)) {
    unsigned a, b, c, d;
    if (strncmp(line, field, strlen(field)))
      continue;
    if (!strcmp(field, "Groups:")) {
      unsigned g;
      int used = 0;
      CHECK(sscanf(line + 7, " %u %n", &g, &used) == 1 && g == want &&
                line[7 + used] == '\0',
            "supplementary groups: %s", line);
    } else {
      CHECK(sscanf(line + strlen(field), "%u %u %u %u", &a, &b, &c, &d) == 4,
            "parse %s", line);
      CHECK(a == want && b == want && c == want && d == want, "%s want %u: %s",
            field, want, line);
    }
    seen = true;
  }
  fclose(f);
  CHECK(seen, "no %s line", field);
}

SL_SCENARIO(runuser) {
  if (geteuid() != 0) {
    printf("runuser: skipped, not root\n");
    exit(77);
  }
  struct passwd *pw = getpwnam("nobody");
  if (!pw) {
    printf("runuser: skipped, no user nobody\n");
    exit(77);
  }
  unsigned uid = pw->pw_uid, gid = pw->pw_gid;
  /* The config must stay readable for SIGHUP after the drop. */
  CHECK(chmod(dir, 0755) == 0, "chmod dir");
  write_ops_config("run:\n  user: no-such-user-sluice\n");
  int st = run_refused();
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) != 0 && log_has("no such user"),
        "unknown run.user refused");

  write_ops_config("run:\n  user: nobody\n");
  pid_t pid = start_daemon(NULL);
  await_log("dropped privileges", NULL, 0, 5000);
  check_ids(pid, "Uid:", uid);
  check_ids(pid, "Gid:", gid);
  check_ids(pid, "Groups:", gid);
  /* Still ingesting: the store was opened before the drop. */
  CHECK(post_event() == 200, "ingest after the drop");
  /* SIGHUP reads the config again as nobody. */
  write_ops_config("run:\n  user: nobody\nlog:\n  level: warn\n");
  kill(pid, SIGHUP);
  await_metric("sluice_config_reloads_total", 1);
  CHECK(post_event() == 200, "ingest after the reload");
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  printf("runuser: uid/gid/groups %u/%u/%u after the drop, ingest and "
         "reload work\n",
         uid, gid, gid);
}

SL_SCENARIO(budget) {
  write_ops_config("store:\n  budget_bytes: 1TiB\n");
  pid_t pid = start_daemon(NULL);
  CHECK(log_has("larger than the filesystem"), "no warning");
  await_metric("sluice_store_budget_exceeds_filesystem", 1);
  CHECK(stop_daemon(pid, SIGTERM) == 0, "exit");
  write_ops_config("store:\n  budget_bytes: 64MiB\n");
  pid = start_daemon(NULL);
  CHECK(!log_has("larger than the filesystem"), "warned on a small budget");
  await_metric("sluice_store_budget_exceeds_filesystem", 0);
  CHECK(stop_daemon(pid, SIGTERM) == 0, "exit");
  printf("budget: 1TiB flagged (warning, gauge 1), 64MiB not\n");
}

/* Ingest latency while a reload parses: a thread publishes one event at a
 * time over the native protocol (served by the loop thread) and records
 * the slowest publish-to-ack round trip. */
static atomic_int lat_stop;
static atomic_ullong lat_max_ms, lat_count, lat_failed;

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  (void)cl, (void)batch_id, (void)first_offset, (void)count, (void)opaque;
  if (err)
    atomic_fetch_add(&lat_failed, 1);
}

static void *latency_thread(void *arg) {
  sl_client_opts_t o;
  sl_client_t *cl;
  char addr[64];
  (void)arg;
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", native_port);
  sl_client_opts_init(&o);
  o.address = addr;
  o.client_id = "ops-latency";
  o.linger_ms = 0;
  o.ack_cb = on_ack;
  CHECK(sl_client_new(&o, &cl) == 0, "client");
  while (!atomic_load(&lat_stop)) {
    uint64_t t0 = now_ms(), bid;
    CHECK(sl_client_publish_reading(cl, "readings", "ops/latency", 0, 1.0,
                                    SLUICE__V1__QUALITY__QUALITY_GOOD, "C",
                                    &bid) == 0,
          "publish");
    CHECK(sl_client_flush(cl, 60000) == 0, "flush");
    uint64_t dt = now_ms() - t0;
    if (dt > atomic_load(&lat_max_ms))
      atomic_store(&lat_max_ms, dt);
    atomic_fetch_add(&lat_count, 1);
  }
  sl_client_free(cl);
  return NULL;
}

SL_SCENARIO(reload) {
  pthread_t th;
  write_ops_config(NULL);
  pid_t pid = start_daemon(NULL);
  CHECK(post_event() == 200, "ingest");
  CHECK(pthread_create(&th, NULL, latency_thread, NULL) == 0, "thread");

  /* 1. A deeply nested file: refused (and, before the fix, parsed for
   * seconds on the loop thread). */
  {
    size_t n = 40000;
    FILE *f = fopen(cfg_path, "w");
    CHECK(f, "open");
    fputs("node: {id: ops-node}\nx: ", f);
    for (size_t i = 0; i < n; i++)
      fputc('[', f);
    for (size_t i = 0; i < n; i++)
      fputc(']', f);
    fputc('\n', f);
    fclose(f);
  }
  kill(pid, SIGHUP);
  await_metric("sluice_config_reload_errors_total", 1);
  uint64_t deep_max = atomic_load(&lat_max_ms);

  /* 2. A slow file: the config is a FIFO whose writer takes 1.5 s (a
   * config on a slow mount). Ingest must keep being answered meanwhile. */
  unlink(cfg_path);
  CHECK(mkfifo(cfg_path, 0600) == 0, "mkfifo");
  kill(pid, SIGHUP);
  uint64_t hold = now_ms() + 1500;
  uint64_t before = atomic_load(&lat_count);
  while (now_ms() < hold)
    usleep(10000); /* the slow writer's delay: what the test measures */
  uint64_t during = atomic_load(&lat_count) - before;
  {
    char text[2048];
    int len = snprintf(text, sizeof(text),
                       "node:\n  id: ops-node\n  data_dir: %s\n"
                       "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
                       "  http:\n    address: \"127.0.0.1:0\"\n"
                       "admin:\n  address: \"127.0.0.1:0\"\n"
                       "streams:\n  - name: readings\n"
                       "log:\n  level: warn\n",
                       data_dir);
    int fd = open(cfg_path, O_WRONLY);
    CHECK(fd >= 0, "open fifo for writing");
    CHECK(write(fd, text, (size_t)len) == len, "write fifo");
    close(fd);
  }
  await_metric("sluice_config_reloads_total", 1);
  atomic_store(&lat_stop, 1);
  pthread_join(th, NULL);
  unlink(cfg_path);
  write_ops_config(NULL);
  CHECK(stop_daemon(pid, SIGTERM) == 0, "exit");
  unsigned long long mx = atomic_load(&lat_max_ms);
  printf("reload: %llu requests, max latency %llu ms during the deep "
         "reload; %llu during the 1.5 s slow read, max latency %llu ms\n",
         (unsigned long long)atomic_load(&lat_count),
         (unsigned long long)deep_max, (unsigned long long)during, mx);
  CHECK(atomic_load(&lat_failed) == 0, "publishes failed during reloads");
  CHECK(deep_max < 500, "max ingest latency %llu ms during the deep reload",
        (unsigned long long)deep_max);
  CHECK(during >= 10, "ingest stalled during the reload: %llu requests",
        (unsigned long long)during);
  CHECK(mx < 500, "max ingest latency %llu ms during reloads", mx);
  CHECK(log_has("nesting deeper than"), "the deep refusal says why");
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "ops", NULL, NULL);
}
