/*
 * Link faults between the uplink and Kafka. The real `sluice` binary runs in
 * the root network namespace; a private Kafka runs in a namespace of its own
 * behind a veth pair (scripts/netns.sh), whose link the test cuts, flaps and
 * rate-limits. Every scenario ends with the check of sync_test.c: a
 * read_committed consumer must see every stored offset exactly once, in
 * offset order per source and lane; the store (opened read-only after the
 * daemon stopped) says what must arrive.
 *
 *   sync_netns_test SLUICE cut        a 10 s partition (every packet
 *                                     dropped: TCP hangs, no RST) under a
 *                                     steady load, then the link is back
 *   sync_netns_test SLUICE flap       the link goes down and up at random
 *                                     0.5-3 s intervals for 20 s under load
 *                                     (each down period is a partition or a
 *                                     link down, at random)
 *   sync_netns_test SLUICE bandwidth  a stored backlog drains over an
 *                                     8 Mbit/s link (tbf) with
 *                                     kafka.bandwidth_bytes_per_s 400 kB/s
 *                                     while live events flow: the uplink's
 *                                     record-byte rate stays within the cap
 *                                     and live records are not starved
 *
 * Runs under `scripts/netns.sh run --` (ctest does), which exports
 * SLUICE_NETNS_SH and SLUICE_TEST_KAFKA_BOOTSTRAP; without them it exits 77
 * (skipped). SL_NETNS_SEED fixes the flap schedule. Every wait polls a
 * condition with a deadline; every loop is bounded in count and time.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "sluice/client.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"

static const char *sluice_bin, *bootstrap, *netns_sh;
static char dir[256], run_id[64];
static pid_t daemon_pid;

static void fail_cleanup(void);

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);          \
      fprintf(stderr, __VA_ARGS__);                                            \
      fputc('\n', stderr);                                                     \
      fail_cleanup();                                                          \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs `scripts/netns.sh ARGS` on this run's netns (SLUICE_NETNS_DIR is in
 * our environment); its output goes to DIR/netns-sh.log. */
static int netns(const char *args) {
  char cmd[1200];
  snprintf(cmd, sizeof(cmd), "%s %s >>%s/netns-sh.log 2>&1", netns_sh, args,
           dir);
  int st = system(cmd);
  return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

static void fail_cleanup(void) {
  char cmd[600];
  if (daemon_pid > 0)
    kill(daemon_pid, SIGKILL);
  netns("restore"); /* the consumer of a rerun should not hang */
  snprintf(cmd, sizeof(cmd), "tail -n 30 %s/*.log >&2", dir);
  if (system(cmd) < 0)
    perror("system");
  fprintf(stderr, "test dir kept: %s\n", dir);
}

/* ---- daemon ------------------------------------------------------------ */

typedef struct daemon {
  char cfg[320], log[320], data[320];
  pid_t pid;
  int port, admin_port;
} daemon_t;

/* Writes the config: one stream "readings" on topic <run>-<topic>. */
static void daemon_init(daemon_t *d, const char *node, const char *topic,
                        bool kafka, const char *kafka_extra) {
  memset(d, 0, sizeof(*d));
  snprintf(d->cfg, sizeof(d->cfg), "%s/a.yaml", dir);
  snprintf(d->log, sizeof(d->log), "%s/a.log", dir);
  snprintf(d->data, sizeof(d->data), "%s/data-a", dir);
  FILE *f = fopen(d->cfg, "w");
  CHECK(f, "write %s", d->cfg);
  fprintf(f,
          "node:\n  id: %s\n  data_dir: %s\n"
          "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
          "  http:\n    address: \"\"\n"
          "admin:\n  address: \"127.0.0.1:0\"\n"
          "kafka:\n  enabled: %s\n  brokers: \"%s\"\n"
          "  checkpoint_topic: %s-ckpt\n%s"
          "streams:\n  - name: readings\n    topic: %s-%s\n",
          node, d->data, kafka ? "true" : "false", bootstrap, run_id,
          kafka_extra ? kafka_extra : "", run_id, topic);
  fclose(f);
}

static void daemon_start(daemon_t *d) {
  uint64_t deadline = now_ms() + 30000;
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(sluice_bin, sluice_bin, "run", "-c", d->cfg, (char *)NULL);
    _exit(127);
  }
  d->pid = daemon_pid = pid;
  for (;;) {
    char line[1024];
    int st, port = -1, admin = -1;
    FILE *f = fopen(d->log, "r");
    /* The last ready line of the (appended) log is this run's. */
    while (f && fgets(line, sizeof(line), f)) {
      const char *p = strstr(line, " ready: ");
      if (!strncmp(line, "---- stopped", 12))
        port = admin = -1;
      if (p && (p = strstr(p, "(port ")) && sscanf(p, "(port %d)", &port) &&
          (p = strstr(p, " admin ")) && (p = strstr(p, "(port ")))
        sscanf(p, "(port %d)", &admin);
    }
    if (f)
      fclose(f);
    CHECK(waitpid(pid, &st, WNOHANG) == 0, "daemon exited before ready");
    if (port > 0 && admin > 0) {
      d->port = port;
      d->admin_port = admin;
      return;
    }
    CHECK(now_ms() < deadline, "daemon not ready in 30 s");
    usleep(20000); /* polling the log for a condition, with a deadline */
  }
}

