/* Helpers of the uplink's end-to-end tests; see sync_common.h. */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "sluice/v1/event.pb-c.h"
#include "store/store.h"
#include "tests/sync/sync_common.h"

const char *sync_bin, *sync_bootstrap;
char sync_dir[256], sync_run_id[64];
bool sync_json_values;
bool sync_json_compact;
const char *sync_headers_absent[6];
bool sync_hist_newest_first;
uint64_t sync_seq;
int64_t sync_time_offset_ns;

static pid_t live_pids[4]; /* killed when a check fails */

/* ---- the run ------------------------------------------------------------ */

void sync_run_init(const char *kind, const char *scenario) {
  snprintf(sync_run_id, sizeof(sync_run_id), "%s-%s-%d-%lld", kind, scenario,
           (int)getpid(), (long long)(sl_now_wall_ns() / 1000000));
  snprintf(sync_dir, sizeof(sync_dir), "/tmp/sl_%s_test.XXXXXX", kind);
  CHECK(mkdtemp(sync_dir), "mkdtemp");
}

void sync_run_remove(void) {
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", sync_dir);
  if (system(cmd) < 0)
    perror("system");
}

uint64_t sync_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void sync_kill_daemons(void) {
  for (size_t i = 0; i < 4; i++)
    if (live_pids[i] > 0)
      kill(live_pids[i], SIGKILL);
}

void sync_tail_logs(int lines) {
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "tail -n %d %s/*.log >&2", lines, sync_dir);
  if (system(cmd) < 0)
    perror("system");
}

/* ---- the daemon --------------------------------------------------------- */

void sync_daemon_init(sync_daemon_t *d, const char *name, const char *node,
                      const char *brokers, int flags, const char *extra) {
  memset(d, 0, sizeof(*d));
  snprintf(d->name, sizeof(d->name), "%s", name);
  snprintf(d->cfg, sizeof(d->cfg), "%s/%s.yaml", sync_dir, name);
  snprintf(d->log, sizeof(d->log), "%s/%s.log", sync_dir, name);
  snprintf(d->data, sizeof(d->data), "%s/data-%s", sync_dir, name);
  d->admin = flags & SYNC_ADMIN;
  FILE *f = fopen(d->cfg, "w");
  CHECK(f, "write %s", d->cfg);
  fprintf(f,
          "node:\n  id: %s\n  data_dir: %s\n"
          "listeners:\n  native:\n    tcp: \"127.0.0.1:0\"\n"
          "  http:\n    address: \"\"\n"
          "admin:\n  address: \"%s\"\n"
          "kafka:\n  enabled: %s\n  brokers: \"%s\"\n"
          "  checkpoint_topic: %s-ckpt\n%s",
          node, d->data, d->admin ? "127.0.0.1:0" : "",
          flags & SYNC_NO_KAFKA ? "false" : "true", brokers, sync_run_id,
          extra ? extra : "");
  fclose(f);
}

void sync_daemon_stream(sync_daemon_t *d, const char *topic,
                        const char *extra) {
  FILE *f = fopen(d->cfg, "a");
  CHECK(f, "append %s", d->cfg);
  fprintf(f, "streams:\n  - name: readings\n    topic: %s-%s\n%s", sync_run_id,
          topic, extra ? extra : "");
  fclose(f);
}

void sync_daemon_start(sync_daemon_t *d) {
  uint64_t deadline = sync_now_ms() + 30000;
  pid_t pid = fork();
  CHECK(pid >= 0, "fork");
  if (pid == 0) {
    int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    execl(sync_bin, sync_bin, "run", "-c", d->cfg, (char *)NULL);
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
    int st, port = -1, admin = -1;
    FILE *f = fopen(d->log, "r");
    /* The last ready line of the (appended) log is this run's. */
    while (f && fgets(line, sizeof(line), f)) {
      const char *p = strstr(line, " ready: ");
      if (!strncmp(line, "---- stopped", 12))
        port = admin = -1; /* a ready line before this is an earlier run's */
      if (p && (p = strstr(p, "(port ")) && sscanf(p, "(port %d)", &port) &&
          d->admin && (p = strstr(p, " admin ")) && (p = strstr(p, "(port ")))
        sscanf(p, "(port %d)", &admin);
    }
    if (f)
      fclose(f);
    CHECK(waitpid(pid, &st, WNOHANG) == 0, "daemon %s exited before ready",
          d->name);
    if (port > 0 && (!d->admin || admin > 0)) {
      d->port = port;
      d->admin_port = d->admin ? admin : 0;
      return;
    }
    CHECK(sync_now_ms() < deadline, "daemon %s not ready in 30 s", d->name);
    usleep(20000); /* polling the log for a condition, with a deadline */
  }
}

