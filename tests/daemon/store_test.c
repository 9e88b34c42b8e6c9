/*
 * End-to-end tests of the store's hardening (issue 14) through `sluice run`
 * and `sluice store`: the real binary, a generated config, the C client.
 *
 *   store_test SLUICE_BINARY identity  ingest, stop, truncate data.mdb to
 *       zero, start: refused with exit code 4 and a message saying what to
 *       do; --accept-new-store starts a new store (new id, offsets from 0)
 *   store_test SLUICE_BINARY crypt     store.encryption_key_file: events
 *       sealed on disk, read back after a restart, `store verify` with and
 *       without the key, a tampered byte found, an unsafe key file and a
 *       wrong key refused with exit code 5
 *   store_test SLUICE_BINARY clock     issue 26: 1,000 events under a 1 h
 *       TTL, stop, start with the wall clock 2 days ahead (libfaketime,
 *       wall clock only): the step is logged as a step while stopped,
 *       nothing expires, the events are all there after the stop. Exit 77
 *       when libfaketime is not installed.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sluice/client.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"
#include "tests/common/daemon_fixture.h"

#define KEY1                                                                   \
  "1:8d9a2c0f6e4b7a1d3c5e7f9012345678abcdef0123456789fedcba9876543210"
#define KEY1_WRONG                                                             \
  "1:0d9a2c0f6e4b7a1d3c5e7f9012345678abcdef0123456789fedcba9876543210"
#define SOURCE "plant1/line1/press01/secret-marker-temp"

static char key_path[300];
static const char *faketime; /* set: the next start runs under libfaketime */
static const char *admin_addr = ""; /* admin.address in the config */
static const char *faketime_lib;    /* the multi-threaded libfaketime found */

static void write_store_config(const char *extra) {
  write_config_fmt("node:\n"
                   "  id: test-node\n"
                   "  data_dir: %s\n"
                   "listeners:\n"
                   "  native:\n"
                   "    tcp: \"127.0.0.1:0\"\n"
                   "  http:\n"
                   "    address: \"\"\n"
                   "admin:\n"
                   "  address: \"%s\"\n"
                   "streams:\n"
                   "  - name: readings\n"
                   "%s",
                   data_dir, admin_addr, extra ? extra : "");
}

/* In the child: only the wall clock moves (CLOCK_MONOTONIC and
 * CLOCK_BOOTTIME stay real, as on a real node); libfaketime 0.9.10 needs
 * the monotonic fix off or the store writer spins. */
static void faketime_env(void) {
  setenv("LD_PRELOAD", faketime_lib, 1);
  setenv("FAKETIME", faketime, 1);
  setenv("DONT_FAKE_MONOTONIC", "1", 1); /* both names: old and new */
  setenv("FAKETIME_DONT_FAKE_MONOTONIC", "1", 1);
  setenv("FAKETIME_FORCE_MONOTONIC_FIX", "0", 1);
  setenv("ASAN_OPTIONS", "verify_asan_link_order=0", 0);
}

/* Starts `sluice run` (with extra, e.g. "--accept-new-store"); returns its
 * pid once it logged "ready" (port in *port), or -1 with its wait status
 * in *status when it exited first. */
static pid_t start_store_daemon(const char *extra, int *port, int *status) {
  daemon_opts_t o = {.arg = extra, .child = faketime ? faketime_env : NULL};
  if (daemon_try_start(&o) != 0) {
    *status = daemon_status;
    return -1;
  }
  *port = native_port;
  return daemon_pid;
}

/* Publishes n readings (values from..from+n-1) and waits for the acks;
 * returns the first offset of the first batch. */
static uint64_t first_offset;
static uint64_t acked;

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first,
                   uint32_t count, int err, void *opaque) {
  (void)cl;
  (void)opaque;
  if (err == 0) {
    (void)batch_id;
    if (first < first_offset)
      first_offset = first;
    acked += count;
  }
}

