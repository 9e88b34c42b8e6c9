/*
 * sl_latency: live latency from event time to Kafka, for
 * `loadtest/run latency`. One thread publishes realistic readings (the
 * shared generator, 500 sources) to a running daemon through the C client
 * library at a steady rate, stamping each event's time_ns with the wall
 * clock at the publish call; a read_committed consumer on the stream's
 * topic takes, for every live record (no `historical` header) of this run,
 *   append latency  = the record's LogAppendTime - time_ns (the broker's
 *                     clock at the append; the topic is created with
 *                     message.timestamp.type=LogAppendTime),
 *   visible latency = the wall clock when the consumer received it -
 *                     time_ns (after the transaction's commit).
 * The client seals a batch after 2 ms (linger) or 1000 events.
 * Broker and publisher share this machine's clock. Records from the
 * backlog lane (`historical`) are counted; with --until-historical N the
 * run goes on until N of them were seen, and the live records appended
 * between the first and the last historical one make the "during drain"
 * figures. Progress on stderr, one JSON object on stdout.
 *
 * --raw-producer is the baseline measured in the same run: the same
 * readings at the same rate produced straight to Kafka by one librdkafka
 * producer with the uplink's settings (idempotent, acks=all, linger.ms=1,
 * lz4, batch.num.messages 10000), no daemon and no transactions: what this
 * broker and box give any producer.
 *
 *   sl_latency --brokers B --topic T --create-topic
 *   sl_latency --raw-producer --brokers B --topic T [--rate ...] [--seconds]
 *   sl_latency --address HOST:PORT --brokers B --topic T [--rate 50000]
 *              [--seconds 10] [--warmup 2] [--until-historical N]
 *              [--max-seconds 120] [--stream readings] [--dump FILE]
 */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "common/common.h"
#include "connectors/sim/gen.h"
#include "sluice/client.h"

static struct {
  const char *address, *brokers, *topic, *stream;
  double rate, seconds, warmup, max_seconds;
  uint64_t until_historical;
  int create_topic, raw;
  const char *dump; /* write "append_ts_ms append_ms visible_ms" lines */
} opt = {NULL, NULL, NULL, "readings", 50000, 10, 2, 120, 0, 0, 0, NULL};

/* Shared between the publisher and the consumer thread. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static volatile int publishing_done, consumer_stop;
static uint64_t acked, failed_events;

/* Consumer results (consumer thread until joined). */
typedef struct sample {
  double append_ms, visible_ms;
  int64_t append_ts_ms; /* LogAppendTime */
} sample_t;
static sample_t *samples;
static size_t nsamples, capsamples;
static uint64_t live_seen, historical_seen, ignored, create_time_records;
static int64_t hist_first_ms, hist_last_ms;
static char consumer_err[256];

/* Publish -> durable ack per batch (the daemon's ingest and fsync alone),
 * to tell a stall in the store from one in the uplink or Kafka: the
 * publish time of each batch's first event, by batch id (ids rise by one;
 * the ring is far larger than the client's batches in flight). */
#define ACK_RING 65536
static uint64_t batch_pub_ns[ACK_RING];
typedef struct ack_sample {
  double ms;
  int64_t wall_ms; /* when the ack came */
} ack_sample_t;
static ack_sample_t *acks;
static size_t nacks, capacks;
static uint64_t ack_from_ns; /* acks before this (the warm-up) not counted */

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  (void)cl;
  (void)first_offset;
  (void)opaque;
  uint64_t now = sl_now_mono_ns();
  pthread_mutex_lock(&mu);
  if (err)
    failed_events += count;
  else
    acked += count;
  uint64_t t = batch_pub_ns[batch_id % ACK_RING];
  if (cl && !err && t && now >= t && t >= ack_from_ns) {
    if (nacks == capacks &&
        !(acks = realloc(acks, (capacks = capacks ? capacks * 2 : 4096) *
                                   sizeof(*acks))))
      abort();
    acks[nacks].ms = (double)(now - t) / 1e6;
    acks[nacks++].wall_ms = sl_now_wall_ns() / 1000000;
  }
  pthread_mutex_unlock(&mu);
}

static int cmp_double(const void *a, const void *b);