static void daemon_stop(daemon_t *d) {
  int st;
  uint64_t deadline = now_ms() + 60000;
  kill(d->pid, SIGTERM);
  while (waitpid(d->pid, &st, WNOHANG) == 0) {
    CHECK(now_ms() < deadline, "daemon did not exit on SIGTERM");
    usleep(10000);
  }
  d->pid = daemon_pid = 0;
  FILE *f = fopen(d->log, "a");
  if (f) {
    fprintf(f, "---- stopped ----\n");
    fclose(f);
  }
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
}

/*
 * One series of the daemon's /metrics (name with its labels, as printed,
 * e.g. `sluice_uplink_delivered_total{stream="readings"}`). Returns NAN
 * when the admin server does not answer or lacks the series.
 */
static double metric(const daemon_t *d, const char *series) {
  static char buf[1 << 20];
  struct sockaddr_in sa = {.sin_family = AF_INET};
  struct timeval tv = {.tv_sec = 5};
  size_t len = 0;
  double v = NAN;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(fd >= 0, "socket");
  sa.sin_port = htons((uint16_t)d->admin_port);
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  const char req[] = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
      write(fd, req, sizeof(req) - 1) == (ssize_t)(sizeof(req) - 1)) {
    ssize_t n;
    while (len < sizeof(buf) - 1 &&
           (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
      len += (size_t)n;
  }
  close(fd);
  buf[len] = '\0';
  size_t sl = strlen(series);
  for (char *p = strstr(buf, series); p; p = strstr(p + 1, series))
    if (p > buf && p[-1] == '\n' && p[sl] == ' ') {
      v = strtod(p + sl + 1, NULL);
      break;
    }
  return v;
}

#define M_DELIVERED "sluice_uplink_delivered_total{stream=\"readings\"}"
#define M_DBYTES "sluice_uplink_delivered_bytes_total{stream=\"readings\"}"
#define M_BACKLOG "sluice_uplink_backlog_events{stream=\"readings\"}"
#define M_THROTTLED "sluice_uplink_throttled_ms_total"

static void print_uplink_counters(const daemon_t *d) {
  printf("uplink: %.0f commits, %.0f aborts, %.0f retries, %.0f producer "
         "restarts\n",
         metric(d, "sluice_uplink_txn_commits_total"),
         metric(d, "sluice_uplink_txn_aborts_total"),
         metric(d, "sluice_uplink_retries_total"),
         metric(d, "sluice_uplink_producer_restarts_total"));
}

/*
 * Polls the delivered counter until it reaches n events or timeout_ms
 * passed; returns the time it took, or -1 on timeout (the exactly-once
 * check that follows says what is missing).
 */
static int64_t await_delivered(const daemon_t *d, uint64_t n, int timeout_ms) {
  uint64_t t0 = now_ms(), deadline = t0 + (uint64_t)timeout_ms;
  while (now_ms() < deadline) {
    double v = metric(d, M_DELIVERED);
    if (!isnan(v) && v >= (double)n)
      return (int64_t)(now_ms() - t0);
    usleep(100000); /* polling a counter, with a deadline */
  }
  fprintf(stderr, "delivered %.0f of %" PRIu64 " after %d ms\n",
          metric(d, M_DELIVERED), n, timeout_ms);
  return -1;
}

/* ---- publishing -------------------------------------------------------- */

static uint64_t seq; /* value of the next published reading */

typedef struct pub {
  sl_client_t *cl;
  char addr[64];
  uint64_t sent;
} pub_t;

static void pub_open(pub_t *p, const daemon_t *d) {
  sl_client_opts_t o;
  snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", d->port);
  sl_client_opts_init(&o);
  o.address = p->addr;
  o.client_id = "netns-test";
  o.max_batch_events = 500;
  o.linger_ms = 2;
  o.max_buffered_events = 1000000;
  CHECK(sl_client_new(&o, &p->cl) == 0, "client");
  p->sent = 0;
}

static void pub_one(pub_t *p) {
  char src[64];
  snprintf(src, sizeof(src), "site/line%u/sensor%02u", (unsigned)(seq % 4),
           (unsigned)(seq % 16));
  CHECK(sl_client_publish_reading(
            p->cl, "readings", src, sl_now_wall_ns(), (double)seq,
            SLUICE__V1__QUALITY__QUALITY_GOOD, "C", NULL) == 0,
        "publish %" PRIu64, seq);
  seq++;
  p->sent++;
}

/* Publishes at `rate` events/s for ms milliseconds (paced every 5 ms). */
static void pub_for(pub_t *p, double rate, uint64_t ms) {
  uint64_t t0 = now_ms(), done = 0;
  for (uint64_t t = t0; t < t0 + ms; t = now_ms()) {
    uint64_t due = (uint64_t)(rate * (double)(t - t0) / 1000.0);
    for (; done < due; done++)
      pub_one(p);
    usleep(5000); /* pacing the load, not synchronisation */
  }
}

/* Flushes and closes; returns the events the daemon acknowledged. */
static uint64_t pub_close(pub_t *p) {
  sl_client_stats_t cs;
  CHECK(sl_client_flush(p->cl, 60000) == 0, "flush");
  sl_client_stats(p->cl, &cs);
  sl_client_free(p->cl);
  CHECK(cs.failed == 0 && cs.acked == p->sent,
        "%" PRIu64 " acked, %" PRIu64 " failed of %" PRIu64, cs.acked,
        cs.failed, p->sent);
  return cs.acked;
}

/* ---- the exactly-once check -------------------------------------------- */

typedef struct verdict {
  uint64_t stored, records, distinct, dups, missing, historical, order_errors;
  int64_t last_hist_ms; /* latest CreateTime of a historical record */
  int64_t *live_ts;     /* per offset: CreateTime of a live record, or 0 */
  int64_t *event_ms;    /* per offset: the event's time (publish time) */
} verdict_t;

static const char *header(const rd_kafka_message_t *m, const char *name,
                          char *buf, size_t cap) {
  rd_kafka_headers_t *h = NULL;
  const void *v;
  size_t sz;
  if (rd_kafka_message_headers(m, &h) ||
      rd_kafka_header_get_last(h, name, &v, &sz))
    return NULL;
  snprintf(buf, cap, "%.*s", (int)sz, (const char *)v);
  return buf;
}

/* The stored values per offset (the daemon must be stopped). */
static double *read_store(const daemon_t *d, uint64_t *n) {
  sl_store_opts_t so;
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  sl_store_stream_stats_t ss;
  uint32_t id;
  char err[256];
  sl_store_opts_init(&so);
  so.flags = SL_STORE_RDONLY;
  CHECK(sl_store_env_open(d->data, &so, &st, err, sizeof(err)) == 0,
        "open store: %s", err);
  CHECK(sl_store_stream_lookup(st, "readings", &id) == 0, "stream");
  CHECK(sl_store_stream_stats(st, id, &ss) == 0, "stats");
  *n = ss.next_offset;
  double *value = calloc(*n + 1, sizeof(double));
  for (uint64_t k = 0; k < *n; k++)
    value[k] = NAN;
  CHECK(sl_store_cursor_open(st, id, 0, SL_STORE_OFFSET_END, &cur) == 0, "cur");
  while (sl_store_cursor_next(cur, &rec) == 0) {
    if (rec.status)
      continue;
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b && b->n_events == rec.count, "batch at %" PRIu64, rec.first_offset);
    for (size_t i = 0; i < b->n_events; i++)
      value[rec.first_offset + i] = b->events[i]->reading->double_value;
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  return value;
}

typedef struct src_last {
  char key[64];
  int lane;
  int64_t last;
} src_last_t;

/*
 * Reads the stream's topic from the beginning to the end of every
 * partition (read_committed) and checks each record against the store.
 * Fills v; fails on a record that is not one of ours.
 */
static void verify(const daemon_t *d, const char *topic, verdict_t *v) {
  char e[512], t[128], grp[160], hb[64];
  uint64_t n;
  double *value = read_store(d, &n);
  snprintf(t, sizeof(t), "%s-%s", run_id, topic);
  snprintf(grp, sizeof(grp), "%s-verify", t);
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  CHECK(
      !rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof(e)) &&
          !rd_kafka_conf_set(conf, "group.id", grp, e, sizeof(e)) &&
          !rd_kafka_conf_set(conf, "enable.partition.eof", "true", e,
                             sizeof(e)) &&
          !rd_kafka_conf_set(conf, "isolation.level", "read_committed", e,
                             sizeof(e)),
      "conf: %s", e);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
  CHECK(rk, "consumer: %s", e);
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, t, NULL);
  CHECK(rd_kafka_metadata(rk, 0, rkt, &md, 10000) == 0, "metadata %s", t);
  CHECK(md->topic_cnt == 1 && !md->topics[0].err, "topic %s missing", t);
  int nparts = md->topics[0].partition_cnt, eofs = 0;
  rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_topic_partition_list_t *parts =
      rd_kafka_topic_partition_list_new(nparts);
  for (int p = 0; p < nparts; p++)
    rd_kafka_topic_partition_list_add(parts, t, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  CHECK(rd_kafka_assign(rk, parts) == 0, "assign");
  rd_kafka_topic_partition_list_destroy(parts);

  memset(v, 0, sizeof(*v));
  v->stored = n;
  v->live_ts = calloc(n + 1, sizeof(int64_t));
  v->event_ms = calloc(n + 1, sizeof(int64_t));
  uint32_t *count = calloc(n + 1, sizeof(uint32_t));
  src_last_t *last = calloc(64, sizeof(*last));
  size_t nlast = 0;
  uint64_t deadline = now_ms() + 120000;
  while (eofs < nparts) {
    CHECK(now_ms() < deadline, "%s: not read to the end in 120 s", t);
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      eofs++;
      rd_kafka_message_destroy(m);
      continue;
    }
    CHECK(!m->err, "consume: %s", rd_kafka_message_errstr(m));
    v->records++;
    CHECK(header(m, "stream", hb, sizeof(hb)) && !strcmp(hb, "readings"),
          "stream header");
    CHECK(header(m, "offset", hb, sizeof(hb)), "offset header");
    uint64_t off = strtoull(hb, NULL, 10);
    CHECK(off < n, "offset %" PRIu64 " beyond the store's %" PRIu64, off, n);
    Sluice__V1__Event *ev = sluice__v1__event__unpack(NULL, m->len, m->payload);
    CHECK(ev && ev->body_case == SLUICE__V1__EVENT__BODY_READING &&
              ev->reading->double_value == value[off],
          "offset %" PRIu64 " carries the wrong event", off);
    int lane = header(m, "historical", hb, sizeof(hb)) != NULL;
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    v->event_ms[off] = ev->time_ns / 1000000;
    if (lane) {
      v->historical++;
      if (ts > v->last_hist_ms)
        v->last_hist_ms = ts;
    } else if (!v->live_ts[off]) {
      v->live_ts[off] = ts;
    }
    size_t i;
    for (i = 0; i < nlast; i++)
      if (last[i].lane == lane && !strcmp(last[i].key, ev->source))
        break;
    CHECK(i < 64, "more than 64 (source, lane) pairs");
    if (i == nlast) {
      snprintf(last[i].key, sizeof(last[i].key), "%s", ev->source);
      last[i].lane = lane;
      last[nlast++].last = -1;
    }
    if ((int64_t)off <= last[i].last && v->order_errors++ == 0)
      fprintf(stderr,
              "order: source %s lane %d: offset %" PRIu64 " after %" PRId64
              "\n",
              ev->source, lane, off, last[i].last);
    last[i].last = (int64_t)off;
    if (count[off]++ == 0)
      v->distinct++;
    else if (v->dups++ < 5)
      fprintf(stderr, "duplicate: offset %" PRIu64 "\n", off);
    sluice__v1__event__free_unpacked(ev, NULL);
    rd_kafka_message_destroy(m);
  }
  for (uint64_t k = 0; k < n; k++)
    if (!count[k] && v->missing++ < 5)
      fprintf(stderr, "missing: offset %" PRIu64 "\n", k);
  printf("%s: %" PRIu64 " stored, %" PRIu64 " records, %" PRIu64
         " distinct, %" PRIu64 " duplicates, %" PRIu64 " missing, %" PRIu64
         " historical, %" PRIu64 " order errors\n",
         t, n, v->records, v->distinct, v->dups, v->missing, v->historical,
         v->order_errors);
  free(last);
  free(count);
  free(value);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