int sync_daemon_stop(sync_daemon_t *d, int sig) {
  int st;
  uint64_t deadline = sync_now_ms() + 60000;
  kill(d->pid, sig);
  while (waitpid(d->pid, &st, WNOHANG) == 0) {
    CHECK(sync_now_ms() < deadline, "daemon %s did not exit on signal %d",
          d->name, sig);
    usleep(10000);
  }
  for (size_t i = 0; i < 4; i++)
    if (live_pids[i] == d->pid)
      live_pids[i] = 0;
  d->pid = 0;
  d->port = d->admin_port = 0;
  /* The next start appends to the log: mark the boundary. */
  FILE *f = fopen(d->log, "a");
  if (f) {
    fprintf(f, "---- stopped by signal %d ----\n", sig);
    fclose(f);
  }
  return st;
}

int sync_log_count(const sync_daemon_t *d, const char *needle) {
  char line[2048];
  int n = 0;
  FILE *f = fopen(d->log, "r");
  while (f && fgets(line, sizeof(line), f))
    n += strstr(line, needle) != NULL;
  if (f)
    fclose(f);
  return n;
}

bool sync_log_has(const sync_daemon_t *d, const char *needle) {
  return sync_log_count(d, needle) > 0;
}

/* ---- publishing --------------------------------------------------------- */

void sync_pub_open(sync_pub_t *p, const sync_daemon_t *d,
                   const char *client_id) {
  sl_client_opts_t o;
  snprintf(p->addr, sizeof(p->addr), "127.0.0.1:%d", d->port);
  sl_client_opts_init(&o);
  o.address = p->addr;
  o.client_id = client_id;
  o.max_batch_events = 500;
  o.linger_ms = 2;
  o.max_buffered_events = 1000000;
  CHECK(sl_client_new(&o, &p->cl) == 0, "client");
  p->sent = 0;
}

/* The source of reading seq: 16 sensors on 4 lines. */
static void source_of(uint64_t seq, char *src, size_t cap) {
  snprintf(src, cap, "site/line%u/sensor%02u", (unsigned)(seq % 4),
           (unsigned)(seq % 16));
}

void sync_pub_one(sync_pub_t *p) {
  char src[64];
  source_of(sync_seq, src, sizeof(src));
  CHECK(sl_client_publish_reading(
            p->cl, "readings", src, sl_now_wall_ns() + sync_time_offset_ns,
            (double)sync_seq, SLUICE__V1__QUALITY__QUALITY_GOOD, "C",
            NULL) == 0,
        "publish %" PRIu64, sync_seq);
  sync_seq++;
  p->sent++;
}

/* Publishes a raw event of len incompressible bytes (source of sync_seq). */
static void pub_raw(sync_pub_t *p, size_t len) {
  Sluice__V1__Event ev = SLUICE__V1__EVENT__INIT;
  Sluice__V1__Raw raw = SLUICE__V1__RAW__INIT;
  char src[64];
  uint8_t *buf = malloc(len);
  CHECK(buf, "malloc");
  for (size_t k = 0; k < len; k++)
    buf[k] = (uint8_t)(rand() >> 7); /* incompressible */
  source_of(sync_seq, src, sizeof(src));
  raw.data.data = buf;
  raw.data.len = len;
  raw.content_type = "application/octet-stream";
  ev.source = src;
  ev.time_ns = sl_now_wall_ns();
  ev.body_case = SLUICE__V1__EVENT__BODY_RAW;
  ev.raw = &raw;
  CHECK(sl_client_publish(p->cl, "readings", &ev, NULL) == 0, "publish big");
  free(buf);
  sync_seq++;
  p->sent++;
}

uint64_t sync_pub_close(sync_pub_t *p, bool all_acked) {
  sl_client_stats_t cs;
  CHECK(sl_client_flush(p->cl, 60000) == 0, "flush");
  sl_client_stats(p->cl, &cs);
  sl_client_free(p->cl);
  p->cl = NULL;
  CHECK(cs.failed == 0 && (!all_acked || cs.acked == p->sent),
        "%" PRIu64 " acked, %" PRIu64 " failed of %" PRIu64, cs.acked,
        cs.failed, p->sent);
  return cs.acked;
}

uint64_t sync_publish(const sync_daemon_t *d, uint64_t n, size_t big_at,
                      size_t big) {
  sync_pub_t p;
  sync_pub_open(&p, d, "sync-test");
  for (uint64_t i = 0; i < n; i++) {
    if (big && i == big_at)
      pub_raw(&p, big);
    else
      sync_pub_one(&p);
  }
  return sync_pub_close(&p, false);
}

/* ---- the reference: what the store holds -------------------------------- */

