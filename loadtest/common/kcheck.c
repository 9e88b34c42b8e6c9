/*
 * sl_kcheck: the Kafka side of the end-to-end scenarios (loadtest/outage,
 * loadtest/soak, make demo). One read_committed consumer reads the topics
 * of a node from the beginning while the scenario runs and
 *
 *   - counts every (stream, offset) it sees (header `offset`; gap records
 *     count their whole range), so that a check reports per stream how many
 *     offsets are missing and how many arrived more than once (an offset
 *     both delivered and covered by a gap counts as a duplicate and as a
 *     gap_overlap), and the lowest and highest offset the gaps and the
 *     overlaps cover (-1: none);
 *   - checks that per source and lane (header `historical`) offsets rise;
 *   - with --csv, keeps per second of Kafka CreateTime the number of live
 *     and historical records and a histogram of the live records' latency
 *     (CreateTime - Event.time_ns), and writes them as CSV at the end.
 *
 *   sl_kcheck --brokers HOST:PORT --node ID --topic TOPIC[,TOPIC...]
 *             --control FILE [--csv FILE] [--timeout SECONDS]
 *
 * The scenario drives it with lines appended to the control file:
 *
 *   expect STREAM N        offsets [0, N) of STREAM must arrive (N = the
 *                          store's next offset once ingest has stopped)
 *   check [FROM_MS TO_MS]  report once every expected offset has arrived
 *                          and nothing more came for 2 s (write it when the
 *                          daemon has delivered everything and ingest has
 *                          stopped, so late duplicates would be seen), or
 *                          after --timeout seconds; FROM/TO (Unix ms) select
 * the seconds whose live latency is summarised as window_live_* quit write the
 * CSV and exit
 *
 * Each check prints ONE JSON line on stdout; progress goes to stderr. Exit
 * status: 0 when every check had zero missing and zero duplicates, 1
 * otherwise, 2 on usage or setup errors.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "sluice/v1/event.pb-c.h"

#define MAX_STREAMS 16
#define MAX_TOPICS 16
#define NB_FINE 1000   /* 1 ms buckets: 0 .. 999 ms */
#define NB_COARSE 1190 /* 100 ms buckets: 1 s .. 120 s */
#define NBUCKETS (NB_FINE + NB_COARSE + 1)
#define MAX_SECONDS (6 * 3600) /* per-second rows kept with --csv */
#define SRC_SLOTS 8192         /* (stream, source, lane) order table */

typedef struct stream {
  char name[65];
  uint8_t *count; /* per offset, saturating */
  uint64_t cap;   /* entries allocated */
  uint64_t expected, records, distinct, dups, historical, gap_records,
      gap_events, gap_overlaps, order_errors;
  int64_t gap_min, gap_max;         /* lowest and highest offset a gap covers */
  int64_t overlap_min, overlap_max; /* the same for gap_overlaps */
} stream_t;

typedef struct second {
  uint32_t live, hist;
  uint32_t *hist_ms; /* NBUCKETS, only when live > 0 */
  uint32_t max_ms;
} second_t;

typedef struct src {
  uint64_t hash;
  int64_t last;
  bool used;
} src_t;

static struct {
  const char *brokers, *node, *control, *csv;
  char *topics[MAX_TOPICS];
  int ntopics;
  int timeout_s;
} opt = {.timeout_s = 120};

static stream_t streams[MAX_STREAMS];
static int nstreams;
static second_t *secs;
static int64_t sec_base = -1; /* Unix second of secs[0] */
static uint64_t foreign, bad_records;
static src_t *srcs;
static char first_order_error[256];
static volatile sig_atomic_t stop_sig;

