/*
 * End-to-end tests of the Kafka uplink: the real `sluice` binary, the C
 * client library for ingest, and a read_committed consumer that checks,
 * per node/stream/offset, that every stored event arrives exactly once and,
 * per source and lane, in offset order. The store (opened read-only after
 * the daemon stopped) is the reference for what must arrive.
 *
 *   sync_test SLUICE basic    publish, deliver, verify (exactly-once)
 *   sync_test SLUICE kill9    kill -9 during a drain, SL_SYNC_KILL_ROUNDS
 *                             rounds (default 20), then verify
 *   sync_test SLUICE alo      at-least-once: kill -9 rounds, nothing
 *                             missing, duplicates counted
 *   sync_test SLUICE fence    two daemons with the same node id: the first
 *                             is fenced and sends nothing more
 *   sync_test SLUICE poison   a record the broker refuses is dead-lettered
 *                             and the stream goes on
 *   sync_test SLUICE gaps     undelivered data evicted while Kafka is out
 *                             of reach arrives as gap records
 *   sync_test SLUICE json     a stream with `format: json`: kill -9 rounds,
 *                             then every value is the JSON of its event
 *   sync_test SLUICE restart KAFKA_SH
 *                             a private Kafka stopped under load and
 *                             restarted on the same ports and data
 *
 * Needs SLUICE_TEST_KAFKA_BOOTSTRAP (scripts/harness run); exits 77
 * (skipped) without it. Every wait polls a condition with a deadline.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "sluice/client.h"
#include "sluice/v1/event.pb-c.h"
#include "store/store.h"

static const char *sluice_bin, *bootstrap;
static char dir[256], run_id[64];
static pid_t live_pids[4];

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

static const char *kafka_sh; /* scripts/kafka.sh (scenario restart) */
static bool json_values;     /* the stream has format: json */
static int kafka_cmd(const char *verb);