void sync_read_store(const sync_daemon_t *d, sync_expect_t *ex) {
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
  ex->n = ss.next_offset;
  ex->value = calloc(ex->n + 1, sizeof(double));
  ex->present = calloc(ex->n + 1, sizeof(bool));
  CHECK(sl_store_cursor_open(st, id, 0, SL_STORE_OFFSET_END, &cur) == 0, "cur");
  while (sl_store_cursor_next(cur, &rec) == 0) {
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

void sync_expect_free(sync_expect_t *ex) {
  free(ex->value);
  free(ex->present);
}

/* ---- the consumer ------------------------------------------------------- */

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
/* The same from `json_layout: compact` (docs/SCHEMAS.md "Compact JSON"):
 * short keys, stream and offset only in the headers. Frees o. */
static Sluice__V1__Event *compact_event(json_t *o, Sluice__V1__Event *ev,
                                        uint64_t off) {
  const char *src = json_string_value(json_object_get(o, "s"));
  CHECK(src && (ev->source = strdup(src)), "offset %" PRIu64 ": no source",
        off);
  CHECK(!json_object_get(o, "stream") && !json_object_get(o, "offset"),
        "offset %" PRIu64 ": compact values leave stream and offset out", off);
  ev->ingest_time_ns = json_integer_value(json_object_get(o, "i"));
  json_t *r = json_object_get(o, "r"), *g = json_object_get(o, "g");
  if (r) {
    Sluice__V1__Reading *rd = malloc(sizeof(*rd));
    CHECK(rd, "malloc");
    sluice__v1__reading__init(rd);
    json_t *v = json_object_get(r, "v");
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
    gp->first_offset = (uint64_t)json_integer_value(json_object_get(g, "f"));
    gp->last_offset = (uint64_t)json_integer_value(json_object_get(g, "l"));
    ev->body_case = SLUICE__V1__EVENT__BODY_GAP;
    ev->gap = gp;
  }
  json_decref(o);
  return ev;
}

static Sluice__V1__Event *event_from_json(const rd_kafka_message_t *m,
                                          uint64_t off) {
  json_error_t je;
  json_t *o = json_loadb(m->payload, m->len, 0, &je);
  CHECK(o, "offset %" PRIu64 ": value is not JSON: %s", off, je.text);
  Sluice__V1__Event *ev = malloc(sizeof(*ev));
  CHECK(ev, "malloc");
  sluice__v1__event__init(ev);
  if (sync_json_compact)
    return compact_event(o, ev, off);
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

void sync_consume(const char *topic, const char *node, const sync_expect_t *ex,
                  sync_seen_t *s, uint64_t want, int timeout_ms) {
  char e[512], buf[64];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  snprintf(buf, sizeof(buf), "%s-verify", topic);
  CHECK(!rd_kafka_conf_set(conf, "bootstrap.servers", sync_bootstrap, e,
                           sizeof(e)) &&
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
  uint64_t deadline = sync_now_ms() + (uint64_t)timeout_ms;
  int nparts = 0;
  while (!nparts) {
    CHECK(rd_kafka_metadata(rk, 0, rkt, &md, 5000) == 0, "metadata %s", topic);
    if (md->topic_cnt == 1 && !md->topics[0].err)
      nparts = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    CHECK(nparts || sync_now_ms() < deadline, "topic %s never appeared", topic);
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
  s->hist_first_off = s->hist_last_off = -1;
  s->n = ex->n;
  s->count = calloc(ex->n + 1, sizeof(uint32_t));
  s->live_ts = calloc(ex->n + 1, sizeof(int64_t));
  s->event_ms = calloc(ex->n + 1, sizeof(int64_t));
  src_last_t *last = calloc(256, sizeof(*last));
  size_t nlast = 0;
  int eofs = 0;
  while (want ? s->distinct < want : eofs < nparts) {
    CHECK(sync_now_ms() < deadline,
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
    if (node) {
      CHECK(header(m, "node", hb, sizeof(hb)) && !strcmp(hb, node),
            "record without node header %s", node);
    }
    CHECK(header(m, "stream", hb, sizeof(hb)) && !strcmp(hb, "readings"),
          "stream header");
    for (size_t k = 0; sync_headers_absent[k]; k++)
      CHECK(header(m, "gap", lb, sizeof(lb)) ||
                !header(m, sync_headers_absent[k], hb, sizeof(hb)),
            "a data record carries header %s (kafka.omit_headers)",
            sync_headers_absent[k]);
    if (node) {
      CHECK(header(m, "schema", hb, sizeof(hb)) &&
                !strcmp(hb, !sync_json_values   ? "sluice.v1.Event"
                            : sync_json_compact ? "sluice.v1.Event+json-compact"
                                                : "sluice.v1.Event+json"),
            "schema header");
    }
    CHECK(header(m, "offset", ob, sizeof(ob)), "offset header");
    uint64_t off = strtoull(ob, NULL, 10);
    Sluice__V1__Event *ev =
        sync_json_values ? event_from_json(m, off)
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
    if (node)
      CHECK(ev->ingest_time_ns > 0, "offset %" PRIu64 " has no ingest time",
            off);
    if (ex->value[off] >= 0)
      CHECK(ev->body_case == SLUICE__V1__EVENT__BODY_READING &&
                ev->reading->double_value == ex->value[off],
            "offset %" PRIu64 " carries the wrong event", off);
    if (node)
      CHECK(m->key_len == strlen(ev->source) &&
                !memcmp(m->key, ev->source, m->key_len),
            "key is not the source");
    /* When each record was produced (CreateTime) against its event's time:
     * how long live records waited (sync_netns_test bandwidth). */
    int64_t ts = rd_kafka_message_timestamp(m, NULL);
    s->event_ms[off] = ev->time_ns / 1000000;
    if (lane) {
      if (ts > s->last_hist_ms)
        s->last_hist_ms = ts;
    } else if (!s->live_ts[off]) {
      s->live_ts[off] = ts;
    }
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
    if (lane && s->count[off] == 0) {
      if (s->hist_first_off < 0)
        s->hist_first_off = (int64_t)off;
      else if ((int64_t)off < s->hist_last_off)
        s->hist_descents++;
      s->hist_last_off = (int64_t)off;
    }
    if (i < 256 && s->count[off] == 0 && !(lane && sync_hist_newest_first)) {
      if ((int64_t)off <= last[i].last && s->order_errors++ == 0)
        snprintf(s->first_error, sizeof(s->first_error),
                 "source %s lane %d: offset %" PRIu64 " after %" PRId64,
                 ev->source, lane, off, last[i].last);
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

void sync_seen_free(sync_seen_t *s) {
  free(s->count);
  free(s->live_ts);
  free(s->event_ms);
}

void sync_verify_exactly_once(const char *topic, const char *node,
                              const sync_daemon_t *d, bool allow_dups,
                              uint64_t *missing_allowed, int timeout_ms,
                              sync_seen_t *out) {
  sync_expect_t ex;
  sync_seen_t s;
  char t[128];
  snprintf(t, sizeof(t), "%s-%s", sync_run_id, topic);
  sync_read_store(d, &ex);
  sync_consume(t, node, &ex, &s, 0, timeout_ms);
  uint64_t shown = 0;
  for (uint64_t k = 0; k < ex.n; k++) {
    if (!s.count[k] && ex.present[k] && s.missing++ < 5)
      fprintf(stderr, "missing: offset %" PRIu64 "\n", k);
    if (!allow_dups && s.count[k] > 1 && shown++ < 5)
      fprintf(stderr, "duplicate: offset %" PRIu64 "\n", k);
  }
  printf("%s: %" PRIu64 " stored, %" PRIu64 " records, %" PRIu64
         " distinct, %" PRIu64 " duplicates, %" PRIu64 " missing, %" PRIu64
         " historical, %" PRIu64 " gap records (%" PRIu64 " events), %" PRIu64
         " order errors\n",
         t, ex.n, s.records, s.distinct, s.dups, s.missing, s.historical,
         s.gaps, s.gap_events, s.order_errors);
  CHECK(s.order_errors == 0, "order: %s", s.first_error);
  if (!allow_dups)
    CHECK(s.dups == 0, "%" PRIu64 " duplicates", s.dups);
  if (missing_allowed)
    *missing_allowed = s.missing;
  else
    CHECK(s.missing == 0 && s.distinct == ex.n,
          "%" PRIu64 " stored offsets missing, %" PRIu64 " of %" PRIu64
          " covered",
          s.missing, s.distinct, ex.n);
  sync_expect_free(&ex);
  if (out)
    *out = s;
  else
    sync_seen_free(&s);
}

void sync_await_delivery(const char *topic, const char *node, uint64_t n,
                         int timeout_ms) {
  sync_expect_t ex = {.n = n + 1};
  sync_seen_t s;
  char t[128];
  snprintf(t, sizeof(t), "%s-%s", sync_run_id, topic);
  ex.value = calloc(n + 2, sizeof(double));
  ex.present = calloc(n + 2, sizeof(bool));
  for (uint64_t k = 0; k <= n; k++) {
    ex.value[k] = -1; /* content is checked by sync_verify_exactly_once */
    ex.present[k] = true;
  }
  sync_consume(t, node, &ex, &s, n, timeout_ms);
  sync_seen_free(&s);
  sync_expect_free(&ex);
}
