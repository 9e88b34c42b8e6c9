/*
 * Running under a supervisor (issue 16, docs/OPERATIONS.md): the real
 * daemon against a notify socket, a config directory laid out like a
 * Kubernetes ConfigMap volume, `sluice ctl`, and SIGTERM under load.
 *
 *   notify     READY=1 only once every listener accepts (a thread connects
 *              to each port the moment READY arrives), WATCHDOG=1 while
 *              healthy, none while the daemon is stopped (SIGSTOP) or while
 *              its store writer cannot commit (fsync held by
 *              tests/common/slowsync.c), RELOADING=1 + MONOTONIC_USEC then
 *              READY=1 on SIGHUP, STOPPING=1 on SIGTERM; '@' abstract socket
 *   cmswap     kubelet's ..data symlink swap applied without a restart and
 *              shown in /v1/status; a broken swap refused (old config runs,
 *              counted); `sluice ctl reload --wait-healthy 5s` exits 5 for
 *              it, 4 without the token, 6 when the daemon never runs the
 *              file ctl reads, 0 for a good one; the token is never
 *              printed; `sluice ctl status`
 *   editor     an editor's rename over the file and an in-place write, next
 *              to the daemon's own log in the same directory
 *   ctltls     `sluice ctl status` over the admin's TLS, trusting the
 *              daemon's certificate named in the config; a wrong CA: exit 3
 *   sigterm    SIGTERM while 4 HTTP and 2 native (libsluice) clients
 *              post continuously: exit 0
 *              within 10 s, `store verify` passes, every acknowledged event
 *              is in the dump
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "sluice/client.h"
#include "tests/common/daemon_fixture.h"

/* A preloaded library ahead of the sanitizer runtime is refused. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static const char *slowsync;
static char gate[400], held[420];

/* ---- helpers ------------------------------------------------------------ */

static int free_port(void) {
  struct sockaddr_in a = {.sin_family = AF_INET};
  socklen_t len = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0), port;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *)&a, &len) == 0,
        "free port");
  port = ntohs(a.sin_port);
  close(fd);
  return port;
}

static int can_connect(int port) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  int fd = socket(AF_INET, SOCK_STREAM, 0), ok;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
  close(fd);
  return ok;
}