static uint64_t publish(int port, uint64_t from, uint64_t n) {
  char addr[64];
  sl_client_opts_t o;
  sl_client_t *cl;

  snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
  sl_client_opts_init(&o);
  o.address = addr;
  o.client_id = "store-test";
  o.max_batch_events = 500;
  o.linger_ms = 2;
  o.ack_cb = on_ack;
  CHECK(sl_client_new(&o, &cl) == 0, "client");
  acked = 0;
  first_offset = UINT64_MAX;
  for (uint64_t i = from; i < from + n; i++) {
    uint64_t bid;
    int rc = sl_client_publish_reading(
        cl, "readings", SOURCE, 1700000000000000000ll + (int64_t)i, (double)i,
        SLUICE__V1__QUALITY__QUALITY_GOOD, "C", &bid);
    CHECK(rc == 0, "publish: %s", sl_strerror(rc));
  }
  CHECK(sl_client_flush(cl, 30000) == 0, "flush");
  sl_client_free(cl);
  CHECK(acked == n, "acked %llu of %llu", (unsigned long long)acked,
        (unsigned long long)n);
  return first_offset;
}

/* Runs a shell command; returns its exit status, output in out_path. */
static int run(const char *out_path, const char *fmt, ...) {
  char cmd[2048];
  va_list ap;
  int n, rc;

  va_start(ap, fmt);
  n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  snprintf(cmd + n, sizeof(cmd) - (size_t)n, " >%s 2>&1", out_path);
  rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int file_has(const char *path, const char *needle) {
  FILE *f = fopen(path, "rb");
  size_t len = strlen(needle), n;
  char *m;
  int found = 0;

  CHECK(f, "open %s", path);
  fseek(f, 0, SEEK_END);
  n = (size_t)ftell(f);
  rewind(f);
  m = malloc(n + 1);
  CHECK(fread(m, 1, n, f) == n, "read %s", path);
  fclose(f);
  for (size_t i = 0; i + len <= n && !found; i++)
    found = memcmp(m + i, needle, len) == 0;
  free(m);
  return found;
}

/* ---- identity ---------------------------------------------------------- */

SL_SCENARIO(identity) {
  char data[450], out[400];
  int port, status = 0;
  pid_t pid;

  write_store_config(NULL);
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid > 0, "first start, status %d", status);
  CHECK(log_has("store ") && log_has(": id "), "the store id is logged");
  CHECK(publish(port, 0, 5000) == 0, "first offset 0");
  stop_daemon_ok();

  /* A stale copy of data.mdb restored over a newer one. */
  snprintf(data, sizeof(data), "%s/data.mdb", data_dir);
  snprintf(out, sizeof(out), "%s/cp.out", dir);
  CHECK(run(out, "cp %s %s/data.mdb.bak", data, dir) == 0, "backup");
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid > 0, "second start, status %d", status);
  CHECK(publish(port, 5000, 1000) == 5000, "offsets continue");
  stop_daemon_ok();
  CHECK(run(out, "cp %s/data.mdb.bak %s", dir, data) == 0, "restore");
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid < 0 && WIFEXITED(status) && WEXITSTATUS(status) == 4,
        "stale copy: status %d, want exit code 4", status);
  CHECK(log_has("is older than") && log_has("ends at offset 5000") &&
            log_has("up to 6000"),
        "the message names the missing offsets");

  /* The reproduction: a zero-length data.mdb. */
  CHECK(truncate(data, 0) == 0, "truncate %s", data);
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid < 0, "the daemon started on an emptied data.mdb");
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 4,
        "exit status %d, want exit code 4", status);
  CHECK(log_has("data.mdb is empty") && log_has("--accept-new-store") &&
            log_has("SL_ESTOREID"),
        "the message says what happened and what to do");

  /* Accepted explicitly: starts, new store, offsets from 0 again. */
  pid = start_store_daemon("--accept-new-store", &port, &status);
  CHECK(pid > 0, "start with --accept-new-store, status %d", status);
  CHECK(log_has("(accept_new)"), "acceptance is logged");
  CHECK(publish(port, 0, 100) == 0, "a new store starts at offset 0");
  stop_daemon_ok();
  /* And from now on it is the store: a plain start works. */
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid > 0, "plain restart after acceptance, status %d", status);
  CHECK(publish(port, 100, 100) == 100, "offsets continue");
  stop_daemon_ok();

  /* `sluice store stats` shows the store id. */
  snprintf(out, sizeof(out), "%s/stats.out", dir);
  CHECK(run(out, "%s store stats -d %s", sluice_bin, data_dir) == 0 &&
            file_has(out, ", id "),
        "store stats shows the id");
}

/* ---- encryption -------------------------------------------------------- */