static void verdict_free(verdict_t *v) {
  free(v->live_ts);
  free(v->event_ms);
}

/* Stops the daemon, then: every stored offset once, in order. */
static void stop_and_verify(daemon_t *d, const char *topic, uint64_t acked,
                            int64_t delivered_ms, verdict_t *v) {
  print_uplink_counters(d);
  daemon_stop(d);
  verify(d, topic, v);
  CHECK(v->stored == acked, "store holds %" PRIu64 ", %" PRIu64 " acked",
        v->stored, acked);
  CHECK(v->missing == 0 && v->dups == 0 && v->order_errors == 0 &&
            v->distinct == v->stored,
        "exactly once in order: %" PRIu64 " missing, %" PRIu64
        " duplicates, %" PRIu64 " order errors",
        v->missing, v->dups, v->order_errors);
  CHECK(delivered_ms >= 0, "everything arrived, but the daemon's delivered "
                           "counter never reached it");
}

/* ---- scenarios --------------------------------------------------------- */

#define LOAD_RATE 2000.0 /* events/s during cut and flap */

/*
 * A partition under a steady load: 5 s of traffic, 10 s (SL_NETNS_CUT_S)
 * with every packet dropped both ways (blackhole qdisc: the uplink's TCP
 * connections hang, nothing is refused), 5 s after the link is back.
 */