static void sha256_hex(const char *text, char hex[65]) {
  unsigned char md[32];
  unsigned len = 0;
  EVP_Digest(text, strlen(text), md, &len, EVP_sha256(), NULL);
  for (int i = 0; i < 32; i++)
    snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* The file's text; valid until the next call. */
static char *slurp(const char *path) {
  static char *m;
  FILE *f = fopen(path, "rb");
  long n;
  free(m);
  CHECK(f, "open %s", path);
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  rewind(f);
  m = calloc(1, (size_t)n + 1);
  CHECK(fread(m, 1, (size_t)n, f) == (size_t)n, "read %s", path);
  fclose(f);
  return m;
}

/* Runs a shell command with stdout+stderr to out_path; its exit code. */
static int run(const char *out_path, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int run(const char *out_path, const char *fmt, ...) {
  char cmd[3000];
  va_list ap;
  int n, rc;
  va_start(ap, fmt);
  n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
  va_end(ap);
  snprintf(cmd + n, sizeof(cmd) - (size_t)n, " >%s 2>&1", out_path);
  rc = system(cmd);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* ---- the notify socket -------------------------------------------------- */

static int nfd = -1;
static char notify_name[108];

static void notify_open(void) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  snprintf(notify_name, sizeof(notify_name), "@sl-notify-test-%d-%ld",
           (int)getpid(), (long)now_ms());
  size_t len = strlen(notify_name);
  memcpy(a.sun_path, notify_name, len);
  a.sun_path[0] = 0; /* abstract */
  nfd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  CHECK(nfd >= 0 && bind(nfd, (struct sockaddr *)&a,
                         (socklen_t)(offsetof(struct sockaddr_un, sun_path) +
                                     len)) == 0,
        "bind the notify socket: %s", strerror(errno));
}

/* One datagram within timeout_ms into buf (NUL-terminated); 0 or -1. */
static int notify_recv(char *buf, size_t cap, int timeout_ms) {
  struct pollfd p = {.fd = nfd, .events = POLLIN};
  if (poll(&p, 1, timeout_ms) != 1)
    return -1;
  ssize_t n = recv(nfd, buf, cap - 1, 0);
  if (n < 0)
    return -1;
  buf[n] = 0;
  return 0;
}

/* Waits for a datagram containing needle (others are skipped); 0 or -1. */
static int notify_await(const char *needle, char *buf, size_t cap,
                        int timeout_ms) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  while (now_ms() < deadline)
    if (notify_recv(buf, cap, (int)(deadline - now_ms())) == 0 &&
        strstr(buf, needle))
      return 0;
  return -1;
}

/* WATCHDOG=1 datagrams in ms milliseconds. */
static int count_watchdog(int ms) {
  uint64_t deadline = now_ms() + (uint64_t)ms;
  char buf[512];
  int n = 0;
  while (now_ms() < deadline)
    if (notify_recv(buf, sizeof(buf), (int)(deadline - now_ms())) == 0 &&
        strstr(buf, "WATCHDOG=1"))
      n++;
  return n;
}

static void drain_notify(void) {
  char buf[512];
  while (notify_recv(buf, sizeof(buf), 0) == 0)
    ;
}

static int with_gate;
static void notify_env(void) {
  setenv("NOTIFY_SOCKET", notify_name, 1);
  setenv("WATCHDOG_USEC", "200000", 1); /* a ping every 100 ms */
  if (with_gate) {
    setenv("LD_PRELOAD", slowsync, 1);
    setenv("SLUICE_TEST_SYNC_GATE", gate, 1);
  }
}

/* The thread that checks the listeners the moment READY=1 arrives. */
static int p_native, p_http, p_admin;
static _Atomic int ready_seen, ready_listening, early_msgs;
static char first_msg[512];

static void *ready_watch(void *arg) {
  char buf[512];
  (void)arg;
  while (notify_recv(buf, sizeof(buf), 30000) == 0) {
    if (!strstr(buf, "READY=1")) {
      if (!early_msgs++)
        snprintf(first_msg, sizeof(first_msg), "%s", buf);
      continue;
    }
    ready_listening = can_connect(p_native) && can_connect(p_http) &&
                      can_connect(p_admin) && access(sock_path, F_OK) == 0;
    ready_seen = 1;
    break;
  }
  return NULL;
}

static void cleanup(void) {
  if (*gate)
    unlink(gate);
}

SL_SCENARIO(notify) {
  char buf[1024], extra[400];
  pthread_t th;
  int st;

  notify_open();
  p_native = free_port();
  p_http = free_port();
  p_admin = free_port();
  write_config_fmt("node:\n  id: test-node\n  data_dir: %s\n"
                   "listeners:\n  native:\n    tcp: \"127.0.0.1:%d\"\n"
                   "    unix: %s\n  http:\n    address: \"127.0.0.1:%d\"\n"
                   "admin:\n  address: \"127.0.0.1:%d\"\n"
                   "streams:\n  - name: readings\n",
                   data_dir, p_native, sock_path, p_http, p_admin);
  (void)extra;
  with_gate = slowsync && !daemon_sanitized() && !SANITIZED;
  pthread_create(&th, NULL, ready_watch, NULL);
  daemon_opts_t o = {.child = notify_env};
  pid_t pid = daemon_start(&o);
  pthread_join(th, NULL);
  CHECK(ready_seen, "no READY=1 on the notify socket");
  CHECK(!early_msgs, "a datagram before READY=1: %s", first_msg);
  CHECK(ready_listening,
        "READY=1 arrived before every listener accepted connections");

  /* Healthy: a ping every 100 ms. */
  int n = count_watchdog(1000);
  CHECK(n >= 3, "%d WATCHDOG=1 in 1 s while healthy (want >= 3)", n);

  /* Stuck (the whole process stopped): none. */
  kill(pid, SIGSTOP);
  drain_notify();
  n = count_watchdog(1000);
  kill(pid, SIGCONT);
  CHECK(n == 0, "%d WATCHDOG=1 while the daemon was stopped", n);
  n = count_watchdog(1000);
  CHECK(n >= 3, "%d WATCHDOG=1 in 1 s after SIGCONT (want >= 3)", n);

  /* Stuck (the store writer cannot commit; the loop runs): none. */
  if (with_gate) {
    FILE *g = fopen(gate, "w");
    CHECK(g, "gate");
    fclose(g);
    /* Answered only once the gate opens: sent, not waited for. */
    const char *req = "POST /v1/events HTTP/1.0\r\nContent-Type: "
                      "application/json\r\nContent-Length: 24\r\n\r\n"
                      "{\"source\":\"a\",\"value\":1}";
    int pfd = tcp_connect(p_http);
    send_all(pfd, req, strlen(req));
    uint64_t deadline = now_ms() + 10000;
    while (access(held, F_OK) != 0 && now_ms() < deadline)
      usleep(10000);
    CHECK(access(held, F_OK) == 0, "the commit never reached fsync");
    /* The first period after the hold may still see the last commit. */
    await_log("watchdog: not pinging: store writer made no progress", NULL, 0,
              5000);
    drain_notify();
    n = count_watchdog(1000);
    CHECK(n == 0, "%d WATCHDOG=1 while the store writer was held", n);
    CHECK(metric_strict("sluice_store_queue_depth") >= 0,
          "the loop answers while the writer is held");
    unlink(gate);
    close(pfd);
    n = count_watchdog(1000);
    CHECK(n >= 3, "%d WATCHDOG=1 after the writer went on (want >= 3)", n);
  } else
    printf("notify: no fsync gate (sanitizer build): writer-stuck part "
           "skipped\n");

  /* Reload: RELOADING=1 with MONOTONIC_USEC, then READY=1. */
  drain_notify();
  kill(pid, SIGHUP);
  CHECK(notify_await("RELOADING=1", buf, sizeof(buf), 5000) == 0,
        "no RELOADING=1 on SIGHUP");
  CHECK(strstr(buf, "MONOTONIC_USEC="), "RELOADING without MONOTONIC_USEC: %s",
        buf);
  CHECK(notify_await("READY=1", buf, sizeof(buf), 5000) == 0,
        "no READY=1 after the reload");

  /* SIGTERM: STOPPING=1, then a clean exit. */
  kill(pid, SIGTERM);
  CHECK(notify_await("STOPPING=1", buf, sizeof(buf), 5000) == 0,
        "no STOPPING=1 on SIGTERM");
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  printf("notify: READY after the listeners, WATCHDOG while healthy and "
         "none when stuck, RELOADING/READY, STOPPING\n");
}

/* ---- the ConfigMap swap ------------------------------------------------- */

static char cm_dir[280], cm_link[300];
static int cm_gen;
static char admin_token[80], token_hash[65];

/* The config text of generation g (broken: an invalid value). */
static void cm_text(char *out, size_t cap, int admin, const char *level,
                    int broken) {
  snprintf(out, cap,
           "node:\n  id: test-node\n  data_dir: %s\n"
           "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
           "  http:\n    address: \"127.0.0.1:0\"\n"
           "admin:\n  address: \"127.0.0.1:%d\"\n  token_sha256: %s\n"
           "reload:\n  watch: true\n"
           "log:\n  level: %s\n"
           "limits:\n  max_connections: %s\n"
           "streams:\n  - name: readings\n",
           data_dir, admin, token_hash, level, broken ? "lots" : "100");
}

/* Publishes text as kubelet does: a new timestamped directory, a new
 * ..data symlink renamed over the old one, the old directory removed. */
static void cm_publish(const char *text) {
  char ts[500], tmp[500], data[500], file[600], old[500] = "";
  ssize_t n;
  snprintf(data, sizeof(data), "%s/..data", cm_dir);
  if ((n = readlink(data, old, sizeof(old) - 1)) > 0)
    old[n] = 0;
  snprintf(ts, sizeof(ts), "%s/..2026_12_07_17_00_%02d.%09d", cm_dir, cm_gen,
           cm_gen);
  CHECK(mkdir(ts, 0755) == 0, "mkdir %s", ts);
  snprintf(file, sizeof(file), "%s/sluice.yaml", ts);
  FILE *f = fopen(file, "w");
  CHECK(f && fputs(text, f) >= 0 && fclose(f) == 0, "write %s", file);
  chmod(file, 0644);
  snprintf(tmp, sizeof(tmp), "%s/..data_tmp", cm_dir);
  snprintf(ts, sizeof(ts), "..2026_12_07_17_00_%02d.%09d", cm_gen, cm_gen);
  CHECK(symlink(ts, tmp) == 0, "symlink %s", tmp);
  CHECK(rename(tmp, data) == 0, "rename ..data_tmp over ..data");
  if (*old) {
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s/%s'", cm_dir, old);
    CHECK(system(cmd) == 0, "remove %s", old);
  }
  cm_gen++;
}

/* /v1/status's config object fields as text. */
static void status_config(char *buf, size_t cap) {
  int code =
      http_req(admin_port, "GET", "/v1/status", NULL, NULL, NULL, buf, cap);
  CHECK(code == 200, "/v1/status: %d", code);
}

static void await_status(const char *a, const char *b, int timeout_ms) {
  char buf[65536];
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    status_config(buf, sizeof(buf));
    if (strstr(buf, a) && (!b || strstr(buf, b)))
      return;
    CHECK(now_ms() < deadline, "/v1/status never showed %s %s: %s", a,
          b ? b : "", buf);
    usleep(50000);
  }
}