static void write_key(const char *text, mode_t mode) {
  int fd;
  unlink(key_path);
  fd = open(key_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  CHECK(fd >= 0 && write(fd, text, strlen(text)) == (ssize_t)strlen(text),
        "write key file");
  CHECK(fchmod(fd, mode) == 0, "chmod key file");
  close(fd);
}

/* Flips a byte in the middle of the file's largest run of sealed batch
 * (a sealed batch starts with "SLB!", version 2 or 3, flag bit 0). */
static void tamper(void) {
  char path[450];
  struct stat sb;
  uint8_t *m;
  int fd, done = 0;

  snprintf(path, sizeof(path), "%s/data.mdb", data_dir);
  fd = open(path, O_RDWR);
  CHECK(fd >= 0 && fstat(fd, &sb) == 0, "open %s", path);
  m = malloc((size_t)sb.st_size);
  CHECK(pread(fd, m, (size_t)sb.st_size, 0) == sb.st_size, "read");
  /* Every copy (LMDB keeps stale pages too): the live one is among them. */
  for (off_t i = 0; i + 200 < sb.st_size; i++)
    if (memcmp(m + i, "SLB!", 4) == 0 && m[i + 4] >= 2 && m[i + 4] <= 3 &&
        (m[i + 7] & 1)) {
      uint8_t c = m[i + 100] ^ 0x20;
      CHECK(pwrite(fd, &c, 1, i + 100) == 1, "write");
      done++;
    }
  CHECK(done > 0, "no sealed batch found in data.mdb");
  free(m);
  close(fd);
}

SL_SCENARIO(crypt) {
  char opt[600], data[450], out[400];
  int port, status = 0;
  pid_t pid;

  snprintf(data, sizeof(data), "%s/data.mdb", data_dir);
  snprintf(out, sizeof(out), "%s/cli.out", dir);
  snprintf(opt, sizeof(opt), "store:\n  encryption_key_file: %s\n", key_path);
  write_store_config(opt);

  /* An unsafe key file is refused before anything is written. */
  write_key(KEY1 "\n", 0644);
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid < 0 && WIFEXITED(status) && WEXITSTATUS(status) == 5,
        "unsafe key file: status %d, want exit code 5", status);
  CHECK(log_has("mode 0600") && log_has("SL_EKEY"), "says why");
  CHECK(!log_has("8d9a2c0f"), "the key is never printed");

  write_key("# sluice keys\n" KEY1 "\n", 0600);
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid > 0, "start with a key, status %d", status);
  CHECK(log_has("encryption at rest on (sealing with key id 1)"), "logged");
  CHECK(publish(port, 0, 3000) == 0, "offsets from 0");
  stop_daemon_ok();
  CHECK(!file_has(data, SOURCE), "event text in clear in data.mdb");

  /* Restart: the events are read back (and offsets continue). */
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid > 0, "restart with the key, status %d", status);
  CHECK(publish(port, 3000, 1000) == 3000, "offsets continue");
  stop_daemon_ok();

  CHECK(run(out, "%s store verify -d %s --key-file %s", sluice_bin, data_dir,
            key_path) == 0,
        "verify with the key");
  CHECK(file_has(out, "ok: ") && file_has(out, "4000 events"), "4000 events");
  CHECK(run(out, "%s store dump -d %s --key-file %s", sluice_bin, data_dir,
            key_path) == 0 &&
            file_has(out, SOURCE),
        "dump decrypts");
  CHECK(run(out, "%s store verify -d %s", sluice_bin, data_dir) == 1 &&
            file_has(out, "sealed with a key that was not given"),
        "verify without the key fails clearly");

  /* A wrong key of the same id: refused at start, not garbage. */
  write_key(KEY1_WRONG "\n", 0600);
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid < 0 && WIFEXITED(status) && WEXITSTATUS(status) == 5,
        "wrong key: status %d, want exit code 5", status);
  CHECK(log_has("is not the key that sealed"), "says the key is wrong");
  CHECK(run(out, "%s store verify -d %s --key-file %s", sluice_bin, data_dir,
            key_path) == 1 &&
            file_has(out, "not the key"),
        "verify with a wrong key fails clearly");

  /* No key configured at all: refused too. */
  write_store_config(NULL);
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid < 0 && WIFEXITED(status) && WEXITSTATUS(status) == 5,
        "no key: status %d, want exit code 5", status);

  /* A flipped ciphertext byte: verify reports it. */
  write_key(KEY1 "\n", 0600);
  tamper();
  CHECK(run(out, "%s store verify -d %s --key-file %s", sluice_bin, data_dir,
            key_path) == 1 &&
            file_has(out, "CORRUPT"),
        "verify finds the tampered batch");
}