static int scenario_cut(void) {
  const char *e = getenv("SL_NETNS_CUT_S");
  uint64_t cut_ms = (e ? strtoull(e, NULL, 10) : 10) * 1000;
  daemon_t a;
  pub_t p;
  CHECK(cut_ms >= 4000 && cut_ms <= 600000, "SL_NETNS_CUT_S: 4 .. 600");
  daemon_init(&a, "node-cut", "cut", true, "");
  daemon_start(&a);
  pub_open(&p, &a);
  pub_for(&p, LOAD_RATE, 5000);
  CHECK(netns("cut") == 0, "netns.sh cut");
  uint64_t t_cut = now_ms();
  /* The metrics tick is 1 s: after 3 s nothing sent before the cut can
   * still be committing. */
  pub_for(&p, LOAD_RATE, 3000);
  double d1 = metric(&a, M_DELIVERED);
  pub_for(&p, LOAD_RATE, cut_ms - 3000);
  double d2 = metric(&a, M_DELIVERED);
  CHECK(netns("restore") == 0, "netns.sh restore");
  uint64_t t_restore = now_ms();
  int64_t resumed = -1; /* not within the 5 s below */
  printf("link cut for %" PRIu64 " ms; delivered %.0f at cut+3 s, %.0f at "
         "the end of the cut\n",
         t_restore - t_cut, d1, d2);
  CHECK(d1 == d2, "the uplink delivered through a cut link: the cut is not "
                  "a cut");
  /* 5 s more load, watching for the first delivery after the cut. */
  for (int i = 0; i < 50; i++) {
    pub_for(&p, LOAD_RATE, 100);
    if (resumed < 0 && metric(&a, M_DELIVERED) > d2)
      resumed = (int64_t)(now_ms() - t_restore);
  }
  uint64_t acked = pub_close(&p);
  int64_t ms = await_delivered(&a, acked, 120000);
  printf("%" PRIu64 " events; deliveries resumed %" PRId64
         " ms after the link came back (metrics tick: 1 s), all delivered "
         "after %" PRIu64 " ms\n",
         acked, resumed, now_ms() - t_restore);
  verdict_t v;
  stop_and_verify(&a, "cut", acked, ms, &v);
  verdict_free(&v);
  return 0;
}

