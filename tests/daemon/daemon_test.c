/*
 * End-to-end tests of `sluice run` with native ingest: the real binary, a
 * generated config, the C client library over TCP and a Unix socket, and
 * verification by opening the store read-only afterwards.
 *
 *   daemon_test SLUICE_BINARY roundtrip   publish, ack, SIGTERM, restart
 *   daemon_test SLUICE_BINARY kill9       kill -9 under load, in a loop
 *   daemon_test SLUICE_BINARY garbage     a bad client is cut off alone
 *
 * Rounds of kill9: SL_KILL_ROUNDS (default 100).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "wire/frame.h"
#include "sluice/client.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"
#include "tests/common/daemon_fixture.h"

#define PIPELINES_CONFIG                                                       \
  "  - name: readings-10s\n"                                                   \
  "pipelines:\n"                                                               \
  "  - name: clean\n"                                                          \
  "    match: {stream: readings, kinds: [reading]}\n"                          \
  "    steps:\n"                                                               \
  "      - filter: 'value < 0'\n"                                              \
  "        action: drop\n"                                                     \
  "      - deadband: \"0.5\"\n"                                                \
  "  - name: tenner\n"                                                         \
  "    match: {stream: readings}\n"                                            \
  "    steps:\n"                                                               \
  "      - aggregate: [count, mean, max]\n"                                    \
  "        window: 10s\n"                                                      \
  "        into: readings-10s\n"                                               \
  "        keep_raw: true\n"

/* ---- publishing -------------------------------------------------------- */

typedef struct pub {
  pthread_mutex_t lock;
  uint64_t acked_events, failed_events;
  /* batch_id -> first offset, for the kill -9 check. */
  uint64_t *first_offset; /* indexed by batch id, UINT64_MAX = not acked */
  size_t cap;
} pub_t;

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  pub_t *p = opaque;
  (void)cl;
  pthread_mutex_lock(&p->lock);
  if (err == 0) {
    p->acked_events += count;
    if (batch_id < p->cap)
      p->first_offset[batch_id] = first_offset;
  } else {
    p->failed_events += count;
  }
  pthread_mutex_unlock(&p->lock);
}

static sl_client_t *connect_client(const char *address, pub_t *p) {
  sl_client_opts_t o;
  sl_client_t *cl;
  sl_client_opts_init(&o);
  o.address = address;
  o.client_id = "daemon-test";
  o.max_batch_events = 500;
  o.linger_ms = 2;
  o.ack_cb = on_ack;
  o.opaque = p;
  CHECK(sl_client_new(&o, &cl) == 0, "client for %s", address);
  return cl;
}

static void pub_free(pub_t *p) {
  free(p->first_offset);
  pthread_mutex_destroy(&p->lock);
}

static void pub_init(pub_t *p, size_t cap) {
  memset(p, 0, sizeof(*p));
  pthread_mutex_init(&p->lock, NULL);
  p->cap = cap;
  p->first_offset = malloc(cap * sizeof(uint64_t));
  for (size_t i = 0; i < cap; i++)
    p->first_offset[i] = UINT64_MAX;
}

/* ---- verification ------------------------------------------------------ */

/* Reads the whole stream back; values[offset] = the reading's value. */
static uint64_t read_stream(const char *name, double **values) {
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint64_t n = 0, cap = 1024;
  int rc;

  CHECK(store_cursor(name, &st, &cur) == 0, "stream %s", name);
  *values = malloc(cap * sizeof(double));
  while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
    CHECK(rec.status == 0, "record status %d at %llu", rec.status,
          (unsigned long long)rec.first_offset);
    CHECK(rec.first_offset == n, "offsets not contiguous: %llu after %llu",
          (unsigned long long)rec.first_offset, (unsigned long long)n);
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "payload at %llu does not decode",
          (unsigned long long)rec.first_offset);
    CHECK(b->n_events == rec.count, "batch has %zu events, header says %llu",
          b->n_events, (unsigned long long)rec.count);
    for (size_t i = 0; i < b->n_events; i++) {
      if (n == cap)
        *values = realloc(*values, (cap *= 2) * sizeof(double));
      Sluice__V1__Event *ev = b->events[i];
      CHECK(ev->body_case == SLUICE__V1__EVENT__BODY_READING,
            "event %llu is not a reading", (unsigned long long)n);
      (*values)[n++] = ev->reading->double_value;
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  CHECK(rc == SL_ENOTFOUND, "cursor ended with %s", sl_strerror(rc));
  store_cursor_close(st, cur);
  return n;
}

/* ---- scenarios --------------------------------------------------------- */

static void publish_n(sl_client_t *cl, const char *stream, uint64_t from,
                      uint64_t n, uint64_t *batch_of) {
  char src[64];
  for (uint64_t i = from; i < from + n; i++) {
    uint64_t bid;
    snprintf(src, sizeof(src), "plant1/line%llu/press%02llu/temp",
             (unsigned long long)(i % 5), (unsigned long long)(i % 97));
    int rc = sl_client_publish_reading(
        cl, stream, src, 1700000000000000000ll + (int64_t)i, (double)i,
        SLUICE__V1__QUALITY__QUALITY_GOOD, "C", &bid);
    CHECK(rc == 0, "publish %llu: %s", (unsigned long long)i, sl_strerror(rc));
    if (batch_of)
      batch_of[i] = bid;
  }
}