static void fail_cleanup(void) {
  char cmd[600];
  for (size_t i = 0; i < 4; i++)
    if (live_pids[i] > 0)
      kill(live_pids[i], SIGKILL);
  if (kafka_sh)
    kafka_cmd("stop"); /* the private broker, if one was started */
  snprintf(cmd, sizeof(cmd), "tail -n 20 %s/*.log >&2", dir);
  if (system(cmd) < 0)
    perror("system");
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- daemon ------------------------------------------------------------ */

typedef struct daemon {
  char name[32]; /* "a", "b": data dir, config and log names */
  char cfg[320], log[320], data[320];
  pid_t pid;
  int port;
} daemon_t;

static void daemon_init(daemon_t *d, const char *name, const char *node,
                        const char *brokers, const char *extra) {
  memset(d, 0, sizeof(*d));
  snprintf(d->name, sizeof(d->name), "%s", name);
  snprintf(d->cfg, sizeof(d->cfg), "%s/%s.yaml", dir, name);
  snprintf(d->log, sizeof(d->log), "%s/%s.log", dir, name);
  snprintf(d->data, sizeof(d->data), "%s/data-%s", dir, name);
  FILE *f = fopen(d->cfg, "w");
  CHECK(f, "write %s", d->cfg);
  fprintf(f,
          "node:\n  id: %s\n  data_dir: %s\n"
          "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
          "  http:\n    address: \"\"\n"
          "admin:\n  address: \"\"\n"
          "kafka:\n  enabled: true\n  brokers: \"%s\"\n"
          "  checkpoint_topic: %s-ckpt\n%s",
          node, d->data, brokers, run_id, extra ? extra : "");
  fclose(f);
}

/* A config with one stream "readings" on topic <run>-<topic>. */
static void daemon_stream(daemon_t *d, const char *topic, const char *extra) {
  FILE *f = fopen(d->cfg, "a");
  CHECK(f, "append %s", d->cfg);
  fprintf(f, "streams:\n  - name: readings\n    topic: %s-%s\n%s", run_id,
          topic, extra ? extra : "");
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
  d->pid = pid;
  for (size_t i = 0; i < 4; i++)
    if (live_pids[i] <= 0) {
      live_pids[i] = pid;
      break;
    }
  for (;;) {
    char line[1024];
    int st;
    FILE *f = fopen(d->log, "r");
    int port = -1;
    /* The last ready line of the (appended) log is this run's. */
    while (f && fgets(line, sizeof(line), f)) {
      const char *p = strstr(line, " ready: ");
      if (!strncmp(line, "---- stopped", 12))
        port = -1; /* a ready line before this is an earlier run's */
      if (p && (p = strstr(p, "(port ")))
        sscanf(p, "(port %d)", &port);
    }
    if (f)
      fclose(f);
    CHECK(waitpid(pid, &st, WNOHANG) == 0, "daemon %s exited before ready",
          d->name);
    if (port > 0) {
      d->port = port;
      return;
    }
    CHECK(now_ms() < deadline, "daemon %s not ready in 30 s", d->name);
    usleep(20000); /* polling the log for a condition, with a deadline */
  }
}

static void forget_pid(pid_t pid) {
  for (size_t i = 0; i < 4; i++)
    if (live_pids[i] == pid)
      live_pids[i] = 0;
}

static int daemon_stop(daemon_t *d, int sig) {
  int st;
  uint64_t deadline = now_ms() + 60000;
  kill(d->pid, sig);
  while (waitpid(d->pid, &st, WNOHANG) == 0) {
    CHECK(now_ms() < deadline, "daemon %s did not exit on signal %d", d->name,
          sig);
    usleep(10000);
  }
  forget_pid(d->pid);
  d->pid = 0;
  d->port = 0;
  /* The next start appends to the log: mark the boundary. */
  FILE *f = fopen(d->log, "a");
  if (f) {
    fprintf(f, "---- stopped by signal %d ----\n", sig);
    fclose(f);
  }
  return st;
}

static bool log_has(const daemon_t *d, const char *needle) {
  char line[2048];
  bool found = false;
  FILE *f = fopen(d->log, "r");
  while (f && !found && fgets(line, sizeof(line), f))
    found = strstr(line, needle) != NULL;
  if (f)
    fclose(f);
  return found;
}

/* ---- publishing -------------------------------------------------------- */

static uint64_t seq; /* value of the next published reading */

/* Publishes n readings over 16 sources; returns events acked. */
static uint64_t publish(daemon_t *d, uint64_t n, size_t big_at, size_t big) {
  sl_client_opts_t o;
  sl_client_t *cl;
  sl_client_stats_t cs;
  char addr[64], src[64];
  snprintf(addr, sizeof(addr), "127.0.0.1:%d", d->port);
  sl_client_opts_init(&o);
  o.address = addr;
  o.client_id = "sync-test";
  o.max_batch_events = 500;
  o.linger_ms = 2;
  o.max_buffered_events = 1000000;
  CHECK(sl_client_new(&o, &cl) == 0, "client");
  for (uint64_t i = 0; i < n; i++, seq++) {
    snprintf(src, sizeof(src), "site/line%u/sensor%02u", (unsigned)(seq % 4),
             (unsigned)(seq % 16));
    if (big && i == big_at) {
      Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
      Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
      uint8_t *buf = malloc(big);
      for (size_t k = 0; k < big; k++)
        buf[k] = (uint8_t)(rand() >> 7); /* incompressible */
      raw.data.data = buf;
      raw.data.len = big;
      raw.content_type = "application/octet-stream";
      ev.source = src;
      ev.time_ns = sl_now_wall_ns();
      ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
      ev.raw = &raw;
      CHECK(sl_client_publish(cl, "readings", &ev, NULL) == 0, "publish big");
      free(buf);
      continue;
    }
    CHECK(sl_client_publish_reading(
              cl, "readings", src, sl_now_wall_ns(), (double)seq,
              SLUICE__V1__QUALITY__QUALITY_GOOD, "C", NULL) == 0,
          "publish %" PRIu64, seq);
  }
  CHECK(sl_client_flush(cl, 60000) == 0, "flush");
  sl_client_stats(cl, &cs);
  sl_client_free(cl);
  CHECK(cs.failed == 0, "%" PRIu64 " events failed", cs.failed);
  return cs.acked;
}

/* ---- the reference: what the store holds ------------------------------- */

typedef struct expect {
  uint64_t n;    /* offsets 0..n-1 */
  double *value; /* per offset; NaN for non-readings */
  bool *present; /* false: evicted (must be covered by a gap) */
} expect_t;

static void read_store(const daemon_t *d, expect_t *ex) {
  sl_store_opts_t so;
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  sl_store_stream_stats_t ss;
  uint32_t id;
  char err[256];
  int rc;
  sl_store_opts_init(&so);
  so.flags = SL_STORE_RDONLY;
  CHECK(sl_store_env_open(d->data, &so, &st, err, sizeof(err)) == 0,
        "open store: %s", err);
  CHECK(sl_store_stream_lookup(st, "readings", &id) == 0, "stream");
  CHECK(sl_store_stream_stats(st, id, &ss) == 0, "stats");
  ex->n = ss.next_offset;
  ex->value = calloc(ex->n + 1, sizeof(double));
  ex->present = calloc(ex->n + 1, sizeof(bool));
  CHECK(sl_store_cursor_open(st, id, 0, SL_STORE_OFFSET_END, &cur) == 0, "cur");
  while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
    if (rec.status)
      continue;
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b && b->n_events == rec.count, "batch at %" PRIu64, rec.first_offset);
    for (size_t i = 0; i < b->n_events; i++) {
      uint64_t off = rec.first_offset + i;
      ex->present[off] = true;
      ex->value[off] =
          b->events[i]->body_case == SLUICE__V1__EVENT__BODY_READING
              ? b->events[i]->reading->double_value
              : -1;
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
}

/* ---- the consumer ------------------------------------------------------ */

typedef struct seen {
  uint32_t *count; /* per offset */
  uint64_t n, distinct, dups, records, gaps, gap_events, historical;
  uint64_t order_errors;
  char first_error[256];
} seen_t;

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

/*
 * A `format: json` value as an Event holding the fields the checks read
 * (source, ingest time, the reading's value, the gap's range); allocated
 * with malloc so sluice__v1__event__free_unpacked(ev, NULL) frees it.
 */
static Sluice__V1__Event *event_from_json(const rd_kafka_message_t *m,
                                          uint64_t off) {
  json_error_t je;
  json_t *o = json_loadb(m->payload, m->len, 0, &je);
  CHECK(o, "offset %" PRIu64 ": value is not JSON: %s", off, je.text);
  Sluice__V1__Event *ev = malloc(sizeof(*ev));
  CHECK(ev, "malloc");
  sluice__v1__event__init(ev);
  const char *src = json_string_value(json_object_get(o, "source"));
  CHECK(src && (ev->source = strdup(src)), "offset %" PRIu64 ": no source",
        off);
  CHECK(!strcmp(json_string_value(json_object_get(o, "stream")), "readings"),
        "offset %" PRIu64 ": stream field", off);
  ev->ingest_time_ns = json_integer_value(json_object_get(o, "ingest_time_ns"));
  json_t *r = json_object_get(o, "reading"), *g = json_object_get(o, "gap");
  if (r) {
    CHECK(json_integer_value(json_object_get(o, "offset")) == (json_int_t)off,
          "offset %" PRIu64 ": offset field", off);
    Sluice__V1__Reading *rd = malloc(sizeof(*rd));
    CHECK(rd, "malloc");
    sluice__v1__reading__init(rd);
    json_t *v = json_object_get(r, "value");
    CHECK(json_is_number(v), "offset %" PRIu64 ": reading without a value",
          off);
    rd->value_case = SLUICE__V1__READING__VALUE_DOUBLE_VALUE;
    rd->double_value = json_number_value(v);
    ev->body_case = SLUICE__V1__EVENT__BODY_READING;
    ev->reading = rd;
  } else if (g) {
    Sluice__V1__Gap *gp = malloc(sizeof(*gp));
    CHECK(gp, "malloc");
    sluice__v1__gap__init(gp);
    gp->first_offset =
        (uint64_t)json_integer_value(json_object_get(g, "first_offset"));
    gp->last_offset =
        (uint64_t)json_integer_value(json_object_get(g, "last_offset"));
    ev->body_case = SLUICE__V1__EVENT__BODY_GAP;
    ev->gap = gp;
  }
  json_decref(o);
  return ev;
}

/* Last offset seen per (source, lane), for the order check. */
typedef struct src_last {
  char key[64];
  int lane;
  int64_t last;
} src_last_t;

/*
 * Reads topic (all partitions, read_committed) from the beginning. With
 * want > 0 it returns once `want` distinct offsets were seen (or the
 * deadline passed); with want == 0 it reads to the end of every partition
 * (call it when no producer is active).
 */
static void consume(const char *topic, const char *node, const expect_t *ex,
                    seen_t *s, uint64_t want, int timeout_ms) {
  char e[512], buf[64], nb[80];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  snprintf(buf, sizeof(buf), "%s-verify", topic);
  CHECK(
      !rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, e, sizeof(e)) &&
          !rd_kafka_conf_set(conf, "group.id", buf, e, sizeof(e)) &&
          !rd_kafka_conf_set(conf, "enable.partition.eof", "true", e,
                             sizeof(e)) &&
          !rd_kafka_conf_set(conf, "isolation.level", "read_committed", e,
                             sizeof(e)),
      "conf: %s", e);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
  CHECK(rk, "consumer: %s", e);
  const rd_kafka_metadata_t *md = NULL;
  rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
  uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
  int nparts = 0;
  while (!nparts) {
    CHECK(rd_kafka_metadata(rk, 0, rkt, &md, 5000) == 0, "metadata %s", topic);
    if (md->topic_cnt == 1 && !md->topics[0].err)
      nparts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    CHECK(nparts || now_ms() < deadline, "topic %s never appeared", topic);
    if (!nparts)
      usleep(100000); /* polling for the topic, with a deadline */
  }
  rd_kafka_topic_destroy(rkt);
  rd_kafka_topic_partition_list_t *parts =
      rd_kafka_topic_partition_list_new(nparts);
  for (int p = 0; p < nparts; p++)
    rd_kafka_topic_partition_list_add(parts, topic, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  CHECK(rd_kafka_assign(rk, parts) == 0, "assign");
  rd_kafka_topic_partition_list_destroy(parts);

  memset(s, 0, sizeof(*s));
  s->n = ex->n;
  s->count = calloc(ex->n + 1, sizeof(uint32_t));
  src_last_t *last = calloc(256, sizeof(*last));
  size_t nlast = 0;
  int eofs = 0;
  snprintf(nb, sizeof(nb), "%s", node);
  while (want ? s->distinct < want : eofs < nparts) {
    CHECK(now_ms() < deadline,
          "%s: %" PRIu64 " distinct offsets of %" PRIu64 " in %d ms (eofs %d)",
          topic, s->distinct, want ? want : ex->n, timeout_ms, eofs);
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    if (!m)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      eofs++;
      rd_kafka_message_destroy(m);
      continue;
    }
    CHECK(!m->err, "consume: %s", rd_kafka_message_errstr(m));
    s->records++;
    char hb[64], ob[32], lb[8];
    CHECK(header(m, "node", hb, sizeof(hb)) && !strcmp(hb, nb),
          "record without node header %s", nb);
    CHECK(header(m, "stream", hb, sizeof(hb)) && !strcmp(hb, "readings"),
          "stream header");
    CHECK(header(m, "schema", hb, sizeof(hb)) &&
              !strcmp(hb,
                      json_values ? "sluice.v1.Event+json" : "sluice.v1.Event"),
          "schema header");
    CHECK(header(m, "offset", ob, sizeof(ob)), "offset header");
    uint64_t off = strtoull(ob, NULL, 10);
    Sluice__V1__Event *ev =
        json_values ? event_from_json(m, off)
                    : sluice__v1__event__unpack(NULL, m->len, m->payload);
    CHECK(ev, "value at offset %" PRIu64 " is not an Event", off);
    if (header(m, "gap", lb, sizeof(lb))) {
      CHECK(ev->body_case == SLUICE__V1__EVENT__BODY_GAP, "gap record body");
      s->gaps++;
      for (uint64_t k = ev->gap->first_offset;
           k <= ev->gap->last_offset && k < ex->n; k++) {
        if (s->count[k]++ == 0)
          s->distinct++;
        else
          s->dups++;
        s->gap_events++;
      }
      sluice__v1__event__free_unpacked(ev, NULL);
      rd_kafka_message_destroy(m);
      continue;
    }
    int lane = header(m, "historical", lb, sizeof(lb)) != NULL;
    s->historical += (uint64_t)lane;
    CHECK(off < ex->n, "offset %" PRIu64 " beyond the store's %" PRIu64, off,
          ex->n);
    CHECK(ex->present[off], "offset %" PRIu64 " was evicted but delivered",
          off);
    CHECK(ev->ingest_time_ns > 0, "offset %" PRIu64 " has no ingest time", off);
    if (ex->value[off] >= 0)
      CHECK(ev->body_case == SLUICE__V1__EVENT__BODY_READING &&
                ev->reading->double_value == ex->value[off],
            "offset %" PRIu64 " carries the wrong event", off);
    CHECK(m->key_len == strlen(ev->source) &&
              !memcmp(m->key, ev->source, m->key_len),
          "key is not the source");
    size_t i;
    for (i = 0; i < nlast; i++)
      if (last[i].lane == lane && !strcmp(last[i].key, ev->source))
        break;
    if (i == nlast && nlast < 256) {
      snprintf(last[nlast].key, sizeof(last[nlast].key), "%s", ev->source);
      last[nlast].lane = lane;
      last[nlast++].last = -1;
    }
    /* Order is checked on first deliveries: in at-least-once mode a batch
     * resent after a crash legitimately arrives again after later
     * offsets (those copies are counted as duplicates below). */
    if (i < 256 && s->count[off] == 0) {
      if ((int64_t)off <= last[i].last && s->order_errors++ == 0)
        snprintf(s->first_error, sizeof(s->first_error),
                 "source %s: offset %" PRIu64 " after %" PRId64, ev->source,
                 off, last[i].last);
      last[i].last = (int64_t)off;
    }
    if (s->count[off]++ == 0)
      s->distinct++;
    else
      s->dups++;
    sluice__v1__event__free_unpacked(ev, NULL);
    rd_kafka_message_destroy(m);
  }
  free(last);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
}