/* p50/p99/max of the ack latencies; per second p99 on stderr. */
static void ack_report(double *out) {
  out[0] = out[1] = out[2] = 0;
  if (!nacks)
    return;
  double *v = malloc(nacks * sizeof(*v));
  if (!v)
    abort();
  for (size_t i = 0; i < nacks; i++)
    v[i] = acks[i].ms;
  qsort(v, nacks, sizeof(*v), cmp_double);
  out[0] = v[nacks / 2];
  out[1] = v[(size_t)((double)nacks * 0.99)];
  out[2] = v[nacks - 1];
  /* Seconds as the wall clock's second of the minute, as run.sh prints
   * the append latencies, so the two lines line up. */
  fprintf(stderr, "latency: ack p99 per second:  ");
  for (size_t i = 0; i < nacks;) {
    size_t j = i, k = 0;
    while (j < nacks && acks[j].wall_ms / 1000 == acks[i].wall_ms / 1000)
      v[k++] = acks[j++].ms;
    qsort(v, k, sizeof(*v), cmp_double);
    fprintf(stderr, " %lld:%.0f", (long long)(acks[i].wall_ms / 1000 % 60),
            v[(size_t)((double)k * 0.99)]);
    i = j;
  }
  fprintf(stderr, "\n");
  free(v);
}

static void raw_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  (void)rk;
  (void)opaque;
  on_ack(NULL, 0, 0, 1, m->err ? SL_EKAFKA : 0, NULL);
}

/* The baseline's producer: the uplink's settings, no transactions. */
static rd_kafka_t *raw_producer(void);

/* Event.time_ns (field 2, sint64) of a serialized Event; 0 if absent. */
static int64_t event_time(const uint8_t *p, size_t len) {
  size_t i = 0;
  while (i < len) {
    uint64_t tag = 0, v = 0;
    for (int s = 0; i < len && s < 64; s += 7) {
      tag |= (uint64_t)(p[i] & 0x7f) << s;
      if (!(p[i++] & 0x80))
        break;
    }
    unsigned wt = (unsigned)(tag & 7);
    if (wt == 0) {
      for (int s = 0; i < len && s < 64; s += 7) {
        v |= (uint64_t)(p[i] & 0x7f) << s;
        if (!(p[i++] & 0x80))
          break;
      }
      if ((tag >> 3) == 2)
        return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    } else if (wt == 2) {
      for (int s = 0; i < len && s < 64; s += 7) {
        v |= (uint64_t)(p[i] & 0x7f) << s;
        if (!(p[i++] & 0x80))
          break;
      }
      i += v;
    } else if (wt == 1) {
      i += 8;
    } else if (wt == 5) {
      i += 4;
    } else {
      return 0;
    }
  }
  return 0;
}

static int64_t run_start_ns, measure_from_ns;

static void *consumer_main(void *arg) {
  rd_kafka_t *rk = arg;
  while (!consumer_stop) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
    if (!m)
      continue;
    int64_t now = sl_now_wall_ns();
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && !*consumer_err)
        snprintf(consumer_err, sizeof(consumer_err), "%s",
                 rd_kafka_message_errstr(m));
      rd_kafka_message_destroy(m);
      continue;
    }
    rd_kafka_timestamp_type_t tst;
    int64_t ts = rd_kafka_message_timestamp(m, &tst);
    if (tst != RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME)
      create_time_records++;
    rd_kafka_headers_t *h = NULL;
    const void *hv;
    size_t hs;
    bool hist = !rd_kafka_message_headers(m, &h) &&
                !rd_kafka_header_get_last(h, "historical", &hv, &hs);
    if (hist) {
      pthread_mutex_lock(&mu);
      if (!historical_seen++)
        hist_first_ms = ts;
      hist_last_ms = ts;
      pthread_mutex_unlock(&mu);
    } else {
      int64_t t = event_time(m->payload, m->len);
      if (t < run_start_ns) {
        ignored++; /* an earlier run's record */
      } else {
        pthread_mutex_lock(&mu);
        live_seen++;
        pthread_mutex_unlock(&mu);
        if (t >= measure_from_ns) {
          if (nsamples == capsamples) {
            capsamples = capsamples ? capsamples * 2 : 1u << 20;
            samples = realloc(samples, capsamples * sizeof(*samples));
            if (!samples)
              abort();
          }
          samples[nsamples].append_ms = (double)ts - (double)t / 1e6;
          samples[nsamples].visible_ms = (double)(now - t) / 1e6;
          samples[nsamples++].append_ts_ms = ts;
        }
      }
    }
    rd_kafka_message_destroy(m);
  }
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Percentiles of the selected samples: out[0..2] = p50, p99, p999. */
static size_t pct(int visible, int64_t from_ms, int64_t to_ms, double *out) {
  double *v = malloc((nsamples + 1) * sizeof(double));
  size_t n = 0;
  if (!v)
    abort();
  for (size_t i = 0; i < nsamples; i++)
    if (samples[i].append_ts_ms >= from_ms && samples[i].append_ts_ms <= to_ms)
      v[n++] = visible ? samples[i].visible_ms : samples[i].append_ms;
  qsort(v, n, sizeof(double), cmp_double);
  static const double q[3] = {0.5, 0.99, 0.999};
  for (int k = 0; k < 3; k++)
    out[k] = n ? v[(size_t)fmin((double)n - 1, floor(q[k] * (double)n))] : -1;
  free(v);
  return n;
}