static void on_signal(int sig) {
  stop_sig = sig;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static stream_t *stream_get(const char *name) {
  for (int i = 0; i < nstreams; i++)
    if (!strcmp(streams[i].name, name))
      return &streams[i];
  if (nstreams == MAX_STREAMS)
    return NULL;
  stream_t *s = &streams[nstreams++];
  snprintf(s->name, sizeof(s->name), "%.64s", name);
  s->gap_min = s->gap_max = s->overlap_min = s->overlap_max = -1;
  return s;
}

static bool stream_reserve(stream_t *s, uint64_t n) {
  if (n <= s->cap)
    return true;
  uint64_t cap = s->cap ? s->cap : 1u << 20;
  while (cap < n)
    cap *= 2;
  uint8_t *c = realloc(s->count, cap);
  if (!c)
    return false;
  memset(c + s->cap, 0, cap - s->cap);
  s->count = c;
  s->cap = cap;
  return true;
}

/* count[off]: bit 7 = covered by a gap record, bits 0-6 = how many times
 * the offset arrived (record or gap), saturating. */
#define GAP_BIT 0x80u
static void mark(stream_t *s, uint64_t off, bool gap) {
  if (!stream_reserve(s, off + 1)) {
    bad_records++;
    return;
  }
  uint8_t c = s->count[off];
  if (c == 0) {
    s->distinct++;
  } else {
    s->dups++;
    if (gap || (c & GAP_BIT)) { /* a gap claims an offset that arrived */
      s->gap_overlaps++;
      if (s->overlap_min < 0 || (int64_t)off < s->overlap_min)
        s->overlap_min = (int64_t)off;
      if ((int64_t)off > s->overlap_max)
        s->overlap_max = (int64_t)off;
    }
  }
  if ((c & 0x7f) < 0x7f)
    c++;
  s->count[off] = (uint8_t)(c | (gap ? GAP_BIT : 0));
}

static const char *header(rd_kafka_headers_t *h, const char *name, char *buf,
                          size_t cap) {
  const void *v;
  size_t sz;
  if (!h || rd_kafka_header_get_last(h, name, &v, &sz))
    return NULL;
  snprintf(buf, cap, "%.*s", (int)sz, (const char *)v);
  return buf;
}

/* Reads a varint at *p; false when truncated. */
static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t x = 0;
  for (int sh = 0; sh < 64 && *p < end; sh += 7) {
    uint8_t b = *(*p)++;
    x |= (uint64_t)(b & 0x7f) << sh;
    if (!(b & 0x80)) {
      *v = x;
      return true;
    }
  }
  return false;
}

/* Event.time_ns (field 2, sint64) without a full decode; false if absent. */
static bool event_time_ns(const uint8_t *p, size_t len, int64_t *t) {
  const uint8_t *end = p + len;
  bool found = false;
  while (p < end) {
    uint64_t key, v;
    if (!varint(&p, end, &key))
      return false;
    switch (key & 7) {
    case 0:
      if (!varint(&p, end, &v))
        return false;
      if ((key >> 3) == 2) {
        *t = (int64_t)((v >> 1) ^ (~(v & 1) + 1));
        found = true;
      }
      break;
    case 1:
      p += 8;
      break;
    case 2:
      if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
        return false;
      p += v;
      break;
    case 5:
      p += 4;
      break;
    default:
      return false;
    }
  }
  return found;
}