SL_SCENARIO(cmswap) {
  char text[2048], sha1[65], sha2[65], sha3[65], sha4[65], want[200],
      want2[200], buf[65536], out[500], ctl[1200];
  unsigned char rnd[16];
  int admin = free_port(), rc;

  /* The admin token and its hash in the config. */
  FILE *ur = fopen("/dev/urandom", "rb");
  CHECK(ur && fread(rnd, 1, sizeof(rnd), ur) == sizeof(rnd), "urandom");
  fclose(ur);
  for (int i = 0; i < 16; i++)
    snprintf(admin_token + 2 * i, 3, "%02x", rnd[i]);
  sha256_hex(admin_token, token_hash);

  snprintf(cm_dir, sizeof(cm_dir), "%s/cm", dir);
  CHECK(mkdir(cm_dir, 0755) == 0, "mkdir %s", cm_dir);
  cm_text(text, sizeof(text), admin, "info", 0);
  sha256_hex(text, sha1);
  cm_publish(text);
  snprintf(cm_link, sizeof(cm_link), "%s/sluice.yaml", cm_dir);
  CHECK(symlink("..data/sluice.yaml", cm_link) == 0, "symlink sluice.yaml");
  memcpy(cfg_path, cm_link, sizeof(cfg_path));
  snprintf(out, sizeof(out), "%s/ctl.out", dir);

  pid_t pid = daemon_start(NULL);
  snprintf(want, sizeof(want), "\"sha256\":\"%s\",\"generation\":1", sha1);
  await_status(want, "\"watch\":true", 5000);

  /* A good swap: applied without a restart, visible in /v1/status. */
  cm_text(text, sizeof(text), admin, "debug", 0);
  sha256_hex(text, sha2);
  cm_publish(text);
  snprintf(want, sizeof(want), "\"sha256\":\"%s\",\"generation\":2", sha2);
  await_status(want, "\"result\":\"applied\"", 10000);
  CHECK(kill(pid, 0) == 0, "the daemon restarted or died");
  CHECK(metric_strict("sluice_config_reloads_total") == 1, "reloads_total %g",
        metric("sluice_config_reloads_total"));

  /* A broken swap: refused, the old config runs, counted. */
  cm_text(text, sizeof(text), admin, "info", 1);
  sha256_hex(text, sha3);
  cm_publish(text);
  snprintf(want2, sizeof(want2), "\"result\":\"refused\",\"sha256\":\"%s\"",
           sha3);
  await_status(want2, want, 10000); /* still generation 2, sha2 */
  CHECK(metric_strict("sluice_config_reload_errors_total") == 1,
        "reload_errors_total %g", metric("sluice_config_reload_errors_total"));
  CHECK(log_has("reload refused, keeping the running config"),
        "refusal not logged");
  CHECK(http_req(admin_port, "GET", "/readyz", NULL, NULL, NULL, buf,
                 sizeof(buf)) == 200,
        "not ready after a refused reload: %s", buf);
  CHECK(http_req(http_port, "POST", "/v1/events", "application/json",
                 "{\"source\":\"a\",\"value\":1}", NULL, buf,
                 sizeof(buf)) == 200,
        "ingest after a refused reload: %s", buf);

  /* sluice ctl against it: refused (5) read from the file, refused (5) by
   * the daemon through --admin, forbidden (4) without the token. */
  rc = run(out, "SLUICE_ADMIN_TOKEN=%s %s ctl -c %s reload --wait-healthy 5s",
           admin_token, sluice_bin, cm_link);
  CHECK(rc == 5, "ctl -c broken: exit %d: %s", rc, slurp(out));
  rc = run(out,
           "SLUICE_ADMIN_TOKEN=%s %s ctl --admin http://127.0.0.1:%d reload "
           "--wait-healthy 5s",
           admin_token, sluice_bin, admin);
  CHECK(rc == 5, "ctl --admin broken: exit %d: %s", rc, slurp(out));
  CHECK(strstr(slurp(out), "max_connections"), "ctl does not say why: %s",
        slurp(out));
  CHECK(!strstr(slurp(out), admin_token), "ctl printed the token");
  rc = run(out,
           "env -u SLUICE_ADMIN_TOKEN %s ctl --admin http://127.0.0.1:%d "
           "reload",
           sluice_bin, admin);
  CHECK(rc == 4, "ctl without a token: exit %d: %s", rc, slurp(out));

  /* A good one: ctl applies it and exits 0 once it runs, ready, healthy.
   * Published while the watch may apply it first: either way ctl sees
   * sha4 running. */
  cm_text(text, sizeof(text), admin, "warn", 0);
  sha256_hex(text, sha4);
  cm_publish(text);
  char tokfile[500];
  snprintf(tokfile, sizeof(tokfile), "%s/admin.token", dir);
  FILE *tf = fopen(tokfile, "w");
  CHECK(tf && fprintf(tf, "%s\n", admin_token) > 0 && fclose(tf) == 0,
        "token file");
  /* The file ctl reads is not the one the daemon runs (a ConfigMap not
   * yet propagated to the pod): applied, but never the wanted one: 6. */
  char lagging[500];
  snprintf(lagging, sizeof(lagging), "%s/lagging.yaml", dir);
  FILE *lf = fopen(lagging, "w");
  CHECK(lf && fprintf(lf, "%s# not yet delivered\n", text) > 0 &&
            fclose(lf) == 0,
        "lagging file");
  chmod(lagging, 0644);
  rc = run(out,
           "%s ctl -c %s --admin http://127.0.0.1:%d --token-file %s reload "
           "--wait-healthy 1s",
           sluice_bin, lagging, admin, tokfile);
  CHECK(rc == 6 && strstr(slurp(out), "not healthy within"),
        "ctl waiting for a config the daemon does not have: exit %d: %s", rc,
        slurp(out));
  /* The token from admin.token beside the config (a hook has no shell). */
  char near[400];
  snprintf(near, sizeof(near), "%s/admin.token", cm_dir);
  CHECK(rename(tokfile, near) == 0, "move the token file");
  rc = run(out,
           "env -u SLUICE_ADMIN_TOKEN %s ctl -c %s reload --wait-healthy 5s",
           sluice_bin, cm_link);
  CHECK(rc == 0, "ctl good: exit %d: %s", rc, slurp(out));
  CHECK(!strstr(slurp(out), admin_token), "ctl printed the token");
  snprintf(want, sizeof(want), "\"sha256\":\"%s\"", sha4);
  await_status(want, NULL, 1000);
  snprintf(ctl, sizeof(ctl), "%s ctl -c %s status", sluice_bin, cm_link);
  rc = run(out, "%s", ctl);
  CHECK(rc == 0 && strstr(slurp(out), "ready: yes") && strstr(slurp(out), sha4),
        "ctl status: exit %d: %s", rc, slurp(out));
  CHECK(kill(pid, 0) == 0, "the daemon restarted or died");
  stop_daemon_ok();
  printf("cmswap: ..data swap applied (generation 2) without a restart, a "
         "broken one refused and the old one kept, ctl 5/5/4/6/0\n");
}

