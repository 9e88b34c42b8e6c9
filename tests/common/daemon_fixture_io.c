/*
 * The daemon fixture's sockets (daemon_fixture.h): TCP to the daemon's
 * listeners, HTTP/1.0 requests, raw exchanges and native frames.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "sluice/v1/event.pb-c.h"
#include "tests/common/daemon_fixture.h"

int tcp_connect(int port) {
  struct sockaddr_in sa = {.sin_family = AF_INET,
                           .sin_port = htons((uint16_t)port)};
  struct timeval tv = {.tv_sec = 20};
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0,
        "connect %d: %s", port, strerror(errno));
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  return fd;
}

void write_all(int fd, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t w = write(fd, p, n);
    CHECK(w > 0, "write: %s", strerror(errno));
    p += w;
    n -= (size_t)w;
  }
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

int http_req_raw(int port, const char *method, const char *path,
                 const char *ctype, const char *body, const char *extra,
                 char *buf, size_t cap) {
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
  return code;
}

int http_req(int port, const char *method, const char *path, const char *ctype,
             const char *body, const char *extra, char *buf, size_t cap) {
  int code = http_req_raw(port, method, path, ctype, body, extra, buf, cap);
  char *b = strstr(buf, "\r\n\r\n");
  if (b)
    memmove(buf, b + 4, strlen(b + 4) + 1);
  return code;
}

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