/* Every stored offset exactly once (or in exactly one gap), in order. */
static void verify_exactly_once(const char *topic, const char *node,
                                const daemon_t *d, bool allow_dups,
                                uint64_t *missing_allowed) {
  expect_t ex;
  seen_t s;
  char t[128];
  snprintf(t, sizeof(t), "%s-%s", run_id, topic);
  read_store(d, &ex);
  consume(t, node, &ex, &s, 0, 60000);
  uint64_t missing = 0;
  for (uint64_t k = 0; k < ex.n; k++)
    if (!s.count[k] && ex.present[k])
      missing++;
  printf("%s: %" PRIu64 " stored, %" PRIu64 " records, %" PRIu64
         " distinct, %" PRIu64 " duplicates, %" PRIu64 " missing, %" PRIu64
         " historical, %" PRIu64 " gap records (%" PRIu64 " events)\n",
         t, ex.n, s.records, s.distinct, s.dups, missing, s.historical, s.gaps,
         s.gap_events);
  CHECK(s.order_errors == 0, "order: %s", s.first_error);
  if (!allow_dups)
    CHECK(s.dups == 0, "%" PRIu64 " duplicates", s.dups);
  if (missing_allowed)
    *missing_allowed = missing;
  else
    CHECK(missing == 0 && s.distinct == ex.n,
          "%" PRIu64 " stored offsets missing, %" PRIu64 " of %" PRIu64
          " covered",
          missing, s.distinct, ex.n);
  free(s.count);
  free(ex.value);
  free(ex.present);
}