/* ---- an editor's writes ------------------------------------------------ */

/* The generation and the file's hash as /v1/status must show them. */
static void await_file_applied(int generation) {
  char sha[65], want[200];
  sha256_hex(slurp(cfg_path), sha);
  snprintf(want, sizeof(want), "\"sha256\":\"%s\",\"generation\":%d", sha,
           generation);
  await_status(want, NULL, 10000);
}

SL_SCENARIO(editor) {
  /* The daemon's log and socket share the directory: their writes must
   * not hold the reload back. */
  write_config("reload:\n  watch: true\nlog:\n  level: info\n");
  pid_t pid = daemon_start(NULL);
  await_file_applied(1);
  /* Written to a temporary file and renamed over (vim, sed -i, Ansible). */
  write_config("reload:\n  watch: true\nlog:\n  level: debug\n");
  await_file_applied(2);
  /* Written in place. */
  append_config("# edited in place\n");
  await_file_applied(3);
  CHECK(metric_strict("sluice_config_reloads_total") == 2, "reloads_total %g",
        metric("sluice_config_reloads_total"));
  CHECK(kill(pid, 0) == 0, "the daemon restarted or died");
  stop_daemon_ok();
  printf("editor: rename-over and in-place writes applied\n");
}

/* ---- ctl over TLS ---------------------------------------------------------
 */