SL_SCENARIO(roundtrip) {
  pub_t p;
  int port, st;
  char tcp[64], unx[320];
  const uint64_t N = 40000;
  double *values;

  pub_init(&p, 1);
  pid_t pid = start_daemon(&port);
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", port);
  snprintf(unx, sizeof(unx), "unix:%s", sock_path);
  /* A second daemon on the same store refuses to start, clearly. */
  {
    char cmd[900], out[400], line[600];
    snprintf(out, sizeof(out), "%s/second.log", dir);
    snprintf(cmd, sizeof(cmd), "%s run -c %s >%s 2>&1", sluice_bin, cfg_path,
             out);
    int rc = system(cmd);
    CHECK(WIFEXITED(rc) && WEXITSTATUS(rc) == 3,
          "second daemon exit status %d, want 3", rc);
    FILE *f = fopen(out, "r");
    int clear = 0;
    while (f && fgets(line, sizeof(line), f))
      if (strstr(line, "in use by another process (pid "))
        clear = 1;
    if (f)
      fclose(f);
    CHECK(clear, "second daemon's message names the holder");
  }
  sl_client_t *a = connect_client(tcp, &p), *b = connect_client(unx, &p);
  publish_n(a, "readings", 0, N / 2, NULL);
  CHECK(sl_client_flush(a, 30000) == 0, "flush tcp");
  publish_n(b, "readings", N / 2, N / 2, NULL);
  CHECK(sl_client_flush(b, 30000) == 0, "flush unix");
  CHECK(p.acked_events == N && p.failed_events == 0,
        "acked %llu failed %llu of %llu", (unsigned long long)p.acked_events,
        (unsigned long long)p.failed_events, (unsigned long long)N);
  sl_client_free(a);
  sl_client_free(b);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "SIGTERM exit status %d", st);

  CHECK(read_stream("readings", &values) == N, "event count");
  for (uint64_t i = 0; i < N; i++)
    CHECK(values[i] == (double)i, "offset %llu holds %g", (unsigned long long)i,
          values[i]);
  free(values);

  /* Restart: offsets continue where they stopped. */
  pid = start_daemon(&port);
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", port);
  a = connect_client(tcp, &p);
  publish_n(a, "readings", N, 1000, NULL);
  CHECK(sl_client_flush(a, 30000) == 0, "flush after restart");
  sl_client_free(a);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "second exit status %d", st);
  CHECK(read_stream("readings", &values) == N + 1000, "count after restart");
  for (uint64_t i = 0; i < N + 1000; i++)
    CHECK(values[i] == (double)i, "offset %llu holds %g after restart",
          (unsigned long long)i, values[i]);
  free(values);
  /* The store tools see the same: verify passes, dump has one JSON line
   * per event, each with an ingest time (the batch's append time). */
  {
    char cmd[800], line[2048];
    snprintf(cmd, sizeof(cmd), "%s store verify -d %s", sluice_bin, data_dir);
    FILE *f = popen(cmd, "r");
    int verified = 0;
    while (f && fgets(line, sizeof(line), f))
      if (strstr(line, "ok: ") && strstr(line, " 41000 events"))
        verified = 1;
    CHECK(f && pclose(f) == 0 && verified, "store verify");
    snprintf(cmd, sizeof(cmd), "%s store dump -d %s --stream readings",
             sluice_bin, data_dir);
    f = popen(cmd, "r");
    uint64_t lines = 0;
    while (f && fgets(line, sizeof(line), f)) {
      CHECK(strstr(line, "\"ingest_time_ns\":1") && strstr(line, "\"offset\":"),
            "dump line %llu: %s", (unsigned long long)lines, line);
      lines++;
    }
    CHECK(f && pclose(f) == 0, "store dump exit status");
    CHECK(lines == N + 1000, "dump printed %llu lines",
          (unsigned long long)lines);
  }
  pub_free(&p);
  printf("roundtrip: %llu events acked over tcp+unix, restart ok\n",
         (unsigned long long)(N + 1000));
}

