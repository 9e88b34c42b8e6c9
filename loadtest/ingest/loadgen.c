/*
 * sl_loadgen: publishes realistic readings to a running sluice daemon through
 * the C client library, over several connections (one client and one thread
 * each), pipelined, at full speed or at a fixed rate, and reports what the
 * daemon durably acknowledged. Progress on stderr, one JSON object on stdout.
 *
 *   sl_loadgen --address 127.0.0.1:7000 [--connections 4] [--events 2000000]
 *              [--rate 0] [--batch 1000] [--linger-ms 2] [--in-flight 16]
 *              [--sources 500] [--max-seconds 60] [--stream NAME]
 *
 * Ack latency is measured per batch, from the publish call of the batch's
 * first event to its ack callback, so it includes the client's linger.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "connectors/sim/gen.h"
#include "sluice/client.h"

#define RING 65536u /* batch ids in flight per connection, at most */

typedef struct worker {
  pthread_t th;
  int idx;
  uint64_t events; /* to publish */
  double rate;     /* events/s for this worker, 0 = as fast as possible */
  sl_client_t *cl;
  uint64_t *t_first; /* publish time of a batch's first event, by id */
  uint64_t last_bid;
  double *lat_ms; /* ack latency per acked batch */
  size_t nlat, caplat;
  pthread_mutex_t mu;
  uint64_t acked, failed, published;
  int err;
} worker_t;

static struct {
  const char *address, *stream;
  int connections;
  uint64_t events;
  double rate;
  uint32_t batch, linger_ms, in_flight, sources;
  double max_seconds;
} opt = {"127.0.0.1:7000", "", 4, 2000000, 0, 1000, 2, 16, 500, 60};

static volatile int stop_now;

static double now_s(void) {
  return (double)sl_now_mono_ns() / 1e9;
}

static void on_ack(sl_client_t *cl, uint64_t batch_id, uint64_t first_offset,
                   uint32_t count, int err, void *opaque) {
  worker_t *w = opaque;
  uint64_t t = sl_now_mono_ns();
  (void)cl;
  (void)first_offset;
  pthread_mutex_lock(&w->mu);
  if (err) {
    w->failed += count;
    if (!w->err)
      w->err = err;
  } else {
    w->acked += count;
    if (w->nlat == w->caplat) {
      size_t cap = w->caplat ? w->caplat * 2 : 4096;
      double *n = realloc(w->lat_ms, cap * sizeof(double));
      if (n) {
        w->lat_ms = n;
        w->caplat = cap;
      }
    }
    if (w->nlat < w->caplat && w->t_first[batch_id % RING])
      w->lat_ms[w->nlat++] = (double)(t - w->t_first[batch_id % RING]) / 1e6;
  }
  pthread_mutex_unlock(&w->mu);
}