/* ---- clock (issue 26) -------------------------------------------------- */

SL_SCENARIO(clock) {
  sl_store_opts_t o;
  sl_store_t *st;
  sl_store_stream_stats_t ss;
  uint32_t id;
  pid_t pid;
  int port, status = 0;
  uint64_t deadline;

  admin_addr = "127.0.0.1:0";
  write_store_config("    ttl: 1h\n");
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid > 0, "daemon start, status %d", status);
  publish(port, 0, 1000);
  stop_daemon_ok();

  faketime = "+2d";
  pid = start_store_daemon(NULL, &port, &status);
  CHECK(pid > 0, "daemon start under libfaketime, status %d", status);
  deadline = now_ms() + 10000;
  while (!log_has("wall clock stepped forward by 172800.")) {
    CHECK(now_ms() < deadline, "no log line for the +2 d step");
    usleep(20000); /* polling the log, with a deadline */
  }
  CHECK(log_has("while sluice was stopped"), "step not named as while stopped");
  /* /v1/status shows it (curl runs outside libfaketime). */
  {
    char line[1024], out[400];
    const char *p = NULL;
    int aport = 0;
    FILE *f = fopen(log_path, "r");
    while (f && fgets(line, sizeof(line), f) && !aport)
      if ((p = strstr(line, "admin 127.0.0.1:0 (port ")))
        aport = atoi(p + strlen("admin 127.0.0.1:0 (port "));
    if (f)
      fclose(f);
    CHECK(aport > 0, "admin port not in the log");
    snprintf(out, sizeof(out), "%s/status.json", dir);
    CHECK(run(out, "curl -sf http://127.0.0.1:%d/v1/status", aport) == 0,
          "curl /v1/status");
    if (!file_has(out, "\"steps_forward\":1") ||
        !file_has(out, "\"last_step_while_stopped\":true") ||
        !file_has(out, "\"last_step_s\":172") ||
        !file_has(out, "\"open\":\"boot\"")) {
      snprintf(line, sizeof(line), "cat %s >&2", out);
      if (system(line) < 0)
        perror("system");
      CHECK(0, "/v1/status store.clock does not show the step");
    }
  }
  /* The store sweeps TTL every second: give it three sweeps to (wrongly)
   * expire something; an eviction is logged at the next tick. */
  deadline = now_ms() + 3000;
  while (now_ms() < deadline) {
    CHECK(!log_has("left the store undelivered"),
          "events expired after a forward step");
    usleep(50000);
  }
  stop_daemon_ok();
  faketime = NULL;

  sl_store_opts_init(&o);
  o.flags = SL_STORE_RDONLY;
  CHECK(sl_store_env_open(data_dir, &o, &st, NULL, 0) == 0, "open store");
  CHECK(sl_store_stream_lookup(st, "readings", &id) == 0, "stream");
  CHECK(sl_store_stream_stats(st, id, &ss) == 0, "stats");
  CHECK(ss.events == 1000 && ss.evicted_events[SL_STORE_REASON_TTL] == 0,
        "events %llu, expired %llu after a +2 d step",
        (unsigned long long)ss.events,
        (unsigned long long)ss.evicted_events[SL_STORE_REASON_TTL]);
  sl_store_env_close(st);
}

static int setup(int argc, char **argv) {
  (void)argc;
  snprintf(key_path, sizeof(key_path), "%s/store.keys", dir);
  if (strcmp(argv[2], "clock"))
    return 0;
#if defined(__SANITIZE_ADDRESS__)
  /* The daemon under test is built with ASan too, and ASan must come first
   * in the initial library list: an LD_PRELOADed libfaketime stops it at
   * start. These scenarios run in the normal build (make check). */
  fprintf(stderr, "skipped: libfaketime cannot be preloaded into an ASan "
                  "build of the daemon\n");
  return 77;
#endif
  static const char *const libs[] = {
      "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
      "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
      "/usr/lib/faketime/libfaketimeMT.so.1"};
  for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]) && !faketime_lib; i++)
    if (access(libs[i], R_OK) == 0)
      faketime_lib = libs[i];
  if (!faketime_lib) {
    fprintf(stderr, "skipped: libfaketime not installed (apt-get install "
                    "faketime)\n");
    return 77;
  }
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "store", NULL, setup);
}