static rd_kafka_conf_t *base_conf(void) {
  char e[256];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", opt.brokers, e, sizeof(e))) {
    fprintf(stderr, "sl_latency: %s\n", e);
    exit(2);
  }
  return conf;
}

static rd_kafka_t *raw_producer(void) {
  char e[256];
  rd_kafka_conf_t *conf = base_conf();
  static const char *const kv[][2] = {{"enable.idempotence", "true"},
                                      {"acks", "all"},
                                      {"linger.ms", "1"},
                                      {"compression.type", "lz4"},
                                      {"batch.num.messages", "10000"}};
  for (size_t i = 0; i < SL_ARRAY_SIZE(kv); i++)
    if (rd_kafka_conf_set(conf, kv[i][0], kv[i][1], e, sizeof(e))) {
      fprintf(stderr, "sl_latency: %s\n", e);
      exit(2);
    }
  rd_kafka_conf_set_dr_msg_cb(conf, raw_dr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof(e));
  if (!rk) {
    fprintf(stderr, "sl_latency: producer: %s\n", e);
    exit(1);
  }
  return rk;
}

/* Creates the topic (1 partition, LogAppendTime); exists already is fine. */
static int create_topic(void) {
  char e[256];
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, base_conf(), e, sizeof(e));
  if (!rk)
    return 1;
  rd_kafka_NewTopic_t *nt =
      rd_kafka_NewTopic_new(opt.topic, 1, 1, e, sizeof(e));
  rd_kafka_NewTopic_set_config(nt, "message.timestamp.type", "LogAppendTime");
  rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
  rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
  rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 30000);
  int rc = 1;
  if (ev) {
    size_t cnt = 0;
    const rd_kafka_topic_result_t **res = rd_kafka_CreateTopics_result_topics(
        rd_kafka_event_CreateTopics_result(ev), &cnt);
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    if (!err && cnt == 1)
      err = rd_kafka_topic_result_error(res[0]);
    rc = err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS;
    if (rc)
      fprintf(stderr, "sl_latency: create %s: %s\n", opt.topic,
              rd_kafka_err2str(err));
    rd_kafka_event_destroy(ev);
  }
  rd_kafka_queue_destroy(q);
  rd_kafka_NewTopic_destroy(nt);
  rd_kafka_destroy(rk);
  return rc;
}