SL_SCENARIO(ctltls) {
  char out[500], crt[400], key[400], other[400], okey[400];
  int admin = free_port(), rc;

  snprintf(crt, sizeof(crt), "%s/admin.crt", dir);
  snprintf(key, sizeof(key), "%s/admin.key", dir);
  snprintf(other, sizeof(other), "%s/other.crt", dir);
  snprintf(okey, sizeof(okey), "%s/other.key", dir);
  snprintf(out, sizeof(out), "%s/ctl.out", dir);
  for (int i = 0; i < 2; i++) {
    rc = run(out,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -days 1 -subj /CN=localhost -keyout %s -out %s",
             i ? okey : key, i ? other : crt);
    CHECK(rc == 0, "openssl req: %s", slurp(out));
  }
  chmod(key, 0600);
  write_config_fmt("node:\n  id: test-node\n  data_dir: %s\n"
                   "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
                   "admin:\n  address: \"127.0.0.1:%d\"\n"
                   "  tls:\n    cert: %s\n    key: %s\n"
                   "streams:\n  - name: readings\n",
                   data_dir, admin, crt, key);
  daemon_start(NULL);
  /* The daemon's own certificate (from the config) is trusted as is. */
  rc = run(out, "%s ctl -c %s status", sluice_bin, cfg_path);
  CHECK(rc == 0 && strstr(slurp(out), "ready: yes") &&
            strstr(slurp(out), "\"generation\": 1"),
        "ctl status over TLS: exit %d: %s", rc, slurp(out));
  /* A certificate the caller does not trust: refused, exit 3. */
  rc = run(out, "%s ctl --admin https://127.0.0.1:%d --cacert %s status",
           sluice_bin, admin, other);
  CHECK(rc == 3 && strstr(slurp(out), "certificate"),
        "ctl with the wrong CA: exit %d: %s", rc, slurp(out));
  /* Plain HTTP against a TLS admin: no answer it understands, exit 3. */
  rc = run(out, "%s ctl --admin http://127.0.0.1:%d status", sluice_bin, admin);
  CHECK(rc == 3, "ctl over plain HTTP to TLS: exit %d: %s", rc, slurp(out));
  stop_daemon_ok();
  printf("ctltls: status over TLS with the pinned certificate; a wrong CA "
         "refused\n");
}

