/*
 * Admin server under hostile clients (issue 14, defect 4) and the helpers
 * the listeners use: sl_log_esc(), the storage-error readiness.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/admin.h"
#include "telemetry/log.h"

static int connect_to(uint16_t port) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
  return fd;
}

/* GET path; the status, or -1 when no answer came within timeout_ms. */
static int get(uint16_t port, const char *path, char *buf, size_t cap,
               int timeout_ms) {
  char req[256];
  size_t n = 0;
  int fd = connect_to(port), code = -1;
  snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
  assert_true(write(fd, req, strlen(req)) > 0);
  for (;;) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, timeout_ms) <= 0)
      break;
    ssize_t r = read(fd, buf + n, cap - n - 1);
    if (r <= 0)
      break;
    n += (size_t)r;
  }
  buf[n] = 0;
  close(fd);
  if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
    code = -1;
  return code;
}

static void test_log_esc(void **state) {
  char buf[32];
  (void)state;
  assert_string_equal(sl_log_esc(buf, sizeof(buf), "plant-gw_01"),
                      "plant-gw_01");
  assert_string_equal(sl_log_esc(buf, sizeof(buf), "a\nb\rc\td\\e"),
                      "a\\nb\\rc\\td\\\\e");
  assert_string_equal(sl_log_esc(buf, sizeof(buf), "\x1b[2J\x7f\xc3\xa9"),
                      "\\x1b[2J\\x7f\\xc3\\xa9");
  assert_string_equal(sl_log_esc(buf, sizeof(buf), NULL), "");
  /* Too long: cut on an escape boundary, marked, always terminated. */
  sl_log_esc(buf, sizeof(buf), "0123456789012345678901234567890123456789");
  assert_int_equal(strlen(buf), 31);
  assert_string_equal(buf + 28, "...");
  sl_log_esc(buf, 8, "\n\n\n\n");
  assert_string_equal(buf, "\\n\\n...");
}

static void test_store_error_readiness(void **state) {
  sl_metrics_t *mx;
  sl_admin_t *adm;
  char err[256], buf[1024];
  (void)state;
  assert_int_equal(sl_metrics_new(&mx), 0);
  assert_int_equal(
      sl_admin_start("127.0.0.1:0", mx, NULL, NULL, &adm, err, sizeof(err)), 0);
  sl_admin_set_ready(adm, 1, NULL);
  assert_int_equal(get(sl_admin_port(adm), "/readyz", buf, sizeof(buf), 2000),
                   200);
  sl_admin_set_store_error(adm, "store refuses writes: ENOSPC");
  assert_int_equal(get(sl_admin_port(adm), "/readyz", buf, sizeof(buf), 2000),
                   503);
  assert_non_null(strstr(buf, "ENOSPC"));
  /* Liveness is not readiness: the process is fine. */
  assert_int_equal(get(sl_admin_port(adm), "/healthz", buf, sizeof(buf), 2000),
                   200);
  sl_admin_set_store_error(adm, NULL);
  assert_int_equal(get(sl_admin_port(adm), "/readyz", buf, sizeof(buf), 2000),
                   200);
  sl_admin_stop(adm);
  sl_metrics_free(mx);
}

/* 70 connections that never finish their request: /healthz is still
 * answered at once (eviction), and they are all cut within the 5 s
 * deadline although they keep sending. */
static void test_slow_loris(void **state) {
  enum { N = 70 };
  int fds[N], open_ = 0;
  sl_metrics_t *mx;
  sl_admin_t *adm;
  char err[256], buf[1024];
  (void)state;
  assert_int_equal(sl_metrics_new(&mx), 0);
  assert_int_equal(
      sl_admin_start("127.0.0.1:0", mx, NULL, NULL, &adm, err, sizeof(err)), 0);
  for (int i = 0; i < N; i++) {
    fds[i] = connect_to(sl_admin_port(adm));
    assert_int_equal(send(fds[i], "G", 1, MSG_NOSIGNAL), 1);
  }
  assert_int_equal(get(sl_admin_port(adm), "/healthz", buf, sizeof(buf), 1000),
                   200);
  for (int round = 0; round < 7; round++) {
    for (int i = 0; i < N; i++)
      if (fds[i] >= 0 && send(fds[i], "E", 1, MSG_NOSIGNAL) < 0) {
        close(fds[i]);
        fds[i] = -1;
      }
    /* Probes keep passing while the loris keeps sending. */
    assert_int_equal(
        get(sl_admin_port(adm), "/healthz", buf, sizeof(buf), 1000), 200);
    struct timespec ts = {.tv_sec = 1};
    nanosleep(&ts, NULL); /* the attacker's pace, not a synchronisation */
  }
  for (int i = 0; i < N; i++) {
    if (fds[i] < 0)
      continue;
    struct pollfd p = {.fd = fds[i], .events = POLLIN};
    char c;
    if (poll(&p, 1, 0) == 0 || recv(fds[i], &c, 1, MSG_DONTWAIT) > 0)
      open_++;
    close(fds[i]);
  }
  assert_int_equal(open_, 0);
  sl_admin_stop(adm);
  sl_metrics_free(mx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_esc),
      cmocka_unit_test(test_store_error_readiness),
      cmocka_unit_test(test_slow_loris),
  };
  signal(SIGPIPE, SIG_IGN);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