SL_SCENARIO(kill9) {
  int rounds = getenv("SL_KILL_ROUNDS") ? atoi(getenv("SL_KILL_ROUNDS")) : 100;
  const uint64_t per_round = 20000;
  uint64_t total = (uint64_t)rounds * per_round, next = 0;
  uint64_t *batch_of = malloc(total * sizeof(uint64_t));
  uint64_t *round_base = malloc(((size_t)rounds + 1) * sizeof(uint64_t));
  pub_t *pubs = calloc((size_t)rounds, sizeof(pub_t));
  double *values;
  unsigned seed = (unsigned)time(NULL);
  int port;

  printf("kill9: %d rounds, seed %u\n", rounds, seed);
  srand(seed);
  for (int r = 0; r < rounds; r++) {
    pub_t *p = &pubs[r];
    char tcp[64];
    pub_init(p, per_round + 1);
    pid_t pid = start_daemon(&port);
    snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", port);
    sl_client_t *cl = connect_client(tcp, p);
    round_base[r] = next;
    /* Publish in slices and kill at a random point in between. */
    uint64_t kill_after = (uint64_t)(rand() % (int)per_round);
    for (uint64_t i = 0; i < per_round; i += 1000) {
      publish_n(cl, "readings", next, 1000, batch_of);
      next += 1000;
      if (i >= kill_after)
        break;
    }
    usleep((useconds_t)(rand() % 20000)); /* a random kill point */
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    daemon_pid = 0;
    sl_client_free(cl); /* unacked batches fail with SL_ECLOSED */
  }
  round_base[rounds] = next;

  /* Every acked event is in the store exactly where its ack said; nothing
   * appears twice; nothing was invented. */
  uint64_t n = read_stream("readings", &values), acked = 0;
  char *seen = calloc(next, 1);
  for (uint64_t off = 0; off < n; off++) {
    double v = values[off];
    CHECK(v >= 0 && v < (double)next && v == (double)(uint64_t)v,
          "invented value %g at %llu", v, (unsigned long long)off);
    CHECK(!seen[(uint64_t)v], "value %g stored twice", v);
    seen[(uint64_t)v] = 1;
  }
  for (int r = 0; r < rounds; r++) {
    pub_t *p = &pubs[r];
    for (uint64_t seq = round_base[r]; seq < round_base[r + 1]; seq++) {
      uint64_t bid = batch_of[seq];
      if (bid >= p->cap || p->first_offset[bid] == UINT64_MAX)
        continue; /* not acked: may or may not be there */
      /* Position within the batch: events of one batch are consecutive. */
      uint64_t first_seq = seq;
      while (first_seq > round_base[r] && batch_of[first_seq - 1] == bid)
        first_seq--;
      uint64_t off = p->first_offset[bid] + (seq - first_seq);
      CHECK(off < n && values[off] == (double)seq,
            "acked event %llu (batch %llu) missing at offset %llu",
            (unsigned long long)seq, (unsigned long long)bid,
            (unsigned long long)off);
      acked++;
    }
  }
  printf("kill9: %d rounds, %llu published, %llu acked, %llu stored, 0 "
         "acked-but-missing\n",
         rounds, (unsigned long long)next, (unsigned long long)acked,
         (unsigned long long)n);
  CHECK(acked > 0, "no event was ever acked: the test proved nothing");
  free(seen);
  free(values);
  for (int r = 0; r < rounds; r++)
    free(pubs[r].first_offset);
  free(pubs);
  free(round_base);
  free(batch_of);
}

/* A client that sends garbage gets an error frame and is disconnected,
 * while a well-behaved client on another connection is unaffected. */
SL_SCENARIO(garbage) {
  pub_t p;
  int port, st;
  char tcp[64];
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  uint8_t junk[] = {0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
  uint8_t reply[512];

  pub_init(&p, 1);
  pid_t pid = start_daemon(&port);
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", port);
  sl_client_t *good = connect_client(tcp, &p);
  publish_n(good, "readings", 0, 1000, NULL);

  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  CHECK(strlen(sock_path) < sizeof(sa.sun_path), "socket path too long");
  memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
  CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect unix");
  CHECK(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk), "write");
  /* Read until EOF: an error frame, then the server closes. */
  size_t got = 0;
  ssize_t r;
  while ((r = read(fd, reply + got, sizeof(reply) - got)) > 0)
    got += (size_t)r;
  close(fd);
  CHECK(got > 4, "no error frame before close (got %zu bytes)", got);
  CHECK(memmem(reply, got, "SL_EPROTO", 9) != NULL,
        "error frame names SL_EPROTO");

  publish_n(good, "readings", 1000, 1000, NULL);
  CHECK(sl_client_flush(good, 30000) == 0, "good client unaffected");
  CHECK(p.acked_events == 2000, "acked %llu",
        (unsigned long long)p.acked_events);
  sl_client_free(good);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  pub_free(&p);
  printf("garbage: bad client cut off, good client acked 2000\n");
}

/* Minimal HTTP/1.0 client: returns the status code; body into buf. */
/* HTTP ingest: 200 only after commit, every error status, and /metrics
 * passing promtool. */
