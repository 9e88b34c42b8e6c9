/*
 * Shared pieces of the daemon's end-to-end test programs: a private work
 * directory and config, starting the real binary and reading its ports
 * from the "ready" line, stopping it (a sanitizer report in its log is a
 * failure), raw HTTP requests and native frames. See dtest.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/daemon/dtest.h"

const char *sluice_bin;
char dir[256], data_dir[300], cfg_path[300], sock_path[300], log_path[300];

pid_t daemon_pid; /* killed when a check fails */

void check_fail_cleanup(void) {
  if (daemon_pid > 0)
    kill(daemon_pid, SIGKILL);
  char cmd[400];
  snprintf(cmd, sizeof(cmd), "tail -n 30 %s >&2", log_path);
  if (system(cmd) < 0)
    perror("system");
}

uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void write_config(const char *extra) {
  FILE *f = fopen(cfg_path, "w");
  CHECK(f, "open %s", cfg_path);
  fprintf(f,
          "node:\n"
          "  id: test-node\n"
          "  data_dir: %s\n"
          "listeners:\n"
          "  native:\n"
          "    tcp: \"127.0.0.1:0\"\n"
          "    unix: %s\n"
          "  http:\n"
          "    address: \"127.0.0.1:0\"\n"
          "admin:\n"
          "  address: \"127.0.0.1:0\"\n"
          "streams:\n"
          "  - name: readings\n"
          "  - name: inference\n"
          "%s",
          data_dir, sock_path, extra ? extra : "");
  fclose(f);
}

/* Starts the daemon, waits (bounded) for its "ready" line, returns the TCP
 * port through *port. */
int http_port, admin_port;

pid_t start_daemon(int *port) {
  pid_t pid;
  uint64_t deadline = now_ms() + 20000;
  unlink(log_path);
  pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(sluice_bin, sluice_bin, "run", "-c", cfg_path, (char *)NULL);
    _exit(127);
  }
  for (;;) {
    char line[1024];
    FILE *f = fopen(log_path, "r");
    while (f && fgets(line, sizeof(line), f)) {
      const char *p = strstr(line, " ready: "), *hp, *ap;
      if (p && (p = strstr(p, "(port ")) && sscanf(p, "(port %d)", port) == 1) {
        hp = strstr(line, "http port ");
        ap = strstr(p + 1, "(port ");
        CHECK(hp && sscanf(hp, "http port %d", &http_port) == 1, "http port");
        CHECK(ap && sscanf(ap, "(port %d)", &admin_port) == 1, "admin port");
        fclose(f);
        daemon_pid = pid;
        return pid;
      }
    }
    if (f)
      fclose(f);
    int st;
    daemon_pid = pid;
    CHECK(waitpid(pid, &st, WNOHANG) == 0, "daemon exited before ready");
    CHECK(now_ms() < deadline, "daemon not ready within 20 s");
    usleep(20000); /* polling the log for a condition, with a deadline */
  }
}

int stop_daemon(pid_t pid, int sig) {
  int st;
  uint64_t deadline = now_ms() + 30000;
  kill(pid, sig);
  while (waitpid(pid, &st, WNOHANG) == 0) {
    CHECK(now_ms() < deadline, "daemon did not exit within 30 s of signal %d",
          sig);
    usleep(10000);
  }
  daemon_pid = 0;
  /* In sanitizer builds the daemon reports to its log: a report is a
   * failure even when the exit status looks fine. */
  FILE *f = fopen(log_path, "r");
  char line[512];
  while (f && fgets(line, sizeof(line), f))
    CHECK(!strstr(line, "Sanitizer") && !strstr(line, "runtime error:"),
          "sanitizer report in the daemon log: %s", line);
  if (f)
    fclose(f);
  return st;
}

int http_req(int port, const char *method, const char *path, const char *ctype,
             const char *body, const char *extra, char *buf, size_t cap) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  char head[512];
  size_t n = 0, blen = body ? strlen(body) : 0;
  ssize_t r;
  int fd = socket(AF_INET, SOCK_STREAM, 0), code = -1;
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect %d",
        port);
  snprintf(head, sizeof(head),
           "%s %s HTTP/1.0\r\nHost: x\r\n%s%s%sContent-Length: %zu\r\n%s\r\n",
           method, path, ctype ? "Content-Type: " : "", ctype ? ctype : "",
           ctype ? "\r\n" : "", blen, extra ? extra : "");
  CHECK(write(fd, head, strlen(head)) == (ssize_t)strlen(head), "write");
  if (blen)
    CHECK(write(fd, body, blen) == (ssize_t)blen, "write body");
  while (n + 1 < cap && (r = read(fd, buf + n, cap - n - 1)) > 0)
    n += (size_t)r;
  buf[n] = 0;
  close(fd);
  if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
    code = -1;
  char *b = strstr(buf, "\r\n\r\n");
  if (b)
    memmove(buf, b + 4, strlen(b + 4) + 1);
  return code;
}

void write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    CHECK(w > 0, "write: %s", strerror(errno));
    p += w;
    n -= (size_t)w;
  }
}

/* Reads frames from fd until one of kind `want` arrives (bounded by the
 * socket's receive timeout). Returns 0, or -1 on EOF/timeout/error frame. */
int await_frame(int fd, sl_frame_buf_t *in, sl_frame_arena_t *ar,
                Sluice__V1__Frame__KindCase want) {
  for (;;) {
    const uint8_t *body;
    size_t consumed, blen;
    const Sluice__V1__Frame *fr;
    if (sl_frame_parse(in->data, in->len, 1 << 20, &consumed, &body, &blen) < 0)
      return -1;
    if (consumed) {
      int rc =
          sl_frame_decode(ar, body, blen, SL_FRAME_FROM_SERVER, &fr, NULL, 0);
      sl_frame_buf_consume(in, consumed);
      if (rc < 0 || fr->kind_case == SLUICE__V1__FRAME__KIND_ERROR)
        return -1;
      if (fr->kind_case == want)
        return 0;
      continue;
    }
    if (sl_frame_buf_reserve(in, 4096) < 0)
      return -1;
    ssize_t r = read(fd, in->data + in->len, in->cap - in->len);
    if (r <= 0)
      return -1;
    in->len += (size_t)r;
  }
}

int tcp_connect(int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  struct timeval tv = {.tv_sec = 20};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
        "connect: %s", strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

void dtest_init_dirs(void) {
  snprintf(dir, sizeof(dir), "%s/sl_daemon_XXXXXX",
           getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  CHECK(mkdtemp(dir), "mkdtemp");
  snprintf(data_dir, sizeof(data_dir), "%s/data", dir);
  snprintf(cfg_path, sizeof(cfg_path), "%s/sluice.yaml", dir);
  snprintf(sock_path, sizeof(sock_path), "%s/native.sock", dir);
  snprintf(log_path, sizeof(log_path), "%s/daemon.log", dir);
}

/* Polls /metrics (bounded: 10 s) until the series reads value. */
void await_metric(const char *series, int value) {
  char buf[1 << 16], want[256];
  uint64_t deadline = now_ms() + 10000;
  snprintf(want, sizeof(want), "%s %d\n", series, value);
  for (;;) {
    if (http_req(admin_port, "GET", "/metrics", NULL, NULL, NULL, buf,
                 sizeof(buf)) == 200 &&
        strstr(buf, want))
      return;
    CHECK(now_ms() < deadline, "metric never reached '%s'", want);
    usleep(20000);
  }
}