static void *run_worker(void *arg) {
  worker_t *w = arg;
  sl_gen_t g;
  double t0 = now_s();
  int rc;

  sl_gen_init(&g, opt.sources, 0x5eed0000u + (uint64_t)w->idx,
              1700000000000000000ll, 1000000);
  for (uint64_t i = 0; i < w->events && !stop_now; i++) {
    uint64_t bid;
    if (w->rate > 0 && (i % 64) == 0) {
      /* Pace in steps of 64 events: sleep until this event's due time. */
      double due = t0 + (double)i / w->rate, wait = due - now_s();
      if (wait > 0)
        usleep((useconds_t)(wait * 1e6));
    }
    const Sluice__V1__Event *ev = sl_gen_next(&g);
    /* A full buffer waits in slices of 200 ms so a stop (time limit, a
     * daemon that died) is noticed. */
    while ((rc = sl_client_publish(w->cl, opt.stream, ev, &bid)) ==
               SL_EBACKPRESSURE &&
           !stop_now)
      ;
    if (rc < 0) {
      if (!stop_now)
        w->err = rc;
      break;
    }
    w->published++;
    if (bid != w->last_bid) {
      /* The ack callback reads this on the client's I/O thread. */
      pthread_mutex_lock(&w->mu);
      w->t_first[bid % RING] = sl_now_mono_ns();
      pthread_mutex_unlock(&w->mu);
      w->last_bid = bid;
    }
  }
  sl_gen_close(&g);
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void usage(void) {
  fprintf(stderr,
          "usage: sl_loadgen --address A [--connections N] [--events N] "
          "[--rate EV/S] [--batch N] [--linger-ms MS] [--in-flight N] "
          "[--sources N] [--max-seconds S] [--stream NAME]\n");
  exit(2);
}

int main(int argc, char **argv) {
  static const struct option lo[] = {{"address", 1, 0, 'a'},
                                     {"connections", 1, 0, 'c'},
                                     {"events", 1, 0, 'n'},
                                     {"rate", 1, 0, 'r'},
                                     {"batch", 1, 0, 'b'},
                                     {"linger-ms", 1, 0, 'l'},
                                     {"in-flight", 1, 0, 'f'},
                                     {"sources", 1, 0, 's'},
                                     {"max-seconds", 1, 0, 't'},
                                     {"stream", 1, 0, 'S'},
                                     {0, 0, 0, 0}};
  int c;
  while ((c = getopt_long(argc, argv, "", lo, NULL)) != -1) {
    switch (c) {
    case 'a':
      opt.address = optarg;
      break;
    case 'c':
      opt.connections = atoi(optarg);
      break;
    case 'n':
      opt.events = strtoull(optarg, NULL, 10);
      break;
    case 'r':
      opt.rate = atof(optarg);
      break;
    case 'b':
      opt.batch = (uint32_t)atoi(optarg);
      break;
    case 'l':
      opt.linger_ms = (uint32_t)atoi(optarg);
      break;
    case 'f':
      opt.in_flight = (uint32_t)atoi(optarg);
      break;
    case 's':
      opt.sources = (uint32_t)atoi(optarg);
      break;
    case 't':
      opt.max_seconds = atof(optarg);
      break;
    case 'S':
      opt.stream = optarg;
      break;
    default:
      usage();
    }
  }
  if (opt.connections < 1 || opt.connections > 256 || !opt.events)
    usage();

  worker_t *w = calloc((size_t)opt.connections, sizeof(*w));
  for (int i = 0; i < opt.connections; i++) {
    sl_client_opts_t o;
    char id[32];
    snprintf(id, sizeof(id), "loadgen-%d", i);
    sl_client_opts_init(&o);
    o.address = opt.address;
    o.client_id = id;
    o.max_batch_events = opt.batch;
    o.max_batch_bytes = opt.batch * 512;
    o.linger_ms = opt.linger_ms;
    o.max_in_flight = opt.in_flight;
    o.max_buffered_events = opt.batch * (opt.in_flight + 2);
    o.publish_timeout_ms = 200;
    o.ack_cb = on_ack;
    o.opaque = &w[i];
    w[i].idx = i;
    w[i].events = opt.events / (uint64_t)opt.connections;
    w[i].rate = opt.rate / opt.connections;
    w[i].t_first = calloc(RING, sizeof(uint64_t));
    pthread_mutex_init(&w[i].mu, NULL);
    int rc = sl_client_new(&o, &w[i].cl);
    if (rc < 0) {
      fprintf(stderr, "sl_loadgen: client: %s\n", sl_strerror(rc));
      return 1;
    }
  }

  double t0 = now_s(), deadline = t0 + opt.max_seconds, last = t0;
  for (int i = 0; i < opt.connections; i++)
    pthread_create(&w[i].th, NULL, run_worker, &w[i]);
  /* Progress on stderr until every event is acked or failed. */
  uint64_t target =
      opt.events / (uint64_t)opt.connections * (uint64_t)opt.connections;
  for (;;) {
    uint64_t acked = 0, failed = 0;
    for (int i = 0; i < opt.connections; i++) {
      pthread_mutex_lock(&w[i].mu);
      acked += w[i].acked;
      failed += w[i].failed;
      pthread_mutex_unlock(&w[i].mu);
    }
    double t = now_s();
    if (acked + failed >= target)
      break;
    if (t > deadline) {
      fprintf(stderr, "sl_loadgen: time limit of %.0f s reached\n",
              opt.max_seconds);
      stop_now = 1;
      break;
    }
    if (t - last >= 1) {
      fprintf(stderr, "\rloadgen: %llu/%llu acked (%.0f ev/s)   ",
              (unsigned long long)acked, (unsigned long long)target,
              (double)acked / (t - t0));
      last = t;
    }
    usleep(5000);
  }
  for (int i = 0; i < opt.connections; i++)
    pthread_join(w[i].th, NULL);
  double elapsed = now_s() - t0;
  /* After a time-out (e.g. the daemon was killed) there is nothing to
   * wait for: unacked batches are reported as failed by sl_client_free. */
  for (int i = 0; i < opt.connections && !stop_now; i++)
    sl_client_flush(w[i].cl, 10000);
  fprintf(stderr, "\n");

  uint64_t acked = 0, failed = 0;
  size_t nlat = 0;
  int err = 0;
  for (int i = 0; i < opt.connections; i++) {
    acked += w[i].acked;
    failed += w[i].failed;
    nlat += w[i].nlat;
    if (w[i].err && !err)
      err = w[i].err;
  }
  double *lat = malloc((nlat ? nlat : 1) * sizeof(double));
  size_t k = 0;
  for (int i = 0; i < opt.connections; i++) {
    memcpy(lat + k, w[i].lat_ms, w[i].nlat * sizeof(double));
    k += w[i].nlat;
  }
  qsort(lat, nlat, sizeof(double), cmp_double);
#define PCT(p) (nlat ? lat[(size_t)((double)(nlat - 1) * (p))] : 0.0)
  printf("{\"events\":%llu,\"acked\":%llu,\"failed\":%llu,\"seconds\":%.3f,"
         "\"events_per_s\":%.0f,\"ack_latency_p50_ms\":%.3f,"
         "\"ack_latency_p99_ms\":%.3f,\"ack_latency_p999_ms\":%.3f,"
         "\"batches\":%zu,\"connections\":%d,\"batch\":%u,\"target_rate\":%.0f,"
         "\"error\":\"%s\"}\n",
         (unsigned long long)target, (unsigned long long)acked,
         (unsigned long long)failed, elapsed, (double)acked / elapsed,
         PCT(0.50), PCT(0.99), PCT(0.999), nlat, opt.connections, opt.batch,
         opt.rate, err ? sl_errname(err) : "");
  for (int i = 0; i < opt.connections; i++) {
    sl_client_free(w[i].cl);
    free(w[i].t_first);
    free(w[i].lat_ms);
  }
  free(w);
  free(lat);
  return failed || acked < target ? 1 : 0;
}