SL_SCENARIO(http) {
  int port, st, code;
  char buf[65536], path[400];
  double *values;
  const char *json = "application/json";

  pid_t pid = start_daemon(&port);
  code = http_req(
      http_port, "POST", "/v1/events?stream=readings", json,
      "{\"source\":\"a\",\"value\":0}\n{\"source\":\"b\",\"value\":1}\n"
      "{\"source\":\"c\",\"value\":2,\"quality\":\"bad\"}",
      NULL, buf, sizeof(buf));
  CHECK(code == 200, "POST json lines: %d %s", code, buf);
  CHECK(strstr(buf, "\"first_offset\":0") && strstr(buf, "\"count\":3"),
        "ack body %s", buf);
  code = http_req(http_port, "POST", "/v1/events", json,
                  "[{\"source\":\"d\",\"value\":3}]", NULL, buf, sizeof(buf));
  CHECK(code == 200 && strstr(buf, "\"first_offset\":3"),
        "default stream is the first configured: %d %s", code, buf);
  code = http_req(http_port, "POST", "/v1/events", json, "{\"source\":", NULL,
                  buf, sizeof(buf));
  CHECK(code == 400 && strstr(buf, "invalid JSON"), "bad json: %d %s", code,
        buf);
  code = http_req(http_port, "POST", "/v1/events", json,
                  "{\"source\":\"a\",\"vaule\":1}", NULL, buf, sizeof(buf));
  CHECK(code == 400 && strstr(buf, "vaule"), "typo: %d %s", code, buf);
  code = http_req(http_port, "POST", "/v1/events", "image/png", "x", NULL, buf,
                  sizeof(buf));
  CHECK(code == 415, "content type: %d %s", code, buf);
  code = http_req(http_port, "POST", "/v1/events?stream=nope", json,
                  "{\"source\":\"a\",\"value\":1}", NULL, buf, sizeof(buf));
  CHECK(code == 404 && strstr(buf, "nope"), "unknown stream: %d %s", code, buf);
  code = http_req(http_port, "GET", "/v1/events", NULL, NULL, NULL, buf,
                  sizeof(buf));
  CHECK(code == 405, "GET: %d", code);
  /* Oversize: refused from the Content-Length before any body is read. */
  {
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)http_port)};
    const char *h = "POST /v1/events HTTP/1.0\r\nContent-Type: "
                    "application/json\r\nContent-Length: 999999999\r\n\r\n";
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    size_t n = 0;
    ssize_t r;
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect");
    CHECK(write(fd, h, strlen(h)) == (ssize_t)strlen(h), "write");
    while (n + 1 < sizeof(buf) &&
           (r = read(fd, buf + n, sizeof(buf) - n - 1)) > 0)
      n += (size_t)r;
    buf[n] = 0;
    close(fd);
    CHECK(strstr(buf, " 413 "), "oversize: %s", buf);
  }
  /* The daemon's own /metrics passes promtool and counts what happened. */
  code = http_req(admin_port, "GET", "/metrics", NULL, NULL, NULL, buf,
                  sizeof(buf));
  CHECK(code == 200, "metrics %d", code);
  CHECK(
      strstr(
          buf,
          "sluice_ingest_events_total{path=\"http\",stream=\"readings\"} 4\n"),
      "http events metric:\n%s", buf);
  /* Refusals are counted by reason: 400 x2, 405 and 415 are SL_EPROTO. */
  CHECK(strstr(buf, "sluice_ingest_rejects_total{path=\"http\",reason=\"SL_"
                    "EPROTO\"} 4\n") &&
            strstr(buf, "sluice_ingest_rejects_total{path=\"http\",reason="
                        "\"SL_ENOTFOUND\"} 1\n") &&
            strstr(buf, "sluice_ingest_rejects_total{path=\"http\",reason="
                        "\"SL_ETOOBIG\"} 1\n"),
        "rejects by reason:\n%s", buf);
  snprintf(path, sizeof(path), "%s/metrics.txt", dir);
  FILE *f = fopen(path, "w");
  CHECK(f, "metrics file");
  fputs(buf, f);
  fclose(f);
  if (access("/usr/bin/promtool", X_OK) == 0) {
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "/usr/bin/promtool check metrics < %s", path);
    CHECK(system(cmd) == 0, "promtool check metrics failed");
  } else {
    printf("http: promtool not installed, metrics lint not run\n");
  }
  code = http_req(admin_port, "GET", "/v1/status", NULL, NULL, NULL, buf,
                  sizeof(buf));
  CHECK(code == 200 && strstr(buf, "\"node_id\":\"test-node\""), "status %s",
        buf);
  code = http_req(admin_port, "GET", "/readyz", NULL, NULL, NULL, buf,
                  sizeof(buf));
  CHECK(code == 200, "readyz %d", code);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  CHECK(read_stream("readings", &values) == 4, "4 events stored");
  for (int i = 0; i < 4; i++)
    CHECK(values[i] == i, "offset %d holds %g", i, values[i]);
  free(values);
  printf("http: 4 events committed, error statuses and promtool ok\n");
}

/* ---- many connections and a slow loris -------------------------------- */

typedef struct loris {
  int port;
  int closed_by_server; /* 1 when the daemon cut it off */
  double seconds;       /* how long it lasted */
} loris_t;

/* Sends a valid hello, then a frame one byte every 200 ms: the daemon must
 * close it at the idle timeout (2 s here) although bytes keep coming. */
static void *slow_loris(void *arg) {
  loris_t *l = arg;
  sl_frame_buf_t b;
  uint8_t junk[64];
  uint64_t t0 = now_ms();
  int fd = tcp_connect(l->port);
  sl_frame_buf_init(&b);
  sl_frame_encode_hello(&b, SL_PROTOCOL_VERSION, "loris", NULL);
  write_all(fd, b.data, b.len);
  memset(junk, 0, sizeof(junk));
  junk[3] = 60; /* a 60-byte frame that never completes */
  for (size_t i = 0; i < sizeof(junk) && now_ms() - t0 < 15000; i++) {
    if (send(fd, &junk[i], 1, MSG_NOSIGNAL) < 0) {
      /* The daemon closed first and we wrote into the reset socket. */
      l->closed_by_server = errno == EPIPE || errno == ECONNRESET;
      break;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) > 0) {
      char tmp[512];
      ssize_t r;
      /* HelloAck, then (later) the idle Error frame and EOF. */
      while ((r = recv(fd, tmp, sizeof(tmp), MSG_DONTWAIT)) > 0)
        ;
      if (r == 0 || (r < 0 && errno == ECONNRESET)) {
        l->closed_by_server = 1;
        break;
      }
    }
  }
  l->seconds = (double)(now_ms() - t0) / 1000.0;
  close(fd);
  sl_frame_buf_close(&b);
  return NULL;
}

