/*
 * Listener robustness (issue 14, defects 3, 4, 5 and part of 8), end to end
 * against the real binary on loopback, with raw sockets so each test speaks
 * exactly the bytes a hostile peer would:
 *
 *   listener_test SLUICE preauth     4 MiB length prefixes before Hello
 *   listener_test SLUICE budget      node-wide in-flight byte budget
 *   listener_test SLUICE maxconns    max_connections over native + HTTP
 *   listener_test SLUICE loris       70 slow connections: /healthz answers
 *   listener_test SLUICE xsite       content types and Origin on HTTP
 *   listener_test SLUICE unixsock    no unlink of a non-socket; mode 0660
 *   listener_test SLUICE queryargs   ~950 query arguments answer 414
 *   listener_test SLUICE halfclose   acks reach a client that half-closed
 *   listener_test SLUICE logforge    newlines in peer strings stay escaped
 *   listener_test SLUICE diskfull    ENOSPC: logged once, counted, /readyz
 *
 * diskfull mounts a small tmpfs and exits 77 (skipped) without the right.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire/frame.h"
#include "sluice/v1/event.pb-c.h"
#include "tests/common/daemon_fixture.h"

static char mnt[300]; /* the diskfull tmpfs while mounted */

static void unmount_on_fail(void) {
  if (*mnt)
    umount2(mnt, MNT_DETACH);
}

/* ---- defect 3: memory before authentication ---------------------------- */

/* Before Hello a frame may be 4 KiB: a 4 MiB length prefix is refused at
 * once, before its bytes are buffered, even though it is under
 * limits.max_frame_bytes. */
SL_SCENARIO(preauth) {
  enum { N = 40 };
  static int fds[N];
  static char chunk[64 * 1024], buf[4096];
  uint8_t prefix[4] = {0, 0x40, 0, 0}; /* 4 MiB */
  int eof;

  /* A token: everything before Hello is unauthenticated. */
  FILE *f = fopen(cfg_path, "w");
  fprintf(f,
          "node:\n  id: test-node\n  data_dir: %s\n"
          "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
          "    token: s3cret\n  http:\n    address: \"127.0.0.1:0\"\n"
          "admin:\n  address: \"127.0.0.1:0\"\n"
          "streams:\n  - name: readings\n",
          data_dir);
  fclose(f);
  CHECK(daemon_try_start(NULL) == 0, "start");
  long rss0 = rss_kb();
  for (int i = 0; i < N; i++) {
    fds[i] = tcp_connect(native_port);
    send_all(fds[i], prefix, sizeof(prefix));
    /* The daemon may already have closed: ignore send errors here. */
    (void)send(fds[i], chunk, sizeof(chunk), MSG_NOSIGNAL);
  }
  for (int i = 0; i < N; i++) {
    size_t n = read_until(fds[i], buf, sizeof(buf), 3000, &eof);
    CHECK(eof,
          "connection %d still open 3 s after a 4 MiB prefix before "
          "hello (%zu bytes read)",
          i, n);
    CHECK(memmem(buf, n, "before hello", 12),
          "connection %d: the error frame names the pre-hello limit", i);
    close(fds[i]);
  }
  long rss1 = rss_kb();
  CHECK(rss1 - rss0 < 16 * 1024 || daemon_sanitized(),
        "RSS grew %ld KiB for %d unauthenticated "
        "connections",
        rss1 - rss0, N);
  /* An authenticated client still publishes frames larger than 4 KiB. */
  {
    sl_frame_buf_t b;
    sl_frame_buf_init(&b);
    hello(&b, "good", "s3cret");
    publish_one(&b, 1, 1.0);
    int fd = tcp_connect(native_port);
    send_all(fd, b.data, b.len);
    size_t n = read_until(fd, buf, sizeof(buf), 1000, &eof);
    CHECK(n > 0 && !memmem(buf, n, "SL_E", 4), "good client refused");
    close(fd);
    sl_frame_buf_close(&b);
  }
  stop_daemon_ok();
  printf("preauth: %d connections with 4 MiB prefixes refused before hello, "
         "RSS +%ld KiB\n",
         N, rss1 - rss0);
}