/* Waits until the topic holds every offset the running daemon stored. */
static void await_delivery(const char *topic, const char *node, uint64_t n,
                           int timeout_ms) {
  expect_t ex = {.n = n + 1};
  seen_t s;
  char t[128];
  snprintf(t, sizeof(t), "%s-%s", run_id, topic);
  ex.value = calloc(n + 2, sizeof(double));
  ex.present = calloc(n + 2, sizeof(bool));
  for (uint64_t k = 0; k <= n; k++) {
    ex.value[k] = -1; /* content is checked by verify_exactly_once */
    ex.present[k] = true;
  }
  consume(t, node, &ex, &s, n, timeout_ms);
  free(s.count);
  free(ex.value);
  free(ex.present);
}

/* ---- scenarios --------------------------------------------------------- */

static int scenario_basic(void) {
  daemon_t a;
  daemon_init(&a, "a", "node-basic", bootstrap, NULL);
  daemon_stream(&a, "basic", NULL);
  daemon_start(&a);
  uint64_t n = publish(&a, 20000, 0, 0);
  await_delivery("basic", "node-basic", n, 60000);
  CHECK(daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  verify_exactly_once("basic", "node-basic", &a, false, NULL);
  return 0;
}

static int kill_rounds(const char *topic, const char *node, const char *extra,
                       const char *stream_extra, int rounds, bool alo) {
  const char *e = getenv("SL_SYNC_KILL_ROUNDS");
  if (e)
    rounds = atoi(e);
  daemon_t a;
  daemon_init(&a, "a", node, bootstrap, extra);
  daemon_stream(&a, topic, stream_extra);
  uint64_t total = 0;
  srand((unsigned)getpid());
  for (int r = 0; r < rounds; r++) {
    daemon_start(&a);
    total += publish(&a, 20000, 0, 0);
    /* A random point of the drain: the uplink is reading, producing or
     * committing. (Fault injection timing, not synchronisation.) */
    usleep((useconds_t)(rand() % 1200) * 1000);
    daemon_stop(&a, SIGKILL);
  }
  daemon_start(&a);
  await_delivery(topic, node, total, 120000);
  CHECK(daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  printf("%d kill -9 rounds, %" PRIu64 " events\n", rounds, total);
  verify_exactly_once(topic, node, &a, alo, NULL);
  return 0;
}

static int scenario_kill9(void) {
  /* Small chunks and a low lane threshold: kills land in every phase,
   * with two lanes too. */
  return kill_rounds("kill9", "node-kill9",
                     "  chunk_events: 5000\n  backlog_threshold: 30000\n", NULL,
                     20, false);
}

static int scenario_json(void) {
  json_values = true;
  return kill_rounds("json", "node-json",
                     "  chunk_events: 5000\n  backlog_threshold: 30000\n",
                     "    format: json\n", 5, false);
}

static int scenario_alo(void) {
  return kill_rounds("alo", "node-alo",
                     "  delivery: at_least_once\n  chunk_events: 5000\n", NULL,
                     20, true);
}

static int scenario_fence(void) {
  daemon_t a, b;
  daemon_init(&a, "a", "node-fence", bootstrap, NULL);
  daemon_stream(&a, "fence-a", NULL);
  daemon_init(&b, "b", "node-fence", bootstrap, NULL);
  daemon_stream(&b, "fence-b", NULL);
  daemon_start(&a);
  uint64_t na = publish(&a, 5000, 0, 0);
  await_delivery("fence-a", "node-fence", na, 60000);
  daemon_start(&b); /* same node id: its init_transactions fences a */
  uint64_t nb = publish(&b, 5000, 0, 0);
  await_delivery("fence-b", "node-fence", nb, 60000);
  /* a learns it is fenced at its next transaction. */
  publish(&a, 1000, 0, 0);
  uint64_t deadline = now_ms() + 60000;
  while (!log_has(&a, "uplink fenced")) {
    CHECK(now_ms() < deadline, "daemon a never reported being fenced");
    usleep(50000); /* polling the log for a condition, with a deadline */
  }
  CHECK(daemon_stop(&a, SIGTERM) == 0, "a exit status");
  CHECK(daemon_stop(&b, SIGTERM) == 0, "b exit status");
  /* a's topic holds exactly its first na events: nothing after fencing. */
  expect_t ex;
  seen_t s;
  char t[128];
  read_store(&a, &ex);
  CHECK(ex.n == na + 1000, "a stored %" PRIu64, ex.n);
  ex.n = na + 1000;
  snprintf(t, sizeof(t), "%s-fence-a", run_id);
  consume(t, "node-fence", &ex, &s, 0, 60000);
  CHECK(s.distinct == na && s.dups == 0,
        "a's topic: %" PRIu64 " distinct, %" PRIu64 " dups, want %" PRIu64,
        s.distinct, s.dups, na);
  for (uint64_t k = na; k < ex.n; k++)
    CHECK(!s.count[k], "offset %" PRIu64 " sent after fencing", k);
  free(s.count);
  free(ex.value);
  free(ex.present);
  verify_exactly_once("fence-b", "node-fence", &b, false, NULL);
  return 0;
}

/* The dead-letter stream holds the refused event (offset off, a raw body of
 * len bytes) once, with where it came from and why. */
static void check_dead_letter(const daemon_t *d, uint64_t off, size_t len) {
  sl_store_opts_t so;
  sl_store_t *st;
  sl_store_cursor_t *cur;
  sl_store_rec_t rec;
  uint32_t id;
  char err[256], want[24];
  size_t events = 0;
  int rc;
  sl_store_opts_init(&so);
  so.flags = SL_STORE_RDONLY;
  CHECK(sl_store_env_open(d->data, &so, &st, err, sizeof(err)) == 0,
        "open store: %s", err);
  CHECK(sl_store_stream_lookup(st, "dead", &id) == 0, "dead-letter stream");
  CHECK(sl_store_cursor_open(st, id, 0, SL_STORE_OFFSET_END, &cur) == 0, "cur");
  snprintf(want, sizeof(want), "%" PRIu64, off);
  while ((rc = sl_store_cursor_next(cur, &rec)) == 0) {
    Sluice__V1__EventBatch *b =
        sluice__v1__event_batch__unpack(NULL, rec.len, rec.payload);
    CHECK(b, "dead-letter batch");
    for (size_t i = 0; i < b->n_events; i++, events++) {
      const Sluice__V1__Event *e = b->events[i];
      CHECK(e->body_case == SLUICE__V1__EVENT__BODY_RAW &&
                e->raw->data.len == len,
            "dead letter %zu is not the refused event", events);
      const char *stream = NULL, *o = NULL, *reason = NULL;
      for (size_t k = 0; k < e->n_attributes; k++) {
        const char *key = e->attributes[k]->key;
        if (!strcmp(key, "dlq.stream"))
          stream = e->attributes[k]->value;
        else if (!strcmp(key, "dlq.offset"))
          o = e->attributes[k]->value;
        else if (!strcmp(key, "dlq.reason"))
          reason = e->attributes[k]->value;
      }
      CHECK(stream && !strcmp(stream, "readings"), "dlq.stream");
      CHECK(o && !strcmp(o, want), "dlq.offset %s, want %s", o ? o : "-", want);
      CHECK(reason && *reason, "dlq.reason");
      printf("dead letter: stream %s offset %s reason %s\n", stream, o, reason);
    }
    sluice__v1__event_batch__free_unpacked(b, NULL);
  }
  sl_store_cursor_close(cur);
  sl_store_env_close(st);
  CHECK(events == 1, "%zu dead letters, want 1", events);
}

static int scenario_poison(void) {
  daemon_t a;
  /* sluice lets 4 MiB through; the broker's limit (1 MiB) refuses it. */
  daemon_init(&a, "a", "node-poison", bootstrap,
              "  max_record_bytes: 4MiB\n  dead_letter_stream: dead\n");
  daemon_stream(&a, "poison", "  - name: dead\n");
  daemon_start(&a);
  uint64_t n = publish(&a, 3000, 1500, 1500000);
  CHECK(n == 3000, "acked %" PRIu64, n);
  /* Everything but the big one arrives: the lane did not stall. */
  await_delivery("poison", "node-poison", 2999, 60000);
  CHECK(daemon_stop(&a, SIGTERM) == 0, "exit");
  uint64_t missing = 0;
  verify_exactly_once("poison", "node-poison", &a, false, &missing);
  CHECK(missing == 1, "%" PRIu64 " missing, want just the poison", missing);
  check_dead_letter(&a, 1500, 1500000);
  return 0;
}

static int scenario_gaps(void) {
  daemon_t a;
  /* Kafka out of reach first: an unused port. */
  daemon_init(&a, "a", "node-gaps", "127.0.0.1:1",
              "store:\n  budget_bytes: 2MiB\n");
  daemon_stream(&a, "gaps", "    policy: drop_oldest\n");
  daemon_start(&a);
  publish(&a, 300000, 0, 0);
  CHECK(daemon_stop(&a, SIGTERM) == 0, "exit");
  daemon_init(&a, "a", "node-gaps", bootstrap,
              "store:\n  budget_bytes: 2MiB\n");
  daemon_stream(&a, "gaps", "    policy: drop_oldest\n");
  daemon_start(&a);
  expect_t ex;
  read_store(&a, &ex); /* read-only open works beside the daemon */
  uint64_t n = ex.n;
  bool evicted = n > 0 && !ex.present[0];
  free(ex.value);
  free(ex.present);
  await_delivery("gaps", "node-gaps", n, 60000);
  CHECK(daemon_stop(&a, SIGTERM) == 0, "exit");
  verify_exactly_once("gaps", "node-gaps", &a, false, NULL);
  CHECK(evicted, "nothing was evicted: no gap to check");
  return 0;
}

/* ---- a private Kafka (scenario restart) -------------------------------- */

/* Runs `scripts/kafka.sh VERB` on the private broker in DIR/kafka. */
static int kafka_cmd(const char *verb) {
  char cmd[1200];
  snprintf(cmd, sizeof(cmd),
           "SLUICE_KAFKA_DIR=%s/kafka %s %s >>%s/kafka-sh.log 2>&1", dir,
           kafka_sh, verb, dir);
  int st = system(cmd);
  return st == -1 || !WIFEXITED(st) ? -1 : WEXITSTATUS(st);
}

/* Starts `scripts/kafka.sh VERB` in a child; returns its pid. */
static pid_t kafka_cmd_async(const char *verb) {
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0)
    _exit(kafka_cmd(verb));
  return pid;
}

static void kafka_cmd_wait(pid_t pid, const char *verb) {
  int st;
  CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && !WEXITSTATUS(st),
        "kafka.sh %s failed (see %s/kafka-sh.log)", verb, dir);
}