SL_SCENARIO(conns) {
  enum { N = 1000 };
  static int fds[N];
  int port, st;
  char buf[1 << 16];
  sl_frame_buf_t out, in;
  sl_frame_arena_t *ar;
  pthread_t th;
  loris_t l = {0};
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT, *evp = &ev;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  double *values;

  pid_t pid = start_daemon(&port);
  l.port = port;
  pthread_create(&th, NULL, slow_loris, &l);
  sl_frame_buf_init(&out);
  sl_frame_buf_init(&in);
  CHECK(sl_frame_arena_new(1 << 16, &ar) == 0, "arena");
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  ev.source = "conn";
  /* Open all N, each with a hello and one publish in flight. */
  for (int i = 0; i < N; i++) {
    fds[i] = tcp_connect(port);
    out.len = 0;
    rd.double_value = i;
    ev.time_ns = i;
    sl_frame_encode_hello(&out, SL_PROTOCOL_VERSION, "many", NULL);
    sl_frame_encode_publish(&out, 1, "readings", &evp, 1, 1 << 20);
    write_all(fds[i], out.data, out.len);
  }
  /* Every connection gets its HelloAck and Ack while all N are open. */
  for (int i = 0; i < N; i++) {
    in.len = 0;
    CHECK(await_frame(fds[i], &in, ar, SLUICE__V1__FRAME__KIND_HELLO_ACK) == 0,
          "connection %d: no hello ack", i);
    CHECK(await_frame(fds[i], &in, ar, SLUICE__V1__FRAME__KIND_ACK) == 0,
          "connection %d: no ack", i);
  }
  CHECK(http_req(admin_port, "GET", "/metrics", NULL, NULL, NULL, buf,
                 sizeof(buf)) == 200,
        "metrics");
  const char *g = strstr(buf, "sluice_ingest_connections{path=\"native\"} ");
  CHECK(g && atoi(g + strlen("sluice_ingest_connections{path=\"native\"} ")) >=
                 N,
        "connections gauge below %d", N);
  for (int i = 0; i < N; i++)
    close(fds[i]);
  pthread_join(th, NULL);
  CHECK(l.closed_by_server, "slow loris was not cut off (lasted %.1f s)",
        l.seconds);
  CHECK(l.seconds < 8, "slow loris lasted %.1f s with a 2 s idle timeout",
        l.seconds);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  uint64_t n = read_stream("readings", &values);
  CHECK(n == N, "%llu events stored, want %d", (unsigned long long)n, N);
  char *seen = calloc(N, 1);
  for (uint64_t i = 0; i < n; i++) {
    CHECK(values[i] >= 0 && values[i] < N && !seen[(int)values[i]],
          "bad or duplicate value %g", values[i]);
    seen[(int)values[i]] = 1;
  }
  free(seen);
  free(values);
  sl_frame_arena_free(ar);
  sl_frame_buf_close(&out);
  sl_frame_buf_close(&in);
  printf("conns: %d concurrent connections acked; slow loris cut off after "
         "%.1f s\n",
         N, l.seconds);
}

/* ---- a slow reader ----------------------------------------------------- */

static long daemon_rss_anon_kb(pid_t pid) {
  char path[64], line[256];
  long kb = -1;
  snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
  FILE *f = fopen(path, "r");
  while (f && fgets(line, sizeof(line), f))
    if (sscanf(line, "RssAnon: %ld", &kb) == 1)
      break;
  if (f)
    fclose(f);
  return kb;
}

/* A client pipelines publishes and never reads its acks. The daemon must
 * stop reading it once its unsent acks pile up (so it cannot make the daemon
 * buffer without bound), while another client is served normally. */