/* 20 s of the link going down and up at random 0.5-3 s intervals. */
static int scenario_flap(void) {
  const char *e = getenv("SL_NETNS_SEED");
  unsigned seed = e ? (unsigned)strtoul(e, NULL, 10) : (unsigned)getpid();
  daemon_t a;
  pub_t p;
  int downs = 0, blackholes = 0;
  srand(seed);
  printf("flap schedule seed %u (SL_NETNS_SEED)\n", seed);
  daemon_init(&a, "node-flap", "flap", true, "");
  daemon_start(&a);
  pub_open(&p, &a);
  pub_for(&p, LOAD_RATE, 2000);
  uint64_t t0 = now_ms();
  for (int i = 0; i < 40 && now_ms() < t0 + 20000; i++) {
    bool bh = rand() % 2;
    CHECK(netns(bh ? "cut" : "cut --down") == 0, "netns.sh cut");
    downs++;
    blackholes += bh;
    pub_for(&p, LOAD_RATE, 500 + (uint64_t)(rand() % 2501));
    CHECK(netns("restore") == 0, "netns.sh restore");
    pub_for(&p, LOAD_RATE, 500 + (uint64_t)(rand() % 2501));
  }
  uint64_t t_end = now_ms();
  printf("link flapped %d times in %" PRIu64 " ms (%d partitions, %d link "
         "downs)\n",
         downs, t_end - t0, blackholes, downs - blackholes);
  pub_for(&p, LOAD_RATE, 2000);
  uint64_t acked = pub_close(&p);
  int64_t ms = await_delivered(&a, acked, 120000);
  printf("%" PRIu64 " events; all delivered %" PRIu64
         " ms after the last flap\n",
         acked, now_ms() - t_end);
  verdict_t v;
  stop_and_verify(&a, "flap", acked, ms, &v);
  verdict_free(&v);
  return 0;
}