static uint64_t fnv(const void *data, size_t n, uint64_t h) {
  const uint8_t *p = data;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

/* Per (stream, source, lane): offsets must rise. */
static void order_check(stream_t *s, const void *key, size_t klen, int lane,
                        uint64_t off) {
  uint64_t h = fnv(s->name, strlen(s->name), 1469598103934665603ull);
  h = fnv(key, klen, h);
  h = fnv(&lane, sizeof(lane), h);
  if (!h)
    h = 1;
  for (size_t i = 0, k = h % SRC_SLOTS; i < SRC_SLOTS;
       i++, k = (k + 1) % SRC_SLOTS) {
    src_t *e = &srcs[k];
    if (!e->used) {
      e->used = true;
      e->hash = h;
      e->last = (int64_t)off;
      return;
    }
    if (e->hash == h) {
      if ((int64_t)off <= e->last && s->order_errors++ == 0 &&
          !first_order_error[0])
        snprintf(first_order_error, sizeof(first_order_error),
                 "stream %s source %.*s lane %s: offset %" PRIu64
                 " after %" PRId64,
                 s->name, (int)(klen > 80 ? 80 : klen), (const char *)key,
                 lane ? "historical" : "live", off, e->last);
      e->last = (int64_t)off;
      return;
    }
  }
}

static size_t bucket_of(int64_t ms) {
  if (ms < 0)
    ms = 0;
  if (ms < NB_FINE)
    return (size_t)ms;
  int64_t b = NB_FINE + (ms - NB_FINE) / 100;
  return b < NBUCKETS - 1 ? (size_t)b : NBUCKETS - 1;
}

static double bucket_ms(size_t b) {
  if (b < NB_FINE)
    return (double)b;
  return NB_FINE + (double)(b - NB_FINE) * 100.0;
}

static second_t *second_at(int64_t create_ms) {
  int64_t sec = create_ms / 1000;
  if (sec_base < 0)
    sec_base = sec - 60; /* room for records a little older than the first */
  int64_t i = sec - sec_base;
  if (i < 0 || i >= MAX_SECONDS)
    return NULL;
  return &secs[i];
}

static void account_live(int64_t create_ms, int64_t lat_ms) {
  second_t *s = second_at(create_ms);
  if (!s)
    return;
  if (!s->hist_ms && !(s->hist_ms = calloc(NBUCKETS, sizeof(uint32_t))))
    return;
  s->live++;
  s->hist_ms[bucket_of(lat_ms)]++;
  if (lat_ms > (int64_t)s->max_ms)
    s->max_ms = (uint32_t)(lat_ms < 0 ? 0 : lat_ms);
}

static double pct(const uint32_t *h, uint64_t n, double p) {
  if (!n)
    return 0;
  uint64_t want = (uint64_t)((double)(n - 1) * p) + 1, acc = 0;
  for (size_t b = 0; b < NBUCKETS; b++)
    if ((acc += h[b]) >= want)
      return bucket_ms(b);
  return bucket_ms(NBUCKETS - 1);
}

/* Live latency percentiles over the seconds [from_ms, to_ms]. */
static void window_stats(int64_t from_ms, int64_t to_ms, uint64_t *n,
                         double *p50, double *p99, double *p999, uint32_t *mx) {
  static uint32_t agg[NBUCKETS];
  memset(agg, 0, sizeof(agg));
  *n = 0;
  *mx = 0;
  if (secs && sec_base >= 0)
    for (int64_t i = 0; i < MAX_SECONDS; i++) {
      int64_t t = (sec_base + i) * 1000;
      if (t + 999 < from_ms || t > to_ms || !secs[i].hist_ms)
        continue;
      for (size_t b = 0; b < NBUCKETS; b++)
        agg[b] += secs[i].hist_ms[b];
      *n += secs[i].live;
      if (secs[i].max_ms > *mx)
        *mx = secs[i].max_ms;
    }
  *p50 = pct(agg, *n, 0.50);
  *p99 = pct(agg, *n, 0.99);
  *p999 = pct(agg, *n, 0.999);
}

static void handle(rd_kafka_message_t *m) {
  char b[96], ob[32], lb[8];
  rd_kafka_headers_t *h = NULL;
  rd_kafka_message_headers(m, &h);
  if (!header(h, "node", b, sizeof(b)) || strcmp(b, opt.node)) {
    foreign++; /* another node's records, or not sluice's */
    return;
  }
  if (!header(h, "stream", b, sizeof(b)) ||
      !header(h, "offset", ob, sizeof(ob))) {
    bad_records++;
    return;
  }
  stream_t *s = stream_get(b);
  if (!s) {
    bad_records++;
    return;
  }
  s->records++;
  uint64_t off = strtoull(ob, NULL, 10);
  if (header(h, "gap", lb, sizeof(lb))) {
    Sluice__V1__Event *ev = sluice__v1__event__unpack(NULL, m->len, m->payload);
    if (!ev || ev->body_case != SLUICE__V1__EVENT__BODY_GAP ||
        ev->gap->last_offset < ev->gap->first_offset ||
        ev->gap->last_offset - ev->gap->first_offset > (1ull << 32)) {
      bad_records++;
    } else {
      s->gap_records++;
      if (s->gap_min < 0 || (int64_t)ev->gap->first_offset < s->gap_min)
        s->gap_min = (int64_t)ev->gap->first_offset;
      if ((int64_t)ev->gap->last_offset > s->gap_max)
        s->gap_max = (int64_t)ev->gap->last_offset;
      for (uint64_t k = ev->gap->first_offset; k <= ev->gap->last_offset; k++) {
        mark(s, k, true);
        s->gap_events++;
      }
    }
    if (ev)
      sluice__v1__event__free_unpacked(ev, NULL);
    return;
  }
  int lane = header(h, "historical", lb, sizeof(lb)) != NULL;
  s->historical += (uint64_t)lane;
  mark(s, off, false);
  order_check(s, m->key, m->key_len, lane, off);
  if (!secs)
    return;
  rd_kafka_timestamp_type_t tt;
  int64_t cms = rd_kafka_message_timestamp(m, &tt);
  if (cms < 0)
    return;
  if (lane) {
    second_t *sc = second_at(cms);
    if (sc)
      sc->hist++;
    return;
  }
  int64_t t_ns;
  if (event_time_ns(m->payload, m->len, &t_ns))
    account_live(cms, cms - t_ns / 1000000);
}

/* The control file: returns the next complete line, or NULL. */
static char *control_line(FILE *f) {
  static char buf[512];
  static size_t have;
  int c;
  while ((c = fgetc(f)) != EOF) {
    if (c == '\n') {
      buf[have] = '\0';
      have = 0;
      return buf;
    }
    if (have < sizeof(buf) - 1)
      buf[have++] = (char)c;
  }
  clearerr(f);
  return NULL;
}

typedef struct check {
  bool active;
  double deadline;
  int64_t from_ms, to_ms;
} check_t;

static bool covered(void) {
  for (int i = 0; i < nstreams; i++) {
    stream_t *s = &streams[i];
    if (!s->expected)
      continue;
    if (s->cap < s->expected)
      return false;
    /* distinct may include offsets beyond expected: scan to be exact. */
    uint64_t have = 0;
    for (uint64_t k = 0; k < s->expected; k++)
      have += s->count[k] != 0;
    if (have < s->expected)
      return false;
  }
  return true;
}

static int report(const check_t *c, bool timed_out, int nchecks) {
  uint64_t missing = 0, dups = 0, records = 0, beyond = 0, order = 0;
  printf("{\"check\":%d,\"timed_out\":%s,\"streams\":{", nchecks,
         timed_out ? "true" : "false");
  for (int i = 0; i < nstreams; i++) {
    stream_t *s = &streams[i];
    uint64_t miss = 0, bey = 0;
    for (uint64_t k = 0; k < s->expected; k++)
      miss += k >= s->cap || !s->count[k];
    for (uint64_t k = s->expected; k < s->cap; k++)
      bey += s->count[k] != 0;
    missing += miss;
    dups += s->dups;
    records += s->records;
    beyond += bey;
    order += s->order_errors;
    printf("%s\"%s\":{\"expected\":%" PRIu64 ",\"records\":%" PRIu64
           ",\"distinct\":%" PRIu64 ",\"missing\":%" PRIu64
           ",\"duplicates\":%" PRIu64 ",\"beyond_expected\":%" PRIu64
           ",\"historical\":%" PRIu64 ",\"gap_records\":%" PRIu64
           ",\"gap_events\":%" PRIu64 ",\"gap_min_offset\":%" PRId64
           ",\"gap_max_offset\":%" PRId64 ",\"gap_overlaps\":%" PRIu64
           ",\"gap_overlap_min_offset\":%" PRId64
           ",\"gap_overlap_max_offset\":%" PRId64 ",\"order_errors\":%" PRIu64
           "}",
           i ? "," : "", s->name, s->expected, s->records, s->distinct, miss,
           s->dups, bey, s->historical, s->gap_records, s->gap_events,
           s->gap_min, s->gap_max, s->gap_overlaps, s->overlap_min,
           s->overlap_max, s->order_errors);
  }
  printf("},\"records\":%" PRIu64 ",\"missing\":%" PRIu64
         ",\"duplicates\":%" PRIu64 ",\"beyond_expected\":%" PRIu64
         ",\"order_errors\":%" PRIu64 ",\"foreign\":%" PRIu64
         ",\"bad_records\":%" PRIu64 ",\"first_order_error\":\"%s\"",
         records, missing, dups, beyond, order, foreign, bad_records,
         first_order_error);
  if (secs) {
    uint64_t n;
    double p50, p99, p999;
    uint32_t mx;
    window_stats(INT64_MIN / 2, INT64_MAX / 2, &n, &p50, &p99, &p999, &mx);
    printf(",\"live_records\":%" PRIu64 ",\"live_p50_ms\":%.0f,\"live_p99_ms\":"
           "%.0f,\"live_p999_ms\":%.0f,\"live_max_ms\":%u",
           n, p50, p99, p999, mx);
    if (c->to_ms > c->from_ms) {
      window_stats(c->from_ms, c->to_ms, &n, &p50, &p99, &p999, &mx);
      printf(",\"window_live_records\":%" PRIu64 ",\"window_live_p50_ms\":%.0f,"
             "\"window_live_p99_ms\":%.0f,\"window_live_p999_ms\":%.0f,"
             "\"window_live_max_ms\":%u",
             n, p50, p99, p999, mx);
    }
  }
  printf("}\n");
  fflush(stdout);
  return missing || dups || timed_out || bad_records;
}

static void write_csv(void) {
  FILE *f = fopen(opt.csv, "w");
  if (!f) {
    fprintf(stderr, "sl_kcheck: %s: %s\n", opt.csv, strerror(errno));
    return;
  }
  fprintf(f, "t_s,live,historical,live_p50_ms,live_p99_ms,live_max_ms\n");
  for (int64_t i = 0; sec_base >= 0 && i < MAX_SECONDS; i++) {
    second_t *s = &secs[i];
    if (!s->live && !s->hist)
      continue;
    fprintf(f, "%" PRId64 ",%u,%u,%.0f,%.0f,%u\n", sec_base + i, s->live,
            s->hist, s->hist_ms ? pct(s->hist_ms, s->live, 0.5) : 0.0,
            s->hist_ms ? pct(s->hist_ms, s->live, 0.99) : 0.0, s->max_ms);
  }
  fclose(f);
}

static void usage(void) {
  fprintf(stderr, "usage: sl_kcheck --brokers B --node ID --topic T[,T...] "
                  "--control FILE [--csv FILE] [--timeout S]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option lo[] = {{"brokers", 1, 0, 'b'},
                                     {"node", 1, 0, 'n'},
                                     {"topic", 1, 0, 't'},
                                     {"control", 1, 0, 'c'},
                                     {"csv", 1, 0, 'o'},
                                     {"timeout", 1, 0, 'T'},
                                     {0, 0, 0, 0}};
  int c;
  char e[512];
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'b':
      opt.brokers = optarg;
      break;
    case 'n':
      opt.node = optarg;
      break;
    case 't':
      for (char *sv, *t = strtok_r(optarg, ",", &sv); t;
           t = strtok_r(NULL, ",", &sv))
        if (opt.ntopics < MAX_TOPICS)
          opt.topics[opt.ntopics++] = t;
      break;
    case 'c':
      opt.control = optarg;
      break;
    case 'o':
      opt.csv = optarg;
      break;
    case 'T':
      opt.timeout_s = atoi(optarg);
      break;
    default:
      usage();
    }
  }
  if (!opt.brokers || !opt.node || !opt.ntopics || !opt.control)
    usage();
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  srcs = calloc(SRC_SLOTS, sizeof(*srcs));
  if (opt.csv && !(secs = calloc(MAX_SECONDS, sizeof(*secs)))) {
    fprintf(stderr, "sl_kcheck: out of memory\n");
    return 2;
  }

  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  char gid[128];
  snprintf(gid, sizeof(gid), "sl_kcheck-%d", (int)getpid());
  if (rd_kafka_conf_set(conf, "bootstrap.servers", opt.brokers, e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "group.id", gid, e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "enable.partition.eof", "false", e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "enable.auto.commit", "false", e, sizeof(e)) ||
      rd_kafka_conf_set(conf, "isolation.level", "read_committed", e,
                        sizeof(e)) ||
      /* The broker may be stopped for a while: keep trying, quietly. */
      rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", e,
                        sizeof(e)) ||
      rd_kafka_conf_set(conf, "log_level", "3", e, sizeof(e))) {
    fprintf(stderr, "sl_kcheck: %s\n", e);
    return 2;
  }
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof(e));
  if (!rk) {
    fprintf(stderr, "sl_kcheck: %s\n", e);
    return 2;
  }
  rd_kafka_poll_set_consumer(rk);

  FILE *ctl = NULL;
  check_t chk = {0};
  int nchecks = 0, failed = 0;
  bool quit = false, have[MAX_TOPICS] = {0};
  int nhave = 0;
  double last_progress = now_s(), last_md = 0;
  double last_record = 0;

  while (!quit && !stop_sig) {
    /* A topic appears when the uplink first produces to it (a dead-letter
     * stream may never get one): every second, add the partitions of the
     * topics that appeared since, from their beginning. A check waiting for
     * offsets of a topic that never appears times out. */
    if (nhave < opt.ntopics && now_s() - last_md >= 1) {
      const rd_kafka_metadata_t *md = NULL;
      last_md = now_s();
      if (rd_kafka_metadata(rk, 1, NULL, &md, 2000) == 0) {
        rd_kafka_topic_partition_list_t *l =
            rd_kafka_topic_partition_list_new(8);
        for (int t = 0; t < opt.ntopics; t++)
          for (int i = 0; i < md->topic_cnt && !have[t]; i++)
            if (!strcmp(md->topics[i].topic, opt.topics[t]) &&
                !md->topics[i].err && md->topics[i].partition_cnt > 0) {
              for (int p = 0; p < md->topics[i].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(
                    l, opt.topics[t], md->topics[i].partitions[p].id)
                    ->offset = RD_KAFKA_OFFSET_BEGINNING;
              have[t] = true;
              nhave++;
              fprintf(stderr, "sl_kcheck: reading %s (%d partitions)\n",
                      opt.topics[t], md->topics[i].partition_cnt);
            }
        rd_kafka_metadata_destroy(md);
        if (l->cnt) {
          rd_kafka_error_t *err = rd_kafka_incremental_assign(rk, l);
          if (err) {
            fprintf(stderr, "sl_kcheck: assign: %s\n",
                    rd_kafka_error_string(err));
            rd_kafka_error_destroy(err);
            return 2;
          }
        }
        rd_kafka_topic_partition_list_destroy(l);
      }
    }
    if (!ctl)
      ctl = fopen(opt.control, "r");
    for (char *ln; ctl && !chk.active && !quit && (ln = control_line(ctl));) {
      char name[80];
      unsigned long long n;
      long long a, b;
      if (sscanf(ln, "expect %79s %llu", name, &n) == 2) {
        stream_t *s = stream_get(name);
        if (s)
          s->expected = n;
      } else if (!strncmp(ln, "check", 5)) {
        chk.active = true;
        chk.deadline = now_s() + opt.timeout_s;
        chk.from_ms = chk.to_ms = 0;
        if (sscanf(ln, "check %lld %lld", &a, &b) == 2) {
          chk.from_ms = a;
          chk.to_ms = b;
        }
      } else if (!strcmp(ln, "quit")) {
        quit = true;
      }
    }
    if (!nhave) {
      usleep(100000); /* no topic yet: nothing to poll */
      if (chk.active && now_s() > chk.deadline) {
        failed |= report(&chk, true, ++nchecks);
        chk.active = false;
      }
      continue;
    }
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (m) {
      if (!m->err) {
        last_record = now_s();
        handle(m);
      } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF &&
                 m->err != RD_KAFKA_RESP_ERR__TRANSPORT &&
                 m->err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        fprintf(stderr, "sl_kcheck: %s\n", rd_kafka_message_errstr(m));
      }
      rd_kafka_message_destroy(m);
    }
    if (chk.active) {
      bool done = now_s() - last_record >= 2 && covered();
      bool late = now_s() > chk.deadline;
      if (done || late) {
        failed |= report(&chk, !done, ++nchecks);
        chk.active = false;
      }
    }
    if (now_s() - last_progress >= 5) {
      uint64_t r = 0;
      for (int i = 0; i < nstreams; i++)
        r += streams[i].records;
      fprintf(stderr, "sl_kcheck: %" PRIu64 " records read\n", r);
      last_progress = now_s();
    }
  }
  if (opt.csv)
    write_csv();
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (stop_sig)
    return 2;
  return failed ? 1 : 0;
}
