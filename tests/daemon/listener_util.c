/* Helpers of listener_test.c: the daemon's lifetime and raw sockets. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sluice/v1/event.pb-c.h"
#include "tests/common/check.h"
#include "tests/daemon/listener_util.h"

const char *sluice_bin;
char dir[256], data_dir[400], cfg_path[300], sock_path[300], log_path[300],
    mnt[300];
int native_port, http_port, admin_port;
pid_t daemon_pid;

void check_fail_cleanup(void) {
  char cmd[400];
  if (daemon_pid > 0)
    kill(daemon_pid, SIGKILL);
  snprintf(cmd, sizeof(cmd), "tail -n 30 %s >&2", log_path);
  if (system(cmd) < 0)
    perror("system");
  if (*mnt)
    umount2(mnt, MNT_DETACH);
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
          "node:\n  id: test-node\n  data_dir: %s\n"
          "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n    unix: %s\n"
          "  http:\n    address: \"127.0.0.1:0\"\n"
          "admin:\n  address: \"127.0.0.1:0\"\n"
          "streams:\n  - name: readings\n%s",
          data_dir, sock_path, extra ? extra : "");
  fclose(f);
}

/* Starts the daemon; returns 0 once it logged "ready", or its exit status
 * (plus 1000) when it exited first. */
int start_daemon(void) {
  uint64_t deadline = now_ms() + 20000;
  unlink(log_path);
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(sluice_bin, sluice_bin, "run", "-c", cfg_path, (char *)NULL);
    _exit(127);
  }
  daemon_pid = pid;
  for (;;) {
    char line[1024];
    int st;
    FILE *f = fopen(log_path, "r");
    while (f && fgets(line, sizeof(line), f)) {
      const char *p = strstr(line, " ready: "), *hp, *ap;
      if (p && (p = strstr(p, "(port ")) &&
          sscanf(p, "(port %d)", &native_port) == 1) {
        hp = strstr(line, "http port ");
        ap = strstr(p + 1, "(port ");
        CHECK(hp && sscanf(hp, "http port %d", &http_port) == 1, "http");
        CHECK(ap && sscanf(ap, "(port %d)", &admin_port) == 1, "admin");
        fclose(f);
        return 0;
      }
    }
    if (f)
      fclose(f);
    if (waitpid(pid, &st, WNOHANG) == pid) {
      daemon_pid = 0;
      return 1000 + (WIFEXITED(st) ? WEXITSTATUS(st) : 128);
    }
    CHECK(now_ms() < deadline, "daemon not ready within 20 s");
    usleep(20000); /* polling the log for a condition, with a deadline */
  }
}

void stop_daemon(void) {
  int st;
  uint64_t deadline = now_ms() + 30000;
  kill(daemon_pid, SIGTERM);
  while (waitpid(daemon_pid, &st, WNOHANG) == 0) {
    CHECK(now_ms() < deadline, "daemon did not stop within 30 s");
    usleep(10000);
  }
  daemon_pid = 0;
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  /* In sanitizer builds a report is a failure whatever the exit status. */
  CHECK(log_count("Sanitizer") == 0 && log_count("runtime error:") == 0,
        "sanitizer report in the daemon log");
}

int log_count(const char *needle) {
  char line[4096];
  int n = 0;
  FILE *f = fopen(log_path, "r");
  while (f && fgets(line, sizeof(line), f))
    if (strstr(line, needle))
      n++;
  if (f)
    fclose(f);
  return n;
}

/* ---- sockets ------------------------------------------------------------ */

int tcp_connect(int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
        "connect %d: %s", port, strerror(errno));
  return fd;
}

void send_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    CHECK(w > 0, "send: %s", strerror(errno));
    c += w;
    n -= (size_t)w;
  }
}

/* Reads until EOF or timeout_ms; returns the bytes read, *eof set when the
 * peer closed (or reset). buf is NUL-terminated. */
size_t read_until(int fd, char *buf, size_t cap, int timeout_ms, int *eof) {
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  size_t n = 0;
  *eof = 0;
  for (;;) {
    int64_t left = (int64_t)(deadline - now_ms());
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (left <= 0 || poll(&p, 1, (int)left) <= 0)
      break;
    ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
    if (r <= 0) {
      *eof = 1;
      break;
    }
    n += (size_t)r;
    if (n + 1 >= cap)
      break;
  }
  buf[n] = 0;
  return n;
}

/* One HTTP exchange on a fresh connection: returns the status, or -1 when
 * no answer came within timeout_ms. The body (after the head) is in buf. */
int http_raw(int port, const char *req, size_t len, char *buf, size_t cap,
             int timeout_ms) {
  int fd = tcp_connect(port), code = -1, eof;
  send_all(fd, req, len);
  read_until(fd, buf, cap, timeout_ms, &eof);
  close(fd);
  if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
    return -1;
  return code;
}

int http_get(int port, const char *path, char *buf, size_t cap) {
  char req[512];
  int n =
      snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
  return http_raw(port, req, (size_t)n, buf, cap, 5000);
}

int http_post(const char *ctype, const char *extra, const char *body, char *buf,
              size_t cap) {
  char req[4096];
  int n = snprintf(req, sizeof(req),
                   "POST /v1/events HTTP/1.0\r\nHost: x\r\n%s%s%s%s"
                   "Content-Length: %zu\r\n\r\n%s",
                   ctype ? "Content-Type: " : "", ctype ? ctype : "",
                   ctype ? "\r\n" : "", extra ? extra : "", strlen(body), body);
  return http_raw(http_port, req, (size_t)n, buf, cap, 5000);
}

/* The value of one series on /metrics, or -1 when absent. */
double metric(const char *series) {
  static char buf[1 << 17];
  char want[300];
  CHECK(http_get(admin_port, "/metrics", buf, sizeof(buf)) == 200, "metrics");
  snprintf(want, sizeof(want), "\n%s ", series);
  const char *p = strstr(buf, want);
  return p ? atof(p + strlen(want)) : -1;
}

/* 1 when the daemon runs with AddressSanitizer (freed memory stays in its
 * quarantine) or ThreadSanitizer (shadow memory): RSS then says nothing
 * about what the daemon holds. */
int daemon_sanitized(void) {
  char path[64], line[512];
  int yes = getenv("ASAN_OPTIONS") || getenv("TSAN_OPTIONS");
  snprintf(path, sizeof(path), "/proc/%d/maps", (int)daemon_pid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof(line), f))
    if (strstr(line, "libasan") || strstr(line, "libtsan"))
      yes = 1;
  if (f)
    fclose(f);
  return yes;
}

long rss_kb(void) {
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)daemon_pid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "VmRSS: %ld", &kb) == 1)
      break;
  if (f)
    fclose(f);
  return kb;
}

void hello(sl_frame_buf_t *b, const char *id, const char *token) {
  sl_frame_encode_hello(b, SL_PROTOCOL_VERSION, id, token);
}

void publish_one(sl_frame_buf_t *b, uint64_t batch, double v) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT, *evp = &ev;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  rd.double_value = v;
  ev.source = "listener-test";
  ev.time_ns = 1700000000000000000ll;
  sl_frame_encode_publish(b, batch, "readings", &evp, 1, 1 << 20);
}