#define CAP 400000.0      /* kafka.bandwidth_bytes_per_s */
#define BACKLOG 50000     /* stored events (~22 s at the cap) */
#define LIVE_RATE 100.0   /* live events/s during the drain */
#define HEADER_BYTES 96.0 /* what the bucket charges per record for headers */

static int cmp64(const void *x, const void *y) {
  int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
  return (a > b) - (a < b);
}

typedef struct sample {
  uint64_t t;
  double delivered, bytes, throttled, backlog;
} sample_t;

/*
 * A stored backlog drained over an 8 Mbit/s link with the cap at 400 kB/s
 * while live events flow.
 */
static int scenario_bandwidth(void) {
  daemon_t a;
  pub_t p;
  /* The backlog is stored while the uplink is off (an edge node that was
   * offline); the uplink then starts 50000 events behind and splits the
   * stream into a backlog lane and a live lane at once. */
  daemon_init(&a, "node-bw", "bw", false, "");
  daemon_start(&a);
  pub_open(&p, &a);
  for (int i = 0; i < BACKLOG; i++)
    pub_one(&p);
  uint64_t acked = pub_close(&p);
  daemon_stop(&a);
  CHECK(netns("rate 8mbit") == 0, "netns.sh rate");
  daemon_init(&a, "node-bw", "bw", true,
              "  bandwidth_bytes_per_s: 400000\n"
              "  backlog_threshold: 10000\n");
  daemon_start(&a);
  uint64_t t0 = now_ms();
  CHECK(!isnan(metric(&a, M_DELIVERED)) && !isnan(metric(&a, M_DBYTES)) &&
            !isnan(metric(&a, M_THROTTLED)) && !isnan(metric(&a, M_BACKLOG)),
        "a series is missing from /metrics");
  /* Live events at LIVE_RATE while /metrics is sampled every 100 ms, until
   * the backlog is gone (or 90 s). */
  size_t cap_samples = 1000, ns = 0;
  sample_t *s = calloc(cap_samples, sizeof(*s));
  pub_open(&p, &a);
  while (ns < cap_samples && now_ms() < t0 + 90000) {
    pub_for(&p, LIVE_RATE, 100);
    sample_t x = {.t = now_ms(),
                  .delivered = metric(&a, M_DELIVERED),
                  .bytes = metric(&a, M_DBYTES),
                  .throttled = metric(&a, M_THROTTLED),
                  .backlog = metric(&a, M_BACKLOG)};
    s[ns++] = x;
    if (x.delivered >= BACKLOG && x.backlog < 1000)
      break;
  }
  uint64_t t_drained = now_ms();
  pub_for(&p, LIVE_RATE, 1000);
  acked += pub_close(&p);
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "%s stats", netns_sh); /* wire bytes, drops */
  CHECK(system(cmd) == 0, "netns.sh stats");
  CHECK(netns("rate off") == 0, "netns.sh rate off");
  int64_t ms = await_delivered(&a, acked, 60000);
  printf("backlog of %d events drained in %" PRIu64 " ms\n", BACKLOG,
         t_drained - t0);

  /* The window: from the first tick 1 s after delivery began to the last
   * tick while more than 2000 backlog events were left (the cap, not the
   * backlog's end, set the pace). A tick is a sample whose counter moved. */
  size_t first = ns, lastw = ns;
  uint64_t t_first_delivery = 0;
  for (size_t i = 1; i < ns; i++) {
    bool tick = s[i].bytes != s[i - 1].bytes;
    if (!t_first_delivery && s[i].delivered > 0)
      t_first_delivery = s[i].t;
    if (!tick || !t_first_delivery || s[i].t < t_first_delivery + 1000)
      continue;
    if (first == ns)
      first = i;
    if (s[i].backlog > 2000)
      lastw = i;
  }
  CHECK(first < ns && lastw < ns && s[lastw].t >= s[first].t + 10000,
        "no 10 s window of capped drain (first %zu, last %zu of %zu)", first,
        lastw, ns);
  double dt = (double)(s[lastw].t - s[first].t) / 1000.0;
  double events = s[lastw].delivered - s[first].delivered;
  /* Record bytes as DELIVERY.md defines them: value + key (the delivered
   * bytes counter) + HEADER_BYTES per record. */
  double sent = (s[lastw].bytes - s[first].bytes) + HEADER_BYTES * events;
  /* The bucket charges the value as sent (ingest time appended). */
  double metered = sent;
  /* Allowance beyond CAP * dt, in seconds of the cap: the bucket's burst
   * (1/20 s), one commit interval of records produced before the window but
   * committed in it (0.1 s), the 100 ms sampling of each window edge
   * (0.2 s), and 0.15 s for the commit's own duration. */
  double allowed = CAP * (dt + 0.5);
  printf("capped window %.1f s, %.0f events/s: record bytes sent %.0f B/s = "
         "%.3f of the cap, metered %.0f B/s = %.3f of the cap (allowed %.3f "
         "over the window); value+key %.0f B/s; throttled_ms counter +%.0f\n",
         dt, events / dt, sent / dt, sent / dt / CAP, metered / dt,
         metered / dt / CAP, allowed / dt / CAP,
         (s[lastw].bytes - s[first].bytes) / dt,
         s[lastw].throttled - s[first].throttled);
  CHECK(metered <= allowed,
        "uplink sent %.0f metered bytes in %.1f s: above the cap of %.0f B/s",
        metered, dt, CAP);
  /* The link carries ~1 MB/s and the uplink alone drains >100x faster:
   * a drain near the cap shows the cap is what paces it. 0.7: with two
   * CPU hogs on this 2-core box it still reached 0.87. The uplink also
   * reports the time it waited for tokens. */
  CHECK(metered >= 0.7 * CAP * dt, "drain at %.0f B/s: the cap did not bind",
        metered / dt);
  /* 24-27% of the window measured; before the nanosecond sum, ~0. */
  CHECK(s[lastw].throttled - s[first].throttled >= 1000.0 * dt / 20,
        "throttled_ms rose by %.0f in %.1f s of a binding cap",
        s[lastw].throttled - s[first].throttled, dt);
  free(s);

  verdict_t v;
  stop_and_verify(&a, "bw", acked, ms, &v);
  /* Live lane: every live event published while the backlog still had at
   * least a second to go was produced within live_max_ms of being
   * published (CreateTime - event time). Starved, it would wait for the
   * backlog (~20 s); measured: max ~300 ms alone, 790 ms with two CPU hogs
   * on this 2-core box. */
  const int64_t live_max_ms = 2000;
  uint64_t live = 0, during = 0, late = 0, live_start = v.stored;
  int64_t *lat = calloc(v.stored + 1, sizeof(int64_t)), worst = 0;
  /* The live lane starts where the store ended when the uplink planned its
   * lanes: the backlog plus the live events of its first second or so. */
  for (uint64_t k = 0; k < v.stored && live_start == v.stored; k++)
    if (v.live_ts[k])
      live_start = k;
  for (uint64_t k = live_start; k < v.stored; k++) {
    if (!v.live_ts[k])
      continue;
    live++;
    if (v.event_ms[k] + 1000 > v.last_hist_ms)
      continue;
    int64_t l = v.live_ts[k] - v.event_ms[k];
    lat[during++] = l;
    late += l > live_max_ms;
    worst = l > worst ? l : worst;
  }
  qsort(lat, during, sizeof(*lat), cmp64);
  printf("live lane from offset %" PRIu64 ": %" PRIu64 " live records, %" PRIu64
         " published while the backlog drained: produced after p50 %" PRId64
         " ms, p99 %" PRId64 " ms, max %" PRId64 " ms\n",
         live_start, live, during, during ? lat[during / 2] : -1,
         during ? lat[during * 99 / 100] : -1, worst);
  CHECK(live_start >= BACKLOG && live == v.stored - live_start &&
            v.historical == live_start,
        "lanes: live from %" PRIu64 ", %" PRIu64 " live, %" PRIu64
        " historical of %" PRIu64,
        live_start, live, v.historical, v.stored);
  CHECK(during >= 1000, "only %" PRIu64 " live events during the drain",
        during);
  CHECK(late == 0, "%" PRIu64 " live records waited more than %" PRId64 " ms",
        late, live_max_ms);
  free(lat);
  verdict_free(&v);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr,
            "usage: sync_netns_test SLUICE_BINARY cut|flap|bandwidth\n");
    return 2;
  }
  sluice_bin = argv[1];
  netns_sh = getenv("SLUICE_NETNS_SH");
  bootstrap = getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (!netns_sh || !*netns_sh || !bootstrap || !*bootstrap) {
    printf("sync_netns_test: SKIP: run under scripts/netns.sh run -- (no "
           "SLUICE_NETNS_SH)\n");
    return 77;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  snprintf(run_id, sizeof(run_id), "netns-%s-%d-%lld", argv[2], (int)getpid(),
           (long long)(sl_now_wall_ns() / 1000000));
  snprintf(dir, sizeof(dir), "/tmp/sl_netns_test.XXXXXX");
  CHECK(mkdtemp(dir), "mkdtemp");
  int rc;
  if (!strcmp(argv[2], "cut"))
    rc = scenario_cut();
  else if (!strcmp(argv[2], "flap"))
    rc = scenario_flap();
  else if (!strcmp(argv[2], "bandwidth"))
    rc = scenario_bandwidth();
  else {
    fprintf(stderr, "unknown scenario %s\n", argv[2]);
    return 2;
  }
  if (rc == 0) {
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) < 0)
      perror("system");
    printf("sync_netns_test %s: ok\n", argv[2]);
  }
  return rc;
}