SL_SCENARIO(slowreader) {
  pub_t p;
  int port, st, blocked = 0;
  char buf[1 << 16];
  sl_frame_buf_t out;
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT, *evp = &ev;
  Sluice__V1__Reading rd = SLUICE__V1__READING__INIT;
  uint64_t sent = 0, deadline;

  pub_init(&p, 1);
  pid_t pid = start_daemon(&port);
  int fd = tcp_connect(port);
  int small = 4096;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  sl_frame_buf_init(&out);
  sl_frame_encode_hello(&out, SL_PROTOCOL_VERSION, "slow-reader", NULL);
  ev.body_case = SLUICE__V1__EVENT__BODY_READING;
  ev.reading = &rd;
  ev.source = "slow";
  rd.value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
  /* Write until the daemon stops reading us (the socket stays full). */
  deadline = now_ms() + 60000;
  size_t off = 0;
  uint64_t last_progress = now_ms();
  while (now_ms() < deadline) {
    if (off == out.len) {
      out.len = 0;
      off = 0;
      for (int i = 0; i < 256; i++) {
        rd.double_value = (double)sent;
        sl_frame_encode_publish(&out, ++sent, "readings", &evp, 1, 1 << 20);
      }
    }
    ssize_t w = write(fd, out.data + off, out.len - off);
    if (w > 0) {
      off += (size_t)w;
      last_progress = now_ms();
      continue;
    }
    CHECK(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "write: %s",
          strerror(errno));
    /* Blocked for a whole second: the daemon has stopped reading us. */
    if (now_ms() - last_progress > 1000) {
      blocked = 1;
      break;
    }
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    poll(&pf, 1, 100);
  }
  CHECK(blocked,
        "the daemon kept reading a client that never reads (%llu "
        "publishes sent)",
        (unsigned long long)sent);
  long rss = daemon_rss_anon_kb(pid);
  /* Under ASan freed memory sits in its quarantine (256 MB by default) and
   * every byte has shadow: its RSS says nothing about what sluice holds
   * (one CI run: 213 MB); the bound is for the plain build. */
  CHECK(rss > 0 && (rss < 64 * 1024 || daemon_sanitized()),
        "daemon anon RSS %ld kB with a slow reader", rss);
  /* Another client is unaffected. */
  char tcp[64];
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", port);
  sl_client_t *good = connect_client(tcp, &p);
  publish_n(good, "inference", 0, 5000, NULL);
  CHECK(sl_client_flush(good, 30000) == 0, "good client flush");
  CHECK(p.acked_events == 5000, "good client acked %llu",
        (unsigned long long)p.acked_events);
  CHECK(http_req(admin_port, "GET", "/metrics", NULL, NULL, NULL, buf,
                 sizeof(buf)) == 200,
        "metrics");
  const char *m = strstr(buf, "sluice_ingest_pauses_total{path=\"native\"} ");
  CHECK(m && atol(m + strlen("sluice_ingest_pauses_total{path=\"native\"} ")) >
                 0,
        "pauses counted");
  sl_client_free(good);
  close(fd);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  sl_frame_buf_close(&out);
  pub_free(&p);
  printf("slowreader: paused after %llu publishes, %ld kB anon RSS, other "
         "client served\n",
         (unsigned long long)sent, rss);
}

/* ---- edge pipelines ---------------------------------------------------- */

#define PIPE_T0 1700000000000000000ll /* a multiple of 10 s */
#define PIPE_N 60

/* Deterministic input: two sources, integer values -2..8, 500 ms apart. */
static const char *pipe_src(int i) {
  return i % 2 ? "s/b" : "s/a";
}
static double pipe_val(int i) {
  /* Each source sees every value twice in a row (deadband drops), and
   * some negatives (filter drops). */
  return (double)(((i / 4) * 7) % 11) - 2;
}
static int64_t pipe_time(int i) {
  return PIPE_T0 + (int64_t)i * 500000000ll;
}

/* Publishes events [from, to) in batches of 6, waiting for each ack: the
 * acked prefix is exactly what the daemon has durably processed. */
static void pipe_publish(sl_client_t *cl, pub_t *p, int from, int to) {
  for (int i = from; i < to; i++) {
    uint64_t bid;
    int last = i == PIPE_N; /* the closing events, far ahead */
    CHECK(sl_client_publish_reading(
              cl, "readings", last ? "s/a" : pipe_src(i),
              last ? PIPE_T0 + 100000000000ll : pipe_time(i),
              last ? 0 : pipe_val(i), SLUICE__V1__QUALITY__QUALITY_GOOD, "C",
              &bid) == 0,
          "publish");
    if ((i + 1) % 6 == 0 || i + 1 == to)
      CHECK(sl_client_flush(cl, 30000) == 0, "flush at %d", i);
  }
  CHECK(p->failed_events == 0, "failed events");
}