int main(int argc, char **argv) {
  static const struct option lo[] = {{"address", 1, NULL, 'a'},
                                     {"brokers", 1, NULL, 'b'},
                                     {"topic", 1, NULL, 't'},
                                     {"stream", 1, NULL, 's'},
                                     {"rate", 1, NULL, 'r'},
                                     {"seconds", 1, NULL, 'S'},
                                     {"warmup", 1, NULL, 'w'},
                                     {"max-seconds", 1, NULL, 'M'},
                                     {"until-historical", 1, NULL, 'H'},
                                     {"create-topic", 0, NULL, 'C'},
                                     {"dump", 1, NULL, 'D'},
                                     {"raw-producer", 0, NULL, 'R'},
                                     {NULL, 0, NULL, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'a':
      opt.address = optarg;
      break;
    case 'b':
      opt.brokers = optarg;
      break;
    case 't':
      opt.topic = optarg;
      break;
    case 's':
      opt.stream = optarg;
      break;
    case 'r':
      opt.rate = atof(optarg);
      break;
    case 'S':
      opt.seconds = atof(optarg);
      break;
    case 'w':
      opt.warmup = atof(optarg);
      break;
    case 'M':
      opt.max_seconds = atof(optarg);
      break;
    case 'H':
      opt.until_historical = strtoull(optarg, NULL, 10);
      break;
    case 'C':
      opt.create_topic = 1;
      break;
    case 'D':
      opt.dump = optarg;
      break;
    case 'R':
      opt.raw = 1;
      break;
    default:
      fprintf(stderr, "usage: see loadtest/latency/latency.c\n");
      return 2;
    }
  }
  if (!opt.brokers || !opt.topic ||
      (!opt.create_topic && !opt.raw && !opt.address)) {
    fprintf(stderr, "sl_latency: --brokers, --topic and --address (or "
                    "--create-topic) are needed\n");
    return 2;
  }
  if (opt.create_topic)
    return create_topic();

  /* The consumer first, from the beginning of the topic. */
  char e[256];
  rd_kafka_conf_t *cc = base_conf();
  char group[300];
  snprintf(group, sizeof(group), "sl_latency-%d", (int)getpid());
  if (rd_kafka_conf_set(cc, "group.id", group, e, sizeof(e)) ||
      rd_kafka_conf_set(cc, "isolation.level", "read_committed", e,
                        sizeof(e)) ||
      rd_kafka_conf_set(cc, "enable.auto.commit", "false", e, sizeof(e)) ||
      rd_kafka_conf_set(cc, "fetch.wait.max.ms", "5", e, sizeof(e))) {
    fprintf(stderr, "sl_latency: %s\n", e);
    return 2;
  }
  rd_kafka_t *ck = rd_kafka_new(RD_KAFKA_CONSUMER, cc, e, sizeof(e));
  if (!ck) {
    fprintf(stderr, "sl_latency: consumer: %s\n", e);
    return 1;
  }
  rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(parts, opt.topic, 0)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(ck, parts);
  rd_kafka_topic_partition_list_destroy(parts);

  run_start_ns = sl_now_wall_ns();
  measure_from_ns = run_start_ns + (int64_t)(opt.warmup * 1e9);
  pthread_t cth;
  pthread_create(&cth, NULL, consumer_main, ck);

  sl_client_opts_t o;
  sl_client_t *cl = NULL;
  rd_kafka_t *prk = NULL;
  uint8_t *vbuf = NULL;
  size_t vcap = 0;
  sl_client_opts_init(&o);
  o.address = opt.address;
  o.client_id = "sl_latency";
  o.ack_cb = on_ack;
  o.linger_ms = 2;
  if (opt.raw)
    prk = raw_producer();
  else if (sl_client_new(&o, &cl) < 0) {
    fprintf(stderr, "sl_latency: client\n");
    return 1;
  }
  sl_gen_t g;
  sl_gen_init(&g, 500, 0x1a7e, sl_now_wall_ns(), 1000000);
  double t0 = (double)sl_now_mono_ns() / 1e9, now = t0;
  ack_from_ns = sl_now_mono_ns() + (uint64_t)(opt.warmup * 1e9);
  uint64_t published = 0, last_bid = UINT64_MAX;
  int rc = 0;
  for (uint64_t i = 0;; i++) {
    if ((i % 64) == 0) {
      now = (double)sl_now_mono_ns() / 1e9;
      if (now - t0 > opt.max_seconds)
        break;
      if (!opt.until_historical && now - t0 >= opt.seconds)
        break;
      if (opt.until_historical && now - t0 >= opt.warmup) {
        pthread_mutex_lock(&mu);
        bool done = historical_seen >= opt.until_historical;
        pthread_mutex_unlock(&mu);
        if (done)
          break;
      }
      double due = t0 + (double)i / opt.rate, wait = due - now;
      if (wait > 0)
        usleep((useconds_t)(wait * 1e6));
    }
    Sluice__V1__Event ev = *sl_gen_next(&g);
    ev.time_ns = sl_now_wall_ns();
    if (prk) {
      size_t len = sluice__v1__event__get_packed_size(&ev);
      if (len > vcap && !(vbuf = realloc(vbuf, vcap = len * 2)))
        abort();
      sluice__v1__event__pack(&ev, vbuf);
      rd_kafka_resp_err_t err;
      while ((err = rd_kafka_producev(
                  prk, RD_KAFKA_V_TOPIC(opt.topic),
                  RD_KAFKA_V_KEY(ev.source, strlen(ev.source)),
                  RD_KAFKA_V_VALUE(vbuf, len),
                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
             RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(prk, 1);
      rc = err ? SL_EKAFKA : 0;
      if ((i % 64) == 0)
        rd_kafka_poll(prk, 0);
    } else {
      uint64_t bid = 0;
      while ((rc = sl_client_publish(cl, opt.stream, &ev, &bid)) ==
             SL_EBACKPRESSURE)
        ;
      if (rc == 0) {
        pthread_mutex_lock(&mu);
        if (bid != last_bid) /* the batch's first event */
          batch_pub_ns[bid % ACK_RING] = sl_now_mono_ns();
        last_bid = bid;
        pthread_mutex_unlock(&mu);
      }
    }
    if (rc < 0) {
      fprintf(stderr, "sl_latency: publish: %s\n", sl_strerror(rc));
      break;
    }
    published++;
  }
  double pub_s = (double)sl_now_mono_ns() / 1e9 - t0;
  if (prk)
    rd_kafka_flush(prk, 30000);
  else
    sl_client_flush(cl, 30000);
  /* Wait until every acked live event was consumed (or 120 s: behind a
   * drain of millions of records, this consumer lags by tens of seconds). */
  uint64_t deadline = sl_now_mono_ns() + 120000000000ull;
  for (;;) {
    pthread_mutex_lock(&mu);
    bool all = live_seen >= acked;
    pthread_mutex_unlock(&mu);
    if (all || sl_now_mono_ns() > deadline)
      break;
    usleep(10000); /* polling a counter the consumer thread advances */
  }
  consumer_stop = 1;
  pthread_join(cth, NULL);
  sl_client_free(cl);
  if (prk)
    rd_kafka_destroy(prk);
  free(vbuf);
  sl_gen_close(&g);
  rd_kafka_consumer_close(ck);
  rd_kafka_destroy(ck);

  if (opt.dump) {
    FILE *f = fopen(opt.dump, "w");
    for (size_t i = 0; f && i < nsamples; i++)
      fprintf(f, "%" PRId64 " %.2f %.2f\n", samples[i].append_ts_ms,
              samples[i].append_ms, samples[i].visible_ms);
    if (f)
      fclose(f);
  }
  double a[3], v[3], ad[3], vd[3], ak[3];
  ack_report(ak);
  size_t n = pct(0, INT64_MIN, INT64_MAX, a);
  pct(1, INT64_MIN, INT64_MAX, v);
  size_t nd = 0;
  if (historical_seen) {
    nd = pct(0, hist_first_ms, hist_last_ms, ad);
    pct(1, hist_first_ms, hist_last_ms, vd);
  }
  printf("{\"published\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"failed\":%" PRIu64
         ",\"live_seen\":%" PRIu64 ",\"missing\":%" PRIu64
         ",\"rate\":%.0f,\"measured\":%zu,"
         "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"p999_ms\":%.2f,"
         "\"visible_p50_ms\":%.2f,\"visible_p99_ms\":%.2f,"
         "\"visible_p999_ms\":%.2f,\"historical_seen\":%" PRIu64
         ",\"drain_seconds\":%.2f,\"measured_during_drain\":%zu",
         published, acked, failed_events, live_seen,
         acked > live_seen ? acked - live_seen : 0, (double)published / pub_s,
         n, a[0], a[1], a[2], v[0], v[1], v[2], historical_seen,
         historical_seen ? (double)(hist_last_ms - hist_first_ms) / 1e3 : 0.0,
         nd);
  if (nd)
    printf(",\"p50_ms_during_drain\":%.2f,\"p99_ms_during_drain\":%.2f,"
           "\"p999_ms_during_drain\":%.2f,\"visible_p99_ms_during_drain\":%.2f",
           ad[0], ad[1], ad[2], vd[1]);
  if (nacks)
    printf(",\"ack_p50_ms\":%.2f,\"ack_p99_ms\":%.2f,\"ack_max_ms\":%.2f",
           ak[0], ak[1], ak[2]);
  printf(",\"create_time_records\":%" PRIu64 ",\"consumer_error\":\"%s\"}\n",
         create_time_records, consumer_err);
  free(samples);
  free(acks);
  return failed_events || acked > live_seen ? 1 : 0;
}