/* ---- SIGTERM under ingest load ------------------------------------------ */

static _Atomic int load_stop;
static _Atomic long acked_events;

/* One POST of three events; the status, or -1 when the daemon does not
 * answer (it is gone: the fixture's http_req would fail the test). */
static int post3(void) {
  static const char body[] = "{\"source\":\"a\",\"value\":1}\n"
                             "{\"source\":\"b\",\"value\":2}\n"
                             "{\"source\":\"c\",\"value\":3}";
  struct sockaddr_in a = {.sin_family = AF_INET,
                          .sin_port = htons((uint16_t)http_port)};
  char req[512], ans[2048];
  size_t got = 0;
  ssize_t r;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), code = -1, n;
  struct timeval tv = {20, 0};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
    goto done;
  n = snprintf(req, sizeof(req),
               "POST /v1/events?stream=readings HTTP/1.0\r\nContent-Type: "
               "application/json\r\nContent-Length: %zu\r\n\r\n%s",
               strlen(body), body);
  if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
    goto done;
  while (got < sizeof(ans) - 1 &&
         (r = recv(fd, ans + got, sizeof(ans) - 1 - got, 0)) > 0)
    got += (size_t)r;
  ans[got] = 0;
  if (sscanf(ans, "HTTP/1.%*d %d", &code) != 1)
    code = -1;