/* The stored events of a stream as comparable text lines. */
static size_t pipe_read(const char *name, char lines[][256], size_t cap) {
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  size_t n = 0;

  CHECK(store_cursor(name, &st, &cur) == 0, "stream %s", name);
  while (sl_store_cursor_next(cur, &rec) == 0) {
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "decode");
    for (size_t i = 0; i < b->n_events && n < cap; i++) {
      Sluice__V1__Event *ev = b->events[i];
      int k = snprintf(lines[n], 256, "%s %lld %g", ev->source,
                       (long long)ev->time_ns,
                       ev->reading ? ev->reading->double_value : -1);
      for (size_t a = 0; a < ev->n_attributes && k < 250; a++)
        k += snprintf(lines[n] + k, (size_t)(256 - k), " %s=%s",
                      ev->attributes[a]->key, ev->attributes[a]->value);
      n++;
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  store_cursor_close(st, cur);
  return n;
}

/* Runs the input through a daemon; with kill_after >= 0 the daemon is
 * SIGKILLed after that many acked events and restarted. */
static void pipe_run(int kill_after, char raw[][256], size_t *nraw,
                     char agg[][256], size_t *nagg) {
  pub_t p;
  int port, st;
  char tcp[64];
  pub_init(&p, 1);
  pid_t pid = start_daemon(&port);
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", port);
  sl_client_t *cl = connect_client(tcp, &p);
  if (kill_after >= 0) {
    pipe_publish(cl, &p, 0, kill_after);
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    daemon_pid = 0;
    sl_client_free(cl);
    pid = start_daemon(&port);
    snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", port);
    cl = connect_client(tcp, &p);
    pipe_publish(cl, &p, kill_after, PIPE_N + 1);
  } else {
    pipe_publish(cl, &p, 0, PIPE_N + 1);
  }
  sl_client_free(cl);
  /* Pipeline counters reach /metrics on the daemon's 1 s tick: await. */
  if (kill_after < 0) {
    char buf[1 << 16];
    const char *kd = "sluice_pipeline_dropped_total{pipeline=\"clean\","
                     "reason=\"deadband\"} ",
               *kf = "sluice_pipeline_dropped_total{pipeline=\"clean\","
                     "reason=\"filter\"} ";
    uint64_t deadline = now_ms() + 10000;
    for (;;) {
      const char *d, *f;
      if (http_req(admin_port, "GET", "/metrics", NULL, NULL, NULL, buf,
                   sizeof(buf)) == 200 &&
          (d = strstr(buf, kd)) && atol(d + strlen(kd)) > 0 &&
          (f = strstr(buf, kf)) && atol(f + strlen(kf)) > 0)
        break;
      CHECK(now_ms() < deadline,
            "deadband and filter drops never counted in /metrics");
      usleep(50000);
    }
  }
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  *nraw = pipe_read("readings", raw, 200);
  *nagg = pipe_read("readings-10s", agg, 200);
  pub_free(&p);
}

SL_SCENARIO(pipelines) {
  static char rawA[200][256], aggA[200][256], rawB[200][256], aggB[200][256];
  size_t nrawA, naggA, nrawB, naggB, want_raw = 0;
  double last[2];
  int have[2] = {0, 0};

  /* Expected raw events, computed here: drop value < 0, then a deadband
   * of 0.5 per source (integer values: equal values are suppressed). */
  for (int i = 0; i < PIPE_N; i++) {
    double v = pipe_val(i);
    int s = i % 2;
    if (v < 0 || (have[s] && v == last[s]))
      continue;
    have[s] = 1;
    last[s] = v;
    want_raw++;
  }
  want_raw += 1; /* the closing event (0 after s/a's last value) */
  if (last[0] == 0)
    want_raw -= 1;

  snprintf(data_dir, sizeof(data_dir), "%s/data-a", dir);
  write_config(PIPELINES_CONFIG);
  pipe_run(-1, rawA, &nrawA, aggA, &naggA);
  CHECK(nrawA == want_raw, "stored %zu raw events, want %zu", nrawA, want_raw);
  /* Windows [0,10) [10,20) [20,30) s closed for both sources. */
  CHECK(naggA == 6, "%zu window results, want 6", naggA);
  for (size_t k = 0; k < naggA; k++) {
    char src[16];
    long long start;
    double mean;
    CHECK(sscanf(aggA[k], "%15s %lld %lf", src, &start, &mean) == 3, "%s",
          aggA[k]);
    int s = !strcmp(src, "s/b");
    double sum = 0, max = -1e9;
    int count = 0;
    for (int i = s; i < PIPE_N; i += 2)
      if (pipe_time(i) >= start && pipe_time(i) < start + 10000000000ll) {
        sum += pipe_val(i);
        max = pipe_val(i) > max ? pipe_val(i) : max;
        count++;
      }
    char want[64];
    snprintf(want, sizeof(want), " count=%d", count);
    CHECK(strstr(aggA[k], want), "%s: want%s", aggA[k], want);
    snprintf(want, sizeof(want), " max=%.17g", max);
    CHECK(strstr(aggA[k], want), "%s: want%s", aggA[k], want);
    CHECK(mean > sum / count - 1e-9 && mean < sum / count + 1e-9,
          "%s: mean %g want %g", aggA[k], mean, sum / count);
  }

  /* The same input with kill -9 half-way (between acked batches): the
   * persisted deadband and window state make the results identical. */
  snprintf(data_dir, sizeof(data_dir), "%s/data-b", dir);
  write_config(PIPELINES_CONFIG);
  pipe_run(30, rawB, &nrawB, aggB, &naggB);
  CHECK(nrawB == nrawA && naggB == naggA, "after kill -9: %zu raw %zu agg",
        nrawB, naggB);
  for (size_t k = 0; k < nrawA; k++)
    CHECK(!strcmp(rawA[k], rawB[k]), "raw %zu differs: %s | %s", k, rawA[k],
          rawB[k]);
  for (size_t k = 0; k < naggA; k++)
    CHECK(!strcmp(aggA[k], aggB[k]), "window %zu differs: %s | %s", k, aggA[k],
          aggB[k]);
  printf("pipelines: %zu raw kept of %d, %zu window results, identical after "
         "kill -9\n",
         nrawA, PIPE_N + 1, naggA);
}

/* ---- SIGHUP reload ------------------------------------------------------ */

SL_SCENARIO(reload) {
  pub_t p;
  int port, st;
  char tcp[64], good[4096];
  FILE *f;
  size_t n;

  pub_init(&p, 1);
  f = fopen(cfg_path, "r");
  n = fread(good, 1, sizeof(good) - 1, f);
  good[n] = 0;
  fclose(f);
  pid_t pid = start_daemon(&port);
  snprintf(tcp, sizeof(tcp), "127.0.0.1:%d", port);
  sl_client_t *cl = connect_client(tcp, &p);

  /* A reloadable change is applied. */
  append_config("log:\n  level: debug\n");
  kill(pid, SIGHUP);
  await_metric("sluice_config_reloads_total", 1);
  /* A change that needs a restart is refused; the old config stays. */
  f = fopen(cfg_path, "w");
  fputs(good, f);
  fclose(f);
  append_config("store:\n  budget_bytes: 3GiB\n");
  kill(pid, SIGHUP);
  await_metric("sluice_config_reload_errors_total", 1);
  /* A broken file is refused too, and named in the log. */
  append_config("this is: [not yaml\n");
  kill(pid, SIGHUP);
  await_metric("sluice_config_reload_errors_total", 2);
  /* Still serving, with the old config. */
  publish_n(cl, "readings", 0, 1000, NULL);
  CHECK(sl_client_flush(cl, 30000) == 0, "publish after refused reloads");
  CHECK(p.acked_events == 1000, "acked %llu",
        (unsigned long long)p.acked_events);
  sl_client_free(cl);
  st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  f = fopen(log_path, "r");
  char line[1024];
  int named = 0;
  while (f && fgets(line, sizeof(line), f))
    if (strstr(line, "reload refused") && strstr(line, "budget_bytes"))
      named = 1;
  if (f)
    fclose(f);
  CHECK(named, "the refused restart-only key is named in the log");
  pub_free(&p);
  printf("reload: reloadable change applied, restart-only change and broken "
         "file refused, still serving\n");
}

static int setup(int argc, char **argv) {
  (void)argc;
  write_config(!strcmp(argv[2], "conns")
                   ? "limits:\n  idle_timeout: 2s\n  max_connections: 1100\n"
                   : NULL);
  return 0;
}

/* SIGTERM tells a native client (issue 16): every batch the daemon read is
 * acknowledged first, then a fatal Error SL_ECLOSED "shutting down", then
 * the connection closes; nothing after it. */
SL_SCENARIO(goodbye) {
  const uint64_t K = 200;
  sl_frame_buf_t out, in;
  sl_frame_arena_t *ar = NULL;
  int port, fd, eof = 0;
  pid_t pid = start_daemon(&port);

  CHECK(sl_frame_arena_new(1 << 20, &ar) == 0, "arena");
  sl_frame_buf_init(&out);
  sl_frame_buf_init(&in);
  fd = tcp_connect(port);
  hello(&out, "goodbye", NULL);
  write_all(fd, out.data, out.len);
  out.len = 0;
  CHECK(await_frame(fd, &in, ar, SLUICE__V1__FRAME__KIND_HELLO_ACK) == 0,
        "hello ack");
  for (uint64_t b = 1; b <= K; b++)
    publish_one(&out, b, (double)b);
  write_all(fd, out.data, out.len);
  /* The first ack: batches are being read; then the stop. */
  CHECK(await_frame(fd, &in, ar, SLUICE__V1__FRAME__KIND_ACK) == 0,
        "first ack");
  uint64_t acks = 1;
  kill(pid, SIGTERM);
  int got_error = 0;
  for (;;) {
    const uint8_t *body;
    size_t consumed, blen;
    const Sluice__V1__Frame *fr;
    CHECK(sl_frame_parse(in.data, in.len, 1 << 20, &consumed, &body, &blen) ==
              0,
          "frame parse");
    if (consumed) {
      CHECK(sl_frame_decode(ar, body, blen, SL_FRAME_FROM_SERVER, &fr, NULL,
                            0) == 0,
            "frame decode");
      sl_frame_buf_consume(&in, consumed);
      CHECK(!got_error, "a frame after the stop's Error (kind %d)",
            (int)fr->kind_case);
      if (fr->kind_case == SLUICE__V1__FRAME__KIND_ACK) {
        acks++;
        continue;
      }
      CHECK(fr->kind_case == SLUICE__V1__FRAME__KIND_ERROR, "frame kind %d",
            (int)fr->kind_case);
      CHECK(fr->error->code == SL_ECLOSED && fr->error->fatal &&
                fr->error->batch_id == 0 &&
                strstr(fr->error->reason, "shutting down"),
            "stop's Error: code %d fatal %d batch %llu reason '%s'",
            (int)fr->error->code, (int)fr->error->fatal,
            (unsigned long long)fr->error->batch_id, fr->error->reason);
      got_error = 1;
      continue;
    }
    if (sl_frame_buf_reserve(&in, 4096) < 0)
      break;
    ssize_t r = read(fd, in.data + in.len, in.cap - in.len);
    if (r <= 0) {
      eof = 1;
      break;
    }
    in.len += (size_t)r;
  }
  CHECK(eof && got_error, "the connection ended without the stop's Error");
  int st = stop_daemon(pid, SIGTERM);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
  /* Every acknowledged batch is stored (one event per batch). */
  double *values;
  uint64_t n = read_stream("readings", &values);
  CHECK(n >= acks, "%llu events stored, %llu batches acknowledged",
        (unsigned long long)n, (unsigned long long)acks);
  free(values);
  printf("goodbye: %llu of %llu batches acknowledged before the stop's "
         "Error (SL_ECLOSED, fatal), %llu stored\n",
         (unsigned long long)acks, (unsigned long long)K,
         (unsigned long long)n);
  close(fd);
  sl_frame_arena_free(ar);
  sl_frame_buf_close(&out);
  sl_frame_buf_close(&in);
}

int main(int argc, char **argv) {
  return fixture_main(argc, argv, "daemon", NULL, setup);
}