/* Counts the lines of d's log that contain needle. */
static int log_count(const daemon_t *d, const char *needle) {
  char line[2048];
  int n = 0;
  FILE *f = fopen(d->log, "r");
  while (f && fgets(line, sizeof(line), f))
    n += strstr(line, needle) != NULL;
  if (f)
    fclose(f);
  return n;
}

/*
 * Kafka stopped under load and started again with the same data and ports
 * (a private broker: the shared one serves other tests). Events published
 * before, while it stops, while it is down and while it comes back must
 * all arrive exactly once.
 */
static int scenario_restart(void) {
  static char boot[128];
  char path[400];
  CHECK(kafka_sh, "restart needs the path of scripts/kafka.sh");
  CHECK(kafka_cmd("start") == 0 && kafka_cmd("wait-ready") == 0,
        "private kafka did not start (see %s/kafka-sh.log)", dir);
  snprintf(path, sizeof(path), "%s/kafka/bootstrap", dir);
  FILE *f = fopen(path, "r");
  CHECK(f && fgets(boot, sizeof(boot), f), "read %s", path);
  fclose(f);
  boot[strcspn(boot, "\n")] = '\0';
  bootstrap = boot; /* the consumer reads the private broker too */

  daemon_t a;
  daemon_init(&a, "a", "node-restart", bootstrap, "  chunk_events: 5000\n");
  daemon_stream(&a, "restart", NULL);
  daemon_start(&a);
  uint64_t n = publish(&a, 30000, 0, 0);
  /* Stop Kafka while the uplink drains and the load goes on. */
  pid_t k = kafka_cmd_async("stop");
  n += publish(&a, 30000, 0, 0);
  kafka_cmd_wait(k, "stop");
  int errs = log_count(&a, "warn  sync: uplink: ");
  n += publish(&a, 20000, 0, 0); /* stored while Kafka is down */
  uint64_t deadline = now_ms() + 60000;
  while (log_count(&a, "warn  sync: uplink: ") == errs) {
    CHECK(now_ms() < deadline, "the uplink never noticed Kafka was down");
    usleep(50000); /* polling the log for a condition, with a deadline */
  }
  /* Back on the same ports with the same data, under load again. */
  k = kafka_cmd_async("restart");
  n += publish(&a, 20000, 0, 0);
  kafka_cmd_wait(k, "restart");
  CHECK(kafka_cmd("wait-ready") == 0, "kafka not ready after restart");
  n += publish(&a, 20000, 0, 0);
  await_delivery("restart", "node-restart", n, 180000);
  CHECK(daemon_stop(&a, SIGTERM) == 0, "SIGTERM exit status");
  verify_exactly_once("restart", "node-restart", &a, false, NULL);
  kafka_cmd("stop");
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3 && argc != 4) {
    fprintf(stderr, "usage: sync_test SLUICE_BINARY SCENARIO [KAFKA_SH]\n");
    return 2;
  }
  sluice_bin = argv[1];
  kafka_sh = argc == 4 ? argv[3] : NULL;
  bootstrap = getenv("SLUICE_TEST_KAFKA_BOOTSTRAP");
  if (!bootstrap || !*bootstrap) {
    printf("sync_test: SKIP: SLUICE_TEST_KAFKA_BOOTSTRAP is not set (run "
           "under scripts/harness run)\n");
    return 77;
  }
  snprintf(run_id, sizeof(run_id), "sync-%s-%d-%lld", argv[2], (int)getpid(),
           (long long)(sl_now_wall_ns() / 1000000));
  snprintf(dir, sizeof(dir), "/tmp/sl_sync_test.XXXXXX");
  CHECK(mkdtemp(dir), "mkdtemp");
  int rc;
  if (!strcmp(argv[2], "basic"))
    rc = scenario_basic();
  else if (!strcmp(argv[2], "kill9"))
    rc = scenario_kill9();
  else if (!strcmp(argv[2], "alo"))
    rc = scenario_alo();
  else if (!strcmp(argv[2], "fence"))
    rc = scenario_fence();
  else if (!strcmp(argv[2], "poison"))
    rc = scenario_poison();
  else if (!strcmp(argv[2], "gaps"))
    rc = scenario_gaps();
  else if (!strcmp(argv[2], "restart"))
    rc = scenario_restart();
  else if (!strcmp(argv[2], "json"))
    rc = scenario_json();
  else {
    fprintf(stderr, "unknown scenario %s\n", argv[2]);
    return 2;
  }
  if (rc == 0) {
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) < 0)
      perror("system");
    printf("sync_test %s: ok\n", argv[2]);
  }
  return rc;
}