done:
  close(fd);
  return code;
}

static void *poster(void *arg) {
  (void)arg;
  while (!load_stop) {
    int code = post3();
    if (code == 200)
      acked_events += 3;
    else if (code < 0)
      break; /* the daemon is gone */
  }
  return NULL;
}

/* A native publisher (libsluice) on the TCP listener: readings until
 * load_stop; acknowledged events counted by its ack callback. */
static _Atomic long native_acked;

static void on_native_ack(sl_client_t *cl, uint64_t batch_id,
                          uint64_t first_offset, uint32_t count, int err,
                          void *opaque) {
  (void)cl;
  (void)batch_id;
  (void)first_offset;
  (void)opaque;
  if (err == 0)
    native_acked += count;
}

static void *native_poster(void *arg) {
  char tcp[64];
  sl_client_opts_t o;
  sl_client_t *cl;
  (void)arg;
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", native_port);
  sl_client_opts_init(&o);
  o.address = tcp;
  o.client_id = "dsupport-sigterm";
  o.max_batch_events = 200;
  o.linger_ms = 2;
  o.max_buffered_events = 5000;
  o.publish_timeout_ms = 100; /* never stuck once the daemon is gone */
  o.ack_cb = on_native_ack;
  if (sl_client_new(&o, &cl) != 0)
    return NULL;
  for (uint64_t i = 0; !load_stop; i++)
    sl_client_publish_reading(cl, "readings", "plant1/press/temp",
                              1700000000000000000ll + (int64_t)i, (double)i,
                              SLUICE__V1__QUALITY__QUALITY_GOOD, "C", NULL);
  sl_client_free(cl); /* unacked batches fail with SL_ECLOSED */
  return NULL;
}

SL_SCENARIO(sigterm) {
  pthread_t th[4], nth[2];
  char out[500];
  int st, rc;
  uint64_t t0, took;

  write_config(NULL);
  pid_t pid = start_daemon(NULL);
  for (int i = 0; i < 4; i++)
    pthread_create(&th[i], NULL, poster, NULL);
  for (int i = 0; i < 2; i++)
    pthread_create(&nth[i], NULL, native_poster, NULL);
  uint64_t deadline = now_ms() + 20000;
  while ((acked_events < 3000 || native_acked < 20000) && now_ms() < deadline)
    usleep(20000); /* polls the load's progress */
  CHECK(acked_events >= 3000 && native_acked >= 20000,
        "load too slow: %ld HTTP, %ld native acked", (long)acked_events,
        (long)native_acked);
  t0 = now_ms();
  kill(pid, SIGTERM);
  st = daemon_wait_exit(pid, 10000);
  took = now_ms() - t0;
  load_stop = 1;
  for (int i = 0; i < 4; i++)
    pthread_join(th[i], NULL);
  for (int i = 0; i < 2; i++)
    pthread_join(nth[i], NULL);
  long acked = acked_events + native_acked;
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && took <= 10000,
        "SIGTERM under load: status %d after %llu ms", st,
        (unsigned long long)took);
  daemon_pid = 0;
  snprintf(out, sizeof(out), "%s/verify.out", dir);
  rc = run(out, "%s store verify -d %s", sluice_bin, data_dir);
  CHECK(rc == 0, "store verify: exit %d: %s", rc, slurp(out));
  rc = run(out, "%s store dump -d %s --stream readings | wc -l", sluice_bin,
           data_dir);
  CHECK(rc == 0, "store dump: exit %d: %s", rc, slurp(out));
  long stored = atol(slurp(out));
  CHECK(stored >= acked, "%ld stored < %ld acknowledged", stored, acked);
  printf("sigterm: exit 0 after %llu ms under load; %ld acknowledged (%ld "
         "HTTP, %ld native), %ld stored, store verify ok\n",
         (unsigned long long)took, acked, (long)acked_events,
         (long)native_acked, stored);
}

static int setup(int argc, char **argv) {
  slowsync = argc > 3 ? argv[2] : NULL;
  snprintf(gate, sizeof(gate), "%s/sync.gate", dir);
  snprintf(held, sizeof(held), "%s.held", gate);
  fixture_on_fail = cleanup;
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "dsupport", "SLOWSYNC_SO", setup);
}
