#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "daemon/admin.h"

/* Minimal HTTP/1.0 client: returns the status code, body into buf. */
static int http(uint16_t port, const char *method, const char *path, char *buf,
                size_t cap) {
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
  char req[256];
  size_t n = 0;
  ssize_t r;
  int fd = socket(AF_INET, SOCK_STREAM, 0), code = -1;
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
    goto out;
  snprintf(req, sizeof(req), "%s %s HTTP/1.0\r\nHost: x\r\n\r\n", method, path);
  if (write(fd, req, strlen(req)) < 0)
    goto out;
  while (n + 1 < cap && (r = read(fd, buf + n, cap - n - 1)) > 0)
    n += (size_t)r;
  buf[n] = 0;
  if (sscanf(buf, "HTTP/1.%*d %d", &code) != 1)
    code = -1;
  char *body = strstr(buf, "\r\n\r\n");
  if (body)
    memmove(buf, body + 4, strlen(body + 4) + 1);
out:
  close(fd);
  return code;
}

static char *status_json(void *opaque) {
  int *calls = opaque;
  char *s = malloc(64);
  (*calls)++;
  snprintf(s, 64, "{\"node\":\"n1\",\"calls\":%d}", *calls);
  return s;
}

static void test_endpoints(void **state) {
  sl_metrics_t *mx;
  sl_admin_t *adm;
  char err[128], buf[8192];
  int calls = 0;
  (void)state;
  assert_int_equal(sl_metrics_new(&mx), 0);
  sl_metric_add(sl_metrics_counter(mx, "sluice_test_total", "t", NULL), 42);
  assert_int_equal(sl_admin_start("127.0.0.1:0", mx, status_json, &calls, &adm,
                                  err, sizeof(err)),
                   0);
  uint16_t port = sl_admin_port(adm);
  assert_true(port > 0);

  assert_int_equal(http(port, "GET", "/healthz", buf, sizeof(buf)), 200);
  assert_int_equal(http(port, "GET", "/readyz", buf, sizeof(buf)), 503);
  assert_non_null(strstr(buf, "starting"));
  sl_admin_set_ready(adm, 1, NULL);
  assert_int_equal(http(port, "GET", "/readyz", buf, sizeof(buf)), 200);
  sl_admin_set_healthy(adm, 0, "store poisoned");
  assert_int_equal(http(port, "GET", "/healthz", buf, sizeof(buf)), 500);
  assert_non_null(strstr(buf, "store poisoned"));

  assert_int_equal(http(port, "GET", "/metrics", buf, sizeof(buf)), 200);
  assert_non_null(strstr(buf, "sluice_test_total 42\n"));
  assert_int_equal(http(port, "GET", "/v1/status", buf, sizeof(buf)), 200);
  assert_string_equal(buf, "{\"node\":\"n1\",\"calls\":1}");
  assert_int_equal(http(port, "GET", "/nope", buf, sizeof(buf)), 404);
  assert_int_equal(http(port, "POST", "/metrics", buf, sizeof(buf)), 405);

  sl_admin_stop(adm);
  sl_metrics_free(mx);
}

static void test_bad_address_and_busy_port(void **state) {
  sl_metrics_t *mx;
  sl_admin_t *adm, *adm2;
  char err[128], addr[64];
  (void)state;
  assert_int_equal(sl_metrics_new(&mx), 0);
  assert_int_equal(
      sl_admin_start("nonsense", mx, NULL, NULL, &adm, err, sizeof(err)),
      -EINVAL);
  assert_non_null(strstr(err, "nonsense"));
  assert_int_equal(
      sl_admin_start("127.0.0.1:99999", mx, NULL, NULL, &adm, err, sizeof(err)),
      -EINVAL);
  assert_int_equal(
      sl_admin_start("127.0.0.1:0", mx, NULL, NULL, &adm, err, sizeof(err)), 0);
  snprintf(addr, sizeof(addr), "127.0.0.1:%u", sl_admin_port(adm));
  assert_true(sl_admin_start(addr, mx, NULL, NULL, &adm2, err, sizeof(err)) <
              0);
  sl_admin_stop(adm);
  sl_metrics_free(mx);
}

static void test_addr_split(void **state) {
  char host[64], err[64];
  uint16_t port;
  (void)state;
  assert_int_equal(
      sl_addr_split("[::1]:80", host, sizeof(host), &port, err, sizeof(err)),
      0);
  assert_string_equal(host, "::1");
  assert_int_equal(port, 80);
  assert_int_equal(sl_addr_split("localhost:7000", host, sizeof(host), &port,
                                 err, sizeof(err)),
                   0);
  assert_string_equal(host, "localhost");
  assert_int_equal(port, 7000);
  assert_int_equal(
      sl_addr_split(":80", host, sizeof(host), &port, err, sizeof(err)),
      -EINVAL);
  assert_int_equal(
      sl_addr_split("h:", host, sizeof(host), &port, err, sizeof(err)),
      -EINVAL);
  assert_int_equal(
      sl_addr_split("h:8x", host, sizeof(host), &port, err, sizeof(err)),
      -EINVAL);
  assert_int_equal(
      sl_addr_split("[::1]80", host, sizeof(host), &port, err, sizeof(err)),
      -EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_endpoints),
      cmocka_unit_test(test_bad_address_and_busy_port),
      cmocka_unit_test(test_addr_split),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