/* Native partial frames and HTTP bodies share one budget (default
 * limits.max_inflight_bytes, 32 MiB): over it, a request gets 503 +
 * Retry-After and a native frame an Error, and the buffered bytes never
 * exceed it (the reproduction: 40 connections each holding most
 * of a 4 MiB frame added 170 MB). */
SL_SCENARIO(budget) {
  enum { BUDGET = 32 << 20, NH = BUDGET / (4 << 20) + 1, N = 40 };
  static int hfds[NH], fds[N];
  static char body[(4 << 20) - 64 * 1024], buf[8192];
  sl_frame_buf_t b;
  int refused = 0, eof, got503 = 0;

  write_config_streams("  - name: readings\n", NULL);
  CHECK(daemon_try_start(NULL) == 0, "start");
  long rss0 = rss_kb();
  /* HTTP: each announced 4 MiB body is taken from the budget at once (but
   * its first 64 KiB); the last one does not fit in 32 MiB and is refused
   * before it sends a byte. */
  for (int i = 0; i < NH; i++) {
    char req[256];
    int n = snprintf(req, sizeof(req),
                     "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     "application/json\r\nContent-Length: %d\r\n\r\n",
                     4 << 20);
    hfds[i] = tcp_connect(http_port);
    send_all(hfds[i], req, (size_t)n);
  }
  for (int i = 0; i < NH; i++) {
    read_until(hfds[i], buf, sizeof(buf), i == 0 ? 1500 : 100, &eof);
    if (strstr(buf, " 503 ") && strstr(buf, "Retry-After: 1") &&
        strstr(buf, "max_inflight_bytes"))
      got503++;
  }
  CHECK(got503 == 1, "%d of %d pending 4 MiB requests refused, want 1", got503,
        NH);
  /* Each holds its body but the first 64 KiB (uncharged, so small
   * requests keep flowing). */
  CHECK(metric_strict("sluice_ingest_inflight_bytes") ==
            (double)(NH - 1) * ((4 << 20) - (64 << 10)),
        "%d requests hold the budget", NH - 1);
  for (int i = 0; i < NH; i++)
    close(hfds[i]);
  uint64_t deadline = now_ms() + 5000;
  while (metric_strict("sluice_ingest_inflight_bytes") != 0) {
    CHECK(now_ms() < deadline, "in-flight bytes not back to 0 after HTTP");
    usleep(20000);
  }
  /* Native: 40 connections each send most of a 4 MiB frame. */
  memset(body, 'x', sizeof(body));
  sl_put_be32((uint8_t *)body, (4u << 20) - 8); /* never completes */
  sl_frame_buf_init(&b);
  hello(&b, "big", NULL);
  for (int i = 0; i < N; i++) {
    struct timeval tv = {.tv_sec = 2};
    fds[i] = tcp_connect(native_port);
    setsockopt(fds[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    send_all(fds[i], b.data, b.len);
    for (size_t off = 0; off < sizeof(body);) {
      ssize_t w = send(fds[i], body + off, sizeof(body) - off, MSG_NOSIGNAL);
      if (w <= 0)
        break; /* refused and closed by the daemon */
      off += (size_t)w;
    }
  }
  double held = metric_strict("sluice_ingest_inflight_bytes");
  long rss1 = rss_kb();
  for (int i = 0; i < N; i++) {
    size_t n = read_until(fds[i], buf, sizeof(buf), 50, &eof);
    if (eof && memmem(buf, n, "max_inflight_bytes", 18))
      refused++;
  }
  CHECK(held >= 0 && held <= BUDGET, "in-flight bytes %.0f over 32 MiB", held);
  CHECK(refused >= N - NH, "only %d of %d native connections refused", refused,
        N);
  CHECK(rss1 - rss0 < 100 * 1024 || daemon_sanitized(), "RSS grew %ld KiB",
        rss1 - rss0);
  CHECK(
      metric_strict("sluice_ingest_budget_refusals_total{path=\"native\",what="
                    "\"bytes\"}") >= refused,
      "native refusals counted");
  CHECK(metric_strict("sluice_ingest_budget_refusals_total{path=\"http\",what="
                      "\"bytes\"}") == 1,
        "http refusal counted");
  /* Small batches keep flowing beside the exhausted budget. */
  {
    sl_frame_buf_t p;
    sl_frame_buf_init(&p);
    hello(&p, "small", NULL);
    publish_one(&p, 1, 2.0);
    int fd = tcp_connect(native_port);
    send_all(fd, p.data, p.len);
    size_t n = read_until(fd, buf, sizeof(buf), 1000, &eof);
    CHECK(n > 0 && !memmem(buf, n, "SL_E", 4), "small client refused");
    close(fd);
    sl_frame_buf_close(&p);
  }
  for (int i = 0; i < N; i++)
    close(fds[i]);
  deadline = now_ms() + 5000;
  while (metric_strict("sluice_ingest_inflight_bytes") != 0) {
    CHECK(now_ms() < deadline, "in-flight bytes not back to 0");
    usleep(20000);
  }
  sl_frame_buf_close(&b);
  stop_daemon_ok();
  printf("budget: HTTP request %d of 4 MiB 503; %d of %d large native frames "
         "refused, %.0f bytes held, RSS +%ld KiB\n",
         NH, refused, N, held, rss1 - rss0);
}

/* limits.max_connections counts native and HTTP connections together. */
SL_SCENARIO(maxconns) {
  static char buf[8192];
  sl_frame_buf_t b;
  int fds[3], eof, code;

  write_config_streams("  - name: readings\n",
                       "limits:\n  max_connections: 4\n");
  CHECK(daemon_try_start(NULL) == 0, "start");
  sl_frame_buf_init(&b);
  hello(&b, "c", NULL);
  for (int i = 0; i < 3; i++) {
    fds[i] = tcp_connect(native_port);
    send_all(fds[i], b.data, b.len);
    CHECK(read_until(fds[i], buf, sizeof(buf), 300, &eof) > 0 && !eof,
          "native %d accepted", i);
  }
  /* One HTTP connection kept alive: the fourth. */
  int hfd = tcp_connect(http_port);
  const char *req = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: "
                    "application/json\r\nContent-Length: 24\r\n\r\n"
                    "{\"source\":\"h\",\"value\":1}";
  send_all(hfd, req, strlen(req));
  read_until(hfd, buf, sizeof(buf), 1000, &eof);
  CHECK(strstr(buf, " 200 "), "http keep-alive request: %s", buf);
  /* A fifth connection, native or HTTP, is refused with a clear error. */
  int fd = tcp_connect(native_port);
  send_all(fd, b.data, b.len);
  size_t n = read_until(fd, buf, sizeof(buf), 3000, &eof);
  CHECK(eof && memmem(buf, n, "too many connections", 20),
        "fifth connection (native) not refused");
  close(fd);
  code = http_post("application/json", NULL, "{\"source\":\"h\",\"value\":1}",
                   buf, sizeof(buf));
  CHECK(code == 503 && strstr(buf, "max_connections"),
        "fifth connection (http): %d %s", code, buf);
  close(hfd);
  for (int i = 0; i < 3; i++)
    close(fds[i]);
  sl_frame_buf_close(&b);
  stop_daemon_ok();
  printf("maxconns: 3 native + 1 HTTP fill max_connections 4; the fifth is "
         "refused on either listener\n");
}

/* ---- defect 4: slow loris on admin (and HTTP ingest) ------------------- */

typedef struct loris {
  int port, n;
  int fds[80];
  _Atomic int stop;
} loris_t;

/* One byte every 2 s on each connection. */
static void *loris_main(void *arg) {
  loris_t *l = arg;
  const char *req = "GET /healthz HTTP/1.1\r\nHost: x\r\n";
  for (size_t k = 0; !atomic_load(&l->stop); k++) {
    for (int i = 0; i < l->n; i++)
      if (l->fds[i] >= 0 &&
          send(l->fds[i], req + k % strlen(req), 1, MSG_NOSIGNAL) < 0) {
        close(l->fds[i]);
        l->fds[i] = -1;
      }
    for (int t = 0; t < 20 && !atomic_load(&l->stop); t++)
      usleep(100000);
  }
  return NULL;
}

SL_SCENARIO(loris) {
  static char buf[8192];
  loris_t l = {.n = 70};
  pthread_t th;
  int worst = 0;

  write_config_streams("  - name: readings\n", NULL);
  CHECK(daemon_try_start(NULL) == 0, "start");
  l.port = admin_port;
  for (int i = 0; i < l.n; i++)
    l.fds[i] = tcp_connect(admin_port);
  pthread_create(&th, NULL, loris_main, &l);
  /* /healthz answers promptly all along, 70 slow connections or not. */
  uint64_t end = now_ms() + 8000;
  while (now_ms() < end) {
    uint64_t t0 = now_ms();
    int code = http_raw(admin_port, "GET /healthz HTTP/1.0\r\n\r\n", 25, buf,
                        sizeof(buf), 2000);
    int took = (int)(now_ms() - t0);
    CHECK(code == 200, "/healthz under slow loris: %d after %d ms", code, took);
    worst = took > worst ? took : worst;
    usleep(250000);
  }
  /* Every slow connection was shut although it kept sending (the sender
   * stops first: it owns the fds while it runs). */
  int open_ = 0, eof;
  atomic_store(&l.stop, 1);
  pthread_join(th, NULL);
  for (int i = 0; i < l.n; i++)
    if (l.fds[i] >= 0 &&
        (read_until(l.fds[i], buf, sizeof(buf), 10, &eof), !eof))
      open_++;
  CHECK(open_ == 0, "%d slow admin connections still open after 8 s", open_);
  CHECK(
      metric_strict("sluice_admin_connections_shut_total{reason=\"timeout\"}") +
              metric_strict(
                  "sluice_admin_connections_shut_total{reason=\"evicted\"}") >=
          l.n,
      "shut admin connections counted");
  /* HTTP ingest: a request trickled one byte at a time is cut at
   * limits.request_timeout (10 s), not at the 5 min idle timeout. */
  {
    int fd = tcp_connect(http_port);
    const char *req = "POST /v1/events HTTP/1.1\r\nHost: x\r\n";
    uint64_t t0 = now_ms();
    int closed = 0;
    for (size_t k = 0; now_ms() - t0 < 14000; k++) {
      if (send(fd, req + k % strlen(req), 1, MSG_NOSIGNAL) < 0) {
        closed = 1;
        break;
      }
      read_until(fd, buf, sizeof(buf), 500, &eof);
      if (eof) {
        closed = 1;
        break;
      }
    }
    CHECK(closed && now_ms() - t0 < 13000,
          "slow HTTP ingest request not cut at 10 s (%d ms)",
          (int)(now_ms() - t0));
    close(fd);
  }
  for (int i = 0; i < l.n; i++)
    if (l.fds[i] >= 0)
      close(l.fds[i]);
  stop_daemon_ok();
  printf("loris: /healthz answered within %d ms beside 70 slow connections; "
         "all cut\n",
         worst);
}

/* ---- defect 5: cross-site posts ----------------------------------------- */

SL_SCENARIO(xsite) {
  static char buf[8192];
  const char *ev = "{\"source\":\"x\",\"value\":1}";
  static const struct {
    const char *ctype, *extra;
    int want;
  } cases[] = {
      {"text/plain", NULL, 415},
      {"text/plain;charset=UTF-8", NULL, 415},
      {"application/x-www-form-urlencoded", NULL, 415},
      {"multipart/form-data; boundary=x", NULL, 415},
      {NULL, NULL, 415},
      {"application/jsonx", NULL, 415},
      {"application/json-seq", NULL, 415},
      {"application/json; charset=latin1", NULL, 415},
      {"application/json", NULL, 200},
      {"Application/JSON; charset=utf-8", NULL, 200},
      {"application/x-ndjson", NULL, 200},
      {"application/jsonl", NULL, 200},
      {"application/json", "Origin: https://evil.example\r\n", 403},
      {"application/json", "Origin: null\r\n", 403},
      {"application/json", "Origin: https://hmi.example\r\n", 403},
  };
  int code;

  /* Default config: no Origin is allowed. */
  write_config_streams("  - name: readings\n", NULL);
  CHECK(daemon_try_start(NULL) == 0, "start");
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    code = http_post(cases[i].ctype, cases[i].extra, ev, buf, sizeof(buf));
    CHECK(code == cases[i].want, "Content-Type '%s' %s: %d, want %d: %s",
          cases[i].ctype ? cases[i].ctype : "(none)",
          cases[i].extra ? cases[i].extra : "", code, cases[i].want, buf);
  }
  stop_daemon_ok();
  /* An allowed origin may post; others still may not. */

  FILE *f = fopen(cfg_path, "w");
  fprintf(f,
          "node:\n  id: test-node\n  data_dir: %s\n"
          "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
          "  http:\n    address: \"127.0.0.1:0\"\n"
          "    allowed_origins: [\"https://hmi.example\"]\n"
          "admin:\n  address: \"127.0.0.1:0\"\n"
          "streams:\n  - name: readings\n",
          data_dir);
  fclose(f);
  CHECK(daemon_try_start(NULL) == 0, "start");
  code = http_post("application/json", "Origin: https://hmi.example\r\n", ev,
                   buf, sizeof(buf));
  CHECK(code == 200, "allowed origin: %d %s", code, buf);
  code = http_post("application/json", "Origin: https://evil.example\r\n", ev,
                   buf, sizeof(buf));
  CHECK(code == 403, "other origin: %d %s", code, buf);
  stop_daemon_ok();
  printf("xsite: %zu content type / Origin cases answered as documented\n",
         sizeof(cases) / sizeof(cases[0]));
}

/* ---- defect 8 ------------------------------------------------------------ */

SL_SCENARIO(unixsock) {
  struct stat st;
  FILE *f;

  /* A regular file at the socket path is neither removed nor used. */
  f = fopen(sock_path, "w");
  fputs("precious\n", f);
  fclose(f);
  write_config_streams("  - name: readings\n", NULL);
  int rc = daemon_try_start(NULL);
  CHECK(rc == 1001, "daemon with a regular file at the socket path: %d", rc);
  CHECK(log_count("is not a socket") == 1, "the refusal names the reason");
  CHECK(stat(sock_path, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 9,
        "the file at the socket path was touched");
  unlink(sock_path);
  /* The socket's mode is 0660 whatever the umask. */
  mode_t old = umask(0);
  CHECK(daemon_try_start(NULL) == 0, "start");
  umask(old);
  CHECK(stat(sock_path, &st) == 0 && S_ISSOCK(st.st_mode), "socket");
  CHECK((st.st_mode & 0777) == 0660, "socket mode %04o with umask 0",
        (unsigned)(st.st_mode & 0777));
  stop_daemon_ok();
  /* An explicit mode is applied. */
  f = fopen(cfg_path, "w");
  fprintf(f,
          "node:\n  id: test-node\n  data_dir: %s\n"
          "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n    unix: %s\n"
          "    unix_mode: \"0600\"\n"
          "admin:\n  address: \"127.0.0.1:0\"\n"
          "streams:\n  - name: readings\n",
          data_dir, sock_path);
  fclose(f);
  old = umask(0);
  CHECK(daemon_try_start(NULL) == 0, "start");
  umask(old);
  CHECK(stat(sock_path, &st) == 0 && (st.st_mode & 0777) == 0600,
        "socket mode %04o, want 0600", (unsigned)(st.st_mode & 0777));
  stop_daemon_ok();
  printf("unixsock: regular file kept and refused; mode 0660 / 0600 with "
         "umask 0\n");
}

SL_SCENARIO(queryargs) {
  static char req[64 * 1024], buf[8192];
  size_t n;
  write_config_streams("  - name: readings\n", NULL);
  CHECK(daemon_try_start(NULL) == 0, "start");
  for (int nargs = 900; nargs <= 3000; nargs += 1050) {
    n = (size_t)snprintf(req, sizeof(req), "POST /v1/events?stream=readings");
    for (int i = 0; i < nargs; i++)
      n += (size_t)snprintf(req + n, sizeof(req) - n, "&a%d=1", i);
    n += (size_t)snprintf(req + n, sizeof(req) - n,
                          " HTTP/1.0\r\nContent-Type: application/json\r\n"
                          "Content-Length: 24\r\n\r\n"
                          "{\"source\":\"q\",\"value\":1}");
    int code = http_raw(http_port, req, n, buf, sizeof(buf), 3000);
    CHECK(code == 414, "%d query arguments: %d (-1: no answer in 3 s)", nargs,
          code);
    n = (size_t)snprintf(req, sizeof(req), "GET /healthz?");
    for (int i = 0; i < nargs; i++)
      n += (size_t)snprintf(req + n, sizeof(req) - n, "&");
    n += (size_t)snprintf(req + n, sizeof(req) - n, " HTTP/1.0\r\n\r\n");
    code = http_raw(admin_port, req, n, buf, sizeof(buf), 3000);
    CHECK(code == 414, "admin, %d query arguments: %d", nargs, code);
  }
  stop_daemon_ok();
  printf("queryargs: 900 and 1950 query arguments answer 414 at once\n");
}

/* A client that sends its batch and shuts its write side still gets the
 * Ack (native) and the response (HTTP): both were committed. */
SL_SCENARIO(halfclose) {
  static char buf[8192];
  sl_frame_buf_t b, in;
  sl_frame_arena_t *ar;
  int eof, acks = 0, oks = 0;

  write_config_streams("  - name: readings\n", NULL);
  CHECK(daemon_try_start(NULL) == 0, "start");
  CHECK(sl_frame_arena_new(1 << 16, &ar) == 0, "arena");
  sl_frame_buf_init(&b);
  sl_frame_buf_init(&in);
  for (int round = 0; round < 20; round++) {
    b.len = in.len = 0;
    hello(&b, "half", NULL);
    publish_one(&b, 7, round);
    int fd = tcp_connect(native_port);
    send_all(fd, b.data, b.len);
    shutdown(fd, SHUT_WR);
    size_t n = read_until(fd, buf, sizeof(buf), 3000, &eof);
    close(fd);
    CHECK(eof, "round %d: connection not closed after the ack", round);
    sl_frame_buf_reserve(&in, n);
    memcpy(in.data, buf, n);
    in.len = n;
    for (;;) {
      const uint8_t *body;
      size_t consumed, blen;
      const Sluice__V1__Frame *fr;
      if (sl_frame_parse(in.data, in.len, 1 << 20, &consumed, &body, &blen) <
              0 ||
          !consumed)
        break;
      if (sl_frame_decode(ar, body, blen, SL_FRAME_FROM_SERVER, &fr, NULL, 0) ==
              0 &&
          fr->kind_case == SLUICE__V1__FRAME__KIND_ACK &&
          fr->ack->batch_id == 7)
        acks++;
      sl_frame_buf_consume(&in, consumed);
    }
    const char *req = "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: "
                      "application/json\r\nContent-Length: 24\r\n\r\n"
                      "{\"source\":\"h\",\"value\":1}";
    fd = tcp_connect(http_port);
    send_all(fd, req, strlen(req));
    shutdown(fd, SHUT_WR);
    read_until(fd, buf, sizeof(buf), 3000, &eof);
    close(fd);
    if (strstr(buf, " 200 "))
      oks++;
  }
  CHECK(acks == 20, "native: %d of 20 half-closed clients got their ack", acks);
  CHECK(oks == 20, "http: %d of 20 half-closed clients got their 200", oks);
  sl_frame_buf_close(&b);
  sl_frame_buf_close(&in);
  sl_frame_arena_free(ar);
  stop_daemon_ok();
  printf("halfclose: 20 native acks and 20 HTTP answers after SHUT_WR\n");
}

/* Newlines and escapes in what a client names itself stay inside one log
 * line. */
SL_SCENARIO(logforge) {
  static char buf[8192];
  sl_frame_buf_t b;
  int eof;
  write_config_streams("  - name: readings\n",
                       "log:\n  level: debug\n  debug: [ingest, http]\n");
  CHECK(daemon_try_start(NULL) == 0, "start");
  sl_frame_buf_init(&b);
  hello(&b, "x\n2026-01-01T00:00:00.000Z error admin: FORGED\x1b[2J", NULL);
  int fd = tcp_connect(native_port);
  send_all(fd, b.data, b.len);
  read_until(fd, buf, sizeof(buf), 500, &eof);
  close(fd);
  /* The decode error quotes the client's key (with its newline). */
  CHECK(http_post("application/json", NULL,
                  "{\"source\":\"a\",\"x\\nFORGED2\":1}", buf,
                  sizeof(buf)) == 400,
        "bad key refused");
  uint64_t deadline = now_ms() + 5000;
  while (log_count("closed (0 in flight)") < 1) {
    CHECK(now_ms() < deadline, "close not logged");
    usleep(20000);
  }
  stop_daemon_ok();
  char line[4096];
  int forged = 0, escaped = 0;
  FILE *f = fopen(log_path, "r");
  while (f && fgets(line, sizeof(line), f)) {
    if (!strncmp(line, "2026-01-01", 10) || strchr(line, 0x1b) ||
        !strncmp(line, "FORGED2", 7))
      forged++;
    if (strstr(line, "x\\n2026-01-01"))
      escaped++;
  }
  if (f)
    fclose(f);
  CHECK(forged == 0, "%d forged log lines", forged);
  CHECK(escaped > 0, "the client id appears escaped");
  sl_frame_buf_close(&b);
  printf("logforge: peer strings with newlines and ESC logged escaped\n");
}

/* Disk full: the daemon answers 503, logs it once per episode, counts it,
 * and /readyz is 503 until a commit succeeds again. */
SL_SCENARIO(diskfull) {
  static char buf[1 << 16], body[8192];
  char filler[400], opts[64];
  int code = 0, i;

  snprintf(mnt, sizeof(mnt), "%s/mnt", dir);
  CHECK(mkdir(mnt, 0700) == 0, "mkdir");
  snprintf(opts, sizeof(opts), "size=%dk", 4096);
  if (mount("tmpfs", mnt, "tmpfs", 0, opts) < 0) {
    printf("diskfull: cannot mount a tmpfs (%s): skipped\n", strerror(errno));
    *mnt = 0;
    exit(77);
  }
  snprintf(data_dir, sizeof(data_dir), "%s/data", mnt);
  write_config_streams("  - name: readings\n",
                       "store:\n  budget_bytes: 64MiB\n");
  CHECK(daemon_try_start(NULL) == 0, "start");
  /* Fill the rest of the file system. */
  snprintf(filler, sizeof(filler), "%s/filler", mnt);
  int fd = open(filler, O_WRONLY | O_CREAT, 0600);
  memset(buf, 'f', sizeof(buf));
  while (write(fd, buf, sizeof(buf)) > 0)
    ;
  close(fd);
  size_t n = 0;
  for (int k = 0; k < 40; k++)
    n += (size_t)snprintf(body + n, sizeof(body) - n,
                          "{\"source\":\"disk/%03d/xxxxxxxxxxxxxxxxxxxxxxxxxxx"
                          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\",\"value\":"
                          "%d}\n",
                          k, k);
  for (i = 0; i < 2000; i++) {
    code = http_post("application/x-ndjson", NULL, body, buf, sizeof(buf));
    if (code == 503)
      break;
    CHECK(code == 200, "post %d: %d %s", i, code, buf);
  }
  CHECK(code == 503, "the store never refused (%d posts)", i);
  for (int k = 0; k < 5; k++)
    http_post("application/x-ndjson", NULL, body, buf, sizeof(buf));
  CHECK(http_get(admin_port, "/readyz", buf, sizeof(buf)) == 503 &&
            strstr(buf, "store refuses writes"),
        "/readyz while the disk is full: %s", buf);
  CHECK(metric_strict("sluice_store_write_errors_total{reason=\"ENOSPC\"}") >=
            6,
        "write errors counted");
  CHECK(log_count("store refuses writes") == 1,
        "logged %d times, want once per episode",
        log_count("store refuses writes"));
  unlink(filler);
  code = http_post("application/x-ndjson", NULL, body, buf, sizeof(buf));
  CHECK(code == 200, "after freeing space: %d %s", code, buf);
  CHECK(http_get(admin_port, "/readyz", buf, sizeof(buf)) == 200,
        "/readyz after recovery: %s", buf);
  CHECK(log_count("store accepts writes again") == 1, "recovery logged");
  stop_daemon_ok();
  CHECK(umount2(mnt, MNT_DETACH) == 0, "umount");
  *mnt = 0;
  printf("diskfull: 503 after %d posts, logged once, counted, /readyz 503 "
         "then 200\n",
         i);
}

static int setup(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fixture_on_fail = unmount_on_fail;
  return 0;
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "listener", NULL, setup);
}
